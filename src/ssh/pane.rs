//! The terminal pane's SSH I/O: a dedicated thread that owns one shell session and the
//! pane's screen (a [`Screen`]: the views' terminal emulator), and a [`ShellHandle`] the
//! UI keeps.
//!
//! The thread connects (with the pinned host key), opens a PTY channel and a shell, then
//! loops: remote bytes → [`Screen::feed`] → the screen's replies back to the remote;
//! input bytes, resizes and scroll requests from the UI arrive on a channel. Frames go to
//! the UI through a one-place [`FrameSlot`]: the UI is woken (one call of the wake
//! function) only when the slot goes from empty to full, so a flood of output becomes one
//! redraw per frame the UI actually takes, and the UI never waits on the session.
//!
//! When idle the thread waits on its input channel with a short timeout (at most
//! [`IDLE_POLL`]): a key typed is sent at once, remote output is picked up within that
//! bound. libssh2 offers no socket to poll without `unsafe`, so this is the wait.
//!
//! It must not touch the UI's state or the terminal, and knows nothing of how a frame is
//! drawn: everything it says goes through the slot. Nothing here imports the views or
//! the engine; `views::term::session` plugs the emulator in.

use std::io::{self, Read, Write};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::access::SshAccess;
use super::error::LIBSSH2_ERROR_EAGAIN as EAGAIN;
use super::error::StreamError;

/// The longest the session thread waits before looking at the socket again when idle.
pub const IDLE_POLL: Duration = Duration::from_millis(20);
/// The first wait after activity; it doubles up to [`IDLE_POLL`] while nothing happens.
const BUSY_POLL: Duration = Duration::from_millis(1);
/// A full slot is replaced by a newer frame at most this often while the UI is busy.
const REPUBLISH: Duration = Duration::from_millis(16);
/// Bytes read from the remote per turn before the thread looks at its input again.
const READ_PER_TURN: usize = 256 * 1024;
/// How often a keepalive goes out, so a dead connection turns into a closed pane.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// What the session thread feeds: a terminal emulator with a scrollback. The thread owns
/// it, so parsing happens off the UI thread and the UI only copies frames.
pub trait Screen: Send + 'static {
    /// A copy of what is on screen, for the UI to draw.
    type Frame: Send + 'static;
    /// Bytes the remote wrote.
    fn feed(&mut self, bytes: &[u8]);
    /// What the emulated terminal answers the remote (cursor position reports …).
    fn take_replies(&mut self) -> Vec<u8>;
    /// Rows, columns.
    fn size(&self) -> (u16, u16);
    fn resize(&mut self, rows: u16, cols: u16);
    /// Rows scrolled back from the live screen.
    fn scroll_offset(&self) -> usize;
    fn scroll_up(&mut self, rows: usize);
    fn scroll_down(&mut self, rows: usize);
    /// Back to the live screen.
    fn scroll_reset(&mut self);
    fn snapshot(&self) -> Self::Frame;
}

/// What the UI sends a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellInput {
    /// Bytes for the remote (keys, pastes), already encoded.
    Bytes(Vec<u8>),
    /// The pane's new size: rows, cols.
    Resize(u16, u16),
    /// Scroll back (positive) or forward (negative) through the history, in rows.
    Scroll(i32),
}

/// Where a session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellState {
    Connecting,
    Open,
    /// Why it ended ("connection closed: …", or the connect error).
    Closed(String),
}

/// What the UI reads from the slot: the latest frame and state.
#[derive(Debug, Clone, PartialEq)]
pub struct ShellUpdate<F> {
    pub frame: F,
    pub state: ShellState,
    /// The host key seen on a first connection (nothing was pinned): the UI records it.
    /// Kept across coalesced updates until the UI takes it.
    pub first_seen_host_key: Option<String>,
}

/// The one-place mailbox between a session thread and the UI.
#[derive(Debug)]
pub struct FrameSlot<F> {
    inner: Mutex<Option<ShellUpdate<F>>>,
}

impl<F> Default for FrameSlot<F> {
    fn default() -> FrameSlot<F> {
        FrameSlot {
            inner: Mutex::new(None),
        }
    }
}

impl<F> FrameSlot<F> {
    /// Put `update` in the slot (replacing an untaken one); true when the slot was empty,
    /// which is when the UI must be woken.
    pub fn publish(&self, mut update: ShellUpdate<F>) -> bool {
        let mut slot = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let was_empty = match slot.take() {
            None => true,
            Some(old) => {
                if update.first_seen_host_key.is_none() {
                    update.first_seen_host_key = old.first_seen_host_key;
                }
                false
            }
        };
        *slot = Some(update);
        was_empty
    }

