//! The HTTP side of the Hetzner adapter: one `reqwest` client with the bearer token,
//! timeouts, JSON bodies, rate-limit headers fed to the broker lane, error bodies
//! normalized into [`ProviderError`], pagination, and waiting on async actions.
//!
//! This file knows Hetzner's envelope (`{"error": …}`, `meta.pagination`, `action`) and
//! nothing about servers or zones. It never logs or formats the token; request bodies are
//! not logged either (they carry user data and public keys).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::DISPLAY;
use crate::core::secret::Secret;
use crate::providers::http::{
    build_client, decode, header_u64, kind_for_status, read_response, request_id_header,
    retry_after_header, transport_error, unreadable,
};
use crate::providers::{ErrorKind, Lane, ProviderError, ProviderResult};

/// Hetzner's maximum page size.
pub(super) const PER_PAGE: u32 = 50;
/// A guard against a server that keeps announcing a next page.
const MAX_PAGES: u32 = 1000;

/// Where and how the adapter talks to the API. Tests point `base_url` at a local fake and
/// shorten the action poll interval.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://api.hetzner.cloud/v1`, without a trailing slash.
    pub base_url: String,
    pub token: Secret,
    /// Whole-request timeout (connect, send, response).
    pub request_timeout: Duration,
    /// First interval between polls of a running action; later polls back off to five
    /// times this.
    pub action_poll: Duration,
    /// How long an action may run before Legion gives up waiting on it.
    pub action_timeout: Duration,
    /// How long a graceful stop waits for the server to power off after the ACPI signal.
    pub shutdown_timeout: Duration,
}

impl ClientConfig {
    pub fn new(base_url: impl Into<String>, token: Secret) -> ClientConfig {
        ClientConfig {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            token,
            request_timeout: Duration::from_secs(30),
            action_poll: Duration::from_secs(1),
            action_timeout: Duration::from_secs(600),
            shutdown_timeout: Duration::from_secs(180),
        }
    }
}

/// `{"error": {"code", "message", "details"}}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ApiError,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct ApiError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub details: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Meta {
    #[serde(default)]
    pub pagination: Option<Pagination>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Pagination {
    #[serde(default)]
    pub next_page: Option<u32>,
}

/// An async action as every Hetzner write returns it.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Action {
    pub id: u64,
    #[serde(default)]
    pub command: String,
    pub status: String,
    #[serde(default)]
    pub error: Option<ApiError>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ActionEnvelope {
    pub action: Action,
}

/// `{"actions": [...]}`, what firewall actions return.
#[derive(Debug, Deserialize)]
pub(super) struct ActionsEnvelope {
    #[serde(default)]
    pub actions: Vec<Action>,
}

/// The action of a response that may carry one (`DELETE /servers/{id}` does,
/// `DELETE /firewalls/{id}` answers 204).
pub(super) fn action_in(value: &Value) -> Option<Action> {
    serde_json::from_value(value.get("action")?.clone()).ok()
}

/// Whether a paginated list runs each page through the lane, or directly (inside a
/// verifier, which the lane already runs as a read: going through it again could wait
/// on a permit the verifier itself holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    Lane,
    Direct,
}

