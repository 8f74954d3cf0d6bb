//! The HTTP side of the Scaleway adapter: one `reqwest` client sending the secret key in
//! `X-Auth-Token`, timeouts, JSON bodies, rate-limit headers fed to the broker lane,
//! Scaleway's error bodies (the Instance API's older `{"message", "type", "fields"}` form
//! and the newer `{"type", "message", "details", …}` forms) normalized into
//! [`ProviderError`], and both pagination styles (Instance: `per_page` and the
//! `X-Total-Count` header; IAM, Marketplace and Domains: `page_size` and `total_count`).
//!
//! This file knows Scaleway's envelopes and nothing about servers or zones. It never logs
//! or formats the secret key; request bodies are not logged either (they carry user data
//! and public keys).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::DISPLAY;
use crate::core::secret::Secret;
use crate::providers::http::{
    build_client, decode, header_u64, kind_for_status, read_response, retry_after_header,
    transport_error, unreadable,
};
use crate::providers::{ErrorKind, Lane, ProviderError, ProviderResult};

/// The page size asked for (the Instance API's maximum is 100).
pub(super) const PER_PAGE: u32 = 100;
/// A guard against a server that keeps announcing more items.
const MAX_PAGES: u32 = 1000;

/// Where and how the adapter talks to the API. Tests point `base_url` at a local fake and
/// shorten the poll interval.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://api.scaleway.com`, without a trailing slash.
    pub base_url: String,
    pub secret_key: Secret,
    /// The project every resource is created in and listed from.
    pub project: String,
    /// The default zone (security groups, the credentials check).
    pub zone: String,
    /// Whole-request timeout (connect, send, response).
    pub request_timeout: Duration,
    /// First interval between polls of a server's state; later polls back off to five
    /// times this.
    pub action_poll: Duration,
    /// How long a server may take to reach the state an action leads to.
    pub action_timeout: Duration,
    /// How long a stop waits for the server to be `stopped`.
    pub shutdown_timeout: Duration,
}

impl ClientConfig {
    pub fn new(
        base_url: impl Into<String>,
        secret_key: Secret,
        project: impl Into<String>,
        zone: impl Into<String>,
    ) -> ClientConfig {
        ClientConfig {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            secret_key,
            project: project.into(),
            zone: zone.into(),
            request_timeout: Duration::from_secs(30),
            action_poll: Duration::from_secs(2),
            action_timeout: Duration::from_secs(600),
            shutdown_timeout: Duration::from_secs(300),
        }
    }
}

