//! Following a node's logs over SSH for the log panel: a dedicated thread owns the
//! connection and runs the node's log command (`journalctl -f`, else `tail -F` of the
//! role's files, see `SshSettings::log_command`); the UI keeps a [`TailHandle`].
//!
//! Lines go to the UI through a bounded mailbox: the thread appends complete lines (cut
//! at [`MAX_LINE`] bytes, control characters shown escaped), drops the oldest when the UI has
//! not taken them and more than [`MAILBOX`] wait (counting what it dropped), and wakes
//! the UI only when the mailbox goes from empty to non-empty. The UI never waits on the
//! thread. Dropping the handle ends the thread within one poll interval.
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

/// Lines waiting for the UI at most; older ones are dropped (and counted).
pub const MAILBOX: usize = 10_000;
/// A longer line is cut here (and the rest starts a new line).
pub const MAX_LINE: usize = 4096;
/// The longest the thread sleeps between looks at the socket when nothing comes.
const IDLE_POLL: Duration = Duration::from_millis(50);
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
    }
}

/// The thread's end: appends and wakes (tests drive a panel through it with [`pair`]).
pub struct Feed {
    mailbox: Arc<Mutex<Mailbox>>,
    stop: Arc<AtomicBool>,
    wake: Box<dyn Fn() -> bool + Send>,
    partial: Vec<u8>,
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
        for &b in bytes {
            if b == b'\n' {
                done.push(clean_line(&std::mem::take(&mut self.partial)));
            } else if self.partial.len() >= MAX_LINE {
                done.push(clean_line(&std::mem::take(&mut self.partial)));
                self.partial.push(b);
            } else {
                self.partial.push(b);
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
        && let Ok(line) = String::from_utf8(raw.to_vec())
    {
        return line;
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
    };
    (TailHandle { mailbox, stop }, feed)
}

/// Start following `node`'s logs with `access.log_command`.
pub fn spawn(
    node: &str,
    access: SshAccess,
    wake: impl Fn() -> bool + Send + 'static,
) -> io::Result<TailHandle> {
    let (handle, mut feed) = pair(wake);
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
    channel
        .exec(&access.log_command)
        .map_err(|e| failed("cannot run the log command", e))?;
    sess.set_keepalive(false, KEEPALIVE.as_secs() as u32);
    sess.set_blocking(false);
    feed.state(TailState::Following);
    let mut buf = vec![0u8; 32 * 1024];
    let mut wait = Duration::from_millis(1);
    let mut keepalive_at = Instant::now() + KEEPALIVE;
    loop {
        if feed.stop.load(Ordering::Relaxed) {
            return Ok(None);
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
            Ok(0) => {}
            Ok(n) => {
                feed.bytes(&buf[..n]);
                wait = Duration::from_millis(1);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Ok(Some(format!("connection to {} lost: {e}", access.target))),
        }
        if Instant::now() >= keepalive_at {
            keepalive_at = Instant::now() + KEEPALIVE;
            if let Err(e) = sess.keepalive_send()
                && e.code() != ssh2::ErrorCode::Session(EAGAIN)
            {
                return Ok(Some(format!("connection to {} lost: {e}", access.target)));
            }
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(IDLE_POLL);
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
    fn dropping_the_handle_stops_the_thread() {
        let (f, h, _) = feed();
        drop(h);
        assert!(f.stop.load(Ordering::Relaxed));
    }
}