pub(super) struct Client {
    http: reqwest::Client,
    base: String,
    token: Secret,
    lane: Arc<Lane>,
    action_poll: Duration,
    action_timeout: Duration,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

impl Client {
    pub fn new(config: ClientConfig, lane: Arc<Lane>) -> ProviderResult<Client> {
        let http = build_client(DISPLAY, config.request_timeout)?;
        Ok(Client {
            http,
            base: config.base_url,
            token: config.token,
            lane,
            action_poll: config.action_poll.max(Duration::from_millis(1)),
            action_timeout: config.action_timeout,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    pub fn lane(&self) -> &Lane {
        &self.lane
    }

    /// One request. `write` says whether the request may change provider state: an
    /// unreadable answer to a write is ambiguous (it may have been applied), to a read it
    /// is just malformed.
    async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        write: bool,
    ) -> ProviderResult<Value> {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(self.token.expose());
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| transport_error(DISPLAY, &e, &method, path, write, &self.base))?;
        let (status, headers, bytes) =
            read_response(DISPLAY, resp, &method, path, write, &self.base).await?;
        if let Some((limit, remaining, reset_in)) = rate_limit(&headers, unix_now()) {
            self.lane.note_rate_limit(limit, remaining, reset_in);
        }
        if !status.is_success() {
            let retry_after = retry_after(&headers, unix_now());
            // hcloud's own clients report this header as the request's trace id.
            return Err(normalize_error(status.as_u16(), &bytes, retry_after)
                .with_request_id(request_id_header(&headers, "X-Correlation-Id")));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| unreadable(DISPLAY, &method, path, write, e))
    }

    /// A GET, decoded into `T`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> ProviderResult<T> {
        let value = self.request(Method::GET, path, query, None, false).await?;
        decode(DISPLAY, value, &Method::GET, path, false)
    }

    /// A GET whose 404 means "absent".
    pub async fn get_opt<T: DeserializeOwned>(&self, path: &str) -> ProviderResult<Option<T>> {
        match self.get(path, &[]).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A write (POST, PUT, DELETE), decoded into `T`. Run it through the lane's write
    /// wrapper, never on its own.
    pub async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> ProviderResult<T> {
        let value = self.request(method.clone(), path, &[], body, true).await?;
        decode(DISPLAY, value, &method, path, true)
    }

    /// A GET through the lane (rate limits, `locked` and concurrency handled there).
    pub async fn read<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> ProviderResult<T> {
        let what = format!("GET {path}");
        self.lane.read(&what, || self.get(path, query)).await
    }

    /// [`Client::get_opt`] through the lane.
    pub async fn read_opt<T: DeserializeOwned>(&self, path: &str) -> ProviderResult<Option<T>> {
        let what = format!("GET {path}");
        self.lane.read(&what, || self.get_opt(path)).await
    }

    /// Every item of a paginated list: `key` names the array in each page.
    pub async fn list_all<T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        query: &[(&str, String)],
        via: Via,
    ) -> ProviderResult<Vec<T>> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let mut q: Vec<(&str, String)> = query.to_vec();
            q.push(("page", page.to_string()));
            q.push(("per_page", PER_PAGE.to_string()));
            let value: Value = match via {
                Via::Lane => self.read(path, &q).await?,
                Via::Direct => self.get(path, &q).await?,
            };
            let (items, next) = split_page::<T>(value, key, page, path)?;
            out.extend(items);
            match next {
                Some(n) => page = n,
                None => return Ok(out),
            }
        }
    }

    /// Wait until every action finished; the first failed one is the error. One action
    /// is polled by id; several (a firewall applied to many servers returns one per
    /// server) are polled together, `GET /actions?id=…&id=…` per round, so waiting on N
    /// actions costs what waiting on one does.
    pub async fn wait_all(&self, actions: &[Action]) -> ProviderResult<()> {
        match actions {
            [] => Ok(()),
            [one] => self.wait(one).await,
            _ => self.wait_many(actions).await,
        }
    }

    async fn wait_many(&self, actions: &[Action]) -> ProviderResult<()> {
        let started = tokio::time::Instant::now();
        let mut interval = self.action_poll;
        let mut running: Vec<Action> = Vec::new();
        for a in actions {
            match a.status.as_str() {
                "success" => {}
                "error" => return Err(action_error(a)),
                _ => running.push(a.clone()),
            }
        }
        while !running.is_empty() {
            if started.elapsed() >= self.action_timeout {
                return Err(ProviderError::new(
                    DISPLAY,
                    ErrorKind::Timeout,
                    format!(
                        "{} actions ({}) still running after {:?}",
                        running.len(),
                        command_name(&running[0]),
                        self.action_timeout
                    ),
                ));
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 3 / 2).min(self.action_poll * 5);
            let mut next = Vec::new();
            for chunk in running.chunks(PER_PAGE as usize) {
                let query: Vec<(&str, String)> =
                    chunk.iter().map(|a| ("id", a.id.to_string())).collect();
                let polled: Vec<Action> = self
                    .list_all("/actions", "actions", &query, Via::Lane)
                    .await?;
                for a in chunk {
                    // An action the list does not return is still running as far as we
                    // know; it is asked for again next round.
                    let now = polled.iter().find(|p| p.id == a.id).unwrap_or(a);
                    match now.status.as_str() {
                        "success" => {}
                        "error" => return Err(action_error(now)),
                        _ => next.push(now.clone()),
                    }
                }
            }
            running = next;
        }
        Ok(())
    }

    /// Poll `GET /actions/{id}` until the action left `running`, at most the configured
    /// action timeout.
    pub async fn wait(&self, action: &Action) -> ProviderResult<()> {
        let started = tokio::time::Instant::now();
        let mut interval = self.action_poll;
        let mut current = action.clone();
        loop {
            match current.status.as_str() {
                "success" => return Ok(()),
                "error" => return Err(action_error(&current)),
                _ => {}
            }
            if started.elapsed() >= self.action_timeout {
                return Err(ProviderError::new(
                    DISPLAY,
                    ErrorKind::Timeout,
                    format!(
                        "action {} ({}) still running after {:?}",
                        current.id,
                        command_name(&current),
                        self.action_timeout
                    ),
                ));
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 3 / 2).min(self.action_poll * 5);
            let path = format!("/actions/{}", current.id);
            let env: ActionEnvelope = self.read(&path, &[]).await?;
            current = env.action;
        }
    }

    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }

    pub fn action_poll(&self) -> Duration {
        self.action_poll
    }
}

