//! The daemon's side of the socket: accept, check the peer, authenticate, dispatch to
//! the engine.
//!
//! A connection from another uid is refused at accept (`SO_PEERCRED`). A new connection
//! must send its first request, with the token, within [`Limits::auth_deadline`]; until
//! then it holds one of [`Limits::max_unauthenticated`] places, and past that a newer
//! connection evicts the oldest that had time to speak ([`Limits::evict_after`]), so
//! silent connections can never lock the token's holder out (and they never count
//! against [`MAX_CLIENTS`]). Once
//! authenticated it counts against [`MAX_CLIENTS`], is read at most
//! [`Limits::rate`] requests a second, and is closed after [`Limits::idle_timeout`]
//! with nothing asked, in flight or subscribed.
//!
//! Each connection has a reader (this task) and a writer task fed by a bounded channel.
//! Calls and subscriptions run concurrently (at most [`MAX_IN_FLIGHT`] per connection,
//! of which at most [`MAX_SUBSCRIPTIONS`] subscriptions) and answer by id; subscriptions
//! forward snapshots (a slow reader skips to the newest) and log entries (a slow reader
//! is told how many it missed); `apply_progress` sends small progress events at most every
//! [`PROGRESS_EVERY`] and ends with the apply. `status` and `snapshot` never wait on the
//! engine: they read the last published snapshot (an `Arc`), serialized off the async
//! workers at most once per publication. Nothing here logs request contents.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, Semaphore, broadcast, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::endpoint::{EndpointError, check_socket, own_uid};
use super::protocol::{
    ApplyProgress, DaemonCall, DaemonStatus, PROTOCOL, Request, WireError, error_line, event_line,
    reply_line,
};
use super::{
    Endpoint, Line, MAX_CLIENTS, MAX_IN_FLIGHT, MAX_REQUEST, MAX_RESPONSE, MAX_SUBSCRIPTIONS,
    read_line,
};
use crate::core::secret::Secret;
use crate::engine::snapshot::{AppSnapshot, LockState};
use crate::engine::{Engine, ErrorKind, api};

/// Bind the endpoint's socket (0600, in its checked 0700 directory). The caller has made
/// sure no live daemon owns it; a leftover file is removed first.
pub fn bind(endpoint: &Endpoint) -> Result<UnixListener, EndpointError> {
    use std::os::unix::fs::PermissionsExt;
    endpoint.prepare()?;
    let io = |source| EndpointError::Io {
        path: endpoint.socket.clone(),
        source,
    };
    let _ = std::fs::remove_file(&endpoint.socket);
    let listener = UnixListener::bind(&endpoint.socket).map_err(io)?;
    std::fs::set_permissions(&endpoint.socket, std::fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    check_socket(&endpoint.socket)?;
    Ok(listener)
}

/// How long connections may stay silent and how fast they may ask. Production uses
/// [`Limits::default`]; a test passes shorter deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The first request, carrying the token, must arrive within this.
    pub auth_deadline: Duration,
    /// An authenticated connection with no call in flight and no subscription is closed
    /// after this long without a request.
    pub idle_timeout: Duration,
    /// Connections not yet authenticated; past this, a new one evicts the oldest that
    /// has waited at least [`Limits::evict_after`].
    pub max_unauthenticated: usize,
    /// A waiting connection younger than this is never evicted, so that a burst of
    /// clients connecting at once (each sends its token at once) all get in.
    pub evict_after: Duration,
    /// Requests a second one connection may send (and a burst of as many); more are
    /// read more slowly, never dropped.
    pub rate: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            auth_deadline: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            max_unauthenticated: 32,
            evict_after: Duration::from_millis(500),
            rate: 50_000,
        }
    }
}

pub struct Daemon {
    engine: Engine,
    /// The runtime the engine runs on: engine calls run there, so the work they spawn
    /// (an apply, a job) stays off the runtime that answers requests.
    engine_rt: tokio::runtime::Handle,
    /// The `providers` answer, fixed for the daemon's life: served without the engine.
    descriptors: Value,
    token: Secret,
    endpoint: Endpoint,
    limits: Limits,
    /// The uid served (this process's); every other peer is refused at accept.
    uid: u32,
    /// Connections not yet authenticated, oldest first, each with its eviction signal
    /// and when it came.
    unauthenticated: std::sync::Mutex<VecDeque<(u64, Arc<Notify>, Instant)>>,
    next_conn: AtomicU64,
    /// Foreign connections refused, so the log says so without flooding.
    foreign: AtomicU64,
    started: u64,
    clients: AtomicUsize,
    requests: AtomicU64,
    subscriptions: AtomicU64,
    stop: Notify,
    /// The newest snapshot serialized once, shared by every subscriber and caller.
    cache: std::sync::Mutex<Option<(u64, Arc<String>)>>,
    /// Held while a snapshot is serialized (never across anything else).
    serializing: tokio::sync::Mutex<()>,
}

