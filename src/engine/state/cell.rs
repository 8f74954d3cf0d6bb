//! The unlocked state in memory, and its persister.
//!
//! Every mutation bumps a version; a persister task writes the newest version, so a burst
//! of mutations becomes one write (group commit). Callers that need durability (execution
//! phases, plan edits) await [`StateCell::persist`] for their version. Readers take a
//! short read lock and never hold it across an await.
//!
//! A change reaches the disk one of two ways:
//! - a *keyed* change ([`StateCell::try_change`]: a plan edit, an import) names the
//!   resources it touched; their new values become one record appended to the journal
//!   (`journal`), a cost that does not grow with the fleet;
//! - any other mutation ([`StateCell::mutate`]) makes the next write a *full save* of the
//!   state file, which also empties the journal.
//!
//! The journal is compacted (a full save) when it outgrows the state file (at least
//! [`COMPACT_MIN_BYTES`]), so replaying it never costs more than reading the state, and
//! at [`StateCell::flush`] (logout, lock, the engine stopping), so a stopped Legion leaves
//! one self-contained state file. Whatever is captured for a write, snapshot or records,
//! is taken under the state lock together with the pending records, and written under the
//! file's lock: the journal never holds a change older than the state file it follows.
//!
//! A full save whose serialized state is byte-for-byte what the file already holds (and
//! with no journal to replace) is not written: a mutation that changed nothing (a
//! read-only command's bookkeeping) must not rotate the previous generation out of
//! `.bak`, nor fail on a full disk.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use tokio::sync::{Mutex, OwnedMutexGuard, watch};
use zeroize::Zeroizing;

use super::change::{Change, Key};
use super::crypto::{KdfParams, StateKey};
use super::journal::Journal;
use super::model::State;
use super::store::{StateFile, StoreError};

/// The journal is compacted once it is larger than this and than the state file.
pub const COMPACT_MIN_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq)]
struct Persisted {
    version: u64,
    error: Option<String>,
}

/// Changes made since the last write was captured.
#[derive(Default)]
struct Pending {
    /// A mutation the journal cannot describe: the next write is a full save.
    full: bool,
    /// Serialized [`Change`] lists, oldest first.
    records: Vec<Zeroizing<Vec<u8>>>,
    /// Their total size.
    bytes: u64,
}

/// The file, its journal and the key that seals both. Held behind one lock so a password
/// change, a compaction and an append never interleave.
struct Sealed {
    file: StateFile,
    key: StateKey,
    journal: Journal,
    /// SHA-256 of the plaintext the state file holds (as last opened or written), when
    /// known to equal a state this cell had.
    saved: Option<[u8; 32]>,
    /// Plaintext size of the state file, for the compaction threshold.
    snapshot_len: u64,
}

