//! The terminal pane's emulator and widget: the bytes a remote writes, through a `vt100`
//! parser, to a ratatui buffer; and keys and pastes back to bytes.
//!
//! It owns terminal emulation and no I/O: the session thread that owns one SSH connection
//! is `crate::ssh::pane`; [`session`] plugs [`Emulator`] into it. The SSH session feeds
//! [`Emulator`] on its own thread and sends [`TermFrame`] snapshots to the UI, which draws
//! them with [`TermView`] and sends [`encode_key`]/[`encode_paste`] bytes back. Raw
//! `vt100::Parser::new`/`set_size` calls stay inside [`Emulator`], which clamps sizes
//! (vt100 panics below 2x2) and survives a parser panic.
//!
//! vt100 is used without its `std` feature so that its escape parser (vte) keeps an
//! unterminated OSC string in a fixed 1 KiB buffer instead of a vector that grows with
//! whatever the remote sends.

mod emulator;
mod flood;
mod keys;
pub mod session;
mod view;

#[cfg(test)]
mod tests;

pub use emulator::{
    Emulator, FrameCell, MAX_SCROLLBACK, MAX_SIZE, MAX_TITLE, MIN_SIZE, RESET_NOTICE, TermFrame,
    feeding, map_color,
};
pub use keys::{PASTE_END, PASTE_START, encode_key, encode_paste};
pub use session::{FrameSlot, ShellHandle, ShellInput, ShellState, ShellUpdate};
pub use view::TermView;
