//! Following a node's logs over SSH for the log panel: a dedicated thread owns the
//! connection and runs the node's log command (`journalctl -f`, else `tail -F` of the
//! role's files, see `SshSettings::log_command`); the UI keeps a [`TailHandle`].
//!
//! Lines go to the UI through a bounded mailbox: the thread appends complete lines (cut
//! at [`MAX_LINE`] bytes, control characters shown escaped), drops the oldest when the UI has
//! not taken them and more than [`MAILBOX`] wait (counting what it dropped), and wakes
//! the UI only when the mailbox goes from empty to non-empty. The UI never waits on the
//! thread. Between reads the thread waits on the SSH socket (see [`super::wait`]), so
//! output is read as it arrives and an idle tail does not wake; dropping the handle rings
//! the thread awake and it ends.
//!
//! The panel that shows the lines is `views::app::tail`; nothing here imports the views or
//! the engine.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::access::SshAccess;
use super::error::LIBSSH2_ERROR_EAGAIN as EAGAIN;
use super::error::StreamError;
use super::wait::{self, Bell, Waiting, Wake};

/// Lines waiting for the UI at most; older ones are dropped (and counted).
pub const MAILBOX: usize = 10_000;
/// A longer line is cut here (and the rest starts a new line).
pub const MAX_LINE: usize = 4096;
/// The longest the thread waits between looks at the socket when it has no socket or
/// wake-up to wait on (either could not be made).
const IDLE_POLL: Duration = Duration::from_millis(50);
/// Bytes read per turn before the thread checks whether it should stop.
const READ_PER_TURN: usize = 1 << 20;
/// How often a keepalive goes out, so a dead connection is noticed.
const KEEPALIVE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailState {
    Connecting,
    Following,
    /// Why it ended: the connect error, the command's end, a dropped connection.
    Closed(String),
}

/// What the UI takes from the mailbox.
#[derive(Debug, Default)]
pub struct TailBatch {
    pub lines: Vec<String>,
    /// Lines dropped because the UI did not take them in time.
    pub dropped: u64,
    /// The newest state, when it changed.
    pub state: Option<TailState>,
    /// The host key seen when none was pinned: the UI records it.
    pub first_seen_host_key: Option<String>,
}

#[derive(Debug, Default)]
struct Mailbox {
    lines: VecDeque<String>,
    dropped: u64,
    state: Option<TailState>,
    first_seen: Option<String>,
}

impl Mailbox {
    fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.state.is_none() && self.first_seen.is_none()
    }
}

/// The UI's end. Dropping it stops the thread.
#[derive(Debug)]
pub struct TailHandle {
    mailbox: Arc<Mutex<Mailbox>>,
    stop: Arc<AtomicBool>,
    /// Rung on drop, so a waiting thread sees the stop at once.
    wake: Option<Wake>,
}

impl TailHandle {
    /// Everything that arrived since the last call.
    pub fn take(&self) -> TailBatch {
        let mut m = self.mailbox.lock().unwrap_or_else(|p| p.into_inner());
        TailBatch {
            lines: m.lines.drain(..).collect(),
            dropped: std::mem::take(&mut m.dropped),
            state: m.state.take(),
            first_seen_host_key: m.first_seen.take(),
        }
    }
}

impl Drop for TailHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = &self.wake {
            w.ring();
        }
    }
}

/// The thread's end: appends and wakes (tests drive a panel through it with [`pair`]).
pub struct Feed {
    mailbox: Arc<Mutex<Mailbox>>,
    stop: Arc<AtomicBool>,
    wake: Box<dyn Fn() -> bool + Send>,
    partial: Vec<u8>,
    bell: Option<Bell>,
}