impl Sealed {
    fn journal_too_big(&self, adding: u64) -> bool {
        self.journal.bytes() + adding > COMPACT_MIN_BYTES.max(self.snapshot_len)
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

pub struct StateCell {
    state: RwLock<State>,
    /// Advanced by every change that is not keyed ([`StateCell::mutate`]): what is
    /// derived from parts of the state only such a change touches (the applied plan)
    /// stays valid while it holds.
    epoch: AtomicU64,
    /// What changed since the supervisor's state follower last looked.
    touched: std::sync::Mutex<Touched>,
    version: watch::Sender<u64>,
    persisted: watch::Sender<Persisted>,
    pending: std::sync::Mutex<Pending>,
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

/// Why one write did not reach the disk; the persister reports it to every waiter.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("could not serialize the state: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("the save task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What changed since [`StateCell::take_touched`] was last called: the keys of keyed
/// changes, or `all` after any other mutation (or too many keys to be worth listing).
#[derive(Debug, Default)]
pub struct Touched {
    pub all: bool,
    pub keys: HashSet<Key>,
}

/// Past this many keys a follower resyncs everything anyway.
const TOUCHED_MAX: usize = 4096;

impl Touched {
    fn all(&mut self) {
        self.all = true;
        self.keys.clear();
    }

    fn add(&mut self, keys: &[Key]) {
        if self.all {
            return;
        }
        self.keys.extend(keys.iter().cloned());
        if self.keys.len() > TOUCHED_MAX {
            self.all();
        }
    }
}

/// What one write does, captured under the state lock.
enum Work {
    Full(Zeroizing<Vec<u8>>),
    Append(Vec<Zeroizing<Vec<u8>>>),
}

impl StateCell {
    /// Wrap a state that is exactly what `file` holds, with no journal to replay, and
    /// start its persister on the current runtime.
    pub fn start(state: State, file: StateFile, key: StateKey) -> Arc<StateCell> {
        let journal = Journal::beside(&file);
        Self::start_opened(state, file, key, journal, true)
    }

    /// Wrap an opened state and start its persister. `clean`: `state` is byte-for-byte
    /// what the state file holds (no journal replayed, nothing migrated), so writing it
    /// again is skipped.
    pub fn start_opened(
        state: State,
        file: StateFile,
        key: StateKey,
        journal: Journal,
        clean: bool,
    ) -> Arc<StateCell> {
        let (version, _) = watch::channel(0);
        let (persisted, _) = watch::channel(Persisted::default());
        let bytes = serde_json::to_vec(&state).ok().map(Zeroizing::new);
        let snapshot_len = bytes.as_ref().map_or(0, |b| b.len() as u64);
        let saved = bytes.filter(|_| clean).map(|b| digest(&b));
        let cell = Arc::new(StateCell {
            state: RwLock::new(state),
            epoch: AtomicU64::new(0),
            touched: std::sync::Mutex::new(Touched {
                all: true,
                keys: HashSet::new(),
            }),
            version,
            persisted,
            pending: std::sync::Mutex::new(Pending::default()),
            sealed: Arc::new(Mutex::new(Sealed {
                file,
                key,
                journal,
                saved,
                snapshot_len,
            })),
        });
        tokio::spawn(persister(Arc::downgrade(&cell), cell.version.subscribe()));
        cell
    }

    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        let guard = self.state.read().unwrap_or_else(|e| e.into_inner());
        f(&guard)
    }

    /// [`StateCell::read`] with the state's epoch (see [`StateCell::epoch`]).
    pub fn read_at<R>(&self, f: impl FnOnce(&State, u64) -> R) -> R {
        let guard = self.state.read().unwrap_or_else(|e| e.into_inner());
        f(&guard, self.epoch.load(Ordering::Acquire))
    }

    /// Changes only when a change that is not keyed was made: the applied plan, the
    /// providers and anything else no [`Key`] names are the same under the same epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// What changed since the last call (the state follower's; at the start: all).
    pub fn take_touched(&self) -> Touched {
        std::mem::take(&mut *self.touched.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Called under the state's write lock: an unkeyed mutation.
    fn touched_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.touched.lock().unwrap_or_else(|e| e.into_inner()).all();
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) -> u64 {
        let mut v = 0;
        self.version.send_modify(|ver| {
            *ver += 1;
            v = *ver;
        });
        v
    }

    /// Apply a mutation in memory; returns its result and the version to persist. The
    /// next write is a full save.
    pub fn mutate<R>(&self, f: impl FnOnce(&mut State) -> R) -> (R, u64) {
        let result = {
            let mut guard = self.state.write().unwrap_or_else(|e| e.into_inner());
            let r = f(&mut guard);
            self.pending().full = true;
            self.touched_all();
            r
        };
        (result, self.bump())
    }

    /// Like [`StateCell::mutate`], but an `Err` leaves the version alone: nothing to save,
    /// nobody woken. The closure must not have changed the state when it fails.
    pub fn try_mutate<R, E>(
        &self,
        f: impl FnOnce(&mut State) -> Result<R, E>,
    ) -> Result<(R, u64), E> {
        let result = {
            let mut guard = self.state.write().unwrap_or_else(|e| e.into_inner());
            let r = f(&mut guard)?;
            self.pending().full = true;
            self.touched_all();
            r
        };
        Ok((result, self.bump()))
    }

    /// A change that touches only `keys`, made in place: the closure validates first and
    /// changes the state only when it returns `Ok` (there is no copy to roll back to). Its
    /// save is one journal record holding those resources' new values.
    pub fn try_change<R, E>(
        &self,
        keys: &[Key],
        f: impl FnOnce(&mut State) -> Result<R, E>,
    ) -> Result<(R, u64), E> {
        let result = {
            let mut guard = self.state.write().unwrap_or_else(|e| e.into_inner());
            let r = f(&mut guard)?;
            self.touched
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .add(keys);
            let mut pending = self.pending();
            // A full save is due anyway: it will hold this change.
            if !pending.full {
                let changes: Vec<Change> = keys.iter().map(|k| k.capture(&guard)).collect();
                match serde_json::to_vec(&changes) {
                    Ok(bytes) => {
                        pending.bytes += bytes.len() as u64;
                        pending.records.push(Zeroizing::new(bytes));
                    }
                    Err(_) => pending.full = true,
                }
            }
            r
        };
        Ok((result, self.bump()))
    }

    /// A change that touches only `keys` and cannot be refused (an execution's phase, an
    /// observation): [`StateCell::try_change`] without the refusal. `keys` must name
    /// everything `f` changes, or a replay of the journal would miss it.
    pub fn change<R>(&self, keys: &[Key], f: impl FnOnce(&mut State) -> R) -> (R, u64) {
        match self.try_change(keys, |s| Ok::<R, std::convert::Infallible>(f(s))) {
            Ok(done) => done,
            Err(never) => match never {},
        }
    }

    /// [`StateCell::change`] and wait until it is on disk (a journal append, amortised
    /// O(1), rather than a full save).
    pub async fn commit_keys<R>(
        &self,
        keys: &[Key],
        f: impl FnOnce(&mut State) -> R,
    ) -> Result<R, PersistError> {
        let (r, v) = self.change(keys, f);
        self.persist(v).await?;
        Ok(r)
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

    /// Wait until everything mutated so far is saved, then fold the journal into the
    /// state file (a stopped Legion leaves one self-contained file).
    pub async fn flush(self: &Arc<Self>) -> Result<(), PersistError> {
        self.persist(self.version()).await?;
        let sealed = self.sealed.clone().lock_owned().await;
        if sealed.journal.records() == 0 && !sealed.journal.is_broken() {
            return Ok(());
        }
        write(self.clone(), sealed, true)
            .await
            .map_err(|e| PersistError::Save(e.to_string()))
    }

    /// Capture what the next write does. Under the state lock, so no change can fall
    /// between the snapshot and the records that follow it.
    fn capture(&self, sealed: &Sealed, compact: bool) -> Result<Work, WriteError> {
        let guard = self.state.read().unwrap_or_else(|e| e.into_inner());
        let mut pending = self.pending();
        let full = compact
            || pending.full
            || sealed.journal.is_broken()
            || (!pending.records.is_empty() && sealed.journal_too_big(pending.bytes));
        if !full {
            pending.bytes = 0;
            return Ok(Work::Append(std::mem::take(&mut pending.records)));
        }
        let bytes = serde_json::to_vec(&*guard).map(Zeroizing::new)?;
        *pending = Pending::default();
        Ok(Work::Full(bytes))
    }

    /// A write failed: what it had taken is not on disk, so the next write is full.
    fn write_failed(&self) {
        self.pending().full = true;
    }

    /// Re-encrypt under a new password (new salt, new key). The old key is dropped, and
    /// the journal (sealed with it) is folded in and removed.
    pub async fn change_password(
        &self,
        new_password: &[u8],
        params: KdfParams,
    ) -> Result<(), PersistError> {
        let mut sealed = self.sealed.lock().await;
        let plaintext = match self.capture(&sealed, true) {
            Ok(Work::Full(bytes)) => bytes,
            Ok(Work::Append(_)) => return Err(PersistError::Save("nothing captured".into())),
            Err(e) => {
                self.write_failed();
                return Err(PersistError::Save(e.to_string()));
            }
        };
        let sealed = &mut *sealed;
        let key = match sealed
            .file
            .change_password(&sealed.key, new_password, params, &plaintext)
        {
            Ok(key) => key,
            Err(e) => {
                self.write_failed();
                return Err(e.into());
            }
        };
        sealed.key = key;
        sealed.saved = Some(digest(&plaintext));
        sealed.snapshot_len = plaintext.len() as u64;
        sealed.journal.discard();
        Ok(())
    }
}

/// One write, off the async workers: a full save (serializing a large state takes a
/// while) or an append.
async fn write(
    cell: Arc<StateCell>,
    mut sealed: OwnedMutexGuard<Sealed>,
    compact: bool,
) -> Result<(), WriteError> {
    tokio::task::spawn_blocking(move || {
        let result = write_blocking(&cell, &mut sealed, compact);
        if result.is_err() {
            cell.write_failed();
        }
        result
    })
    .await
    .unwrap_or_else(|e| Err(WriteError::from(e)))
}

fn write_blocking(cell: &StateCell, sealed: &mut Sealed, compact: bool) -> Result<(), WriteError> {
    match cell.capture(sealed, compact)? {
        Work::Append(records) => sealed
            .journal
            .append(&sealed.key, &records)
            .map_err(WriteError::from),
        Work::Full(bytes) => {
            let hash = digest(&bytes);
            let journal_empty = sealed.journal.records() == 0 && !sealed.journal.is_broken();
            if sealed.saved == Some(hash) && journal_empty {
                return Ok(());
            }
            sealed.file.save(&sealed.key, &bytes)?;
            sealed.saved = Some(hash);
            sealed.snapshot_len = bytes.len() as u64;
            // The state file now holds everything the journal did.
            sealed.journal.discard();
            Ok(())
        }
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
        let sealed = cell.sealed.clone().lock_owned().await;
        let outcome = write(cell.clone(), sealed, false).await;
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "state save failed");
        }
        cell.persisted.send_replace(Persisted {
            version: target,
            error: outcome.err().map(|e| e.to_string()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::crypto::KdfParams;
    use crate::engine::state::model::{Execution, ExecutionKind, ServerReading, TrackedNode};
    use crate::engine::state::open::open;

    /// An actor's keyed save (an execution's phase, a reading) is a journal append: the
    /// state file keeps its bytes, and opening the home replays the change.
    #[tokio::test]
    async fn a_keyed_commit_appends_to_the_journal_and_is_replayed() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state = State::new("i".into());
        let file = StateFile::in_home(dir.path());
        let fast = KdfParams {
            m_cost_kib: 1024,
            t_cost: 1,
            p_cost: 1,
        };
        let bytes = serde_json::to_vec(&state).unwrap_or_else(|e| panic!("{e}"));
        let key = file
            .create(b"pw", fast, &bytes)
            .unwrap_or_else(|e| panic!("{e}"));
        let before = std::fs::read(file.path()).unwrap_or_else(|e| panic!("{e}"));
        let cell = StateCell::start(state, StateFile::in_home(dir.path()), key);
        let keys = [
            Key::TrackedNode("web-1".into()),
            Key::ObservedServer("web-1".into()),
            Key::NextExecutionId,
        ];
        cell.commit_keys(&keys, |s| {
            s.tracked.nodes.insert(
                "web-1".into(),
                TrackedNode {
                    uid: "u1".into(),
                    provider: "mock".into(),
                    server_id: Some("sv-1".into()),
                    ipv4: None,
                    ipv6: None,
                    region: "r".into(),
                    offer: "o".into(),
                    image: "i".into(),
                    host_key: None,
                    configured_membership: None,
                    configured_peers: None,
                    login: None,
                    image_user: None,
                    execution: Some(Execution::new(1, ExecutionKind::Add)),
                },
            );
            s.observed.servers.insert(
                "web-1".into(),
                ServerReading {
                    at_ms: 1,
                    server: None,
                },
            );
            s.next_execution_id = 2;
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let after = std::fs::read(file.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            before, after,
            "a keyed change must not rewrite the state file"
        );
        let opened = open(&file, b"pw").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(opened.replayed, 1);
        let s = opened.state;
        assert!(s.tracked.nodes["web-1"].execution.is_some());
        assert!(s.observed.servers.contains_key("web-1"));
        assert_eq!(s.next_execution_id, 2);
        let touched = cell.take_touched();
        assert!(touched.all, "nothing had looked since the start");
        assert_eq!(cell.epoch(), 0, "a keyed change leaves the epoch");
        cell.mutate(|s| s.next_apply_id = 5);
        assert_eq!(cell.epoch(), 1);
        let (_, _) = cell.change(&[Key::NextExecutionId], |s| s.next_execution_id = 3);
        let touched = cell.take_touched();
        assert!(touched.all, "an unkeyed change touches everything");
        cell.change(&[Key::NextExecutionId], |s| s.next_execution_id = 4);
        let touched = cell.take_touched();
        assert!(!touched.all);
        assert_eq!(touched.keys, HashSet::from([Key::NextExecutionId]));
    }
}
