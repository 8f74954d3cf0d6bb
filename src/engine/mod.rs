//! The headless engine: encrypted state, resource actors, providers, plan and apply.
//!
//! Every face (dashboard, CLI, daemon) uses the one API in [`api`]: calls in,
//! `AppSnapshot`s out. See `docs/architecture.md` for how the parts fit.
//!
//! What leaves the crate: the handle and its configuration ([`Engine`], [`EngineConfig`],
//! [`Timings`]), the API ([`api`], [`EngineApi`]) and the types its calls take and return
//! ([`plan`], [`Action`], [`ImportRequest`], [`ImportReport`], [`state::model`]), the
//! errors ([`EngineError`], [`ErrorKind`]), the snapshot types ([`snapshot`]), the home
//! ([`home`]) and the state file ([`state::store`], [`state::crypto`]), which tests
//! tamper with. Everything else (sessions, actors, supervisor, observation, apply,
//! executions, the SSH agent, the demo) is `pub(crate)`: faces reach it only through
//! calls and snapshots.

pub(crate) mod actions;
pub(crate) mod actors;
pub mod api;
mod apply;
pub mod changes;
mod config;
pub(crate) mod demo;
pub(crate) mod derive;
mod edits;
mod error;
pub(crate) mod execution;
mod handle;
pub mod home;
pub(crate) mod import;
mod lifecycle;
pub(crate) mod observe;
pub(crate) mod parse;
pub mod plan;
pub mod plan_file;
pub(crate) mod sandbox;
mod session;
pub mod snapshot;
pub(crate) mod ssh_agent;
pub mod state;
pub mod status;
pub(crate) mod supervisor;
pub(crate) mod validate;
pub(crate) mod wait;

pub use actors::{Action, Timings};
pub use api::EngineApi;
pub use config::EngineConfig;
pub use error::{EngineError, ErrorKind};
pub use handle::Engine;
pub use import::{ImportReport, ImportRequest};

/// The phases an execution of this kind runs, in order (tests and benches build finished
/// executions with it).
pub use execution::phases_for;
/// Whether the demo can start its sandboxes here: the `sshd` it would run (tests skip the
/// demo's shells without one).
pub use sandbox::find_sshd;
/// The SSH settings the engine starts with (`LEGION_SSH_*`) and what they make of a role's
/// files (tests run the log commands against a private sshd).
pub use ssh_agent::SshSettings;

/// Engine parts `benches/engine.rs` assembles by hand to measure the snapshot publisher
/// (a burst of board changes against one supervisor). Not an API: they change with the
/// engine, and nothing else outside the crate may use them.
#[doc(hidden)]
pub mod internals {
    pub use super::actors::{ActorEnv, Board, ProviderSet};
    pub use super::state::cell::StateCell;
    pub use super::supervisor::Supervisor;
}