impl Daemon {
    pub fn new(engine: Engine, token: Secret, endpoint: Endpoint) -> Arc<Daemon> {
        Daemon::with_limits(engine, token, endpoint, Limits::default())
    }

    /// Must be called on the engine's runtime (engine calls are spawned there).
    pub fn with_limits(
        engine: Engine,
        token: Secret,
        endpoint: Endpoint,
        limits: Limits,
    ) -> Arc<Daemon> {
        let descriptors = serde_json::to_value(engine.provider_descriptors()).unwrap_or_default();
        Arc::new(Daemon {
            engine_rt: tokio::runtime::Handle::current(),
            descriptors,
            engine,
            token,
            endpoint,
            limits,
            uid: own_uid(),
            unauthenticated: std::sync::Mutex::new(VecDeque::new()),
            next_conn: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            started: super::now_secs(),
            clients: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            subscriptions: AtomicU64::new(0),
            stop: Notify::new(),
            cache: std::sync::Mutex::new(None),
            serializing: tokio::sync::Mutex::new(()),
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
                        if self.peer_allowed(&stream) {
                            let this = self.clone();
                            tokio::spawn(async move { this.connection(stream).await });
                        }
                    }
                    Err(e) => {
                        tracing::warn!("daemon accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }

    /// Only our own uid is served. Another uid is told so in one line (written without
    /// waiting: it cannot hold this task) and dropped before any request is read.
    fn peer_allowed(&self, stream: &UnixStream) -> bool {
        let uid = match super::endpoint::peer_uid(stream) {
            Ok(uid) if uid == self.uid => return true,
            Ok(uid) => uid,
            Err(e) => {
                tracing::warn!("daemon: the peer's credentials are unreadable ({e}); dropped");
                return false;
            }
        };
        let n = self.foreign.fetch_add(1, Ordering::Relaxed);
        if n.is_power_of_two() || n == 0 {
            tracing::warn!(
                peer_uid = uid,
                refused = n + 1,
                "daemon: refused a connection from another uid"
            );
        }
        let e = WireError::new(
            ErrorKind::Unauthorized,
            format!("this daemon serves only uid {}", self.uid),
        );
        let _ = stream.try_write(format!("{}\n", error_line(None, &e)).as_bytes());
        false
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
            lock: self.engine.snapshot().lock,
            subscriptions: self.subscriptions.load(Ordering::Relaxed),
        }
    }

    /// The snapshot as JSON, serialized at most once per publication.
    async fn snapshot_json(&self, snap: Arc<AppSnapshot>) -> Result<Arc<String>, WireError> {
        if let Some(json) = self.cached(snap.seq) {
            return Ok(json);
        }
        // One serialization at a time: callers asking at once wait for it and share it,
        // instead of each paying for a copy of a large fleet.
        let _one = self.serializing.lock().await;
        if let Some(json) = self.cached(snap.seq) {
            return Ok(json);
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

    /// The cached JSON if it is of publication `seq` or a newer one.
    fn cached(&self, seq: u64) -> Option<Arc<String>> {
        let cache = self.cache.lock().ok()?;
        let (at, json) = cache.as_ref()?;
        (*at >= seq).then(|| json.clone())
    }

    async fn connection(self: Arc<Self>, stream: UnixStream) {
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::channel::<String>(64);
        let writer = tokio::spawn(write_lines(wr, rx));
        let waiting = Waiting::enter(&self);
        self.read_requests(rd, &tx, waiting).await;
        drop(tx);
        let _ = writer.await;
    }

    async fn read_requests(
        self: &Arc<Self>,
        rd: tokio::net::unix::OwnedReadHalf,
        tx: &Out,
        mut waiting: Option<Waiting<'_>>,
    ) {
        let mut rd = BufReader::new(rd);
        let mut partial = Vec::new();
        let mut tasks = JoinSet::new();
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let subscriptions = Arc::new(Semaphore::new(MAX_SUBSCRIPTIONS));
        let mut bucket = Bucket::new(self.limits.rate);
        let auth_by = Instant::now() + self.limits.auth_deadline;
        let mut last = Instant::now();
        let mut _count: Option<ClientCount<'_>> = None;
        let mut authenticated = false;
        loop {
            // Reap finished calls so the set does not grow on a long connection.
            while tasks.try_join_next().is_some() {}
            let limit = if authenticated {
                last + self.limits.idle_timeout
            } else {
                auth_by
            };
            let evicted = async {
                match &waiting {
                    Some(w) => w.evict.notified().await,
                    None => std::future::pending().await,
                }
            };
            let read = tokio::select! {
                // A line already there wins over a deadline or an eviction that came
                // while this task waited for its turn.
                biased;
                r = read_line(&mut rd, &mut partial, MAX_REQUEST) => r,
                () = tokio::time::sleep_until(limit) => {
                    if authenticated && in_flight.available_permits() < MAX_IN_FLIGHT {
                        // Waiting on its own calls or watching: not idle.
                        last = Instant::now();
                        continue;
                    }
                    let e = if authenticated {
                        WireError::new(
                            ErrorKind::Unavailable,
                            format!(
                                "closed after {} s without a request; connect again",
                                self.limits.idle_timeout.as_secs()
                            ),
                        )
                    } else {
                        WireError::new(
                            ErrorKind::Unauthorized,
                            format!(
                                "no request with the daemon token within {} ms; closing",
                                self.limits.auth_deadline.as_millis()
                            ),
                        )
                    };
                    let _ = tx.send(error_line(None, &e)).await;
                    break;
                }
                () = evicted => {
                    let e = WireError::new(
                        ErrorKind::Busy,
                        "too many connections waiting to authenticate; this one was the oldest",
                    );
                    let _ = tx.send(error_line(None, &e)).await;
                    break;
                }
            };
            last = Instant::now();
            let bytes = match read {
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
            if authenticated {
                bucket.take().await;
            }
            let value: Value = match serde_json::from_slice(&bytes) {
                Ok(v @ Value::Object(_)) => v,
                Ok(_) => {
                    let e = WireError::new(ErrorKind::BadRequest, "a request is one JSON object");
                    let _ = tx.send(error_line(None, &e)).await;
                    if authenticated {
                        continue;
                    }
                    break;
                }
                Err(e) => {
                    let e = WireError::new(ErrorKind::BadRequest, format!("not JSON: {e}"));
                    let _ = tx.send(error_line(None, &e)).await;
                    // Before the token, the first line must be a request: no second try.
                    if authenticated {
                        continue;
                    }
                    break;
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
            if !authenticated {
                authenticated = true;
                waiting = None;
                let count = ClientCount::enter(&self.clients);
                if self.clients.load(Ordering::Relaxed) > MAX_CLIENTS {
                    let e = WireError::new(
                        ErrorKind::Busy,
                        "the daemon serves too many clients; try again",
                    );
                    let _ = tx.send(error_line(id, &e)).await;
                    break;
                }
                _count = Some(count);
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
                Some(Ok(
                    call @ (DaemonCall::Subscribe { .. } | DaemonCall::ApplyProgress { .. }),
                )) => {
                    // A subscription (or a followed apply) holds a place among the calls in
                    // flight for as long as it lives: refused, not queued, when none is free.
                    let permits = subscriptions
                        .clone()
                        .try_acquire_owned()
                        .ok()
                        .zip(in_flight.clone().try_acquire_owned().ok());
                    let Some(permits) = permits else {
                        let e = WireError::new(
                            ErrorKind::Busy,
                            format!(
                                "a connection may hold {MAX_SUBSCRIPTIONS} subscriptions within \
                                 {MAX_IN_FLIGHT} requests in flight"
                            ),
                        );
                        let _ = tx.send(error_line(Some(id), &e)).await;
                        continue;
                    };
                    let this = self.clone();
                    let tx = tx.clone();
                    tasks.spawn(async move {
                        match call {
                            DaemonCall::Subscribe { snapshots, logs } => {
                                this.subscriptions.fetch_add(1, Ordering::Relaxed);
                                this.subscription(id, snapshots, logs, tx).await;
                            }
                            DaemonCall::ApplyProgress { apply, node } => {
                                this.apply_progress(id, apply, node, tx).await;
                            }
                            _ => {}
                        }
                        drop(permits);
                    });
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
            // Calls wait for a place (subscriptions never take them all).
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
                    reply_line(id, this.call(method, params).await)
                };
                let _ = tx.send(line).await;
                drop(permit);
            });
        }
        // The peer is gone: stop its calls and subscriptions.
        tasks.abort_all();
    }

    /// Run one engine call: the API's own dispatch, nothing written here per call, on
    /// the engine's runtime. `providers` is answered here: it never changes.
    async fn call(&self, method: String, params: Value) -> Result<Value, WireError> {
        if method == "providers" {
            return Ok(self.descriptors.clone());
        }
        let engine = self.engine.clone();
        let unknown = WireError::new(ErrorKind::BadRequest, format!("unknown method {method:?}"));
        let run = self
            .engine_rt
            .spawn(async move { api::dispatch(&engine, &method, params).await });
        // A caller that goes away drops only the reply: the call itself runs to its end
        // on the engine's runtime (work that changes state runs on the session's own
        // tasks anyway).
        match run.await {
            Ok(Some(outcome)) => outcome.map_err(|e| WireError::from(&e)),
            Ok(None) => Err(unknown),
            Err(e) => Err(WireError::new(
                ErrorKind::Unavailable,
                format!("the engine stopped during the call: {e}"),
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

    /// Follow apply `apply` to its end: a `progress` event whenever what it says changes
    /// (read at most every [`PROGRESS_EVERY`], skipping to the newest publication), then
    /// the reply with the last one. Each event is a few hundred bytes whatever the fleet's
    /// size; counting the rows is one pass per reading, on a blocking thread.
    async fn apply_progress(self: Arc<Self>, id: u64, apply: u64, node: Option<String>, tx: Out) {
        let mut snaps = self.engine.snapshots();
        let node = Arc::new(node);
        let mut last: Option<ApplyProgress> = None;
        loop {
            let snap = snaps.borrow_and_update().clone();
            let lock = snap.lock;
            let which = node.clone();
            let now = match tokio::task::spawn_blocking(move || {
                ApplyProgress::of(&snap, which.as_deref())
            })
            .await
            {
                Ok(p) => p,
                Err(e) => {
                    let e = WireError::new(ErrorKind::Internal, e.to_string());
                    let _ = tx.send(error_line(Some(id), &e)).await;
                    return;
                }
            };
            if now.done(apply) {
                let line = reply_line(
                    id,
                    serde_json::to_value(&now)
                        .map_err(|e| WireError::new(ErrorKind::Internal, e.to_string())),
                );
                let _ = tx.send(line).await;
                return;
            }
            if lock != LockState::Unlocked {
                let e = WireError::new(
                    ErrorKind::Locked,
                    format!("the daemon's engine was locked before apply #{apply} finished"),
                );
                let _ = tx.send(error_line(Some(id), &e)).await;
                return;
            }
            if last.as_ref().is_none_or(|l| !l.same_as(&now)) {
                if tx.send(event_line(id, "progress", &now)).await.is_err() {
                    return;
                }
                last = Some(now);
            }
            // Paced: publications in between are skipped (the watch keeps the newest).
            tokio::time::sleep(PROGRESS_EVERY).await;
            if snaps.changed().await.is_err() {
                let e = WireError::new(
                    ErrorKind::Unavailable,
                    format!("the daemon's engine stopped before apply #{apply} finished"),
                );
                let _ = tx.send(error_line(Some(id), &e)).await;
                return;
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
        self.remove_endpoint();
    }

    /// Remove our endpoint files (only if they are still ours).
    pub fn remove_endpoint(&self) {
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

/// The shortest time between two `progress` events of one followed apply: a client's
/// cost stays bounded however often the engine publishes.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

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

/// A connection's place among those not yet authenticated; leaving it (authenticated
/// or closed) frees the place.
struct Waiting<'a> {
    daemon: &'a Daemon,
    id: u64,
    evict: Arc<Notify>,
}

impl<'a> Waiting<'a> {
    /// Take a place, evicting the oldest waiting connections (those that had time to
    /// send a line and did not) while there are too many.
    fn enter(daemon: &'a Arc<Daemon>) -> Option<Waiting<'a>> {
        let id = daemon.next_conn.fetch_add(1, Ordering::Relaxed);
        let evict = Arc::new(Notify::new());
        let now = Instant::now();
        let mut queue = daemon.unauthenticated.lock().ok()?;
        queue.push_back((id, evict.clone(), now));
        while queue.len() > daemon.limits.max_unauthenticated.max(1)
            && queue.front().is_some_and(|(_, _, since)| {
                now.duration_since(*since) >= daemon.limits.evict_after
            })
        {
            if let Some((_, oldest, _)) = queue.pop_front() {
                // Stored as a permit when that connection is not waiting right now.
                oldest.notify_one();
            }
        }
        Some(Waiting {
            daemon: daemon.as_ref(),
            id,
            evict,
        })
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Ok(mut queue) = self.daemon.unauthenticated.lock() {
            queue.retain(|(id, _, _)| *id != self.id);
        }
    }
}

/// The shortest wait [`Bucket::delay`] asks for.
const TICK: Duration = Duration::from_millis(1);

/// Requests a connection may still send now: refilled at `rate` a second up to `rate`.
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Bucket {
        let rate = f64::from(rate.max(1));
        Bucket {
            rate,
            tokens: rate,
            at: Instant::now(),
        }
    }

    /// How long to wait before the request at `now` may go (and take its token).
    ///
    /// A debt shorter than [`TICK`] is carried rather than slept: the runtime's timer
    /// cannot sleep less than a millisecond, so paying each token's 20 µs at once would
    /// cap a connection at a thousand requests a second instead of `rate`.
    fn delay(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate) - 1.0;
        let debt = Duration::from_secs_f64((-self.tokens / self.rate).max(0.0));
        if debt < TICK { Duration::ZERO } else { debt }
    }

    async fn take(&mut self) {
        let wait = self.delay(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
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

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
