//! Every integration test that can share a process, as one test binary: one module per
//! area (the former `tests/<area>.rs` files). Each separate test binary linked the whole
//! `legion` library (ssh2, reqwest, ratatui, tokio) again; one binary builds and links it
//! once, which is most of what `cargo test` spends on a fresh clone past the library.
//!
//! Apart, in their own binaries: `tests/tmux_demo.rs` (the demo's fleet of six sshds is
//! heavy and runs with nothing else beside it) and `tests/live/` (the real clouds, run by
//! hand).
//!
//! Tests here run side by side in one process: a test must not change process-wide state
//! (environment, current directory, signal handlers, a global subscriber), and tests that
//! change state outside the process that others rely on hold a lock ([`TEST_USER`]).

#![allow(clippy::unwrap_used)]

mod support;

mod cli;
mod cli_edits;
mod contract;
mod daemon;
mod daemon_load;
mod daemon_trust;
mod dashboard;
mod demo_once;
mod edits;
mod engine;
mod fault_matrix;
mod files;
mod firewall_access;
mod hetzner_cli;
mod hetzner_fake;
mod host_key;
mod keymap;
mod manual;
mod mixed_fleet;
mod mock_provider;
mod node_session;
mod ovh_cli;
mod ovh_fake;
mod pane_io;
mod plan;
mod plan_io;
mod provider_http;
mod replace;
mod scaleway_adapter;
mod scaleway_cli;
mod scaleway_fake;
mod shell_pane;
mod ssh;
mod state_journal;
mod state_store;
mod themes;
mod untrusted;

/// Held by the tests that change the password test user's `~/.ssh` or sudo rights
/// (`ssh`'s password bootstrap and sudo detection, `manual`'s import). In separate binaries
/// they never overlapped; here one test's sudoers drop-in or emptied `~/.ssh` would change
/// what another one checks.
pub static TEST_USER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`TEST_USER`], also after a test that held it failed.
pub fn test_user_lock() -> std::sync::MutexGuard<'static, ()> {
    TEST_USER.lock().unwrap_or_else(|p| p.into_inner())
}
