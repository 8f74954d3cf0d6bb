//! Waiting without spinning for the streaming threads (the terminal pane, the log tail):
//! block until the SSH socket has what libssh2 waits for, the UI has sent something
//! (a byte on a [`Wake`] socket pair), or a deadline passes.
//!
//! libssh2 in non-blocking mode only says "would block"; the socket to wait on is the
//! session's own ([`super::SshSession::socket`]), the wake-up a local socket pair, so
//! input typed while the thread waits is seen at once and an idle session costs no
//! wake-ups. A thread must read until libssh2 says "would block" before it waits: bytes
//! libssh2 already holds do not make the socket readable.
//!
//! This module only waits; it never reads the SSH stream.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec, poll};

/// The UI's end of a wake-up pair: [`Wake::ring`] never blocks.
#[derive(Debug)]
pub struct Wake(UnixStream);

/// The thread's end: becomes readable when rung; [`Bell::drain`] empties it.
#[derive(Debug)]
pub struct Bell(UnixStream);

/// A connected pair, both ends non-blocking.
pub fn pair() -> io::Result<(Wake, Bell)> {
    let (a, b) = UnixStream::pair()?;
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    Ok((Wake(a), Bell(b)))
}

impl Wake {
    /// Wake the thread. A full buffer already holds a pending wake-up; a closed one means
    /// the thread is gone: both are fine.
    pub fn ring(&self) {
        let _ = (&self.0).write(&[1]);
    }
}

impl Bell {
    /// Forget the wake-ups received so far (the thread is about to look at its inputs).
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = (&self.0).read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    }
}

/// What to wait on; any of it may be missing (then the timeout bounds the wait).
#[derive(Debug, Clone, Copy)]
pub struct Waiting<'a> {
    pub socket: Option<&'a TcpStream>,
    /// libssh2 has something to send (or the thread has): wait for room as well.
    pub writable: bool,
    pub bell: Option<&'a Bell>,
}

/// Block until one of `on` is ready or `timeout` passes. An interrupted wait returns
/// early, like a wake-up; so does a failed `poll` (the caller looks at everything again).
pub fn wait(on: Waiting<'_>, timeout: Duration) {
    let mut flags = PollFlags::IN;
    if on.writable {
        flags |= PollFlags::OUT;
    }
    let mut fds = Vec::with_capacity(2);
    if let Some(s) = on.socket {
        fds.push(PollFd::new(s, flags));
    }
    if let Some(b) = on.bell {
        fds.push(PollFd::new(&b.0, PollFlags::IN));
    }
    if fds.is_empty() {
        std::thread::sleep(timeout);
        return;
    }
    let timeout = Timespec {
        tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: timeout.subsec_nanos().into(),
    };
    let _ = poll(&mut fds, Some(&timeout));
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_ring_ends_the_wait_at_once_and_drain_empties_the_bell() {
        let (wake, bell) = pair().expect("a socket pair");
        let on = Waiting {
            socket: None,
            writable: false,
            bell: Some(&bell),
        };
        let start = Instant::now();
        wait(on, Duration::from_millis(50));
        assert!(
            start.elapsed() >= Duration::from_millis(45),
            "no ring: timeout"
        );
        for _ in 0..1000 {
            wake.ring();
        }
        let start = Instant::now();
        wait(on, Duration::from_secs(10));
        assert!(start.elapsed() < Duration::from_secs(5), "rung: at once");
        bell.drain();
        let start = Instant::now();
        wait(on, Duration::from_millis(50));
        assert!(
            start.elapsed() >= Duration::from_millis(45),
            "drained: waits again"
        );
    }

    #[test]
    fn a_readable_socket_ends_the_wait() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        let on = Waiting {
            socket: Some(&client),
            writable: false,
            bell: None,
        };
        let start = Instant::now();
        wait(on, Duration::from_millis(50));
        assert!(start.elapsed() >= Duration::from_millis(45));
        server.write_all(b"x").expect("write");
        let start = Instant::now();
        wait(on, Duration::from_secs(10));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_ring_after_the_thread_is_gone_is_harmless() {
        let (wake, bell) = pair().expect("a socket pair");
        drop(bell);
        wake.ring();
    }
}
