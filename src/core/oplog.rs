//! The operation log: every provider write and every actor transition, in order.
//!
//! Entries go to a bounded in-memory ring (what faces show and stream) and, when a Legion
//! home is attached, to `logs/operations.jsonl`. The log never holds request bodies or
//! credentials: callers pass only operation names, resource names and normalized errors.
//! The file rotates past [`ROTATE_BYTES`] (`.1` the newest of [`ROTATED_KEPT`] old ones),
//! so a daemon that runs for months does not fill the disk.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use super::time::now_ms;

pub const DEFAULT_RING: usize = 10_000;
/// Size past which `operations.jsonl` is rotated, at attach and while writing.
pub const ROTATE_BYTES: u64 = 8 << 20;
/// Rotated operation logs kept (`operations.jsonl.1` … `.3`).
pub const ROTATED_KEPT: u32 = 3;

/// Opens the log for appending, 0600 from creation, rotating it first when it is full;
/// returns the file and its size.
fn open_log(path: &std::path::Path) -> std::io::Result<(std::fs::File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    if std::fs::metadata(path).is_ok_and(|m| m.len() >= ROTATE_BYTES) {
        rotate(path);
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let len = file.metadata()?.len();
    Ok((file, len))
}

/// `path.2` → `path.3`, `path.1` → `path.2`, `path` → `path.1`; the oldest is replaced.
/// Best effort: a failed rename only means the file grows on.
fn rotate(path: &std::path::Path) {
    let numbered = |i: u32| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{i}"));
        PathBuf::from(name)
    };
    for i in (1..ROTATED_KEPT).rev() {
        let _ = std::fs::rename(numbered(i), numbered(i + 1));
    }
    let _ = std::fs::rename(path, numbered(1));
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OpKind {
    /// A provider POST/PUT/PATCH/DELETE (or the simulated equivalent).
    ProviderWrite {
        provider: String,
        method: String,
        path: String,
        duration_ms: u64,
        outcome: WriteOutcome,
    },
    /// An actor changed state.
    Transition {
        from: String,
        to: String,
    },
    /// An operator action, accepted or refused.
    Action {
        action: String,
        accepted: bool,
    },
    Apply,
    Info,
    Warn,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOutcome {
    Ok,
    /// The call failed ambiguously and a read-back proved the desired state.
    Recovered,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpEntry {
    pub seq: u64,
    pub ts_ms: u64,
    /// `node/web-1`, `zone/example.com`, `firewall/prod`, `provider/mock`.
    pub resource: Option<String>,
    #[serde(flatten)]
    pub kind: OpKind,
    pub message: String,
}

struct Inner {
    ring: Mutex<VecDeque<Arc<OpEntry>>>,
    capacity: usize,
    seq: AtomicU64,
    tx: broadcast::Sender<Arc<OpEntry>>,
    file: Mutex<Option<mpsc::UnboundedSender<Arc<OpEntry>>>>,
}

/// Cheap to clone; every clone writes to the same log.
#[derive(Clone)]
pub struct OpLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OpLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpLog")
            .field("capacity", &self.inner.capacity)
            .finish()
    }
}

impl Default for OpLog {
    fn default() -> Self {
        OpLog::new(DEFAULT_RING)
    }
}

impl OpLog {
    pub fn new(capacity: usize) -> OpLog {
        let (tx, _) = broadcast::channel(1024);
        OpLog {
            inner: Arc::new(Inner {
                ring: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
                capacity: capacity.max(1),
                seq: AtomicU64::new(0),
                tx,
                file: Mutex::new(None),
            }),
        }
    }

    /// Also append every entry as one JSON line to `path`. The writer runs on its own
    /// blocking thread so logging never waits on the disk.
    pub fn attach_file(&self, path: PathBuf) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let (mut file, mut size) = open_log(&path)?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Arc<OpEntry>>();
        std::thread::Builder::new()
            .name("legion-oplog".into())
            .spawn(move || {
                while let Some(entry) = rx.blocking_recv() {
                    let mut batch = vec![entry];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    let mut buf = Vec::with_capacity(batch.len() * 160);
                    for e in &batch {
                        if serde_json::to_writer(&mut buf, e.as_ref()).is_ok() {
                            buf.push(b'\n');
                        }
                    }
                    if let Err(err) = file.write_all(&buf) {
                        tracing::warn!(%err, "operation log file write failed");
                    }
                    size += buf.len() as u64;
                    if size >= ROTATE_BYTES {
                        match open_log(&path) {
                            Ok((f, len)) => (file, size) = (f, len),
                            Err(err) => tracing::warn!(%err, "operation log rotation failed"),
                        }
                    }
                }
            })?;
        if let Ok(mut slot) = self.inner.file.lock() {
            *slot = Some(tx);
        }
        Ok(())
    }

    /// Stop writing to the file (on logout); the ring stays.
    pub fn detach_file(&self) {
        if let Ok(mut slot) = self.inner.file.lock() {
            *slot = None;
        }
    }

    pub fn record(&self, resource: Option<String>, kind: OpKind, message: impl Into<String>) {
        let entry = Arc::new(OpEntry {
            seq: self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1,
            ts_ms: now_ms(),
            resource,
            kind,
            message: message.into(),
        });
        if let Ok(mut ring) = self.inner.ring.lock() {
            if ring.len() == self.inner.capacity {
                ring.pop_front();
            }
            ring.push_back(entry.clone());
        }
        if let Ok(slot) = self.inner.file.lock()
            && let Some(tx) = slot.as_ref()
        {
            let _ = tx.send(entry.clone());
        }
        // No receivers is normal (nobody is following the log).
        let _ = self.inner.tx.send(entry);
    }

    pub fn info(&self, resource: Option<String>, message: impl Into<String>) {
        self.record(resource, OpKind::Info, message);
    }

    pub fn warn(&self, resource: Option<String>, message: impl Into<String>) {
        self.record(resource, OpKind::Warn, message);
    }

    /// The newest `limit` entries, oldest first, optionally only one resource's.
    pub fn recent(&self, limit: usize, resource: Option<&str>) -> Vec<Arc<OpEntry>> {
        let Ok(ring) = self.inner.ring.lock() else {
            return Vec::new();
        };
        let mut out: Vec<_> = ring
            .iter()
            .rev()
            .filter(|e| resource.is_none_or(|r| e.resource.as_deref() == Some(r)))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<OpEntry>> {
        self.inner.tx.subscribe()
    }

    pub fn len(&self) -> usize {
        self.inner.ring.lock().map(|r| r.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_operation_log_rotates_and_keeps_three() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("operations.jsonl");
        for round in 0..5u64 {
            // Sparse: the size counts, not the blocks.
            let f = std::fs::File::create(&path).unwrap();
            f.set_len(ROTATE_BYTES + round).unwrap();
            drop(f);
            let (_, len) = open_log(&path).unwrap();
            assert_eq!(len, 0, "round {round}: a fresh file after rotation");
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let len = |i: u32| std::fs::metadata(dir.path().join(format!("operations.jsonl.{i}")));
        assert_eq!(len(1).unwrap().len(), ROTATE_BYTES + 4, ".1 is the newest");
        assert_eq!(len(3).unwrap().len(), ROTATE_BYTES + 2);
        assert!(len(4).is_err(), "only {ROTATED_KEPT} kept");
    }

    #[test]
    fn ring_is_bounded_and_filters_by_resource() {
        let log = OpLog::new(3);
        for i in 0..5 {
            log.info(Some(format!("node/n{}", i % 2)), format!("m{i}"));
        }
        assert_eq!(log.len(), 3);
        let all: Vec<_> = log.recent(10, None).iter().map(|e| e.seq).collect();
        assert_eq!(all, vec![3, 4, 5]);
        let n0: Vec<_> = log
            .recent(10, Some("node/n0"))
            .iter()
            .map(|e| e.message.clone())
            .collect();
        assert_eq!(n0, vec!["m2", "m4"]);
    }
}
