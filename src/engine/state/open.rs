//! Opening a home's state for a session: the state file, its journal replayed on top,
//! then the migrations of older shapes. Writes nothing: the first save writes what
//! replay and migration changed.

use super::change::Change;
use super::crypto::StateKey;
use super::journal::Journal;
use super::model::State;
use super::store::{StateFile, StoreError};

/// An opened state, ready for [`super::cell::StateCell::start_opened`].
#[derive(Debug)]
pub struct Opened {
    pub key: StateKey,
    pub state: State,
    pub journal: Journal,
    /// The state is exactly what the state file holds (nothing replayed or migrated).
    pub clean: bool,
    /// Journal records replayed.
    pub replayed: usize,
    /// What the operator should know (a torn last change discarded, a journal ignored).
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Decrypted and authenticated, but not a state this Legion can read.
    #[error(
        "the state decrypted but could not be read ({0}); it may come from an incompatible Legion"
    )]
    Unreadable(String),
}

/// Open `file` with `password`, replay its journal and migrate.
pub fn open(file: &StateFile, password: &[u8]) -> Result<Opened, OpenError> {
    let (key, plaintext) = file.open(password)?;
    let mut state: State =
        serde_json::from_slice(&plaintext).map_err(|e| OpenError::Unreadable(e.to_string()))?;
    drop(plaintext);
    let replay = Journal::read(file, &key)?;
    let replayed = replay.records.len();
    for (i, record) in replay.records.into_iter().enumerate() {
        let changes: Vec<Change> = serde_json::from_slice(&record).map_err(|e| {
            OpenError::Unreadable(format!(
                "change {i} of {}: {e}",
                replay.journal.path().display()
            ))
        })?;
        for change in changes {
            change.apply(&mut state);
        }
    }
    let migrated = state.migrate();
    Ok(Opened {
        key,
        state,
        journal: replay.journal,
        clean: replayed == 0 && !migrated,
        replayed,
        warnings: replay.warnings,
    })
}
