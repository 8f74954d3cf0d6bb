//! The local daemon: one unlocked engine that CLI commands and attached dashboards share.
//!
//! A same-user accelerator, not a network service. It listens on a Unix socket whose
//! path derives from the state file's path ([`endpoint`]), speaks JSON lines
//! ([`protocol`]), serves only peers of its own uid (`SO_PEERCRED`; clients check the
//! daemon's uid the same way before sending the token) and answers only requests that
//! carry its token (compared in constant time). The metadata file beside the socket
//! records version, endpoint, pid and start time, never the token; the directory is 0700,
//! the file and the socket 0600, and anything looser, linked or foreign is refused. A
//! socket nobody answers on is stale: detected, reported and removed, never trusted.

pub mod client;
pub mod endpoint;
pub mod host;
pub mod protocol;
pub mod server;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::core::secret::Secret;

pub use endpoint::{Endpoint, Metadata, Probe};

/// The environment variable that carries the token to clients.
pub const TOKEN_ENV: &str = "LEGION_DAEMON_TOKEN";
/// A request line larger than this is refused (and the connection closed). Large enough
/// for a `plan import` of 10,000 nodes in one request (~1.4 MB) with room to spare.
pub const MAX_REQUEST: usize = 4 << 20;
/// A response or event line larger than this is replaced by an error; clients refuse
/// longer lines.
pub const MAX_RESPONSE: usize = 64 << 20;
/// Connections served at once; more are told so and closed.
pub const MAX_CLIENTS: usize = 512;
/// Requests one connection may have in flight, subscriptions included.
pub const MAX_IN_FLIGHT: usize = 64;
/// Subscriptions one connection may hold (each holds one of its [`MAX_IN_FLIGHT`]), so
/// that calls always have room.
pub const MAX_SUBSCRIPTIONS: usize = 8;

/// Why the daemon has no usable token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no randomness for the daemon token: {0}")]
    NoRandomness(getrandom::Error),
    #[error(
        "a daemon token must be at least 32 characters without spaces (leave it unset and \
         the daemon makes one)"
    )]
    Weak,
}

/// A new token: 32 random bytes, hex.
pub fn new_token() -> Result<Secret, TokenError> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut()).map_err(TokenError::NoRandomness)?;
    Ok(Secret::new(hex::encode(bytes.as_ref())))
}

/// A token supplied by the operator must be long enough to be a secret.
pub fn check_token(token: &Secret) -> Result<(), TokenError> {
    let t = token.expose();
    if t.len() < 32 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(TokenError::Weak);
    }
    Ok(())
}

/// Constant-time token comparison.
pub fn token_matches(expected: &Secret, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    let (a, b) = (expected.expose().as_bytes(), given.as_bytes());
    // Lengths are not secret (every generated token has 64 characters).
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// One line read with a bound.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line, without its newline.
    Complete(Vec<u8>),
    /// The line exceeded the bound. Nothing past the bound was read: the caller closes
    /// the connection rather than reading on (a peer could send without end).
    TooLong,
    Eof,
}

/// Read one `\n`-terminated line of at most `max` bytes, never holding more than `max`
/// bytes of it. Cancel-safe: a partial line stays in `partial` for the next call, so a
/// caller may race this against a deadline.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    partial: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if partial.is_empty() {
                Line::Eof
            } else {
                Line::Complete(std::mem::take(partial))
            });
        }
        let (take, found) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        if partial.len() + take > max {
            partial.clear();
            return Ok(Line::TooLong);
        }
        partial.extend_from_slice(&buf[..take]);
        r.consume(if found { take + 1 } else { take });
        if found {
            return Ok(Line::Complete(std::mem::take(partial)));
        }
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_lines() {
        let data = b"short\nok\nthis line is far too long\nnever read\n".to_vec();
        let mut r = tokio::io::BufReader::with_capacity(4, &data[..]);
        let mut partial = Vec::new();
        let mut next = async || read_line(&mut r, &mut partial, 10).await.unwrap();
        assert_eq!(next().await, Line::Complete(b"short".to_vec()));
        assert_eq!(next().await, Line::Complete(b"ok".to_vec()));
        assert_eq!(next().await, Line::TooLong);
        let last = b"last";
        let mut r = tokio::io::BufReader::with_capacity(4, &last[..]);
        let mut partial = Vec::new();
        assert_eq!(
            read_line(&mut r, &mut partial, 10).await.unwrap(),
            Line::Complete(b"last".to_vec())
        );
        assert_eq!(
            read_line(&mut r, &mut partial, 10).await.unwrap(),
            Line::Eof
        );
    }

    #[test]
    fn tokens() {
        let t = new_token().unwrap();
        assert_eq!(t.expose().len(), 64);
        assert!(t.expose().chars().all(|c| c.is_ascii_hexdigit()));
        assert!(token_matches(&t, t.expose()));
        assert!(!token_matches(&t, &t.expose()[..63]));
        assert!(!token_matches(&t, &"0".repeat(64)));
        assert!(check_token(&Secret::new("short")).is_err());
        assert!(check_token(&t).is_ok());
    }
}