impl Feed {
    fn put(&self, f: impl FnOnce(&mut Mailbox)) {
        let was_empty = {
            let mut m = self.mailbox.lock().unwrap_or_else(|p| p.into_inner());
            let was_empty = m.is_empty();
            f(&mut m);
            was_empty
        };
        if was_empty && !(self.wake)() {
            // The UI is gone.
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    pub fn state(&self, s: TailState) {
        self.put(|m| m.state = Some(s));
    }

    /// Split `bytes` into lines; complete ones go to the mailbox.
    pub fn bytes(&mut self, bytes: &[u8]) {
        let mut done = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            // Up to the next line end, or as much as fills the line being cut.
            let room = MAX_LINE - self.partial.len();
            let end = rest.iter().take(room + 1).position(|&b| b == b'\n');
            match end {
                Some(i) => {
                    if self.partial.is_empty() {
                        // The common case: a whole line in this read, cleaned in place.
                        done.push(clean_line(&rest[..i]));
                    } else {
                        self.partial.extend_from_slice(&rest[..i]);
                        done.push(clean_line(&std::mem::take(&mut self.partial)));
                    }
                    rest = &rest[i + 1..];
                }
                None if rest.len() > room => {
                    self.partial.extend_from_slice(&rest[..room]);
                    done.push(clean_line(&std::mem::take(&mut self.partial)));
                    rest = &rest[room..];
                }
                None => {
                    self.partial.extend_from_slice(rest);
                    rest = &[];
                }
            }
        }
        if done.is_empty() {
            return;
        }
        self.put(|m| {
            for line in done {
                if m.lines.len() == MAILBOX {
                    m.lines.pop_front();
                    m.dropped += 1;
                }
                m.lines.push_back(line);
            }
        });
    }

    fn flush_partial(&mut self) {
        if !self.partial.is_empty() {
            self.bytes(b"\n");
        }
    }
}

/// A line as text: invalid UTF-8 replaced, tabs as spaces, a line end's `\r` (CRLF)
/// dropped, and every other control, C1 or bidi character shown escaped by the one
/// sanitizer ([`crate::core::text`]): a remote cannot move the panel's cursor or colour it.
pub fn clean_line(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    // The common log line is printable ASCII: copied as it is, without the per-character
    // escaping below (a 64 MiB tail spent most of its time there).
    if raw.iter().all(|b| (0x20..0x7f).contains(b))
        && let Ok(line) = std::str::from_utf8(raw)
    {
        return line.to_string();
    }
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push(' '),
            c => crate::core::text::push_escaped(&mut out, c),
        }
    }
    out
}

