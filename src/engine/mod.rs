//! The headless engine: encrypted state, resource actors, providers, plan and apply.
//!
//! Every face (dashboard, CLI, daemon) uses the one API in [`api`]: calls in,
//! `AppSnapshot`s out. See `docs/architecture.md` for how the parts fit.

pub mod actions;
pub mod actors;
pub mod api;
mod apply;
pub mod config;
pub mod demo;
pub mod derive;
mod edits;
pub mod error;
pub mod execution;
pub mod handle;
pub mod home;
pub mod import;
mod lifecycle;
pub mod observe;
pub mod parse;
pub mod plan;
pub mod sandbox;
mod session;
pub mod snapshot;
pub mod ssh_agent;
pub mod state;
pub mod supervisor;
pub mod wait;

pub use api::EngineApi;
pub use error::{EngineError, ErrorKind};
pub use handle::{Engine, EngineConfig};

// Transitional: `secret` and `oplog` live in `crate::core` (providers need them and must
// not import the engine); these keep `engine::secret` / `engine::oplog` paths working.
pub use crate::core::{oplog, secret};
