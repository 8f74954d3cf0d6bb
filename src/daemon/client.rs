//! The client side: [`Remote`] offers the engine's API over the daemon's socket.
//!
//! One connection carries every call (answered by id, so calls may overlap). Connecting
//! reads the daemon's status and provider descriptors and nothing else: a command that
//! only writes makes its call and exits without ever receiving a snapshot. Readers ask
//! for the current snapshot once ([`Remote::current`]); `apply --wait` follows a small
//! progress stream ([`Remote::follow_apply`]). Only what watches the fleet live (the
//! dashboard, `nodes … --wait`, `logs --follow`) subscribes, on first use, keeping a local
//! `watch` of snapshots and a broadcast of log entries: faces then wait on snapshots
//! exactly as they do with an engine in their own process. Nothing is sent before the
//! socket's files and the daemon's uid are checked.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::endpoint::check_peer;
use super::protocol::{ApplyProgress, DaemonStatus, Incoming, PROTOCOL, Request, WireError};
use super::{Endpoint, Line, MAX_RESPONSE, Probe, read_line};
use crate::core::oplog::OpEntry;
use crate::core::secret::Secret;
use crate::engine::api::{EngineApi, Transport, reply};
use crate::engine::snapshot::{AppSnapshot, LockState};
use crate::engine::wait;
use crate::engine::{EngineError, ErrorKind};
use crate::providers::Descriptor;

/// Calls waiting for their reply; `None` once the connection has ended, so a call made
/// after that fails at once instead of waiting for a reply that cannot come.
type Pending = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Result<Value, WireError>>>>>>;

/// Where the `progress` events of a followed apply go, by call id.
type Progress = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<ApplyProgress>>>>;

/// A connection to the daemon. Cheap to clone; the connection closes with the last clone.
#[derive(Clone)]
pub struct Remote {
    conn: Arc<Conn>,
    /// What the daemon said about itself when we connected.
    status: Arc<DaemonStatus>,
    descriptors: Arc<Vec<Descriptor>>,
}

/// The socket: calls out, replies and events in.
struct Conn {
    out: mpsc::Sender<String>,
    pending: Pending,
    next: AtomicU64,
    token: Secret,
    snapshots: watch::Receiver<Arc<AppSnapshot>>,
    logs: broadcast::Sender<Arc<OpEntry>>,
    progress: Progress,
    /// Set once the snapshot subscription has delivered its first snapshot.
    watching: tokio::sync::OnceCell<()>,
    /// Set once the log subscription is in place.
    following: tokio::sync::OnceCell<()>,
    home: PathBuf,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Why the daemon cannot be used, in words an operator can act on.
pub fn unavailable(endpoint: &Endpoint, detail: &str) -> EngineError {
    let why = match endpoint.probe() {
        Probe::Absent => "no daemon runs for this home (start one: legion daemon start)".into(),
        Probe::Stale(meta) => format!(
            "a stale socket{} is left from a daemon that no longer runs; `legion daemon start` \
             cleans it up",
            meta.map(|m| format!(" (pid {})", m.pid))
                .unwrap_or_default()
        ),
        Probe::Running(_) => detail.to_string(),
    };
    EngineError::Unavailable(why)
}

impl Remote {
    /// Connect, authenticate, and read the daemon's status and providers (no snapshot).
    pub async fn connect(
        endpoint: &Endpoint,
        home: PathBuf,
        token: Secret,
    ) -> Result<Remote, EngineError> {
        let stream = UnixStream::connect(&endpoint.socket)
            .await
            .map_err(|e| unavailable(endpoint, &e.to_string()))?;
        // Who answers, before the token goes out: the files must be ours and private,
        // and the process on the other end (as the kernel says) must be us.
        endpoint
            .check()
            .and_then(|()| check_peer(&stream, &endpoint.socket))
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        let (rd, mut wr) = stream.into_split();
        let (out, mut out_rx) = mpsc::channel::<String>(64);
        let writer = tokio::spawn(async move {
            while let Some(line) = out_rx.recv().await {
                if wr.write_all(line.as_bytes()).await.is_err()
                    || wr.write_all(b"\n").await.is_err()
                {
                    return;
                }
            }
        });
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let (snap_tx, snapshots) = watch::channel(Arc::new(AppSnapshot::empty(
            home.display().to_string(),
            LockState::Locked,
        )));
        let (logs, _) = broadcast::channel(4096);
        let progress: Progress = Arc::default();
        let reader = tokio::spawn(read_replies(
            rd,
            pending.clone(),
            snap_tx,
            logs.clone(),
            progress.clone(),
        ));
        let conn = Arc::new(Conn {
            out,
            pending,
            next: AtomicU64::new(1),
            token,
            snapshots,
            logs,
            progress,
            watching: tokio::sync::OnceCell::new(),
            following: tokio::sync::OnceCell::new(),
            home,
            tasks: vec![reader, writer],
        });
        // A daemon dying as we connect closes the connection before the first reply:
        // say what is left of it (a stale socket, or nothing).
        let status: DaemonStatus = conn
            .call("status", Value::Null)
            .await
            .map_err(|e| match e {
                EngineError::Unavailable(detail) => unavailable(endpoint, &detail),
                other => other,
            })?;
        if status.protocol != PROTOCOL {
            return Err(EngineError::Unavailable(format!(
                "the daemon (pid {}, version {}) speaks protocol {}, this legion speaks {}; \
                 restart the daemon",
                status.pid, status.version, status.protocol, PROTOCOL
            )));
        }
        let mut remote = Remote {
            conn,
            status: Arc::new(status),
            descriptors: Arc::new(Vec::new()),
        };
        remote.descriptors = Arc::new(remote.providers().await?);
        Ok(remote)
    }