/// How a list endpoint pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Paging {
    /// `page` and `per_page`, the total in the `X-Total-Count` header (Instance API).
    Instance,
    /// `page` and `page_size`, the total in the body's `total_count` (IAM, Marketplace,
    /// Domains).
    Standard,
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
    secret: Secret,
    project: String,
    zone: String,
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
            secret: config.secret_key,
            project: config.project,
            zone: config.zone,
            lane,
            action_poll: config.action_poll.max(Duration::from_millis(1)),
            action_timeout: config.action_timeout,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    pub fn lane(&self) -> &Lane {
        &self.lane
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn zone(&self) -> &str {
        &self.zone
    }

    pub fn action_poll(&self) -> Duration {
        self.action_poll
    }

    pub fn action_timeout(&self) -> Duration {
        self.action_timeout
    }

    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }

    /// One request: the body (`{}` when empty) and the `X-Total-Count` header. `write`
    /// says whether the request may change provider state: an unreadable answer to a
    /// write is ambiguous (it may have been applied), to a read it is just malformed.
    async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        write: bool,
    ) -> ProviderResult<(Value, Option<u64>)> {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header("X-Auth-Token", self.secret.expose());
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
            return Err(normalize_error(status.as_u16(), &bytes, retry_after));
        }
        let total = header_u64(&headers, "x-total-count");
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok((Value::Object(Default::default()), total));
        }
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| unreadable(DISPLAY, &method, path, write, e))?;
        Ok((value, total))
    }

    /// A GET, decoded.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> ProviderResult<T> {
        let (v, _) = self.request(Method::GET, path, query, None, false).await?;
        decode(DISPLAY, v, &Method::GET, path, false)
    }

    /// A GET where 404 means "absent".
    pub async fn get_opt<T: DeserializeOwned>(&self, path: &str) -> ProviderResult<Option<T>> {
        match self.get(path, &[]).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A write (POST, PUT, PATCH, DELETE), decoded.
    pub async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> ProviderResult<T> {
        let (v, _) = self
            .request(method.clone(), path, query, body, true)
            .await?;
        decode(DISPLAY, v, &method, path, true)
    }

    /// [`Client::get`] through the lane.
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

    /// The `key` value of every page (an array or, for the product catalog, an object).
    async fn pages(
        &self,
        path: &str,
        key: &str,
        query: &[(&str, String)],
        paging: Paging,
        via: Via,
    ) -> ProviderResult<Vec<Value>> {
        let size_param = match paging {
            Paging::Instance => "per_page",
            Paging::Standard => "page_size",
        };
        let mut out = Vec::new();
        let mut seen: u64 = 0;
        let mut page: u32 = 1;
        loop {
            if page > MAX_PAGES {
                return Err(malformed(path, format!("more than {MAX_PAGES} pages")));
            }
            let mut q: Vec<(&str, String)> = query.to_vec();
            q.push(("page", page.to_string()));
            q.push((size_param, PER_PAGE.to_string()));
            let fetch = || self.request(Method::GET, path, &q, None, false);
            let (mut value, header_total) = match via {
                Via::Lane => self.lane.read(&format!("GET {path}"), fetch).await?,
                Via::Direct => fetch().await?,
            };
            let body_total = value.get("total_count").and_then(Value::as_u64);
            let total = match paging {
                // The header, else the body's count when a response leaves it out.
                Paging::Instance => header_total.or(body_total),
                Paging::Standard => body_total,
            };
            let items = value.get_mut(key).map(Value::take).unwrap_or(Value::Null);
            let count = match &items {
                Value::Array(a) => a.len(),
                Value::Object(o) => o.len(),
                Value::Null => 0,
                _ => return Err(malformed(path, format!("{key} is not a list"))),
            } as u64;
            seen += count;
            out.push(items);
            let more = match total {
                Some(total) => seen < total && count > 0,
                None => count >= u64::from(PER_PAGE),
            };
            if !more {
                return Ok(out);
            }
            page += 1;
        }
    }

    /// Every item of a paginated list: `key` names the array in each page.
    pub async fn list_all<T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        query: &[(&str, String)],
        paging: Paging,
        via: Via,
    ) -> ProviderResult<Vec<T>> {
        let mut out = Vec::new();
        for items in self.pages(path, key, query, paging, via).await? {
            if items.is_null() {
                continue;
            }
            let page: Vec<T> =
                serde_json::from_value(items).map_err(|e| malformed(path, e.to_string()))?;
            out.extend(page);
        }
        Ok(out)
    }

    /// Every entry of a paginated map (`{"servers": {"DEV1-S": {…}}}`).
    pub async fn list_map<T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        paging: Paging,
    ) -> ProviderResult<Vec<(String, T)>> {
        let mut out = Vec::new();
        for items in self.pages(path, key, &[], paging, Via::Lane).await? {
            let Value::Object(map) = items else { continue };
            for (k, v) in map {
                let item: T =
                    serde_json::from_value(v).map_err(|e| malformed(path, e.to_string()))?;
                out.push((k, item));
            }
        }
        Ok(out)
    }
}

