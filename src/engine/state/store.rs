//! The on-disk state store of one Legion home: create, open, save, change password,
//! the previous-generation backup and the single-process lock.
//!
//! Files in the home:
//! - `state.legion`: the current generation (format in `crypto`);
//! - `state.legion.bak`: the previous generation, a hard link kept by every save;
//! - `state.legion.journal`: changes since the current generation (owned by `journal`);
//! - `state.lock`: advisory lock held while a process has the state unlocked;
//! - `.state.legion.tmp.<pid>.<random>`: a save in progress (or left by a crash).
//!
//! The state path must hold a regular file: a FIFO (which would block the open) or a
//! symlink (which a save's rename would silently replace by a regular file) is refused
//! with [`StoreError::NotRegularFile`], never followed.
//!
//! The store treats the plaintext as opaque bytes (the caller serializes). It never logs,
//! never puts a password in an error, and `open` never writes, renames or deletes
//! anything, so a failed unlock cannot make things worse. Creating the home directory and
//! its permissions belong to `engine::home`.
//!
//! Every write goes to a fresh temporary file (mode 0600, fsynced) that is then renamed
//! over `state.legion`, followed by an fsync of the directory: a crash at any moment
//! leaves `state.legion` holding one complete generation, old or new.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::crypto::{
    self, FormatError, KdfParams, KdfRejection, MAX_FILE_LEN, MAX_PLAINTEXT_LEN, StateKey,
};

/// Name of the state file inside a Legion home.
pub const STATE_FILE_NAME: &str = "state.legion";
/// Name of the lock file inside a Legion home.
pub const LOCK_FILE_NAME: &str = "state.lock";
/// Suffix of the previous-generation backup.
pub const BACKUP_SUFFIX: &str = ".bak";

/// Generation written by `create`.
const FIRST_GENERATION: u64 = 1;
const FILE_MODE: u32 = 0o600;

/// Everything that can go wrong with the state store. Messages say what happened, to
/// which file, and what to do; none contains a password or key bytes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No state file yet.
    #[error("no state at {}; run `legion config init` to create it", .path.display())]
    Missing {
        /// The state file path.
        path: PathBuf,
    },
    /// `create` found a state file already there.
    #[error(
        "state already exists at {}; unlock it instead, or move it away to start over",
        .path.display()
    )]
    AlreadyExists {
        /// The state file path.
        path: PathBuf,
    },
    /// The file is damaged, truncated, modified or not a state file.
    #[error(
        "state file {} is unusable: {detail}; nothing was changed (the previous generation, \
         if any, is in the .bak file next to it)",
        .path.display()
    )]
    Corrupted {
        /// The file that was read.
        path: PathBuf,
        /// What exactly is wrong.
        detail: FormatError,
    },
    /// Written by a newer Legion.
    #[error(
        "state file {} uses format version {found}, but this Legion reads only up to version \
         {supported}: it was written by a newer Legion; upgrade Legion to open it",
        .path.display()
    )]
    NewerVersion {
        /// The file that was read.
        path: PathBuf,
        /// Version found in the file.
        found: u16,
        /// Newest version this build reads.
        supported: u16,
    },
    /// Key-derivation settings refused (from a file, or asked for by the caller).
    #[error(
        "refusing the key-derivation settings for {}: {reason} (Legion never writes such \
         settings; a file that asks for them was damaged or crafted)",
        .path.display()
    )]
    KdfParamsRejected {
        /// The state file concerned.
        path: PathBuf,
        /// Which parameter and which limit.
        reason: KdfRejection,
    },
    /// The password does not unlock this file.
    #[error("wrong password for {}; try again", .path.display())]
    WrongPassword {
        /// The file that was read.
        path: PathBuf,
    },
    /// The file on disk is not the one this key last read or wrote.
    #[error(
        "state file {} changed since this session unlocked it ({detail}); nothing was \
         written: unlock it again",
        .path.display()
    )]
    Stale {
        /// The state file path.
        path: PathBuf,
        /// What changed.
        detail: String,
    },
    /// Another process holds the lock.
    #[error(
        "the Legion state in {} is in use by another Legion process ({}); quit it or stop \
         the daemon, then try again",
        .home.display(),
        pid_note(*.pid)
    )]
    InUse {
        /// The Legion home.
        home: PathBuf,
        /// The holder's pid, when the lock file could be read.
        pid: Option<u32>,
    },
    /// The plaintext is larger than the store accepts.
    #[error(
        "the state is {len} bytes, more than the {max} bytes Legion stores; nothing was written"
    )]
    TooLarge {
        /// Plaintext length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The system random number generator failed.
    #[error("the system random number generator failed ({cause}); nothing was written")]
    Randomness {
        /// The error from `getrandom` (which implements `std::error::Error` only with its
        /// `std` feature, so it is not exposed as the source).
        cause: getrandom::Error,
    },
    /// Argon2 failed (in practice: could not allocate its memory).
    #[error(
        "key derivation for {} failed ({source}); free some memory and try again",
        .path.display()
    )]
    KeyDerivation {
        /// The state file concerned.
        path: PathBuf,
        /// The error from `argon2`.
        source: argon2::Error,
    },
    /// Something other than a regular file is at the state path: a FIFO would block every
    /// command on open, and a symlink would be silently replaced by a regular file on the
    /// first save. Legion refuses both rather than follow them.
    #[error(
        "{} is {what}, not a regular file; Legion reads and writes its state only as a \
         regular file in the home: move it away (for a symlink, copy the file it points to \
         into its place) and try again",
        .path.display()
    )]
    NotRegularFile {
        /// The state file path.
        path: PathBuf,
        /// What is there instead ("a symbolic link", "a FIFO", ...).
        what: &'static str,
    },
    /// A file-system operation failed.
    #[error("could not {op} {}: {source}", .path.display())]
    Io {
        /// The path operated on.
        path: PathBuf,
        /// What was being done, as a verb phrase.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

fn pid_note(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".to_owned(),
    }
}

