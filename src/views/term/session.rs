//! The terminal pane's session as the UI sees it: the handle and update types of
//! [`crate::ssh::pane`] with this module's [`Emulator`] as the screen, and [`spawn`],
//! which starts the session thread on a fresh emulator.
//!
//! The I/O (the thread, the SSH channel, the read/write loop) lives in `crate::ssh::pane`;
//! this file only plugs the emulator in and must not grow any of it back.

use std::io;

use super::{Emulator, TermFrame};
use crate::ssh::SshAccess;
use crate::ssh::pane::{self, Screen};

pub use crate::ssh::pane::{IDLE_POLL, ShellInput, ShellState};

/// Scrollback kept per session.
pub const SCROLLBACK: usize = 5_000;

/// What the UI reads from the slot: the latest frame and state.
pub type ShellUpdate = pane::ShellUpdate<TermFrame>;
/// The one-place mailbox between a session thread and the UI.
pub type FrameSlot = pane::FrameSlot<TermFrame>;
/// The UI's end of a session: send input, take frames. Dropping it ends the session.
pub type ShellHandle = pane::ShellHandle<TermFrame>;
/// The session thread's end of a [`ShellHandle`] (also what tests read).
pub type ShellEnds = pane::ShellEnds<TermFrame>;

/// Start a session thread (`legion-ssh-<node>`) for `access`, sized rows x cols. `wake`
/// is called when a new update waits in the slot; it returns false once the UI is gone.
pub fn spawn(
    node: &str,
    access: SshAccess,
    rows: u16,
    cols: u16,
    wake: impl Fn() -> bool + Send + 'static,
) -> io::Result<ShellHandle> {
    pane::spawn(node, access, Emulator::new(rows, cols, SCROLLBACK), wake)
}

impl Screen for Emulator {
    type Frame = TermFrame;

    fn feed(&mut self, bytes: &[u8]) {
        Emulator::feed(self, bytes);
    }

    fn take_replies(&mut self) -> Vec<u8> {
        Emulator::take_replies(self)
    }

    fn size(&self) -> (u16, u16) {
        Emulator::size(self)
    }

    fn resize(&mut self, rows: u16, cols: u16) {
        Emulator::resize(self, rows, cols);
    }

    fn scroll_offset(&self) -> usize {
        Emulator::scroll_offset(self)
    }

    fn scroll_up(&mut self, rows: usize) {
        Emulator::scroll_up(self, rows);
    }

    fn scroll_down(&mut self, rows: usize) {
        Emulator::scroll_down(self, rows);
    }

    fn scroll_reset(&mut self) {
        Emulator::scroll_reset(self);
    }

    fn snapshot(&self) -> TermFrame {
        Emulator::snapshot(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_carries_the_emulators_frames() {
        let slot = FrameSlot::default();
        let mut emu = Emulator::new(4, 20, 0);
        Screen::feed(&mut emu, b"hello");
        assert!(slot.publish(ShellUpdate {
            frame: Screen::snapshot(&emu),
            state: ShellState::Open,
            first_seen_host_key: None,
        }));
        let got = slot.take().expect("a frame");
        assert_eq!(got.frame.row_text(0), "hello");
    }

    #[test]
    fn scrolling_through_the_screen_trait_is_bounded_by_the_history() {
        let mut emu = Emulator::new(3, 10, 100);
        for i in 0..10 {
            Screen::feed(&mut emu, format!("line{i}\r\n").as_bytes());
        }
        Screen::scroll_up(&mut emu, 2);
        assert_eq!(Screen::scroll_offset(&emu), 2);
        Screen::scroll_reset(&mut emu);
        assert_eq!(Screen::scroll_offset(&emu), 0);
    }
}