/// A handle and the feed that fills it, no thread.
pub fn pair(wake: impl Fn() -> bool + Send + 'static) -> (TailHandle, Feed) {
    let mailbox = Arc::new(Mutex::new(Mailbox::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let feed = Feed {
        mailbox: mailbox.clone(),
        stop: stop.clone(),
        wake: Box::new(wake),
        partial: Vec::new(),
        bell: None,
    };
    (
        TailHandle {
            mailbox,
            stop,
            wake: None,
        },
        feed,
    )
}

/// Start following `node`'s logs with `access.log_command`.
pub fn spawn(
    node: &str,
    access: SshAccess,
    wake: impl Fn() -> bool + Send + 'static,
) -> io::Result<TailHandle> {
    let (mut handle, mut feed) = pair(wake);
    let (ring, bell) = wait::pair()?;
    handle.wake = Some(ring);
    feed.bell = Some(bell);
    std::thread::Builder::new()
        .name(format!("legion-tail-{node}"))
        .spawn(move || {
            feed.state(TailState::Connecting);
            let why = match follow(&access, &mut feed) {
                Ok(None) => return,
                Ok(Some(why)) => why,
                Err(e) => e.to_string(),
            };
            feed.flush_partial();
            feed.state(TailState::Closed(why));
        })?;
    Ok(handle)
}

/// `Ok(None)`: stopped by the UI. Otherwise why it ended.
fn follow(access: &SshAccess, feed: &mut Feed) -> Result<Option<String>, StreamError> {
    if access.log_command.is_empty() {
        return Err(StreamError::NoLogCommand);
    }
    let (ssh, first_seen) = access.login()?;
    if let Some(seen) = first_seen {
        feed.put(|m| m.first_seen = Some(seen));
    }
    let sess = ssh.ssh2_session();
    let failed = |what: &'static str, source: ssh2::Error| StreamError::Channel {
        what,
        target: access.target.to_string(),
        source,
    };
    let mut channel = sess
        .channel_session()
        .map_err(|e| failed("cannot open a channel", e))?;
    // Anything on stderr comes with the lines (and cannot queue up unread while the
    // thread waits on the socket).
    channel
        .handle_extended_data(ssh2::ExtendedData::Merge)
        .map_err(|e| failed("cannot merge the error stream", e))?;
    channel
        .exec(&access.log_command)
        .map_err(|e| failed("cannot run the log command", e))?;
    sess.set_keepalive(false, KEEPALIVE.as_secs() as u32);
    sess.set_blocking(false);
    feed.state(TailState::Following);
    let mut buf = vec![0u8; 64 * 1024];
    let mut keepalive_at = Instant::now() + KEEPALIVE;
    loop {
        if let Some(bell) = &feed.bell {
            bell.drain();
        }
        if feed.stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        // Read until libssh2 would block (what it holds already does not wake a wait),
        // or a turn's worth, then look at the stop flag again.
        let mut read = 0;
        let more = loop {
            if read >= READ_PER_TURN {
                break true;
            }
            match channel.read(&mut buf) {
                Ok(0) if channel.eof() => {
                    feed.flush_partial();
                    sess.set_blocking(true);
                    let _ = channel.wait_close();
                    let status = channel.exit_status().unwrap_or(-1);
                    return Ok(Some(format!(
                        "the log command ended (exit status {status})"
                    )));
                }
                Ok(0) => break false,
                Ok(n) => {
                    read += n;
                    feed.bytes(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) => return Ok(Some(format!("connection to {} lost: {e}", access.target))),
            }
        };
        let now = Instant::now();
        if now >= keepalive_at {
            keepalive_at = now + KEEPALIVE;
            if let Err(e) = sess.keepalive_send()
                && e.code() != ssh2::ErrorCode::Session(EAGAIN)
            {
                return Ok(Some(format!("connection to {} lost: {e}", access.target)));
            }
        }
        if more {
            continue;
        }
        let writable = matches!(
            sess.block_directions(),
            ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
        );
        let on = Waiting {
            socket: ssh.socket(),
            writable,
            bell: feed.bell.as_ref(),
        };
        let mut timeout = keepalive_at.saturating_duration_since(now);
        if on.socket.is_none() || on.bell.is_none() {
            timeout = timeout.min(IDLE_POLL);
        }
        wait::wait(on, timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed() -> (Feed, TailHandle, Arc<std::sync::atomic::AtomicUsize>) {
        let wakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let w = wakes.clone();
        let (handle, feed) = pair(move || {
            w.fetch_add(1, Ordering::Relaxed);
            true
        });
        (feed, handle, wakes)
    }

    #[test]
    fn lines_split_across_reads_are_joined_and_cleaned() {
        let (mut f, h, wakes) = feed();
        f.bytes(b"first li");
        assert!(h.take().lines.is_empty());
        f.bytes(b"ne\r\nsec\x1b[31mond\n\xff\tthird");
        let b = h.take();
        assert_eq!(b.lines, ["first line", "sec\\x1b[31mond"]);
        f.flush_partial();
        assert_eq!(h.take().lines, ["\u{fffd} third"]);
        assert_eq!(wakes.load(Ordering::Relaxed), 2, "one wake per empty→full");
    }

    #[test]
    fn the_mailbox_is_bounded_and_counts_what_it_dropped() {
        let (mut f, h, wakes) = feed();
        let many: String = (0..MAILBOX + 25).map(|i| format!("{i}\n")).collect();
        f.bytes(many.as_bytes());
        f.bytes(b"x\n");
        let b = h.take();
        assert_eq!(b.lines.len(), MAILBOX);
        assert_eq!(b.dropped, 26);
        assert_eq!(b.lines.last().map(String::as_str), Some("x"));
        assert_eq!(wakes.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_long_line_is_cut() {
        let (mut f, h, _) = feed();
        f.bytes(&vec![b'a'; MAX_LINE * 2 + 10]);
        f.bytes(b"\n");
        let lens: Vec<usize> = h.take().lines.iter().map(String::len).collect();
        assert_eq!(lens, [MAX_LINE, MAX_LINE, 10]);
    }

    #[test]
    fn lines_come_out_the_same_whatever_the_reads_cut() {
        let mut stream = Vec::new();
        for i in 0..300 {
            stream.extend_from_slice(format!("line {i} ").as_bytes());
            stream.extend(std::iter::repeat_n(b'x', (i * 37) % (MAX_LINE + 500)));
            stream.extend_from_slice(if i % 7 == 0 { b"\r\n" } else { b"\n" });
        }
        let whole = {
            let (mut f, h, _) = feed();
            f.bytes(&stream);
            h.take().lines
        };
        for cut in [1, 2, 7, 100, MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, 65536] {
            let (mut f, h, _) = feed();
            for chunk in stream.chunks(cut) {
                f.bytes(chunk);
            }
            assert_eq!(h.take().lines, whole, "reads of {cut} bytes");
        }
        assert!(whole.iter().all(|l| l.len() <= MAX_LINE));
        assert!(
            whole.iter().any(|l| l.len() == MAX_LINE),
            "some lines were cut"
        );
    }

    #[test]
    fn dropping_the_handle_stops_the_thread() {
        let (f, h, _) = feed();
        drop(h);
        assert!(f.stop.load(Ordering::Relaxed));
    }
}