/// The kind of a [`StoreError`], for mapping to exit codes and UI messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreErrorKind {
    /// [`StoreError::Missing`].
    Missing,
    /// [`StoreError::AlreadyExists`].
    AlreadyExists,
    /// [`StoreError::Corrupted`].
    Corrupted,
    /// [`StoreError::NewerVersion`].
    NewerVersion,
    /// [`StoreError::KdfParamsRejected`].
    KdfParamsRejected,
    /// [`StoreError::WrongPassword`].
    WrongPassword,
    /// [`StoreError::Stale`].
    Stale,
    /// [`StoreError::InUse`].
    InUse,
    /// [`StoreError::TooLarge`].
    TooLarge,
    /// [`StoreError::Randomness`] or [`StoreError::KeyDerivation`]: the system failed us.
    System,
    /// [`StoreError::NotRegularFile`].
    NotRegularFile,
    /// [`StoreError::Io`].
    Io,
}

impl StoreError {
    /// The kind of this error.
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::Missing { .. } => StoreErrorKind::Missing,
            StoreError::AlreadyExists { .. } => StoreErrorKind::AlreadyExists,
            StoreError::Corrupted { .. } => StoreErrorKind::Corrupted,
            StoreError::NewerVersion { .. } => StoreErrorKind::NewerVersion,
            StoreError::KdfParamsRejected { .. } => StoreErrorKind::KdfParamsRejected,
            StoreError::WrongPassword { .. } => StoreErrorKind::WrongPassword,
            StoreError::Stale { .. } => StoreErrorKind::Stale,
            StoreError::InUse { .. } => StoreErrorKind::InUse,
            StoreError::TooLarge { .. } => StoreErrorKind::TooLarge,
            StoreError::Randomness { .. } | StoreError::KeyDerivation { .. } => {
                StoreErrorKind::System
            }
            StoreError::NotRegularFile { .. } => StoreErrorKind::NotRegularFile,
            StoreError::Io { .. } => StoreErrorKind::Io,
        }
    }

    fn from_format(path: &Path, err: FormatError) -> StoreError {
        let path = path.to_path_buf();
        match err {
            FormatError::NewerVersion { found, supported } => StoreError::NewerVersion {
                path,
                found,
                supported,
            },
            FormatError::KdfRejected(reason) => StoreError::KdfParamsRejected { path, reason },
            FormatError::WrongPassword => StoreError::WrongPassword { path },
            FormatError::PlaintextTooLarge { len } => StoreError::TooLarge {
                len,
                max: MAX_PLAINTEXT_LEN,
            },
            FormatError::Randomness(cause) => StoreError::Randomness { cause },
            FormatError::Kdf(source) => StoreError::KeyDerivation { path, source },
            detail @ (FormatError::Truncated { .. }
            | FormatError::TooLong { .. }
            | FormatError::BadMagic
            | FormatError::ChecksumMismatch
            | FormatError::InvalidVersion { .. }
            | FormatError::UnknownFlags { .. }
            | FormatError::AuthenticationFailed
            | FormatError::JournalBadMagic
            | FormatError::JournalTruncatedHeader { .. }
            | FormatError::JournalVersion { .. }
            | FormatError::JournalTampered { .. }) => StoreError::Corrupted { path, detail },
        }
    }
}

