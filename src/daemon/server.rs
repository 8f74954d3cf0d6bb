//! The daemon's side of the socket: accept, authenticate, dispatch to the engine.
//!
//! Each connection has a reader (this task) and a writer task fed by a bounded channel.
//! Calls run concurrently (at most [`MAX_IN_FLIGHT`] per connection) and answer by id;
//! subscriptions forward snapshots (a slow reader skips to the newest) and log entries
//! (a slow reader is told how many it missed). Nothing here logs request contents.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, Semaphore, broadcast, mpsc};
use tokio::task::JoinSet;

use super::protocol::{
    DaemonCall, DaemonStatus, PROTOCOL, Request, WireError, error_line, reply_line,
};
use super::{Endpoint, Line, MAX_CLIENTS, MAX_IN_FLIGHT, MAX_REQUEST, MAX_RESPONSE, read_line};
use crate::core::secret::Secret;
use crate::engine::snapshot::{AppSnapshot, LockState};
use crate::engine::{Engine, ErrorKind, api};

/// Bind the endpoint's socket (0600, in its 0700 directory). The caller has made sure
/// no live daemon owns it; a leftover file is removed first.
pub fn bind(endpoint: &Endpoint) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    endpoint.prepare()?;
    let _ = std::fs::remove_file(&endpoint.socket);
    let listener = UnixListener::bind(&endpoint.socket)?;
    std::fs::set_permissions(&endpoint.socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub struct Daemon {
    engine: Engine,
    token: Secret,
    endpoint: Endpoint,
    started: u64,
    clients: AtomicUsize,
    requests: AtomicU64,
    stop: Notify,
    /// The newest snapshot serialized once, shared by every subscriber and caller.
    cache: std::sync::Mutex<Option<(u64, Arc<String>)>>,
}

impl Daemon {
    pub fn new(engine: Engine, token: Secret, endpoint: Endpoint) -> Arc<Daemon> {
        Arc::new(Daemon {
            engine,
            token,
            endpoint,
            started: super::now_secs(),
            clients: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            stop: Notify::new(),
            cache: std::sync::Mutex::new(None),
        })
    }

    /// Ask [`Daemon::serve`] to return (as a `shutdown` request does).
    pub fn stop(&self) {
        self.stop.notify_one();
    }

    /// Serve until stopped; connections still open are dropped with the runtime.
    pub async fn serve(self: &Arc<Self>, listener: UnixListener) {
        loop {
            tokio::select! {
                () = self.stop.notified() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let this = self.clone();
                        tokio::spawn(async move { this.connection(stream).await });
                    }
                    Err(e) => {
                        tracing::warn!("daemon accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }

    fn status(&self) -> DaemonStatus {
        DaemonStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: PROTOCOL,
            pid: std::process::id(),
            endpoint: self.endpoint.socket.display().to_string(),
            started: self.started,
            clients: self.clients.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }

    /// The snapshot as JSON, serialized at most once per publication.
    async fn snapshot_json(&self, snap: Arc<AppSnapshot>) -> Result<Arc<String>, WireError> {
        if let Ok(cache) = self.cache.lock()
            && let Some((seq, json)) = &*cache
            && *seq == snap.seq
        {
            return Ok(json.clone());
        }
        let seq = snap.seq;
        // Large fleets make this tens of milliseconds: off the async workers.
        let json = tokio::task::spawn_blocking(move || serde_json::to_string(&*snap))
            .await
            .map_err(|e| WireError::new(ErrorKind::Internal, e.to_string()))?
            .map_err(|e| WireError::new(ErrorKind::Internal, e.to_string()))?;
        let json = Arc::new(json);
        if let Ok(mut cache) = self.cache.lock()
            && cache.as_ref().is_none_or(|(s, _)| *s < seq)
        {
            *cache = Some((seq, json.clone()));
        }
        Ok(json)
    }

    async fn connection(self: Arc<Self>, stream: UnixStream) {
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::channel::<String>(64);
        let writer = tokio::spawn(write_lines(wr, rx));
        let _count = ClientCount::enter(&self.clients);
        if self.clients.load(Ordering::Relaxed) > MAX_CLIENTS {
            let e = WireError::new(
                ErrorKind::Busy,
                "the daemon serves too many clients; try again",
            );
            let _ = tx.send(error_line(None, &e)).await;
        } else {
            self.read_requests(rd, &tx).await;
        }
        drop(tx);
        let _ = writer.await;
    }

    async fn read_requests(self: &Arc<Self>, rd: tokio::net::unix::OwnedReadHalf, tx: &Out) {
        let mut rd = BufReader::new(rd);
        let mut tasks = JoinSet::new();
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        loop {
            // Reap finished calls so the set does not grow on a long connection.
            while tasks.try_join_next().is_some() {}
            let bytes = match read_line(&mut rd, MAX_REQUEST).await {
                Ok(Line::Complete(b)) => b,
                Ok(Line::TooLong) => {
                    let e = WireError::new(
                        ErrorKind::TooLarge,
                        format!("a request may be at most {MAX_REQUEST} bytes; closing"),
                    );
                    let _ = tx.send(error_line(None, &e)).await;
                    break;
                }
                Ok(Line::Eof) | Err(_) => break,
            };
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let value: Value = match serde_json::from_slice(&bytes) {
                Ok(v @ Value::Object(_)) => v,
                Ok(_) => {
                    let e = WireError::new(ErrorKind::BadRequest, "a request is one JSON object");
                    let _ = tx.send(error_line(None, &e)).await;
                    continue;
                }
                Err(e) => {
                    let e = WireError::new(ErrorKind::BadRequest, format!("not JSON: {e}"));
                    let _ = tx.send(error_line(None, &e)).await;
                    continue;
                }
            };
            let id = value.get("id").and_then(Value::as_u64);
            let authorized = value
                .get("token")
                .and_then(Value::as_str)
                .is_some_and(|t| super::token_matches(&self.token, t));
            if !authorized {
                let e = WireError::new(ErrorKind::Unauthorized, "invalid or missing daemon token");
                let _ = tx.send(error_line(id, &e)).await;
                break;
            }
            let request: Request = match serde_json::from_value(value) {
                Ok(r) => r,
                Err(e) => {
                    let e = WireError::new(ErrorKind::BadRequest, e.to_string());
                    let _ = tx.send(error_line(id, &e)).await;
                    continue;
                }
            };
            self.requests.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(method = request.method(), "daemon request");
            let Request {
                id, method, params, ..
            } = request;
            match DaemonCall::parse(&method, &params) {
                Some(Err(e)) => {
                    let e = WireError::new(ErrorKind::BadRequest, e.to_string());
                    let _ = tx.send(error_line(Some(id), &e)).await;
                    continue;
                }
                Some(Ok(DaemonCall::Subscribe { snapshots, logs })) => {
                    tasks.spawn(self.clone().subscription(id, snapshots, logs, tx.clone()));
                    continue;
                }
                Some(Ok(DaemonCall::Shutdown)) => {
                    let _ = tx.send(reply_line(id, Ok(Value::Null))).await;
                    self.stop();
                    continue;
                }
                Some(Ok(DaemonCall::Status)) => {
                    let line = reply_line(
                        id,
                        serde_json::to_value(self.status())
                            .map_err(|e| WireError::new(ErrorKind::Internal, e.to_string())),
                    );
                    let _ = tx.send(line).await;
                    continue;
                }
                Some(Ok(DaemonCall::Snapshot)) | None => {}
            }
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break;
            };
            let this = self.clone();
            let tx = tx.clone();
            tasks.spawn(async move {
                let line = if method == "snapshot" {
                    match this.snapshot_json(this.engine.snapshot()).await {
                        Ok(json) => wrap_json(id, None, &json),
                        Err(e) => error_line(Some(id), &e),
                    }
                } else {
                    reply_line(id, this.call(&method, params).await)
                };
                let _ = tx.send(line).await;
                drop(permit);
            });
        }
        // The peer is gone: stop its calls and subscriptions.
        tasks.abort_all();
    }

    /// Run one engine call: the API's own dispatch, nothing written here per call.
    async fn call(&self, method: &str, params: Value) -> Result<Value, WireError> {
        match api::dispatch(&self.engine, method, params).await {
            Some(outcome) => outcome.map_err(|e| WireError::from(&e)),
            None => Err(WireError::new(
                ErrorKind::BadRequest,
                format!("unknown method {method:?}"),
            )),
        }
    }

    async fn subscription(self: Arc<Self>, id: u64, snapshots: bool, logs: bool, tx: Out) {
        let mut snaps = self.engine.snapshots();
        let mut log_rx = self.engine.oplog().subscribe();
        if tx.send(reply_line(id, Ok(Value::Null))).await.is_err() {
            return;
        }
        let first = snaps.borrow_and_update().clone();
        if snapshots && !self.send_snapshot(id, first, &tx).await {
            return;
        }
        loop {
            tokio::select! {
                changed = snaps.changed(), if snapshots => {
                    if changed.is_err() {
                        return;
                    }
                    let snap = snaps.borrow_and_update().clone();
                    if !self.send_snapshot(id, snap, &tx).await {
                        return;
                    }
                }
                entry = log_rx.recv(), if logs => {
                    let line = match entry {
                        Ok(entry) => super::protocol::event_line(id, "log", &*entry),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            super::protocol::event_line(id, "lagged", &serde_json::json!({"missed": n}))
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn send_snapshot(&self, id: u64, snap: Arc<AppSnapshot>, tx: &Out) -> bool {
        let line = match self.snapshot_json(snap).await {
            Ok(json) => wrap_json(id, Some("snapshot"), &json),
            Err(e) => error_line(Some(id), &e),
        };
        tx.send(line).await.is_ok()
    }

    /// Save and lock, and remove our endpoint files (only if they are still ours).
    pub async fn shut_down(&self) {
        if self.engine.snapshot().lock == LockState::Unlocked
            && let Err(e) = self.engine.logout().await
        {
            tracing::error!("daemon shutdown: saving the state failed: {e}");
        }
        let ours = matches!(
            self.endpoint.read_metadata(),
            Ok(Some(m)) if m.pid == std::process::id()
        );
        if ours {
            self.endpoint.remove();
        }
    }
}

type Out = mpsc::Sender<String>;

/// `{"id":…,"result":JSON}` (no event) or `{"id":…,"event":"…","data":JSON}` around
/// JSON already serialized (the shared snapshot), without parsing it again.
fn wrap_json(id: u64, event: Option<&str>, json: &str) -> String {
    if json.len() + 64 > MAX_RESPONSE {
        let e = WireError::new(
            ErrorKind::TooLarge,
            format!(
                "the snapshot is {} bytes, more than a line may carry",
                json.len()
            ),
        );
        return error_line(Some(id), &e);
    }
    match event {
        Some(ev) => format!("{{\"id\":{id},\"event\":\"{ev}\",\"data\":{json}}}"),
        None => format!("{{\"id\":{id},\"result\":{json}}}"),
    }
}

async fn write_lines(wr: tokio::net::unix::OwnedWriteHalf, mut rx: mpsc::Receiver<String>) {
    let mut w = BufWriter::with_capacity(64 << 10, wr);
    while let Some(line) = rx.recv().await {
        if w.write_all(line.as_bytes()).await.is_err() || w.write_all(b"\n").await.is_err() {
            return;
        }
        // Flush when nothing else is queued: batches under load, prompt when idle.
        if rx.is_empty() && w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
}

/// Counts a connection while it lives.
struct ClientCount<'a>(&'a AtomicUsize);

impl<'a> ClientCount<'a> {
    fn enter(n: &'a AtomicUsize) -> ClientCount<'a> {
        n.fetch_add(1, Ordering::Relaxed);
        ClientCount(n)
    }
}

impl Drop for ClientCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
