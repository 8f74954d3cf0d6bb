//! The HTTP plumbing every cloud fake shares: a server on a loopback port (on its own
//! thread or on the test's runtime), the request as a fake reads it, JSON and text replies,
//! fault injection (latency, 5xx, 429, a connection dropped before or after the request is
//! applied), a rate budget with its headers, the record of requests, query strings and
//! pages.
//!
//! It owns no provider's knowledge: paths, JSON shapes, error bodies, header names and
//! authentication stay in each fake (`hetzner`, `ovh`, `scaleway`), which decides in which
//! order it records, delays, faults and authenticates a request, as its cloud does.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub type HttpResponse = Response<Full<Bytes>>;

/// Lock a mutex, taking the data of a poisoned one: a test that panicked while holding
/// a fake's lock must not hide its own failure behind a second panic in the fake.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC for Unix seconds (no offset: each fake adds its own).
pub fn utc_datetime(unix: u64) -> String {
    let t = i64::try_from(unix)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

// ---------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------

/// Why a connection was closed without a response (fault injection).
#[derive(Debug)]
pub struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault injection: connection dropped")
    }
}

impl std::error::Error for Dropped {}

/// One request, read whole (a body that cannot be read drops the connection).
pub struct Exchange {
    pub method: String,
    /// The path as requested, with the API's version prefix, without the query.
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Exchange {
    async fn read(req: Request<Incoming>) -> Result<Self, Dropped> {
        let method = req.method().as_str().to_ascii_uppercase();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
        Ok(Self {
            method,
            path,
            query,
            headers: parts.headers,
            body,
        })
    }

    /// A header's value, when it is text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The body as JSON; `None` when it is empty or white space.
    pub fn json(&self) -> Result<Option<Value>, serde_json::Error> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            Ok(None)
        } else {
            serde_json::from_slice(&self.body).map(Some)
        }
    }
}

/// What a fake answers; implemented by its shared state.
pub trait Service: Send + Sync + 'static {
    /// The response, or [`Dropped`] to close the connection without one.
    fn handle(
        &self,
        request: Exchange,
    ) -> impl Future<Output = Result<HttpResponse, Dropped>> + Send;
}