    /// Take the latest update, leaving the slot empty.
    pub fn take(&self) -> Option<ShellUpdate<F>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    pub fn is_full(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

/// The UI's end of a session: send input, take frames. Dropping it ends the session.
#[derive(Debug)]
pub struct ShellHandle<F> {
    tx: mpsc::Sender<ShellInput>,
    slot: Arc<FrameSlot<F>>,
}

/// The session thread's end of a [`ShellHandle`] (also what tests read).
#[derive(Debug)]
pub struct ShellEnds<F> {
    pub rx: mpsc::Receiver<ShellInput>,
    pub slot: Arc<FrameSlot<F>>,
}

impl<F> ShellHandle<F> {
    /// A handle and the ends that go with it, no thread: the session thread takes the
    /// ends; tests keep them to see what the UI sent.
    pub fn pair() -> (ShellHandle<F>, ShellEnds<F>) {
        let (tx, rx) = mpsc::channel();
        let slot = Arc::new(FrameSlot::default());
        (
            ShellHandle {
                tx,
                slot: slot.clone(),
            },
            ShellEnds { rx, slot },
        )
    }

    /// Never blocks; input for a session that has ended is dropped.
    pub fn send(&self, input: ShellInput) {
        let _ = self.tx.send(input);
    }

    pub fn take(&self) -> Option<ShellUpdate<F>> {
        self.slot.take()
    }
}

/// Start a session thread (`legion-ssh-<node>`) for `access` on `screen`, whose size
/// is the terminal's first size. `wake` is called when a new update waits in the slot;
/// it returns false once the UI is gone.
pub fn spawn<S: Screen>(
    node: &str,
    access: SshAccess,
    screen: S,
    wake: impl Fn() -> bool + Send + 'static,
) -> io::Result<ShellHandle<S::Frame>> {
    let (handle, ends) = ShellHandle::pair();
    std::thread::Builder::new()
        .name(format!("legion-ssh-{node}"))
        .spawn(move || {
            let mut s = Session {
                emu: screen,
                ends,
                wake: Box::new(wake),
                first_seen: None,
                last_publish: None,
            };
            s.run(&access);
        })?;
    Ok(handle)
}

struct Session<S: Screen> {
    emu: S,
    ends: ShellEnds<S::Frame>,
    wake: Box<dyn Fn() -> bool + Send>,
    first_seen: Option<String>,
    last_publish: Option<Instant>,
}

/// How one turn of the loop ended.
enum Turn {
    Continue {
        busy: bool,
    },
    /// The UI dropped its handle.
    Gone,
    Closed(String),
}

impl<S: Screen> Session<S> {
    fn publish(&mut self, state: ShellState) {
        let update = ShellUpdate {
            frame: self.emu.snapshot(),
            state,
            first_seen_host_key: self.first_seen.take(),
        };
        self.last_publish = Some(Instant::now());
        if self.ends.slot.publish(update) {
            let _ = (self.wake)();
        }
    }

    /// Write a line of our own into the terminal (dim, on a fresh line).
    fn say(&mut self, text: &str) {
        let text: String = text.chars().filter(|c| !c.is_control()).collect();
        self.emu
            .feed(format!("\r\n\x1b[0;2m[{text}]\x1b[0m\r\n").as_bytes());
    }

    fn run(&mut self, access: &SshAccess) {
        self.say(&format!("connecting to {}…", access.target));
        self.publish(ShellState::Connecting);
        let reason = match self.connect_and_pump(access) {
            Ok(None) => return,
            Ok(Some(reason)) => reason,
            Err(e) => e.to_string(),
        };
        self.say(&reason);
        self.publish(ShellState::Closed(reason));
    }

    /// `Ok(None)`: the UI went away. `Ok(Some(why))` / `Err(why)`: the session ended.
    fn connect_and_pump(&mut self, access: &SshAccess) -> Result<Option<String>, StreamError> {
        let (ssh, first_seen) = access.login()?;
        if first_seen.is_some() {
            self.first_seen = first_seen;
        }
        let sess = ssh.ssh2_session();
        let failed = |what: &'static str, source: ssh2::Error| StreamError::Channel {
            what,
            target: access.target.to_string(),
            source,
        };
        let (rows, cols) = self.emu.size();
        let mut channel = sess
            .channel_session()
            .map_err(|e| failed("cannot open a channel", e))?;
        channel
            .request_pty(
                "xterm-256color",
                None,
                Some((u32::from(cols), u32::from(rows), 0, 0)),
            )
            .map_err(|e| failed("cannot get a terminal", e))?;
        channel
            .shell()
            .map_err(|e| failed("cannot start a shell", e))?;
        sess.set_keepalive(false, KEEPALIVE.as_secs() as u32);
        sess.set_blocking(false);
        self.emu.feed(b"\x1b[2J\x1b[H");
        self.publish(ShellState::Open);

        let mut out: Vec<u8> = Vec::new();
        let mut resize: Option<(u16, u16)> = None;
        let mut dirty = false;
        let mut wait = BUSY_POLL;
        let mut keepalive_at = Instant::now() + KEEPALIVE;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let turn = self.turn(&mut channel, &mut out, &mut resize, &mut dirty, &mut buf);
            let busy = match turn {
                Turn::Gone => return Ok(None),
                Turn::Closed(why) => {
                    let status = exit_status(sess, &mut channel);
                    return Ok(Some(format!("connection closed: {why}{status}")));
                }
                Turn::Continue { busy } => busy,
            };
            if Instant::now() >= keepalive_at {
                keepalive_at = Instant::now() + KEEPALIVE;
                if let Err(e) = sess.keepalive_send()
                    && e.code() != ssh2::ErrorCode::Session(EAGAIN)
                {
                    return Ok(Some(format!("connection closed: {e}")));
                }
            }
            if dirty {
                let recent = self.last_publish.is_some_and(|t| t.elapsed() < REPUBLISH);
                if !self.ends.slot.is_full() || !recent {
                    self.publish(ShellState::Open);
                    dirty = false;
                }
            }
            wait = if busy {
                BUSY_POLL
            } else {
                (wait * 2).min(IDLE_POLL)
            };
            // Pending work that cannot go out yet still needs a soon retry.
            let wait = if dirty || !out.is_empty() || resize.is_some() {
                wait.min(Duration::from_millis(4))
            } else {
                wait
            };
            match self.ends.rx.recv_timeout(wait) {
                Ok(input) => self.apply(input, &mut out, &mut resize, &mut dirty),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
            }
        }
    }

