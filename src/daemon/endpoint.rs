//! Where one home's daemon lives, and whether that place can be trusted.
//!
//! The socket sits in `HOME/daemon/` (0700), or, when that path is too long for a socket
//! address, in `$XDG_RUNTIME_DIR/legion/` (0700): never a predictable shared path such as
//! `/tmp`. Both sides check the directory and the socket (owned by this uid, not a
//! symbolic link, no group or other access) and refuse what fails, naming the path and the
//! fix; both then check the peer's uid on the connection itself (`SO_PEERCRED`), which is
//! what settles who is on the other end. This file owns those checks and the metadata
//! file; it never creates or accepts anything looser than 0700/0600.

use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::state::store::StateFile;

/// Unix socket paths longer than this do not fit `sockaddr_un` on every platform.
pub(crate) const MAX_SOCKET_PATH: usize = 100;

/// Where one home's daemon lives: derived from the state file path (and, for a long
/// home path, `XDG_RUNTIME_DIR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// 0700 directory holding the metadata (and the socket when the path fits).
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub metadata: PathBuf,
}

impl Endpoint {
    pub fn for_home(home: &Path) -> Endpoint {
        let runtime = std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        Endpoint::with_runtime_dir(home, runtime.as_deref())
    }

    /// [`Endpoint::for_home`] with the runtime directory passed in.
    pub fn with_runtime_dir(home: &Path, runtime: Option<&Path>) -> Endpoint {
        let state = StateFile::in_home(home).path().to_path_buf();
        let dir = state
            .parent()
            .map_or_else(|| PathBuf::from("daemon"), |p| p.join("daemon"));
        let in_home = dir.join("legion.sock");
        let socket = match runtime {
            Some(runtime) if in_home.as_os_str().len() > MAX_SOCKET_PATH => {
                // The file named by a digest of the state path so each home keeps its own.
                let digest = Sha256::digest(state.as_os_str().as_encoded_bytes());
                runtime
                    .join("legion")
                    .join(format!("{}.sock", &hex::encode(digest)[..24]))
            }
            // Too long without a runtime directory: kept, and refused with the fix when
            // used ([`EndpointError::TooLong`]); a shared fallback would be guessable.
            _ => in_home,
        };
        Endpoint {
            metadata: dir.join("daemon.json"),
            dir,
            socket,
        }
    }

    /// Create the directories (0700) the daemon writes into, and check them.
    pub fn prepare(&self) -> Result<(), EndpointError> {
        self.fits()?;
        private_dir(&self.dir)?;
        if let Some(parent) = self.socket.parent()
            && parent != self.dir
        {
            private_dir(parent)?;
        }
        Ok(())
    }

    /// Before a client says anything: the directories and the socket are ours, private
    /// and real (no symbolic links).
    pub fn check(&self) -> Result<(), EndpointError> {
        self.fits()?;
        check_dir(&self.dir)?;
        if let Some(parent) = self.socket.parent()
            && parent != self.dir
        {
            check_dir(parent)?;
        }
        check_socket(&self.socket)
    }