/// A fake's HTTP/1 server on 127.0.0.1. Dropping it stops the server (and joins its
/// thread when it has one).
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Serve on a thread named `name` with its own current-thread runtime: for blocking
    /// tests and for tests that spawn the `legion` binary against the fake.
    pub fn start<S: Service>(name: &str, service: Arc<S>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a fake API");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    serve(listener, service, stop_rx).await;
                });
            })
            .expect("spawn fake thread");
        Self {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Serve on the current tokio runtime (the accept loop and connections are tasks).
    pub async fn start_async<S: Service>(service: Arc<S>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a fake API");
        let addr = listener.local_addr().expect("local addr");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(serve(listener, service, stop_rx));
        Self {
            addr,
            stop: Some(stop_tx),
            thread: None,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve<S: Service>(
    listener: tokio::net::TcpListener,
    service: Arc<S>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let service = service.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let service = service.clone();
                        async move { service.handle(Exchange::read(req).await?).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------------

/// A response under construction: a status and headers, then a body.
pub struct Reply(hyper::http::response::Builder);

/// Start a response with this status.
pub fn reply(status: u16) -> Reply {
    Reply(Response::builder().status(status))
}

impl Reply {
    pub fn header(self, name: &str, value: impl ToString) -> Self {
        Reply(self.0.header(name, value.to_string()))
    }

    /// `{prefix}-Limit`, `{prefix}-Remaining` and `{prefix}-Reset` from the budget (none
    /// without one).
    pub fn rate(self, prefix: &str, rate: Option<&RateHeaders>) -> Self {
        match rate {
            Some(rate) => self
                .header(&format!("{prefix}-Limit"), rate.limit)
                .header(&format!("{prefix}-Remaining"), rate.remaining)
                .header(&format!("{prefix}-Reset"), rate.reset),
            None => self,
        }
    }

    /// A JSON body with `Content-Type: application/json`.
    pub fn json(self, body: &Value) -> HttpResponse {
        self.json_as("application/json", body)
    }

    /// A JSON body with this content type.
    pub fn json_as(self, content_type: &str, body: &Value) -> HttpResponse {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.header("Content-Type", content_type)
            .body(Bytes::from(bytes))
    }

    /// A body that may be JSON or nothing at all (`204`, an empty `201`).
    pub fn json_or_empty(self, body: Option<&Value>) -> HttpResponse {
        match body {
            Some(body) => self.json(body),
            None => self.body(Bytes::new()),
        }
    }

    /// A plain-text body (what a load balancer in front of an API says).
    pub fn text(self, text: &'static str) -> HttpResponse {
        self.header("Content-Type", "text/plain")
            .body(Bytes::from_static(text.as_bytes()))
    }

    fn body(self, bytes: Bytes) -> HttpResponse {
        self.0
            .body(Full::new(bytes))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    }
}

// ---------------------------------------------------------------------------------------
// Faults, the rate budget and the request record
// ---------------------------------------------------------------------------------------

/// What an injected fault does to a matching request. Each fake answers the first four in
/// its cloud's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// A `500`; the request is not applied.
    ServerError,
    /// A `503`; the request is not applied.
    Unavailable,
    /// A `504`; the request is not applied.
    Timeout,
    /// A `429`; the client may retry `reset_in` later (Hetzner and Scaleway say it as a
    /// reset time with no budget left, OVHcloud as `Retry-After`).
    RateLimited { reset_in: Duration },
    /// Close the connection without answering; the request is not applied.
    DropBeforeApply,
    /// Apply the request, then close the connection without answering.
    DropAfterApply,
}

/// One fault for the next `times` requests matching the optional method and path prefix
/// (paths as the fake records them: without its API's version prefix, e.g. `/servers`
/// for Hetzner's `/v1/servers`).
#[derive(Clone, Debug)]
pub struct FaultRule {
    pub kind: FaultKind,
    pub method: Option<String>,
    pub path_prefix: Option<String>,
    pub times: u32,
    /// Matching requests let through before the fault applies.
    pub skip: u32,
}

impl FaultRule {
    pub fn new(kind: FaultKind, times: u32) -> Self {
        Self {
            kind,
            method: None,
            path_prefix: None,
            times,
            skip: 0,
        }
    }

    /// Let the first `n` matching requests through untouched.
    pub fn after(mut self, n: u32) -> Self {
        self.skip = n;
        self
    }

    /// Restrict the rule to one method (e.g. `"POST"`) and a path prefix.
    pub fn matching(mut self, method: &str, path_prefix: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self.path_prefix = Some(path_prefix.to_string());
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.times > 0
            && self.method.as_deref().is_none_or(|m| m == method)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.starts_with(p))
    }
}

/// A request the fake received (path without the API's version prefix and the query).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Whether the request carried the fake's credentials (for OVHcloud: a valid
    /// signature; unsigned public calls are not authorized).
    pub authorized: bool,
}

/// The budget's headers for one response.
#[derive(Clone, Debug)]
pub struct RateHeaders {
    pub limit: u64,
    pub remaining: u64,
    /// Unix seconds at which the budget is full again.
    pub reset: u64,
}

/// A request budget of `limit` per hour, refilled gradually (as Hetzner documents it).
struct RateBudget {
    limit: u64,
    remaining: f64,
    last: Instant,
}

impl RateBudget {
    fn new(limit: u64) -> Self {
        Self {
            limit,
            remaining: limit as f64,
            last: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let per_sec = self.limit as f64 / 3600.0;
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.remaining = (self.remaining + elapsed * per_sec).min(self.limit as f64);
        self.last = now;
    }

    fn reset_unix(&self) -> u64 {
        let per_sec = self.limit as f64 / 3600.0;
        let missing = self.limit as f64 - self.remaining;
        unix_now() + (missing / per_sec).ceil().max(0.0) as u64
    }
}

struct Faults {
    latency: Duration,
    rules: Vec<FaultRule>,
    rate: Option<RateBudget>,
}

/// What a test controls and reads on every fake: fault rules, latency, the rate budget
/// and the request record. A fake derefs to it, so `fake.fail_next(1)` and
/// `fake.requests()` work on each.
pub struct Controls {
    /// The API's version prefix (`/v1`), left out of recorded paths and fault prefixes.
    version: &'static str,
    faults: Mutex<Faults>,
    log: Mutex<Vec<RecordedRequest>>,
}

impl Controls {
    /// `version` is the prefix paths are recorded without (empty for none); `rate_limit`
    /// the hourly budget when the API announces one.
    pub fn new(version: &'static str, rate_limit: Option<u64>) -> Self {
        Self {
            version,
            faults: Mutex::new(Faults {
                latency: Duration::ZERO,
                rules: Vec::new(),
                rate: rate_limit.map(RateBudget::new),
            }),
            log: Mutex::new(Vec::new()),
        }
    }

    /// `path` without the API's version prefix.
    pub fn strip<'a>(&self, path: &'a str) -> &'a str {
        if self.version.is_empty() {
            return path;
        }
        match path.strip_prefix(self.version) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
            _ => path,
        }
    }

    // ----- set by tests ----------------------------------------------------------------

    /// Delay every response by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.faults).latency = latency;
    }

    /// Add a fault rule; rules are consulted in insertion order.
    pub fn inject(&self, mut rule: FaultRule) {
        if let Some(prefix) = &rule.path_prefix {
            rule.path_prefix = Some(self.strip(prefix).to_string());
        }
        lock(&self.faults).rules.push(rule);
    }

    /// The next `n` requests answer `500`.
    pub fn fail_next(&self, n: u32) {
        self.inject(FaultRule::new(FaultKind::ServerError, n));
    }

    /// The next `n` requests answer `503`.
    pub fn unavailable_next(&self, n: u32) {
        self.inject(FaultRule::new(FaultKind::Unavailable, n));
    }

    /// The next `n` requests answer `504`.
    pub fn timeout_next(&self, n: u32) {
        self.inject(FaultRule::new(FaultKind::Timeout, n));
    }

    /// The next `n` requests answer `429`, the client may retry `reset_in` later.
    pub fn rate_limit_next(&self, n: u32, reset_in: Duration) {
        self.inject(FaultRule::new(FaultKind::RateLimited { reset_in }, n));
    }

    /// The next `n` requests matching `method` and `path_prefix` are applied, then their
    /// connection is closed without a response.
    pub fn drop_response_next(&self, method: &str, path_prefix: &str, n: u32) {
        self.inject(FaultRule::new(FaultKind::DropAfterApply, n).matching(method, path_prefix));
    }

    /// The next `n` requests matching are not applied and get no response.
    pub fn drop_request_next(&self, method: &str, path_prefix: &str, n: u32) {
        self.inject(FaultRule::new(FaultKind::DropBeforeApply, n).matching(method, path_prefix));
    }

    /// Injected faults not used up yet.
    pub fn pending_faults(&self) -> usize {
        lock(&self.faults).rules.len()
    }

    /// Remove all pending fault rules and the latency.
    pub fn clear_faults(&self) {
        let mut faults = lock(&self.faults);
        faults.rules.clear();
        faults.latency = Duration::ZERO;
    }

    /// Change the hourly request budget; `remaining` restarts at the new limit.
    pub fn set_rate_limit(&self, limit: u64) {
        lock(&self.faults).rate = Some(RateBudget::new(limit.max(1)));
    }

    /// Set the remaining budget directly (e.g. 0 to make the next request a real 429).
    pub fn set_rate_remaining(&self, remaining: u64) {
        let mut faults = lock(&self.faults);
        let rate = faults
            .rate
            .as_mut()
            .expect("this fake's API announces no rate limit");
        rate.remaining = remaining as f64;
        rate.last = Instant::now();
    }

    // ----- used by the fakes -----------------------------------------------------------

    /// Sleep for the injected latency.
    pub async fn delay(&self) {
        let latency = lock(&self.faults).latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }

    /// The fault for this request, if a rule matches (`path` without the version).
    pub fn take_fault(&self, method: &str, path: &str) -> Option<FaultKind> {
        let mut faults = lock(&self.faults);
        take_rule(&mut faults.rules, method, path)
    }

    /// Spend one request of the budget, then consult the rules: an exhausted budget is a
    /// 429 before any rule. Also the budget's headers for the response (none without a
    /// budget).
    pub fn admit(&self, method: &str, path: &str) -> (Option<FaultKind>, Option<RateHeaders>) {
        let mut guard = lock(&self.faults);
        let faults = &mut *guard;
        let Some(rate) = faults.rate.as_mut() else {
            return (take_rule(&mut faults.rules, method, path), None);
        };
        rate.refill(Instant::now());
        let exhausted = rate.remaining < 1.0;
        if !exhausted {
            rate.remaining -= 1.0;
        }
        let mut headers = RateHeaders {
            limit: rate.limit,
            remaining: rate.remaining.floor() as u64,
            reset: rate.reset_unix(),
        };
        let fault = if exhausted {
            faults.rules.retain(|r| r.times > 0);
            Some(FaultKind::RateLimited {
                reset_in: Duration::from_secs(headers.reset.saturating_sub(unix_now())),
            })
        } else {
            take_rule(&mut faults.rules, method, path)
        };
        if let Some(FaultKind::RateLimited { reset_in }) = &fault {
            headers.remaining = 0;
            headers.reset = unix_now() + reset_in.as_secs().max(1);
        }
        (fault, Some(headers))
    }

    /// Add a request to the record.
    pub fn record(&self, request: RecordedRequest) {
        lock(&self.log).push(request);
    }

    // ----- read by tests ---------------------------------------------------------------

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.log).clone()
    }

    /// Requests with exactly this method and path (the version prefix and query ignored).
    pub fn request_count(&self, method: &str, path: &str) -> usize {
        let path = self.strip(path);
        lock(&self.log)
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
            .count()
    }

    /// Requests with this method whose path starts with `prefix`.
    pub fn request_count_prefix(&self, method: &str, prefix: &str) -> usize {
        let prefix = self.strip(prefix);
        lock(&self.log)
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.starts_with(prefix))
            .count()
    }

    pub fn clear_requests(&self) {
        lock(&self.log).clear();
    }
}