fn io_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { path, op, source }
}

/// What a replace does with the generation it replaces.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backup {
    /// Keep it as `.bak` (every ordinary save).
    Rotate,
    /// Delete the existing `.bak` and keep none (password change: the old password must
    /// stop opening anything Legion keeps).
    Drop,
}

/// One state file on disk. Cheap to construct; every operation goes to the disk.
///
/// Callers that write (`create`, `save`, `change_password`) must hold the home's
/// [`StateLock`]; the store does not take it itself so that one process can hold it for
/// the whole time the state is unlocked.
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file of a Legion home (`<home>/state.legion`).
    pub fn in_home(home: &Path) -> StateFile {
        StateFile {
            path: home.join(STATE_FILE_NAME),
        }
    }

    /// A state file at an explicit path (for example a backup, to open it).
    pub fn at(path: impl Into<PathBuf>) -> StateFile {
        StateFile { path: path.into() }
    }

    /// The path of the state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of the previous generation (`<path>.bak`).
    pub fn backup_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(BACKUP_SUFFIX);
        PathBuf::from(name)
    }

    /// The previous generation, as a state file that can be opened.
    pub fn backup(&self) -> StateFile {
        StateFile::at(self.backup_path())
    }

    /// Whether something exists at the path (a dangling symlink counts: `create` would
    /// not replace it either).
    pub fn exists(&self) -> bool {
        fs::symlink_metadata(&self.path).is_ok()
    }

    /// Creates the state file with a fresh salt, as generation 1. Refuses with
    /// [`StoreError::AlreadyExists`] if any file is already there.
    pub fn create(
        &self,
        password: &[u8],
        params: KdfParams,
        plaintext: &[u8],
    ) -> Result<StateKey, StoreError> {
        // Checked before key derivation so the common mistake costs nothing; the hard link
        // below is what makes it race-free.
        if self.exists() {
            return Err(StoreError::AlreadyExists {
                path: self.path.clone(),
            });
        }
        let key = StateKey::derive_new(password, params).map_err(|e| self.format_err(e))?;
        let bytes =
            crypto::seal(&key, FIRST_GENERATION, plaintext).map_err(|e| self.format_err(e))?;
        self.remove_stale_temps();
        let tmp = self.write_temp(&bytes)?;
        // link(2) never replaces an existing file, unlike rename(2).
        match fs::hard_link(&tmp.path, &self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StoreError::AlreadyExists {
                    path: self.path.clone(),
                });
            }
            Err(e) => return Err(io_err(&self.path, "create state file")(e)),
        }
        // Dropping the guard unlinks the temporary name; the data lives on as the state
        // file.
        drop(tmp);
        self.sync_dir()?;
        key.set_generation(FIRST_GENERATION);
        Ok(key)
    }

    /// Reads and decrypts the state. Checks, in order: the file exists, its length and
    /// magic, its trailing checksum, its version, its key-derivation settings, the
    /// password, and finally AES-GCM authentication. Writes nothing, whatever happens.
    pub fn open(&self, password: &[u8]) -> Result<(StateKey, Zeroizing<Vec<u8>>), StoreError> {
        let bytes = self.read()?;
        crypto::unseal(&bytes, password).map_err(|e| self.format_err(e))
    }

    /// Atomically replaces the state with `plaintext` under `key` and returns the new
    /// generation. The generation replaced is kept as `.bak`.
    ///
    /// Refuses with [`StoreError::Stale`] if the file on disk is not the generation this
    /// key last read or wrote (another writer, or a password change since), so an old key
    /// can never silently revert a password change.
    ///
    /// An [`StoreError::Io`] from the final directory sync means the new generation is in
    /// place (and this key knows it) but may not survive a power loss; any other error
    /// means the file was not replaced.
    pub fn save(&self, key: &StateKey, plaintext: &[u8]) -> Result<u64, StoreError> {
        self.replace(key, key, plaintext, Backup::Rotate)
    }

    /// Re-encrypts `plaintext` under a new password, fresh salt and `params`, and returns
    /// the new key; `old` no longer saves. The `.bak` is deleted rather than rotated, so
    /// nothing Legion keeps still opens with the old password.
    pub fn change_password(
        &self,
        old: &StateKey,
        new_password: &[u8],
        params: KdfParams,
        plaintext: &[u8],
    ) -> Result<StateKey, StoreError> {
        let new = StateKey::derive_new(new_password, params).map_err(|e| self.format_err(e))?;
        self.replace(old, &new, plaintext, Backup::Drop)?;
        Ok(new)
    }

    fn replace(
        &self,
        expected: &StateKey,
        key: &StateKey,
        plaintext: &[u8],
        backup: Backup,
    ) -> Result<u64, StoreError> {
        let current_is_good = self.check_current(expected)?;
        let generation = expected.generation().saturating_add(1);
        let bytes = crypto::seal(key, generation, plaintext).map_err(|e| self.format_err(e))?;
        self.remove_stale_temps();
        let mut tmp = self.write_temp(&bytes)?;

        let bak = self.backup_path();
        // A damaged current file is not rotated into .bak: the existing .bak is then the
        // last good generation and is worth more.
        if backup == Backup::Drop || current_is_good {
            match fs::remove_file(&bak) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&bak, "remove the old backup")(e)),
            }
        }
        if backup == Backup::Rotate && current_is_good {
            fs::hard_link(&self.path, &bak)
                .map_err(io_err(&bak, "keep the previous generation as"))?;
        }
        fs::rename(&tmp.path, &self.path).map_err(io_err(&self.path, "replace"))?;
        tmp.armed = false;
        // The new generation is visible from here on; record it even if the directory
        // sync below fails, so this key stays in step with the file.
        key.set_generation(generation);
        self.sync_dir()?;
        Ok(generation)
    }

    /// Decides whether the current file may be replaced with `expected`, and whether it is
    /// a good generation to keep as backup.
    fn check_current(&self, expected: &StateKey) -> Result<bool, StoreError> {
        let bytes = match self.read() {
            Ok(bytes) => bytes,
            // Deleted while unlocked: writing it again is what the operator wants.
            Err(StoreError::Missing { .. }) => return Ok(false),
            // Too large to be ours: treat as damaged and replace it.
            Err(StoreError::Corrupted { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        match crypto::check_integrity(&bytes) {
            Ok(header) => {
                if !expected.matches(&header) {
                    return Err(StoreError::Stale {
                        path: self.path.clone(),
                        detail: "it is encrypted with another password or salt".to_owned(),
                    });
                }
                if header.generation != expected.generation() {
                    return Err(StoreError::Stale {
                        path: self.path.clone(),
                        detail: format!(
                            "it holds generation {} but this session last saw generation {}; \
                             another process wrote it",
                            header.generation,
                            expected.generation()
                        ),
                    });
                }
                Ok(true)
            }
            // Never overwrite what a newer Legion wrote.
            Err(e @ (FormatError::NewerVersion { .. } | FormatError::UnknownFlags { .. })) => {
                Err(self.format_err(e))
            }
            Err(_) => Ok(false),
        }
    }

    /// Refuses a state path that is not a regular file, before anything opens it (opening
    /// a FIFO blocks until a writer appears). Only the owner can change the 0700 home
    /// between this check and the open; the open file is checked again below.
    fn check_file_type(&self) -> Result<(), StoreError> {
        let meta = match fs::symlink_metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Missing {
                    path: self.path.clone(),
                });
            }
            Err(e) => return Err(io_err(&self.path, "inspect")(e)),
        };
        match file_kind(&meta.file_type()) {
            None => Ok(()),
            Some(what) => Err(StoreError::NotRegularFile {
                path: self.path.clone(),
                what,
            }),
        }
    }

    fn read(&self) -> Result<Vec<u8>, StoreError> {
        self.check_file_type()?;
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Missing {
                    path: self.path.clone(),
                });
            }
            Err(e) => return Err(io_err(&self.path, "open")(e)),
        };
        let meta = file
            .metadata()
            .map_err(io_err(&self.path, "read the size of"))?;
        if let Some(what) = file_kind(&meta.file_type()) {
            return Err(StoreError::NotRegularFile {
                path: self.path.clone(),
                what,
            });
        }
        let len = meta.len();
        // Checked before reading so a huge file is refused without being loaded.
        if len > MAX_FILE_LEN as u64 {
            return Err(self.format_err(FormatError::TooLong { len }));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(MAX_FILE_LEN));
        // `take` guards against a file that grows between the size check and the read.
        file.take(MAX_FILE_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err(&self.path, "read"))?;
        Ok(bytes)
    }

    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    fn temp_prefix(&self) -> String {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| STATE_FILE_NAME.to_owned());
        format!(".{name}.tmp.")
    }

    fn write_temp(&self, bytes: &[u8]) -> Result<TempFile, StoreError> {
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).map_err(|cause| StoreError::Randomness { cause })?;
        let path = self.dir().join(format!(
            "{}{}.{}",
            self.temp_prefix(),
            std::process::id(),
            hex::encode(suffix)
        ));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(io_err(&path, "create temporary state file"))?;
        let guard = TempFile { path, armed: true };
        // The umask can only remove bits from 0600, but a state file its owner cannot read
        // is as broken as one others can: make it exactly 0600.
        let mode = file
            .metadata()
            .map_err(io_err(&guard.path, "read the permissions of"))?
            .permissions()
            .mode();
        if mode & 0o777 != FILE_MODE {
            file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
                .map_err(io_err(&guard.path, "set permissions 0600 on"))?;
        }
        file.write_all(bytes)
            .map_err(io_err(&guard.path, "write temporary state file"))?;
        // A failed fsync is final: after it the kernel may have dropped the dirty pages
        // and a retry could report success for data that never reached the disk. The
        // guard removes the temporary file on this path.
        file.sync_all()
            .map_err(io_err(&guard.path, "flush to disk temporary state file"))?;
        Ok(guard)
    }

    fn sync_dir(&self) -> Result<(), StoreError> {
        let dir = self.dir();
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir, "flush to disk the directory"))
    }

    /// Removes temporary files left by crashed saves. Best effort: a file that cannot be
    /// removed only costs disk space, and must not make the save fail.
    ///
    /// A temporary file is stale when its writer's pid is no longer alive (via `/proc`,
    /// when mounted), or when it is older than the lock file, which the current lock
    /// holder rewrote when it took the lock (this also covers a recycled pid). Our own
    /// pid's files are never touched: another thread of this process may be writing one.
    fn remove_stale_temps(&self) {
        let dir = self.dir();
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        let prefix = self.temp_prefix();
        let own_pid = std::process::id();
        let have_proc = Path::new("/proc/self").exists();
        let lock_mtime = fs::metadata(dir.join(LOCK_FILE_NAME))
            .and_then(|m| m.modified())
            .ok();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                continue;
            };
            let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if pid == own_pid {
                continue;
            }
            let dead = have_proc && !Path::new(&format!("/proc/{pid}")).exists();
            let before_lock = lock_mtime.is_some_and(|lock| {
                entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m < lock)
            });
            if dead || before_lock {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    fn format_err(&self, err: FormatError) -> StoreError {
        StoreError::from_format(&self.path, err)
    }
}

