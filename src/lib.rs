//! Legion: a terminal dashboard, CLI and daemon for operators of cloud server fleets.
//!
//! The library holds the engine (`engine`), the provider modules (`providers`) and the
//! faces' rendering helpers (`views`). The binary in `main.rs` only wires them together.

pub mod core;
pub mod daemon;
pub mod engine;
pub mod link;
pub mod providers;
pub mod ssh;
pub mod views;
