//! Faces' rendering: the dashboard (`app`, `lists`, `run`, `terminal`), its theme and
//! keymap, and plain-text tables for scripts. Views only read snapshots and send
//! commands; they never change engine state and never do I/O on the UI thread.
//!
//! Public: what tests and benches drive without a terminal: the dashboard's state machine
//! ([`app::App`]), its keymap and theme files, and the terminal pane's emulator
//! ([`term`]). The rest is the CLI's, inside the crate.

pub mod app;
pub(crate) mod fields;
pub(crate) mod form;
pub mod keymap;
pub(crate) mod lists;
pub(crate) mod plain;
pub(crate) mod run;
pub(crate) mod table;
pub mod term;
pub(crate) mod terminal;
pub mod theme;