/// What a non-regular file is, in words; `None` for a regular file.
fn file_kind(t: &fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        None
    } else if t.is_symlink() {
        Some("a symbolic link")
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_block_device() || t.is_char_device() {
        Some("a device")
    } else {
        Some("a special file")
    }
}

/// A temporary file that is removed on drop unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            // Nothing useful to do on failure; the next save's stale cleanup retries.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Exclusive advisory lock on `<home>/state.lock`, held while a process has the state
/// unlocked. Released when dropped (or when the process dies: the kernel drops the lock
/// with the file description). The lock file holds the holder's pid for messages; it is
/// never deleted, since deleting a lock file races with processes that already opened it.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock without waiting; [`StoreError::InUse`] if another process (or
    /// another `StateLock` in this process) holds it.
    pub fn acquire(home: &Path) -> Result<StateLock, StoreError> {
        let path = home.join(LOCK_FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(io_err(&path, "open lock file"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                // The holder may be between truncating and writing its pid: then unknown.
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse::<u32>().ok());
                return Err(StoreError::InUse {
                    home: home.to_path_buf(),
                    pid,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(&path, "lock")(e)),
        }
        // Rewriting the pid also refreshes the lock file's mtime, which stale temporary
        // file cleanup compares against.
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(io_err(&path, "write pid to lock file"))?;
        Ok(StateLock { _file: file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