/// The first rule matching, used once (or one of its skips spent); spent rules removed.
fn take_rule(rules: &mut Vec<FaultRule>, method: &str, path: &str) -> Option<FaultKind> {
    let mut fault = None;
    if let Some(rule) = rules.iter_mut().find(|r| r.matches(method, path)) {
        if rule.skip > 0 {
            rule.skip -= 1;
        } else {
            rule.times -= 1;
            fault = Some(rule.kind.clone());
        }
    }
    rules.retain(|r| r.times > 0);
    fault
}

// ---------------------------------------------------------------------------------------
// Query strings and pages
// ---------------------------------------------------------------------------------------

/// A decoded query string, in order (a key may repeat).
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: &str) -> Self {
        Self(
            raw.split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) => (percent_decode(k), percent_decode(v)),
                    None => (percent_decode(pair), String::new()),
                })
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// One value per key, the last one winning.
    pub fn into_map(self) -> std::collections::BTreeMap<String, String> {
        self.0.into_iter().collect()
    }
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space; a bad escape is kept).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Page `page` (from 1) of `per_page` items.
pub fn page_of<T: Clone>(items: &[T], page: usize, per_page: usize) -> Vec<T> {
    let total = items.len();
    let start = page.saturating_sub(1).saturating_mul(per_page).min(total);
    let end = page.saturating_mul(per_page).min(total);
    items[start..end].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_datetime_is_civil_time() {
        assert_eq!(utc_datetime(86_399), "1970-01-01T23:59:59");
        assert_eq!(utc_datetime(951_868_800), "2000-03-01T00:00:00");
        assert_eq!(utc_datetime(1_700_000_000), "2023-11-14T22:13:20");
    }

    #[test]
    fn a_rule_skips_then_applies_then_is_spent() {
        let controls = Controls::new("/v1", None);
        controls.inject(
            FaultRule::new(FaultKind::Timeout, 1)
                .matching("post", "/v1/servers")
                .after(1),
        );
        assert_eq!(controls.take_fault("GET", "/servers"), None);
        assert_eq!(controls.take_fault("POST", "/servers"), None);
        assert_eq!(
            controls.take_fault("POST", "/servers/1"),
            Some(FaultKind::Timeout)
        );
        assert_eq!(controls.pending_faults(), 0);
    }

    #[test]
    fn an_exhausted_budget_is_a_429_with_nothing_remaining() {
        let controls = Controls::new("", Some(3600));
        controls.set_rate_remaining(0);
        let (fault, headers) = controls.admit("GET", "/x");
        assert!(matches!(fault, Some(FaultKind::RateLimited { .. })));
        assert_eq!(headers.map(|h| h.remaining), Some(0));
    }

    #[test]
    fn queries_decode_and_pages_clamp() {
        let q = Query::parse("a=1+2&b=%41&a=3");
        assert_eq!(q.all("a"), ["1 2", "3"]);
        assert_eq!(q.get("b"), Some("A"));
        assert_eq!(page_of(&[1, 2, 3], 2, 2), [3]);
        assert!(page_of(&[1, 2, 3], 5, 2).is_empty());
    }
}