fn command_name(a: &Action) -> &str {
    if a.command.is_empty() {
        "action"
    } else {
        &a.command
    }
}

/// A finished action with `status: error`, as a provider error.
pub(super) fn action_error(a: &Action) -> ProviderError {
    let (code, message) = match &a.error {
        Some(e) => (e.code.as_str(), e.message.as_str()),
        None => ("", ""),
    };
    let message = if message.is_empty() {
        format!("{} failed", command_name(a))
    } else {
        format!("{} failed: {message}", command_name(a))
    };
    let mut err = ProviderError::new(
        DISPLAY,
        kind_for_code(code).unwrap_or(ErrorKind::Other),
        message,
    );
    if !code.is_empty() {
        err = err.with_code(code);
    }
    err
}

/// The items of one page and the next page to ask for. A `next_page` that does not move
/// forward is an error rather than an endless loop.
pub(super) fn split_page<T: DeserializeOwned>(
    mut value: Value,
    key: &str,
    page: u32,
    path: &str,
) -> ProviderResult<(Vec<T>, Option<u32>)> {
    let malformed = |what: String| {
        ProviderError::new(
            DISPLAY,
            ErrorKind::Malformed,
            format!("unexpected response to GET {path}: {what}"),
        )
    };
    let items = match value.get_mut(key).map(Value::take) {
        Some(Value::Null) | None => Vec::new(),
        Some(v) => serde_json::from_value(v).map_err(|e| malformed(e.to_string()))?,
    };
    let meta: Meta = match value.get_mut("meta").map(Value::take) {
        Some(v) => serde_json::from_value(v).map_err(|e| malformed(e.to_string()))?,
        None => Meta::default(),
    };
    let next = meta.pagination.and_then(|p| p.next_page);
    match next {
        Some(n) if n <= page => Err(malformed(format!("page {page} announces next page {n}"))),
        Some(n) if n > MAX_PAGES => Err(malformed(format!("more than {MAX_PAGES} pages"))),
        other => Ok((items, other)),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (a Unix timestamp at
/// which the budget is full again) as `(limit, remaining, reset in)`.
pub(super) fn rate_limit(headers: &HeaderMap, now_unix: u64) -> Option<(u32, u32, Duration)> {
    let limit = header_u64(headers, "ratelimit-limit")?;
    let remaining = header_u64(headers, "ratelimit-remaining")?;
    let reset_in = header_u64(headers, "ratelimit-reset")
        .map(|at| Duration::from_secs(at.saturating_sub(now_unix)))
        .unwrap_or_default();
    let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Some((clamp(limit), clamp(remaining), reset_in))
}

/// How long to wait before repeating a rejected request: `Retry-After` (seconds) when
/// given, else the time until `RateLimit-Reset`.
fn retry_after(headers: &HeaderMap, now_unix: u64) -> Option<Duration> {
    if let Some(wait) = retry_after_header(headers) {
        return Some(wait);
    }
    header_u64(headers, "ratelimit-reset")
        .map(|at| Duration::from_secs(at.saturating_sub(now_unix).max(1)))
}

/// What an error code means for Legion; `None` for codes only the HTTP status explains.
fn kind_for_code(code: &str) -> Option<ErrorKind> {
    Some(match code {
        "unauthorized" => ErrorKind::Unauthorized,
        "forbidden" | "token_readonly" | "protected" => ErrorKind::Forbidden,
        "not_found" => ErrorKind::NotFound,
        "invalid_input"
        | "json_error"
        | "invalid_server_type"
        | "resource_unavailable"
        | "placement_error"
        | "no_space_left_in_location"
        | "incorrect_zone_mode"
        | "server_not_stopped"
        | "private_net_only_server" => ErrorKind::InvalidInput,
        "uniqueness_error"
        | "resource_in_use"
        | "firewall_already_applied"
        | "firewall_already_removed"
        | "server_already_added" => ErrorKind::Conflict,
        "resource_limit_exceeded" => ErrorKind::ResourceLimit,
        "rate_limit_exceeded" => ErrorKind::RateLimited,
        // "The resource has changed during the request, please retry" is as temporary
        // as a running action.
        "locked" | "conflict" => ErrorKind::Locked,
        "server_error" | "service_error" | "unknown_error" | "bad_gateway" | "maintenance"
        | "robot_unavailable" => ErrorKind::Unavailable,
        "timeout" => ErrorKind::Timeout,
        "unsupported_error" | "deprecated_api_endpoint" => ErrorKind::Unsupported,
        _ => return None,
    })
}

/// `details.fields[]` of an `invalid_input` error as `name: message; message`.
fn field_details(details: Option<&Value>) -> Vec<String> {
    let Some(fields) = details
        .and_then(|d| d.get("fields"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    fields
        .iter()
        .filter_map(|f| {
            let name = f.get("name")?.as_str()?;
            let messages: Vec<&str> = f
                .get("messages")
                .and_then(Value::as_array)
                .map(|m| m.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            Some(if messages.is_empty() {
                name.to_string()
            } else {
                format!("{name}: {}", messages.join(", "))
            })
        })
        .collect()
}

/// A non-2xx answer as a provider error: Hetzner's code and message kept, the kind from
/// the code (or the status when the code is unknown or the body is not Hetzner's).
pub(super) fn normalize_error(
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
) -> ProviderError {
    let parsed = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|b| b.error)
        .filter(|e| !e.code.is_empty() || !e.message.is_empty());
    let mut err = match parsed {
        Some(e) => {
            let kind = kind_for_code(&e.code).unwrap_or_else(|| kind_for_status(status));
            let message = if e.message.is_empty() {
                generic_message(status)
            } else {
                e.message.clone()
            };
            let mut err = ProviderError::new(DISPLAY, kind, message.clone());
            if !e.code.is_empty() {
                err = err.with_code(e.code.clone());
            }
            // Hetzner often repeats the field message in the main message; keep only
            // details that add something.
            err.details = field_details(e.details.as_ref())
                .into_iter()
                .filter(|d| {
                    let said = |part: &str| message.contains(part.trim());
                    !d.split(": ").all(said)
                })
                .collect();
            err
        }
        None => ProviderError::new(DISPLAY, kind_for_status(status), generic_message(status)),
    };
    err = err.with_status(status);
    if err.kind == ErrorKind::RateLimited {
        err.retry_after = retry_after;
    }
    err
}

fn generic_message(status: u16) -> String {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("unexpected status");
    match status {
        401 => "the API token was rejected (check the Hetzner Cloud token)".to_string(),
        404 => "not found".to_string(),
        429 => "rate limit exceeded".to_string(),
        500..=599 => format!("the API is unavailable ({status} {reason})"),
        _ => format!("unexpected answer {status} {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    #[test]
    fn invalid_input_keeps_code_message_and_field_details() {
        let body = br#"{
          "error": {
            "code": "invalid_input",
            "message": "invalid input in field 'broken_field': is too long",
            "details": {
              "fields": [
                { "name": "broken_field", "messages": ["is too long"] }
              ]
            }
          }
        }"#;
        let e = normalize_error(400, body, None);
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert_eq!(e.code.as_deref(), Some("invalid_input"));
        assert_eq!(e.http_status, Some(400));
        // The field detail repeats the message, so it is not shown twice.
        assert!(e.details.is_empty());
        assert_eq!(
            e.to_string(),
            "Hetzner: invalid input in field 'broken_field': is too long [invalid_input]"
        );
        let body = br#"{"error": {"code": "invalid_input", "message": "invalid input",
            "details": {"fields": [{"name": "server_type",
                                    "messages": ["not available in fsn1"]}]}}}"#;
        let e = normalize_error(422, body, None);
        assert_eq!(
            e.to_string(),
            "Hetzner: invalid input (server_type: not available in fsn1) [invalid_input]"
        );
        assert!(!e.is_ambiguous());
    }

    #[test]
    fn codes_decide_the_kind() {
        let case = |status: u16, code: &str| {
            let body = format!(r#"{{"error":{{"code":"{code}","message":"m","details":{{}}}}}}"#);
            normalize_error(status, body.as_bytes(), None).kind
        };
        assert_eq!(case(401, "unauthorized"), ErrorKind::Unauthorized);
        assert_eq!(case(403, "forbidden"), ErrorKind::Forbidden);
        assert_eq!(case(404, "not_found"), ErrorKind::NotFound);
        assert_eq!(case(409, "uniqueness_error"), ErrorKind::Conflict);
        assert_eq!(
            case(403, "resource_limit_exceeded"),
            ErrorKind::ResourceLimit
        );
        assert_eq!(case(423, "locked"), ErrorKind::Locked);
        assert_eq!(case(409, "locked"), ErrorKind::Locked);
        assert_eq!(case(500, "server_error"), ErrorKind::Unavailable);
        assert_eq!(case(503, "maintenance"), ErrorKind::Unavailable);
        assert_eq!(case(504, "timeout"), ErrorKind::Timeout);
        assert_eq!(case(412, "resource_unavailable"), ErrorKind::InvalidInput);
        // An unknown code falls back to the status.
        assert_eq!(case(422, "brand_new_code"), ErrorKind::InvalidInput);
        assert_eq!(case(502, "brand_new_code"), ErrorKind::Unavailable);
        assert!(normalize_error(502, b"<html>bad gateway</html>", None).is_ambiguous());
    }

    #[test]
    fn rate_limited_carries_the_wait() {
        let body = br#"{"error":{"code":"rate_limit_exceeded","message":"limit of 3600 requests per hour reached","details":{}}}"#;
        let e = normalize_error(429, body, Some(Duration::from_secs(7)));
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(e.code.as_deref(), Some("rate_limit_exceeded"));
        // Other errors do not carry one even when the header is there.
        let e = normalize_error(
            404,
            br#"{"error":{"code":"not_found","message":"x"}}"#,
            Some(Duration::from_secs(7)),
        );
        assert_eq!(e.retry_after, None);
    }

    #[test]
    fn a_body_that_is_not_hetzners_still_says_what_happened() {
        let e = normalize_error(401, b"", None);
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert!(e.message.contains("token"), "{}", e.message);
        let e = normalize_error(503, b"upstream down", None);
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(e.message.contains("503"), "{}", e.message);
    }

    #[test]
    fn rate_limit_headers_are_read_as_a_reset_time() {
        let mut h = HeaderMap::new();
        h.insert("RateLimit-Limit", HeaderValue::from_static("3600"));
        h.insert("RateLimit-Remaining", HeaderValue::from_static("3599"));
        h.insert("RateLimit-Reset", HeaderValue::from_static("1700000030"));
        assert_eq!(
            rate_limit(&h, 1_700_000_000),
            Some((3600, 3599, Duration::from_secs(30)))
        );
        // A reset in the past is "now".
        assert_eq!(
            rate_limit(&h, 1_700_000_100),
            Some((3600, 3599, Duration::ZERO))
        );
        assert_eq!(
            retry_after(&h, 1_700_000_000),
            Some(Duration::from_secs(30))
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        assert_eq!(retry_after(&h, 1_700_000_000), Some(Duration::from_secs(5)));
        assert_eq!(rate_limit(&HeaderMap::new(), 0), None);
    }

    #[test]
    fn pagination_follows_next_page_and_stops() {
        let page1 = serde_json::json!({
            "ssh_keys": [{"id": 1}, {"id": 2}],
            "meta": {"pagination": {"page": 1, "per_page": 2, "previous_page": null,
                     "next_page": 2, "last_page": 2, "total_entries": 3}}
        });
        let (items, next) = split_page::<Value>(page1, "ssh_keys", 1, "/ssh_keys").unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(next, Some(2));
        let page2 = serde_json::json!({
            "ssh_keys": [{"id": 3}],
            "meta": {"pagination": {"page": 2, "per_page": 2, "previous_page": 1,
                     "next_page": null, "last_page": 2, "total_entries": 3}}
        });
        let (items, next) = split_page::<Value>(page2, "ssh_keys", 2, "/ssh_keys").unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(next, None);
        // No meta at all: one page.
        let bare = serde_json::json!({"ssh_keys": []});
        assert_eq!(
            split_page::<Value>(bare, "ssh_keys", 1, "/ssh_keys")
                .unwrap()
                .1,
            None
        );
        // A next page that does not advance is refused instead of looping.
        let stuck = serde_json::json!({"ssh_keys": [], "meta": {"pagination": {"next_page": 3}}});
        let e = split_page::<Value>(stuck, "ssh_keys", 3, "/ssh_keys").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
    }

    #[test]
    fn failed_actions_become_errors_with_their_code() {
        let a: Action = serde_json::from_value(serde_json::json!({
            "id": 13, "command": "start_server", "status": "error", "progress": 100,
            "started": "2016-01-30T23:55:00+00:00", "finished": "2016-01-30T23:56:00+00:00",
            "resources": [{"id": 42, "type": "server"}],
            "error": {"code": "action_failed", "message": "Action failed"}
        }))
        .unwrap();
        let e = action_error(&a);
        assert_eq!(
            e.to_string(),
            "Hetzner: start_server failed: Action failed [action_failed]"
        );
        assert_eq!(e.kind, ErrorKind::Other);
    }

    #[test]
    fn config_trims_the_base_url_and_hides_the_token() {
        let c = ClientConfig::new("http://127.0.0.1:9/v1/", Secret::new("hunter2-token"));
        assert_eq!(c.base_url, "http://127.0.0.1:9/v1");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
