//! The local daemon: one unlocked engine that CLI commands and attached dashboards share.
//!
//! A same-user accelerator, not a network service. It listens on a Unix socket whose
//! path derives from the state file's path, speaks JSON lines ([`protocol`]), and answers
//! only requests that carry its token (compared in constant time). The metadata file
//! beside the socket records version, endpoint, pid and start time, never the token; the
//! directory is 0700, the file and the socket 0600. A socket nobody answers on is stale:
//! detected, reported and removed, never trusted.

pub mod client;
pub mod host;
pub mod protocol;
pub mod server;

use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::core::secret::Secret;
use crate::engine::state::store::StateFile;

/// The environment variable that carries the token to clients.
pub const TOKEN_ENV: &str = "LEGION_DAEMON_TOKEN";
/// A request line larger than this is refused (and the connection closed).
pub const MAX_REQUEST: usize = 1 << 20;
/// A response or event line larger than this is replaced by an error; clients refuse
/// longer lines.
pub const MAX_RESPONSE: usize = 64 << 20;
/// Connections served at once; more are told so and closed.
pub const MAX_CLIENTS: usize = 512;
/// Requests one connection may have in flight.
pub const MAX_IN_FLIGHT: usize = 64;
/// Unix socket paths longer than this do not fit `sockaddr_un` on every platform.
const MAX_SOCKET_PATH: usize = 100;

/// Where one home's daemon lives: derived from the state file path alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// 0700 directory holding the metadata (and the socket when the path fits).
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub metadata: PathBuf,
}

impl Endpoint {
    pub fn for_home(home: &Path) -> Endpoint {
        let state = StateFile::in_home(home).path().to_path_buf();
        let dir = state
            .parent()
            .map_or_else(|| PathBuf::from("daemon"), |p| p.join("daemon"));
        let socket = dir.join("legion.sock");
        let socket = if socket.as_os_str().len() <= MAX_SOCKET_PATH {
            socket
        } else {
            // Too long for a socket address: a per-user runtime directory, the file
            // named by a digest of the state path so each home keeps its own.
            let digest = Sha256::digest(state.as_os_str().as_encoded_bytes());
            runtime_dir().join(format!("{}.sock", &hex::encode(digest)[..24]))
        };
        Endpoint {
            metadata: dir.join("daemon.json"),
            dir,
            socket,
        }
    }

    /// Create the directories (0700) the daemon writes into.
    pub fn prepare(&self) -> std::io::Result<()> {
        private_dir(&self.dir)?;
        if let Some(parent) = self.socket.parent() {
            private_dir(parent)?;
        }
        Ok(())
    }

    pub fn read_metadata(&self) -> Result<Option<Metadata>, MetadataError> {
        let path = self.metadata.clone();
        match std::fs::read(&self.metadata) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| MetadataError::Unreadable { path, source }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(source) => Err(MetadataError::Io { path, source }),
        }
    }

    /// Write the metadata atomically, 0600.
    pub fn write_metadata(&self, meta: &Metadata) -> std::io::Result<()> {
        let tmp = self.metadata.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.metadata)
    }

    /// Remove the socket and the metadata (a stopped or dead daemon's files).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.metadata);
    }

    /// Is a daemon answering on the socket? `Stale` when files remain but nobody listens.
    pub fn probe(&self) -> Probe {
        let meta = self.read_metadata();
        match std::os::unix::net::UnixStream::connect(&self.socket) {
            Ok(_) => Probe::Running(meta.ok().flatten()),
            Err(_) => {
                let leftover = self.socket.exists() || self.metadata.exists();
                if leftover {
                    Probe::Stale(meta.ok().flatten())
                } else {
                    Probe::Absent
                }
            }
        }
    }
}

/// What [`Endpoint::probe`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Absent,
    Running(Option<Metadata>),
    /// Files of a daemon that no longer answers (killed, crashed, host rebooted).
    Stale(Option<Metadata>),
}

/// What the daemon tells about itself on disk. Never the token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub version: String,
    pub endpoint: PathBuf,
    pub pid: u32,
    /// Unix seconds.
    pub created: u64,
    pub state: PathBuf,
}

fn runtime_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("legion");
    }
    let uid = rustix::process::getuid().as_raw();
    std::env::temp_dir().join(format!("legion-{uid}"))
}

/// Create `dir` 0700, or tighten it to 0700 when it exists and we own it.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Why the daemon's metadata file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("the daemon metadata {} is unreadable: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

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
    /// The line exceeded the bound; it was discarded up to its newline.
    TooLong,
    Eof,
}

/// Read one `\n`-terminated line of at most `max` bytes; a longer line is consumed and
/// dropped without ever holding more than `max` bytes of it.
pub async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if too_long {
                Line::TooLong
            } else if line.is_empty() {
                Line::Eof
            } else {
                Line::Complete(line)
            });
        }
        let (take, found) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        let chunk = &buf[..take];
        if !too_long {
            if line.len() + chunk.len() > max {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        r.consume(if found { take + 1 } else { take });
        if found {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Complete(line)
            });
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
        let data = b"short\nthis line is far too long\nok\nlast".to_vec();
        let mut r = tokio::io::BufReader::with_capacity(4, &data[..]);
        assert_eq!(
            read_line(&mut r, 10).await.unwrap(),
            Line::Complete(b"short".to_vec())
        );
        assert_eq!(read_line(&mut r, 10).await.unwrap(), Line::TooLong);
        assert_eq!(
            read_line(&mut r, 10).await.unwrap(),
            Line::Complete(b"ok".to_vec())
        );
        assert_eq!(
            read_line(&mut r, 10).await.unwrap(),
            Line::Complete(b"last".to_vec())
        );
        assert_eq!(read_line(&mut r, 10).await.unwrap(), Line::Eof);
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

    #[test]
    fn endpoint_derives_from_the_state_path() {
        let a = Endpoint::for_home(Path::new("/tmp/a"));
        assert_eq!(a.socket, Path::new("/tmp/a/daemon/legion.sock"));
        assert_eq!(a.metadata, Path::new("/tmp/a/daemon/daemon.json"));
        let long = format!("/tmp/{}", "x".repeat(120));
        let b = Endpoint::for_home(Path::new(&long));
        assert!(b.socket.as_os_str().len() <= MAX_SOCKET_PATH, "{b:?}");
        assert_ne!(
            b.socket,
            Endpoint::for_home(Path::new(&format!("{long}y"))).socket
        );
    }
}
