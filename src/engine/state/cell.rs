//! The unlocked state in memory, and its persister.
//!
//! Every mutation bumps a version; a persister task writes the newest version to the
//! encrypted file, so a burst of mutations becomes one save (group commit). Callers that
//! need durability (execution phases, plan edits) await [`StateCell::persist`] for their
//! version. Readers take a short read lock and never hold it across an await.
//!
//! A version whose serialized state is byte-for-byte what the file already holds is not
//! written: a mutation that changed nothing (a read-only command's bookkeeping) must not
//! rotate the previous generation out of `.bak`, nor fail on a full disk.

use std::sync::{Arc, RwLock, Weak};

use tokio::sync::{Mutex, watch};
use zeroize::Zeroizing;

use super::crypto::{KdfParams, StateKey};
use super::model::State;
use super::store::{StateFile, StoreError};

#[derive(Debug, Clone, Default, PartialEq)]
struct Persisted {
    version: u64,
    error: Option<String>,
}

/// The file and the key that seals it. Held behind one lock so a password change and a
/// save never interleave.
struct Sealed {
    file: StateFile,
    key: StateKey,
    /// SHA-256 of the plaintext the file holds (as last opened or written).
    saved: Option<[u8; 32]>,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

pub struct StateCell {
    state: RwLock<State>,
    version: watch::Sender<u64>,
    persisted: watch::Sender<Persisted>,
    sealed: Arc<Mutex<Sealed>>,
}

impl std::fmt::Debug for StateCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateCell")
            .field("version", &*self.version.borrow())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("saving the state failed: {0}")]
    Save(String),
    #[error("the state was closed before it was saved")]
    Closed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StateCell {
    /// Wrap an opened state and start its persister on the current runtime. `state` must
    /// be what the file holds: saves that would write it again are skipped.
    pub fn start(state: State, file: StateFile, key: StateKey) -> Arc<StateCell> {
        let (version, _) = watch::channel(0);
        let (persisted, _) = watch::channel(Persisted::default());
        let saved = serde_json::to_vec(&state)
            .ok()
            .map(|b| digest(&Zeroizing::new(b)));
        let cell = Arc::new(StateCell {
            state: RwLock::new(state),
            version,
            persisted,
            sealed: Arc::new(Mutex::new(Sealed { file, key, saved })),
        });
        tokio::spawn(persister(Arc::downgrade(&cell), cell.version.subscribe()));
        cell
    }

    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        let guard = self.state.read().unwrap_or_else(|e| e.into_inner());
        f(&guard)
    }

    /// Apply a mutation in memory; returns its result and the version to persist.
    pub fn mutate<R>(&self, f: impl FnOnce(&mut State) -> R) -> (R, u64) {
        let result = {
            let mut guard = self.state.write().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        };
        let mut v = 0;
        self.version.send_modify(|ver| {
            *ver += 1;
            v = *ver;
        });
        (result, v)
    }

    /// Like [`StateCell::mutate`], but an `Err` leaves the version alone: nothing to save,
    /// nobody woken. The closure must not have changed the state when it fails.
    pub fn try_mutate<R, E>(
        &self,
        f: impl FnOnce(&mut State) -> Result<R, E>,
    ) -> Result<(R, u64), E> {
        let result = {
            let mut guard = self.state.write().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        }?;
        let mut v = 0;
        self.version.send_modify(|ver| {
            *ver += 1;
            v = *ver;
        });
        Ok((result, v))
    }

    /// Mutate and wait until the change is on disk.
    pub async fn commit<R>(&self, f: impl FnOnce(&mut State) -> R) -> Result<R, PersistError> {
        let (r, v) = self.mutate(f);
        self.persist(v).await?;
        Ok(r)
    }

    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }

    /// Wakes on every mutation (coalesced: a reader sees only the newest).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Wait until version `v` (or newer) is saved.
    pub async fn persist(&self, v: u64) -> Result<(), PersistError> {
        let mut rx = self.persisted.subscribe();
        loop {
            {
                let p = rx.borrow_and_update();
                if p.version >= v {
                    return match &p.error {
                        Some(e) => Err(PersistError::Save(e.clone())),
                        None => Ok(()),
                    };
                }
            }
            rx.changed().await.map_err(|_| PersistError::Closed)?;
        }
    }

    /// Wait until everything mutated so far is saved.
    pub async fn flush(&self) -> Result<(), PersistError> {
        self.persist(self.version()).await
    }

    fn serialize(&self) -> Result<Zeroizing<Vec<u8>>, PersistError> {
        self.read(serde_json::to_vec)
            .map(Zeroizing::new)
            .map_err(|e| PersistError::Save(format!("could not serialize the state: {e}")))
    }

    /// Re-encrypt under a new password (new salt, new key). The old key is dropped.
    pub async fn change_password(
        &self,
        new_password: &[u8],
        params: KdfParams,
    ) -> Result<(), PersistError> {
        let mut sealed = self.sealed.lock().await;
        let plaintext = self.serialize()?;
        let key = sealed
            .file
            .change_password(&sealed.key, new_password, params, &plaintext)?;
        sealed.key = key;
        sealed.saved = Some(digest(&plaintext));
        Ok(())
    }
}

async fn persister(cell: Weak<StateCell>, mut versions: watch::Receiver<u64>) {
    loop {
        if versions.changed().await.is_err() {
            return;
        }
        let Some(cell) = cell.upgrade() else { return };
        let target = *versions.borrow_and_update();
        if target <= cell.persisted.borrow().version {
            continue;
        }
        let outcome = match cell.serialize() {
            Ok(bytes) => {
                let mut sealed = cell.sealed.clone().lock_owned().await;
                tokio::task::spawn_blocking(move || {
                    let hash = digest(&bytes);
                    if sealed.saved == Some(hash) {
                        return Ok(());
                    }
                    sealed
                        .file
                        .save(&sealed.key, &bytes)
                        .map(|_| sealed.saved = Some(hash))
                        .map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(format!("the save task failed: {e}")))
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "state save failed");
        }
        cell.persisted.send_replace(Persisted {
            version: target,
            error: outcome.err(),
        });
    }
}
