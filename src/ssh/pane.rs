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
//! Between turns the thread blocks (see [`super::wait`]) until the SSH socket is readable
//! (or writable, when output waits), the UI rings the handle's wake-up after sending
//! input, or a deadline passes (the keepalive, a frame held back): a key typed is sent at
//! once, remote output is read as soon as it arrives, and an idle session never wakes.
//!
//! It must not touch the UI's state or the terminal, and knows nothing of how a frame is
//! drawn: everything it says goes through the slot. Nothing here imports the views or
//! the engine; `views::term::session` plugs the emulator in.

use std::io::{self, Read, Write};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::access::SshAccess;
use super::error::LIBSSH2_ERROR_EAGAIN as EAGAIN;
use super::error::StreamError;
use super::wait::{self, Bell, Waiting, Wake};

/// The longest the session thread waits without a socket to wait on (it could not be
/// duplicated), or before retrying a resize libssh2 put off.
pub const IDLE_POLL: Duration = Duration::from_millis(20);
/// A full slot is replaced by a newer frame at most this often while the UI is busy.
const REPUBLISH: Duration = Duration::from_millis(16);
/// Bytes read from the remote per turn (and fed to the screen at once) before the thread
/// looks at its input again. Large, so a flood is fed in chunks long enough for the
/// screen to drop the lines that would scroll out of its history unseen; a turn reads
/// this much only while that much is waiting (libssh2's window is 2 MiB).
const READ_PER_TURN: usize = 4 << 20;
/// One read from libssh2: a whole SSH packet's worth and more.
const READ_BUFFER: usize = 64 * 1024;
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
    /// Rung after each send, so a waiting session thread sees the input at once.
    wake: Option<Arc<Wake>>,
}

/// A second way in for a session's input, for another thread: the dashboard's input
/// thread writes the focused pane's keystrokes through it straight to the session, one
/// thread hop instead of two. It does not keep the session alive (the handle does).
#[derive(Debug, Clone)]
pub struct ShellSender {
    tx: mpsc::Sender<ShellInput>,
    wake: Option<Arc<Wake>>,
}

impl ShellSender {
    /// Never blocks; input for a session that has ended is dropped.
    pub fn send(&self, input: ShellInput) {
        let _ = self.tx.send(input);
        if let Some(w) = &self.wake {
            w.ring();
        }
    }
}

/// The session thread's end of a [`ShellHandle`] (also what tests read).
#[derive(Debug)]
pub struct ShellEnds<F> {
    pub rx: mpsc::Receiver<ShellInput>,
    pub slot: Arc<FrameSlot<F>>,
    bell: Option<Bell>,
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
                wake: None,
            },
            ShellEnds {
                rx,
                slot,
                bell: None,
            },
        )
    }

    /// Never blocks; input for a session that has ended is dropped.
    pub fn send(&self, input: ShellInput) {
        let _ = self.tx.send(input);
        if let Some(w) = &self.wake {
            w.ring();
        }
    }

    /// A sender into the same session, for another thread (see [`ShellSender`]).
    pub fn sender(&self) -> ShellSender {
        ShellSender {
            tx: self.tx.clone(),
            wake: self.wake.clone(),
        }
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
    let (mut handle, mut ends) = ShellHandle::pair();
    let (ring, bell) = wait::pair()?;
    handle.wake = Some(Arc::new(ring));
    ends.bell = Some(bell);
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
        /// The read budget ran out: more output is waiting, do not wait for it.
        more: bool,
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
        // A PTY merges the remote's stderr already; merged here too, nothing can queue up
        // unread on a second stream while the thread waits on the socket.
        channel
            .handle_extended_data(ssh2::ExtendedData::Merge)
            .map_err(|e| failed("cannot merge the error stream", e))?;
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
        let mut keepalive_at = Instant::now() + KEEPALIVE;
        let mut buf = Vec::with_capacity(READ_PER_TURN + READ_BUFFER);
        loop {
            if let Some(bell) = &self.ends.bell {
                bell.drain();
            }
            let turn = self.turn(&mut channel, &mut out, &mut resize, &mut dirty, &mut buf);
            let more = match turn {
                Turn::Gone => return Ok(None),
                Turn::Closed(why) => {
                    let status = exit_status(sess, &mut channel);
                    return Ok(Some(format!("connection closed: {why}{status}")));
                }
                Turn::Continue { more } => more,
            };
            let now = Instant::now();
            if now >= keepalive_at {
                keepalive_at = now + KEEPALIVE;
                if let Err(e) = sess.keepalive_send()
                    && e.code() != ssh2::ErrorCode::Session(EAGAIN)
                {
                    return Ok(Some(format!("connection closed: {e}")));
                }
            }
            // One frame per frame the UI takes: publish at once into an empty slot; a
            // full one (the UI is busy) is refreshed at most every REPUBLISH.
            let mut deadline = keepalive_at;
            if dirty {
                let since = self.last_publish.map(|t| t.elapsed());
                match since {
                    Some(since) if self.ends.slot.is_full() && since < REPUBLISH => {
                        deadline = deadline.min(now + (REPUBLISH - since));
                    }
                    _ => {
                        self.publish(ShellState::Open);
                        dirty = false;
                    }
                }
            }
            if more {
                // The read budget ran out with output still coming: look at the input,
                // then read on, without waiting.
                continue;
            }
            // Input the remote has no room for yet normally waits for a window adjustment
            // (the socket turns readable); the bound covers libssh2 keeping that to itself.
            let socket = ssh.socket();
            if resize.is_some() || !out.is_empty() || socket.is_none() || self.ends.bell.is_none() {
                deadline = deadline.min(now + IDLE_POLL);
            }
            let writable = matches!(
                sess.block_directions(),
                ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
            );
            let on = Waiting {
                socket,
                writable,
                bell: self.ends.bell.as_ref(),
            };
            wait::wait(on, deadline.saturating_duration_since(Instant::now()));
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
        buf: &mut Vec<u8>,
    ) -> Turn {
        loop {
            match self.ends.rx.try_recv() {
                Ok(input) => self.apply(input, out, resize, dirty),
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
        if let Err(e) = write_out(channel, out) {
            return Turn::Closed(e.to_string());
        }
        // No `channel.flush()`: for an ssh2 channel that is libssh2_channel_flush_ex, which
        // *discards* unread incoming data (it lost echoes and output here).
        // Until libssh2 would block (what it holds already does not wake a wait), into one
        // chunk for the screen.
        buf.clear();
        let more = loop {
            if buf.len() >= READ_PER_TURN {
                break true;
            }
            let at = buf.len();
            buf.resize(at + READ_BUFFER, 0);
            let got = channel.read(&mut buf[at..]);
            buf.truncate(at + *got.as_ref().unwrap_or(&0));
            match got {
                Ok(0) => break false,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) => return Turn::Closed(e.to_string()),
            }
        };
        if !buf.is_empty() {
            self.emu.feed(buf);
            let replies = self.emu.take_replies();
            out.extend_from_slice(&replies);
            *dirty = true;
        }
        if channel.eof() {
            return Turn::Closed("the remote shell exited".into());
        }
        // Replies to the remote's queries, and input the remote's window had no room for
        // before the read took in its window adjustments.
        if let Err(e) = write_out(channel, out) {
            return Turn::Closed(e.to_string());
        }
        Turn::Continue { more }
    }
}

/// Write what libssh2 takes of `out` now.
fn write_out(channel: &mut ssh2::Channel, out: &mut Vec<u8>) -> io::Result<()> {
    while !out.is_empty() {
        match channel.write(out) {
            Ok(0) => break,
            Ok(n) => {
                out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