fn malformed(path: &str, what: String) -> ProviderError {
    ProviderError::new(
        DISPLAY,
        ErrorKind::Malformed,
        format!("unexpected response to GET {path}: {what}"),
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A reset header as a wait: a Unix timestamp when it looks like one, else seconds.
fn reset_wait(value: u64, now_unix: u64) -> Duration {
    if value > 1_000_000_000 {
        Duration::from_secs(value.saturating_sub(now_unix))
    } else {
        Duration::from_secs(value)
    }
}

/// `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` as
/// `(limit, remaining, reset in)`, when Scaleway sends them.
pub(super) fn rate_limit(headers: &HeaderMap, now_unix: u64) -> Option<(u32, u32, Duration)> {
    let limit = header_u64(headers, "x-ratelimit-limit")?;
    let remaining = header_u64(headers, "x-ratelimit-remaining")?;
    let reset_in = header_u64(headers, "x-ratelimit-reset")
        .map(|v| reset_wait(v, now_unix))
        .unwrap_or_default();
    let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Some((clamp(limit), clamp(remaining), reset_in))
}

/// How long to wait before repeating a rejected request: `Retry-After` (seconds) when
/// given, else the time until `X-RateLimit-Reset`.
fn retry_after(headers: &HeaderMap, now_unix: u64) -> Option<Duration> {
    if let Some(wait) = retry_after_header(headers) {
        return Some(wait);
    }
    header_u64(headers, "x-ratelimit-reset")
        .map(|v| reset_wait(v, now_unix).max(Duration::from_secs(1)))
}

/// What an error `type` means for Legion; `None` for types only the status explains.
fn kind_for_type(kind: &str) -> Option<ErrorKind> {
    Some(match kind {
        "denied_authentication" | "authentication_error" | "unauthorized" => {
            ErrorKind::Unauthorized
        }
        "permissions_denied" | "forbidden" | "locked" | "resource_expired" => ErrorKind::Forbidden,
        "not_found" | "unknown_resource" | "resource_not_found" => ErrorKind::NotFound,
        "invalid_arguments" | "invalid_request_error" | "out_of_stock" => ErrorKind::InvalidInput,
        "quotas_exceeded" => ErrorKind::ResourceLimit,
        "precondition_failed" => ErrorKind::InvalidInput,
        "conflict" | "already_exists" => ErrorKind::Conflict,
        // A server busy with another action: temporary, the lane repeats the request.
        "transient_state" => ErrorKind::Locked,
        "too_many_requests" | "rate_limited" => ErrorKind::RateLimited,
        "internal_error" | "service_unavailable" => ErrorKind::Unavailable,
        _ => return None,
    })
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A sentence for a body that carries structure but no message.
fn structured_message(kind: &str, v: &Value) -> Option<String> {
    let resource = text(v, "resource").replace('_', " ");
    let id = text(v, "resource_id");
    let named = if id.is_empty() {
        resource.clone()
    } else {
        format!("{resource} {id}")
    };
    Some(match kind {
        "transient_state" => format!(
            "{named} is busy (state {}); try again when it settles",
            text(v, "current_state")
        ),
        "not_found" | "resource_not_found" => format!("{named} not found"),
        "locked" => format!("{named} is locked by Scaleway (contact support)"),
        "quotas_exceeded" => "quota exceeded".to_string(),
        "permissions_denied" => "insufficient permissions".to_string(),
        "invalid_arguments" => "invalid arguments".to_string(),
        "out_of_stock" => format!("{resource} is out of stock"),
        "precondition_failed" => {
            let what = text(v, "precondition").replace('_', " ");
            format!("precondition failed: {what}")
        }
        "denied_authentication" => {
            let reason = match text(v, "reason").as_str() {
                "not_found" => "the secret key does not exist",
                "expired" => "the secret key has expired",
                "invalid_argument" => "the secret key is malformed or empty",
                _ => "the secret key was rejected",
            };
            format!("authentication denied: {reason} (check the Scaleway secret key)")
        }
        _ => return None,
    })
}

/// `details[]` and `fields{}` as `name: reason` lines.
fn details_of(kind: &str, v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(fields) = v.get("fields").and_then(Value::as_object) {
        for (name, messages) in fields {
            let msgs: Vec<&str> = messages
                .as_array()
                .map(|m| m.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            out.push(if msgs.is_empty() {
                name.clone()
            } else {
                format!("{name}: {}", msgs.join(", "))
            });
        }
    }
    for d in v
        .get("details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let line = match kind {
            "invalid_arguments" => {
                let name = text(d, "argument_name");
                let reason = match text(d, "reason").as_str() {
                    "required" => "is required".to_string(),
                    "format" => "is wrongly formatted".to_string(),
                    "constraint" => "does not respect a constraint".to_string(),
                    "" => String::new(),
                    other => other.replace('_', " "),
                };
                let help = text(d, "help_message");
                let mut s = format!("{name} {reason}").trim().to_string();
                if !help.is_empty() {
                    s = format!("{s}: {help}");
                }
                s
            }
            "quotas_exceeded" => format!(
                "{}: {} of {} used",
                text(d, "resource"),
                d.get("current").and_then(Value::as_u64).unwrap_or(0),
                d.get("quota").and_then(Value::as_u64).unwrap_or(0)
            ),
            "permissions_denied" => format!("{} {}", text(d, "action"), text(d, "resource")),
            _ => continue,
        };
        if !line.trim().is_empty() {
            out.push(line);
        }
    }
    let help = text(v, "help_message");
    if kind == "precondition_failed" && !help.is_empty() {
        out.push(help);
    }
    out
}

/// A non-2xx answer as a provider error: Scaleway's type and message kept, the kind from
/// the type (or the status when the type is unknown or the body is not Scaleway's).
pub(super) fn normalize_error(
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
) -> ProviderError {
    let parsed = serde_json::from_slice::<Value>(body)
        .ok()
        .filter(|v| v.get("type").is_some() || v.get("message").is_some());
    let mut err = match parsed {
        Some(v) => {
            let kind_name = text(&v, "type");
            let mut kind = kind_for_type(&kind_name).unwrap_or_else(|| kind_for_status(status));
            let message = text(&v, "message");
            // The older form says "quota exceeded" inside an invalid_request_error.
            if message.to_ascii_lowercase().contains("quota exceeded") {
                kind = ErrorKind::ResourceLimit;
            }
            let message = if message.is_empty() {
                structured_message(&kind_name, &v).unwrap_or_else(|| generic_message(status))
            } else {
                message
            };
            let mut err = ProviderError::new(DISPLAY, kind, message.clone());
            if !kind_name.is_empty() {
                err = err.with_code(kind_name.clone());
            }
            err.details = details_of(&kind_name, &v)
                .into_iter()
                .filter(|d| !message.contains(d.as_str()))
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
        401 => "the secret key was rejected (check the Scaleway secret key)".to_string(),
        403 => "the API key may not do this (check its IAM permissions)".to_string(),
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
    fn the_older_instance_form_keeps_message_and_fields() {
        let body = br#"{"message": "Validation Error", "type": "invalid_request_error",
            "fields": {"commercial_type": ["'XL-99' is not a valid commercial type"]}}"#;
        let e = normalize_error(400, body, None);
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert_eq!(e.code.as_deref(), Some("invalid_request_error"));
        assert_eq!(
            e.to_string(),
            "Scaleway: Validation Error (commercial_type: 'XL-99' is not a valid commercial \
             type) [invalid_request_error]"
        );
        let body = br#"{"message": "Quota exceeded for this resource.",
            "type": "invalid_request_error", "resource": "compute_instances"}"#;
        assert_eq!(
            normalize_error(400, body, None).kind,
            ErrorKind::ResourceLimit
        );
        let body = br#"{"message": "\"4f1b\" not found", "type": "unknown_resource"}"#;
        assert!(normalize_error(404, body, None).is_not_found());
    }

    #[test]
    fn the_newer_forms_say_what_happened() {
        let body = br#"{"type": "transient_state", "resource": "instance_server",
            "resource_id": "a1", "current_state": "starting",
            "message": "resource is in a transient state"}"#;
        let e = normalize_error(409, body, None);
        assert_eq!(e.kind, ErrorKind::Locked);
        let body = br#"{"type": "invalid_arguments", "message": "invalid argument(s)",
            "details": [{"argument_name": "name", "reason": "required", "help_message": ""}]}"#;
        let e = normalize_error(400, body, None);
        assert_eq!(
            e.to_string(),
            "Scaleway: invalid argument(s) (name is required) [invalid_arguments]"
        );
        let body = br#"{"type": "quotas_exceeded", "message": "quota(s) exceeded",
            "details": [{"resource": "instances_pro2_xxs", "quota": 2, "current": 2}]}"#;
        let e = normalize_error(403, body, None);
        assert_eq!(e.kind, ErrorKind::ResourceLimit);
        assert_eq!(e.details, ["instances_pro2_xxs: 2 of 2 used"]);
        let body = br#"{"type": "permissions_denied", "message": "insufficient permissions",
            "details": [{"resource": "instance_server", "action": "write"}]}"#;
        assert_eq!(normalize_error(403, body, None).kind, ErrorKind::Forbidden);
        let body = br#"{"type": "not_found", "resource": "instance_server", "resource_id": "x"}"#;
        let e = normalize_error(404, body, None);
        assert!(e.is_not_found());
        assert_eq!(e.message, "instance server x not found");
        let body = br#"{"type": "precondition_failed", "precondition": "resource_still_in_use",
            "help_message": "detach it first", "message": "precondition failed"}"#;
        let e = normalize_error(412, body, None);
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert_eq!(e.details, ["detach it first"]);
        let body = br#"{"message": "authentication is denied", "method": "api_key",
            "reason": "not_found", "type": "denied_authentication"}"#;
        let e = normalize_error(401, body, None);
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert!(!e.to_string().contains("HTTP"));
    }

    #[test]
    fn bodies_that_are_not_scaleways_fall_back_to_the_status() {
        let e = normalize_error(401, b"", None);
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert!(e.message.contains("secret key"), "{}", e.message);
        let e = normalize_error(503, b"upstream down", None);
        assert!(e.is_ambiguous());
        assert!(e.message.contains("503"));
        let e = normalize_error(504, b"<html/>", None);
        assert_eq!(e.kind, ErrorKind::Timeout);
        let body = br#"{"type": "brand_new", "message": "m"}"#;
        assert_eq!(
            normalize_error(502, body, None).kind,
            ErrorKind::Unavailable
        );
    }

    #[test]
    fn rate_limits_carry_the_wait() {
        let mut h = HeaderMap::new();
        h.insert("X-RateLimit-Limit", HeaderValue::from_static("100"));
        h.insert("X-RateLimit-Remaining", HeaderValue::from_static("0"));
        h.insert("X-RateLimit-Reset", HeaderValue::from_static("1700000030"));
        assert_eq!(
            rate_limit(&h, 1_700_000_000),
            Some((100, 0, Duration::from_secs(30)))
        );
        assert_eq!(
            retry_after(&h, 1_700_000_000),
            Some(Duration::from_secs(30))
        );
        h.insert("X-RateLimit-Reset", HeaderValue::from_static("4"));
        assert_eq!(retry_after(&h, 1_700_000_000), Some(Duration::from_secs(4)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, 1_700_000_000), Some(Duration::from_secs(7)));
        let body = br#"{"type": "too_many_requests", "message": "rate limit exceeded"}"#;
        let e = normalize_error(429, body, Some(Duration::from_secs(7)));
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(rate_limit(&HeaderMap::new(), 0), None);
    }

    #[test]
    fn config_trims_the_base_url_and_hides_the_token() {
        let c = ClientConfig::new(
            "http://127.0.0.1:9/",
            Secret::new("hunter2-secret"),
            "p",
            "fr-par-1",
        );
        assert_eq!(c.base_url, "http://127.0.0.1:9");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