    fn fits(&self) -> Result<(), EndpointError> {
        let len = self.socket.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(EndpointError::TooLong {
                path: self.socket.clone(),
                len,
            });
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

    /// Remove the socket and the metadata (a stopped or dead daemon's files), only from
    /// a directory that is still ours: never through a swapped-in link.
    pub fn remove(&self) {
        if check_dir(&self.dir).is_ok() {
            let _ = std::fs::remove_file(&self.metadata);
            if self.socket.parent() == Some(self.dir.as_path()) {
                let _ = std::fs::remove_file(&self.socket);
            }
        }
        if let Some(parent) = self.socket.parent()
            && parent != self.dir
            && check_dir(parent).is_ok()
        {
            let _ = std::fs::remove_file(&self.socket);
        }
    }

    /// Is a daemon answering on the socket? `Stale` when files remain but nobody listens.
    /// Connecting sends nothing, so this is safe on a socket not yet checked.
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

/// The uid both sides serve and trust: this process's effective uid, nobody else's
/// (root included: root that wants in can read the token anyway, and a root `legion`
/// talking to a user's daemon is a mistake worth an error).
pub fn own_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The uid on the other end of a connected socket, as the kernel recorded it at
/// `connect`/`listen` time (`SO_PEERCRED`).
pub fn peer_uid(stream: &tokio::net::UnixStream) -> std::io::Result<u32> {
    stream.peer_cred().map(|c| c.uid())
}

/// The client's check of the daemon it connected to, before anything is sent.
pub fn check_peer(stream: &tokio::net::UnixStream, socket: &Path) -> Result<(), EndpointError> {
    let me = own_uid();
    let peer = peer_uid(stream).map_err(|source| EndpointError::Io {
        path: socket.to_path_buf(),
        source,
    })?;
    if peer != me {
        return Err(EndpointError::ForeignPeer {
            path: socket.to_path_buf(),
            peer,
            me,
        });
    }
    Ok(())
}

/// Create `dir` 0700 when missing (its parent must exist), then check it.
fn private_dir(dir: &Path) -> Result<(), EndpointError> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(EndpointError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    check_dir(dir)
}

/// A directory of ours: not a link, owned by this uid, no group or other access.
pub fn check_dir(dir: &Path) -> Result<(), EndpointError> {
    check_node(dir, Kind::Dir)
}

/// A socket of ours: not a link, owned by this uid, no group or other access.
pub fn check_socket(socket: &Path) -> Result<(), EndpointError> {
    check_node(socket, Kind::Socket)
}

#[derive(Clone, Copy)]
enum Kind {
    Dir,
    Socket,
}

fn check_node(path: &Path, kind: Kind) -> Result<(), EndpointError> {
    let meta = std::fs::symlink_metadata(path).map_err(|source| EndpointError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let path = path.to_path_buf();
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Err(EndpointError::Symlink { path });
    }
    let (right_type, expected, want) = match kind {
        Kind::Dir => (ft.is_dir(), "a directory", 0o700),
        Kind::Socket => (ft.is_socket(), "a socket", 0o600),
    };
    if !right_type {
        return Err(EndpointError::WrongType { path, expected });
    }
    let me = own_uid();
    if meta.uid() != me {
        return Err(EndpointError::Foreign {
            path,
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(EndpointError::Open { path, mode, want });
    }
    Ok(())
}

/// Why the daemon's directory, socket or peer is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(
        "{} is a symbolic link; the daemon's directory and socket must be Legion's own \
         (remove the link and start the daemon again)", path.display()
    )]
    Symlink { path: PathBuf },
    #[error("{} is not {expected}; move it away and start the daemon again", path.display())]
    WrongType {
        path: PathBuf,
        expected: &'static str,
    },
    #[error(
        "{} belongs to uid {owner}, not to you (uid {me}); it is not Legion's: have its \
         owner or root remove it, then start the daemon again", path.display()
    )]
    Foreign { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "{} is open to group or others (mode {mode:o}); run `chmod {want:o} {}`", path.display(),
        path.display()
    )]
    Open { path: PathBuf, mode: u32, want: u32 },
    #[error(
        "the daemon socket path {} is {len} bytes, more than the {MAX_SOCKET_PATH} a Unix \
         socket address holds; use a shorter LEGION_HOME or set XDG_RUNTIME_DIR",
        path.display()
    )]
    TooLong { path: PathBuf, len: usize },
    #[error(
        "the process serving {} runs as uid {peer}, not as you (uid {me}): nothing was sent \
         to it. Another user may be impersonating the daemon; stop that process and remove \
         the socket", path.display()
    )]
    ForeignPeer { path: PathBuf, peer: u32, me: u32 },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn endpoint_derives_from_the_state_path() {
        let a = Endpoint::with_runtime_dir(Path::new("/tmp/a"), None);
        assert_eq!(a.socket, Path::new("/tmp/a/daemon/legion.sock"));
        assert_eq!(a.metadata, Path::new("/tmp/a/daemon/daemon.json"));
        let long = format!("/tmp/{}", "x".repeat(120));
        let run = Path::new("/run/user/1000");
        let b = Endpoint::with_runtime_dir(Path::new(&long), Some(run));
        assert!(b.socket.starts_with("/run/user/1000/legion/"), "{b:?}");
        assert!(b.socket.as_os_str().len() <= MAX_SOCKET_PATH, "{b:?}");
        assert_ne!(
            b.socket,
            Endpoint::with_runtime_dir(Path::new(&format!("{long}y")), Some(run)).socket
        );
        // No runtime directory: never a shared fallback, a refusal that says what to do.
        let c = Endpoint::with_runtime_dir(Path::new(&long), None);
        assert!(c.socket.starts_with(&long), "{c:?}");
        let e = c.prepare().unwrap_err().to_string();
        assert!(e.contains("XDG_RUNTIME_DIR") && e.contains(&long), "{e}");
    }

    #[test]
    fn loose_linked_or_foreign_directories_are_refused_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let ep = Endpoint::with_runtime_dir(&home, None);
        ep.prepare().unwrap();
        let mode = std::fs::metadata(&ep.dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);

        std::fs::set_permissions(&ep.dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        let e = ep.prepare().unwrap_err().to_string();
        assert!(
            e.contains(&format!("chmod 700 {}", ep.dir.display())),
            "{e}"
        );
        std::fs::set_permissions(&ep.dir, std::fs::Permissions::from_mode(0o700)).unwrap();

        // A link to a directory of ours is still refused: the name is what others see.
        let real = tmp.path().join("elsewhere");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::remove_dir(&ep.dir).unwrap();
        std::os::unix::fs::symlink(&real, &ep.dir).unwrap();
        let e = ep.prepare().unwrap_err().to_string();
        assert!(
            e.contains("symbolic link") && e.contains(&*ep.dir.to_string_lossy()),
            "{e}"
        );
        std::fs::remove_file(&ep.dir).unwrap();
        ep.prepare().unwrap();

        // Someone else's directory (needs root to make one).
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&ep.dir, Some(65534), None).unwrap();
            let e = ep.prepare().unwrap_err().to_string();
            assert!(e.contains("belongs to uid 65534"), "{e}");
            std::os::unix::fs::chown(&ep.dir, Some(own_uid()), None).unwrap();
        } else {
            eprintln!("SKIPPED (foreign owner part): making a directory of another uid needs root");
        }

        // A plain file where the socket should be.
        std::fs::write(&ep.socket, b"").unwrap();
        std::fs::set_permissions(&ep.socket, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = ep.check().unwrap_err().to_string();
        assert!(e.contains("is not a socket"), "{e}");
    }
}
