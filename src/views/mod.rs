//! Faces' rendering: the dashboard (`app`, `lists`, `run`, `terminal`), its theme and
//! keymap, and plain-text tables for scripts. Views only read snapshots and send
//! commands; they never change engine state and never do I/O on the UI thread.

pub mod app;
pub mod fields;
pub mod form;
pub mod keymap;
pub mod lists;
pub mod plain;
pub mod run;
pub mod table;
pub mod tail;
pub mod term;
pub mod terminal;
pub mod theme;
