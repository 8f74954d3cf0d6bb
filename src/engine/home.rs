//! The Legion home: the directory holding the encrypted state, its lock and backup, and
//! `logs/`. This module decides where it is (`--home`, then `LEGION_HOME`, then the
//! platform data directory) and makes sure it exists with mode 0700. It does not read or
//! write any file inside; the state store does that.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Environment variable naming the Legion home.
pub const HOME_ENV: &str = "LEGION_HOME";
/// Log directory inside the home.
pub const LOGS_DIR: &str = "logs";
const DIR_MODE: u32 = 0o700;

/// Why no Legion home could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// Neither a flag, nor the variable, nor a platform data directory.
    #[error(
        "cannot find a directory for Legion's state (is $HOME set?); pass --home DIR or set \
         {HOME_ENV}"
    )]
    NoDefault,
    /// The path could not be made absolute (the current directory is gone).
    #[error(
        "cannot make the Legion home {} absolute: {source}; pass an absolute path",
        .path.display()
    )]
    NotAbsolute {
        /// The path given.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Picks the Legion home: the `--home` flag, else `LEGION_HOME`, else the platform data
/// directory (`~/.local/share/legion` on Linux). The result is absolute, so a daemon
/// started from another directory finds the same home.
pub fn resolve_home(flag: Option<PathBuf>) -> Result<PathBuf, HomeError> {
    resolve_home_from(flag, std::env::var_os(HOME_ENV), default_home)
}

/// [`resolve_home`] with the environment and the platform default passed in. Empty
/// values count as unset (`LEGION_HOME= legion` means "the default").
pub fn resolve_home_from(
    flag: Option<PathBuf>,
    env: Option<OsString>,
    default: impl FnOnce() -> Option<PathBuf>,
) -> Result<PathBuf, HomeError> {
    let chosen = flag
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(|| env.filter(|v| !v.is_empty()).map(PathBuf::from))
        .or_else(default)
        .ok_or(HomeError::NoDefault)?;
    std::path::absolute(&chosen).map_err(|source| HomeError::NotAbsolute {
        path: chosen,
        source,
    })
}

/// The platform data directory for Legion, if the platform has one.
pub fn default_home() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "legion").map(|d| d.data_dir().to_path_buf())
}

/// A directory whose permissions [`ensure_home`] had to change; worth a log line, since
/// someone or something loosened them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tightened {
    /// The directory.
    pub path: PathBuf,
    /// Its permission bits before.
    pub was: u32,
}

impl fmt::Display for Tightened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "changed the permissions of {} from {:04o} to {DIR_MODE:04o}: Legion's home holds \
             secrets and must be private to its owner",
            self.path.display(),
            self.was
        )
    }
}

/// Creates the home and `logs/` inside it with mode 0700, and sets 0700 on them if they
/// already existed with other permissions. Returns one note per existing directory that
/// was changed, for the caller to log.
pub fn ensure_home(home: &Path) -> io::Result<Vec<Tightened>> {
    let mut notes = Vec::new();
    ensure_private_dir(home, &mut notes)?;
    ensure_private_dir(&home.join(LOGS_DIR), &mut notes)?;
    Ok(notes)
}

fn ensure_private_dir(dir: &Path, notes: &mut Vec<Tightened>) -> io::Result<()> {
    let existed = dir.is_dir();
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| context(e, "create", dir))?;
    let was = fs::metadata(dir)
        .map_err(|e| context(e, "read the permissions of", dir))?
        .permissions()
        .mode()
        & 0o7777;
    if was != DIR_MODE {
        // A fresh directory can differ only through an unusual umask; not worth a note.
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
            .map_err(|e| context(e, "set mode 0700 on", dir))?;
        if existed {
            notes.push(Tightened {
                path: dir.to_path_buf(),
                was,
            });
        }
    }
    Ok(())
}

/// `io::Error` carries no path; keep the kind and add what and where.
fn context(err: io::Error, op: &str, path: &Path) -> io::Error {
    io::Error::new(
        err.kind(),
        format!(
            "could not {op} the Legion directory {}: {err}",
            path.display()
        ),
    )
}