    fn apply(
        &mut self,
        input: ShellInput,
        out: &mut Vec<u8>,
        resize: &mut Option<(u16, u16)>,
        dirty: &mut bool,
    ) {
        match input {
            ShellInput::Bytes(b) => {
                if self.emu.scroll_offset() > 0 {
                    self.emu.scroll_reset();
                    *dirty = true;
                }
                out.extend_from_slice(&b);
            }
            ShellInput::Resize(rows, cols) => {
                self.emu.resize(rows, cols);
                *resize = Some(self.emu.size());
                *dirty = true;
            }
            ShellInput::Scroll(n) if n > 0 => {
                self.emu.scroll_up(n.unsigned_abs() as usize);
                *dirty = true;
            }
            ShellInput::Scroll(n) => {
                self.emu.scroll_down(n.unsigned_abs() as usize);
                *dirty = true;
            }
        }
    }

    fn turn(
        &mut self,
        channel: &mut ssh2::Channel,
        out: &mut Vec<u8>,
        resize: &mut Option<(u16, u16)>,
        dirty: &mut bool,
        buf: &mut [u8],
    ) -> Turn {
        let mut busy = false;
        loop {
            match self.ends.rx.try_recv() {
                Ok(input) => {
                    busy = true;
                    self.apply(input, out, resize, dirty);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Turn::Gone,
            }
        }
        if let Some((rows, cols)) = *resize {
            match channel.request_pty_size(u32::from(cols), u32::from(rows), None, None) {
                Ok(()) => *resize = None,
                Err(e) if e.code() == ssh2::ErrorCode::Session(EAGAIN) => {}
                Err(e) => return Turn::Closed(e.to_string()),
            }
        }
        while !out.is_empty() {
            match channel.write(out) {
                Ok(0) => break,
                Ok(n) => {
                    out.drain(..n);
                    busy = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Turn::Closed(e.to_string()),
            }
        }
        // No `channel.flush()`: for an ssh2 channel that is libssh2_channel_flush_ex, which
        // *discards* unread incoming data (it lost echoes and output here).
        let mut read = 0;
        while read < READ_PER_TURN {
            match channel.read(buf) {
                Ok(0) => break,
                Ok(n) => {
                    read += n;
                    self.emu.feed(&buf[..n]);
                    let replies = self.emu.take_replies();
                    out.extend_from_slice(&replies);
                    *dirty = true;
                    busy = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Turn::Closed(e.to_string()),
            }
        }
        if channel.eof() {
            return Turn::Closed("the remote shell exited".into());
        }
        Turn::Continue { busy }
    }
}

/// ", status N" when the remote said how the shell ended (bounded wait).
fn exit_status(sess: &ssh2::Session, channel: &mut ssh2::Channel) -> String {
    sess.set_blocking(true);
    sess.set_timeout(2_000);
    let _ = channel.close();
    let _ = channel.wait_close();
    match channel.exit_status() {
        Ok(code) => format!(" (status {code})"),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A screen that keeps what it was fed as text and counts its scroll position; the
    /// real emulator is tested with the views.
    struct Text {
        size: (u16, u16),
        fed: String,
        offset: usize,
    }

    impl Screen for Text {
        type Frame = String;
        fn feed(&mut self, bytes: &[u8]) {
            self.fed.push_str(&String::from_utf8_lossy(bytes));
        }
        fn take_replies(&mut self) -> Vec<u8> {
            Vec::new()
        }
        fn size(&self) -> (u16, u16) {
            self.size
        }
        fn resize(&mut self, rows: u16, cols: u16) {
            self.size = (rows, cols);
        }
        fn scroll_offset(&self) -> usize {
            self.offset
        }
        fn scroll_up(&mut self, rows: usize) {
            self.offset += rows;
        }
        fn scroll_down(&mut self, rows: usize) {
            self.offset = self.offset.saturating_sub(rows);
        }
        fn scroll_reset(&mut self) {
            self.offset = 0;
        }
        fn snapshot(&self) -> String {
            self.fed.clone()
        }
    }

    fn update(text: &str, seen: Option<&str>) -> ShellUpdate<String> {
        ShellUpdate {
            frame: text.to_string(),
            state: ShellState::Open,
            first_seen_host_key: seen.map(String::from),
        }
    }

    #[test]
    fn the_slot_wakes_only_when_it_goes_from_empty_to_full() {
        let slot = FrameSlot::default();
        let wakes = AtomicUsize::new(0);
        let publish = |u| {
            if slot.publish(u) {
                wakes.fetch_add(1, Ordering::SeqCst);
            }
        };
        publish(update("one", None));
        publish(update("two", None));
        publish(update("three", None));
        assert_eq!(wakes.load(Ordering::SeqCst), 1, "three frames, one wake-up");
        let got = slot.take().expect("a frame");
        assert_eq!(got.frame, "three", "the latest frame wins");
        assert!(slot.take().is_none());
        publish(update("four", None));
        assert_eq!(wakes.load(Ordering::SeqCst), 2, "empty again: wake again");
    }

    #[test]
    fn a_first_seen_host_key_survives_coalescing() {
        let slot = FrameSlot::default();
        slot.publish(update("a", Some("SHA256:abc")));
        slot.publish(update("b", None));
        let got = slot.take().expect("a frame");
        assert_eq!(got.frame, "b");
        assert_eq!(got.first_seen_host_key.as_deref(), Some("SHA256:abc"));
    }

    #[test]
    fn a_handle_sends_without_blocking_and_survives_an_ended_session() {
        let (handle, ends) = ShellHandle::<String>::pair();
        handle.send(ShellInput::Bytes(b"ls\r".to_vec()));
        handle.send(ShellInput::Resize(10, 40));
        assert_eq!(ends.rx.try_recv(), Ok(ShellInput::Bytes(b"ls\r".to_vec())));
        assert_eq!(ends.rx.try_recv(), Ok(ShellInput::Resize(10, 40)));
        drop(ends);
        handle.send(ShellInput::Bytes(b"x".to_vec()));
        assert!(handle.take().is_none());
    }

    #[test]
    fn scroll_and_input_change_the_emulator_on_the_session_side() {
        let (_handle, ends) = ShellHandle::pair();
        let mut s = Session {
            emu: Text {
                size: (3, 10),
                fed: String::new(),
                offset: 0,
            },
            ends,
            wake: Box::new(|| true),
            first_seen: None,
            last_publish: None,
        };
        let (mut out, mut resize, mut dirty) = (Vec::new(), None, false);
        s.apply(ShellInput::Scroll(2), &mut out, &mut resize, &mut dirty);
        assert!(dirty);
        assert_eq!(s.emu.scroll_offset(), 2);
        s.apply(
            ShellInput::Bytes(b"a".to_vec()),
            &mut out,
            &mut resize,
            &mut dirty,
        );
        assert_eq!(
            s.emu.scroll_offset(),
            0,
            "typing returns to the live screen"
        );
        assert_eq!(out, b"a");
        s.apply(ShellInput::Resize(5, 30), &mut out, &mut resize, &mut dirty);
        assert_eq!(resize, Some((5, 30)));
    }
}