    /// Subscribe to snapshots (once per connection) and wait for the first one; from
    /// then on [`Remote::snapshots`] and [`Remote::snapshot`] follow the daemon.
    pub async fn watch(&self) -> Result<(), EngineError> {
        self.conn
            .watching
            .get_or_try_init(|| async {
                let mut first = self.conn.snapshots.clone();
                first.mark_unchanged();
                self.conn
                    .call::<Value>("subscribe", serde_json::json!({"snapshots": true}))
                    .await?;
                first.changed().await.map_err(|_| closed())
            })
            .await
            .map(|_| ())
    }

    /// Subscribe to operation-log entries (once per connection); from then on
    /// [`Remote::subscribe_logs`] receives them.
    pub async fn follow_logs(&self) -> Result<(), EngineError> {
        self.conn
            .following
            .get_or_try_init(|| async {
                self.conn
                    .call::<Value>("subscribe", serde_json::json!({"logs": true}))
                    .await
                    .map(drop)
            })
            .await
            .map(|_| ())
    }

    /// The daemon's current snapshot: the live one when subscribed, else one `snapshot`
    /// call (no subscription).
    pub async fn current(&self) -> Result<Arc<AppSnapshot>, EngineError> {
        if self.conn.watching.initialized() {
            return Ok(self.snapshot());
        }
        self.conn
            .call::<AppSnapshot>("snapshot", Value::Null)
            .await
            .map(Arc::new)
    }

    /// Follow apply `id` to its end on the daemon's small progress stream; `seen` gets
    /// each progress event. Returns the last progress, with `node`'s row if asked.
    pub async fn follow_apply(
        &self,
        id: u64,
        node: Option<&str>,
        mut seen: impl FnMut(&ApplyProgress),
    ) -> Result<ApplyProgress, EngineError> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let call_id = self.conn.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut p) = self.conn.progress.lock() {
            p.insert(call_id, tx);
        }
        let params = serde_json::json!({"apply": id, "node": node});
        let reply = self
            .conn
            .call_with_id::<ApplyProgress>(call_id, "apply_progress", params);
        tokio::pin!(reply);
        let outcome = loop {
            tokio::select! {
                done = &mut reply => break done,
                Some(p) = rx.recv() => seen(&p),
            }
        };
        if let Ok(mut p) = self.conn.progress.lock() {
            p.remove(&call_id);
        }
        outcome
    }

    pub fn status(&self) -> &DaemonStatus {
        &self.status
    }

    /// The daemon's current status (client count, requests served).
    pub async fn fresh_status(&self) -> Result<DaemonStatus, EngineError> {
        self.conn.call("status", Value::Null).await
    }

    pub fn home(&self) -> &PathBuf {
        &self.conn.home
    }

    /// The snapshots received: live only after [`Remote::watch`] (before, a placeholder).
    pub fn snapshots(&self) -> wait::Snapshots {
        self.conn.snapshots.clone()
    }

    /// The last snapshot received: live only after [`Remote::watch`]; a command that
    /// reads once asks [`Remote::current`].
    pub fn snapshot(&self) -> Arc<AppSnapshot> {
        self.conn.snapshots.borrow().clone()
    }

    /// Log entries: they arrive only after [`Remote::follow_logs`].
    pub fn subscribe_logs(&self) -> broadcast::Receiver<Arc<OpEntry>> {
        self.conn.logs.subscribe()
    }

    /// The provider descriptors the daemon offered when we connected.
    pub fn provider_descriptors(&self) -> Vec<Descriptor> {
        self.descriptors.to_vec()
    }

    /// Ask the daemon to save, lock and exit.
    pub async fn shutdown(&self) -> Result<(), EngineError> {
        self.conn
            .call::<Value>("shutdown", Value::Null)
            .await
            .map(drop)
    }

    pub async fn wait_for(
        &self,
        pred: impl FnMut(&AppSnapshot) -> bool,
    ) -> Result<Arc<AppSnapshot>, EngineError> {
        self.watch().await?;
        wait::until(self.snapshots(), pred, closed).await
    }
}

