//! Legion: a terminal dashboard, CLI and daemon for operators of cloud server fleets.
//!
//! The library holds the engine (`engine`), the provider modules (`providers`), SSH
//! (`ssh`) and the faces: the dashboard (`views`), the command line (`cli`) and the daemon
//! (`daemon`). The binary in `main.rs` only parses, runs a `cli` command and exits with
//! its code.
//!
//! # What is public, and why
//!
//! Nothing here is published; the public surface is what the binary, the integration
//! tests, the benches and the examples use, chosen item by item, so that everything else
//! can change without touching them:
//! - [`cli`]: `parse`, `run`, `error_line` and the exit codes, for `main.rs`;
//! - [`engine`]: the handle ([`Engine`], [`EngineConfig`]), the one API ([`EngineApi`]
//!   and the types its calls carry), the errors, the snapshot types, the home and the
//!   state file (tests tamper with it); its internals are `pub(crate)`;
//! - [`providers`]: the provider contract, the built-in adapters and their configuration
//!   and errors (tests run the adapters against the cloud fakes);
//! - [`ssh`]: sessions, keys and the log tail (tests run them against a private sshd);
//! - [`views`]: the dashboard's state machine, keymap, theme and terminal emulator, which
//!   tests and benches drive without a terminal;
//! - [`link`]: [`Link`](link::Link), a face's handle on an engine here or the daemon's;
//!   it forwards every call of the API, used by the faces here or not;
//! - [`core`]: `Secret`, the operation log and the remote-text sanitizer (`text`), which
//!   every layer and the tests use.
//!
//! The daemon (its protocol, server and client) is the CLI's and stays inside the crate.
//! A test or bench that needs an engine internal gets one named export documented as
//! such (`engine::internals`), not the module.

pub mod cli;
pub mod core;
pub(crate) mod daemon;
pub mod engine;
pub mod link;
pub mod providers;
pub mod ssh;
pub mod views;

pub use engine::snapshot::AppSnapshot;
pub use engine::{Engine, EngineApi, EngineConfig, EngineError};
