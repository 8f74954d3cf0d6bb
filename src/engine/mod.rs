//! The headless engine: encrypted state, resource actors, providers, plan and apply.
//!
//! Every face (dashboard, CLI, daemon) uses the one [`runtime::Engine`] API: commands in,
//! `AppSnapshot`s out. See `docs/architecture.md` for how the parts fit.

pub mod actors;
pub mod demo;
pub mod derive;
pub mod execution;
pub mod home;
pub mod import;
pub mod observe;
pub mod parse;
pub mod plan;
pub mod runtime;
pub mod sandbox;
pub mod snapshot;
pub mod ssh_agent;
pub mod state;
pub mod supervisor;
pub mod wait;

pub use runtime::{Engine, EngineConfig, EngineError};

// Transitional: `secret` and `oplog` live in `crate::core` (providers need them and must
// not import the engine); these keep `engine::secret` / `engine::oplog` paths working.
pub use crate::core::{oplog, secret};