fn closed() -> EngineError {
    EngineError::Unavailable("the daemon closed the connection".into())
}

/// Every engine call goes over the one connection (see `crate::engine::api`).
impl Transport for Remote {
    async fn call_raw(&self, method: &'static str, params: Value) -> Result<Value, EngineError> {
        self.conn.call(method, params).await
    }
}

impl Conn {
    /// Send one call and wait for its reply.
    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, EngineError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.call_with_id(id, method, params).await
    }

    /// [`Conn::call`] under an id the caller took (to route its events).
    async fn call_with_id<T: DeserializeOwned>(
        &self,
        id: u64,
        method: &str,
        params: Value,
    ) -> Result<T, EngineError> {
        let (tx, rx) = oneshot::channel();
        let lost = || EngineError::Unavailable("the daemon closed the connection".into());
        match self.pending.lock().as_deref_mut() {
            Ok(Some(p)) => {
                p.insert(id, tx);
            }
            _ => return Err(lost()),
        }
        let line = serde_json::to_string(&Request {
            id,
            token: self.token.clone(),
            method: method.to_string(),
            params,
        })
        .map_err(|e| EngineError::Remote {
            kind: ErrorKind::Internal,
            message: e.to_string(),
        })?;
        self.out.send(line).await.map_err(|_| lost())?;
        let value = rx.await.map_err(|_| lost())??;
        reply(value)
    }
}

/// Route replies to their callers and events to the watch and the broadcast. When the
/// connection ends every pending call fails and the snapshot watch closes.
async fn read_replies(
    rd: tokio::net::unix::OwnedReadHalf,
    pending: Pending,
    snapshots: watch::Sender<Arc<AppSnapshot>>,
    logs: broadcast::Sender<Arc<OpEntry>>,
    progress: Progress,
) {
    let mut rd = BufReader::with_capacity(64 << 10, rd);
    let mut partial = Vec::new();
    let mut closing: Option<WireError> = None;
    loop {
        let bytes = match read_line(&mut rd, &mut partial, MAX_RESPONSE).await {
            Ok(Line::Complete(b)) => b,
            Ok(Line::TooLong) => {
                closing = Some(WireError::new(
                    ErrorKind::TooLarge,
                    "the daemon sent a line longer than a reply may be",
                ));
                break;
            }
            Ok(Line::Eof) | Err(_) => break,
        };
        let Ok(msg) = serde_json::from_slice::<Incoming>(&bytes) else {
            continue;
        };
        match (msg.event.as_deref(), msg.id) {
            (Some("snapshot"), _) => {
                if let Some(snap) = msg
                    .data
                    .and_then(|d| serde_json::from_value::<AppSnapshot>(d).ok())
                {
                    snapshots.send_replace(Arc::new(snap));
                }
            }
            (Some("log"), _) => {
                if let Some(entry) = msg
                    .data
                    .and_then(|d| serde_json::from_value::<OpEntry>(d).ok())
                {
                    let _ = logs.send(Arc::new(entry));
                }
            }
            (Some("progress"), Some(id)) => {
                let to = progress.lock().ok().and_then(|p| p.get(&id).cloned());
                if let Some(to) = to
                    && let Some(p) = msg
                        .data
                        .and_then(|d| serde_json::from_value::<ApplyProgress>(d).ok())
                {
                    let _ = to.send(p);
                }
            }
            (Some(_), _) => {}
            (None, Some(id)) => {
                let waiter = pending
                    .lock()
                    .ok()
                    .and_then(|mut p| p.as_mut().and_then(|p| p.remove(&id)));
                if let Some(w) = waiter {
                    let _ = w.send(match msg.error {
                        Some(e) => Err(e),
                        None => Ok(msg.result.unwrap_or(Value::Null)),
                    });
                }
            }
            // An error without an id is about the connection (bad token, busy).
            (None, None) => {
                if let Some(e) = msg.error {
                    closing = Some(e);
                }
            }
        }
    }
    let reason = closing.unwrap_or_else(|| {
        WireError::new(ErrorKind::Unavailable, "the daemon closed the connection")
    });
    let waiting = pending.lock().ok().and_then(|mut p| p.take());
    for (_, w) in waiting.into_iter().flatten() {
        let _ = w.send(Err(reason.clone()));
    }
}
