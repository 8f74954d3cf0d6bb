//! Keystrokes for the focused shell pane, written by the input thread straight to the
//! session: one thread hop (input -> session) instead of two (input -> UI -> session), so
//! typing in the pane echoes as fast as plain ssh. The UI thread still draws the echo.
//!
//! The UI decides, after each batch of events, whether keys may take the short way and
//! what they need (the session's sender, the cursor-key mode, the keys it must see itself:
//! leave and zoom, Shift-PageUp/PageDown). The input thread only follows that
//! ([`DirectInput::route`]); it never touches the app. Order is kept: a key goes the short
//! way only while no key sent to the UI is still unhandled, and a key the UI must see
//! turns the short way off until the UI says otherwise.

use std::sync::{Arc, Mutex};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::App;
use crate::ssh::pane::ShellSender;
use crate::views::keymap::{Command, KeySpec};
use crate::views::term::{ShellInput, encode_key};

/// What the input thread needs to write the focused pane's keys itself.
#[derive(Debug, Clone)]
pub struct DirectPane {
    sender: ShellSender,
    application_cursor: bool,
    /// The keys the app must see (leave and zoom).
    reserved: Vec<KeySpec>,
}

impl DirectPane {
    /// The bytes `k` sends to the remote, or `None` when the app must see it.
    fn bytes(&self, k: &KeyEvent) -> Option<Vec<u8>> {
        if k.kind != KeyEventKind::Press {
            return None;
        }
        if KeySpec::from_event(k).is_some_and(|s| self.reserved.contains(&s)) {
            return None;
        }
        if k.modifiers.contains(KeyModifiers::SHIFT)
            && matches!(k.code, KeyCode::PageUp | KeyCode::PageDown)
        {
            return None;
        }
        encode_key(*k, self.application_cursor)
    }
}

#[derive(Debug, Default)]
struct Shared {
    target: Option<DirectPane>,
    /// Keys sent to the UI and not handled yet: the short way waits for them.
    in_flight: u32,
}

/// Shared between the input thread and the UI thread (a short lock each side, never held
/// across a send to the UI).
#[derive(Debug, Clone, Default)]
pub struct DirectInput(Arc<Mutex<Shared>>);

impl DirectInput {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // The shared state is two plain fields: still valid after a panic elsewhere.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Input thread: write `k` to the focused session and return true, or return false
    /// (the key goes to the UI, which must then call [`DirectInput::handled`]).
    pub fn route(&self, k: &KeyEvent) -> bool {
        let mut s = self.lock();
        if s.in_flight == 0
            && let Some(t) = &s.target
        {
            if let Some(bytes) = t.bytes(k) {
                t.sender.send(ShellInput::Bytes(bytes));
                return true;
            }
            // The app must see it, and may leave the pane: no short way until it says.
            s.target = None;
        }
        s.in_flight += 1;
        false
    }

    /// Input thread: a paste goes to the UI; keys after it wait until it is handled.
    pub fn forwarded(&self) {
        self.lock().in_flight += 1;
    }

    /// UI thread: a key (or paste) the input thread sent has been handled, and where keys may go
    /// the short way after it (one lock, so no key slips in with the old target).
    pub fn handled(&self, target: Option<DirectPane>) {
        let mut s = self.lock();
        s.target = target;
        s.in_flight = s.in_flight.saturating_sub(1);
    }

    /// UI thread, after each batch: where keys may go the short way now.
    pub fn set(&self, target: Option<DirectPane>) {
        self.lock().target = target;
    }
}

impl App {
    /// The focused pane, when its keys may go straight to its session: open, with a
    /// session thread, and the app not locked.
    pub fn direct_pane(&self) -> Option<DirectPane> {
        if self.locked() {
            return None;
        }
        let (handle, application_cursor) = self.shells.focused_open()?;
        let keymap = &self.opts.keymap;
        let reserved = [Command::LeavePane, Command::ZoomPane]
            .iter()
            .flat_map(|&c| keymap.keys(c).iter().copied())
            .collect();
        Some(DirectPane {
            sender: handle.sender(),
            application_cursor,
            reserved,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::pane::ShellHandle;
    use crossterm::event::KeyEvent;

    fn target() -> (DirectPane, crate::ssh::pane::ShellEnds<()>, ShellHandle<()>) {
        let (handle, ends) = ShellHandle::<()>::pair();
        let t = DirectPane {
            sender: handle.sender(),
            application_cursor: false,
            reserved: vec!["ctrl-\\".parse().expect("a key")],
        };
        (t, ends, handle)
    }

    fn key(code: KeyCode, m: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, m)
    }

    #[test]
    fn pane_keys_go_straight_to_the_session_in_order() {
        let (t, ends, _handle) = target();
        let direct = DirectInput::default();
        // Off until the UI turns it on.
        assert!(!direct.route(&key(KeyCode::Char('a'), KeyModifiers::NONE)));
        direct.set(Some(t.clone()));
        // A key sent to the UI is not handled yet: the next one waits its turn.
        assert!(!direct.route(&key(KeyCode::Char('b'), KeyModifiers::NONE)));
        direct.handled(Some(t.clone()));
        direct.handled(Some(t.clone()));
        assert!(direct.route(&key(KeyCode::Char('c'), KeyModifiers::NONE)));
        assert!(direct.route(&key(KeyCode::Up, KeyModifiers::NONE)));
        let got: Vec<ShellInput> = ends.rx.try_iter().collect();
        assert_eq!(
            got,
            [
                ShellInput::Bytes(b"c".to_vec()),
                ShellInput::Bytes(b"\x1b[A".to_vec())
            ]
        );
        // Leave (a reserved key) goes to the UI and turns the short way off.
        assert!(!direct.route(&key(KeyCode::Char('\\'), KeyModifiers::CONTROL)));
        direct.handled(None);
        assert!(!direct.route(&key(KeyCode::Char('d'), KeyModifiers::NONE)));
        direct.handled(None);
        // Scrollback keys are the UI's too.
        direct.set(Some(t));
        assert!(!direct.route(&key(KeyCode::PageUp, KeyModifiers::SHIFT)));
        assert!(ends.rx.try_recv().is_err());
    }
}
