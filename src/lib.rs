//! Legion: a terminal dashboard, CLI and daemon for operators of cloud server fleets.
//!
//! The library holds the engine (`engine`), the provider modules (`providers`) and the
//! faces: the dashboard's rendering helpers (`views`) and the command line (`cli`). The
//! binary in `main.rs` only parses, runs a `cli` command and exits with its code.

pub mod cli;
pub mod core;
pub mod daemon;
pub mod engine;
pub mod link;
pub mod providers;
pub mod ssh;
pub mod views;
