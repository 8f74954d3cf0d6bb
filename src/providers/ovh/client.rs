//! The HTTP side of the OVHcloud adapter: one `reqwest` client that signs every request
//! with the application key, application secret and consumer key, keeps the clock offset
//! learned from `GET /auth/time`, and normalizes OVHcloud's two error body forms into
//! [`ProviderError`]. OVHcloud publishes no rate-limit headers: a 429 becomes
//! `RateLimited` with its `Retry-After`, which the broker lane waits out.
//!
//! This file knows OVHcloud's envelope (signature headers, `{"message", "errorCode",
//! "httpCode", "class"}`) and nothing about instances or zones. It never logs or formats
//! the secret or the consumer key; request bodies are not logged either (they carry user
//! data and public keys).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha1::{Digest, Sha1};

use super::DISPLAY;
use crate::core::secret::Secret;
use crate::providers::http::{
    build_client, decode, kind_for_status, read_response, request_id_header, retry_after_header,
    transport_error, unreadable,
};
use crate::providers::{ErrorKind, Lane, ProviderError, ProviderResult};

/// Where and how the adapter talks to the API. Tests point `base_url` at a local fake and
/// shorten the poll interval.
#[derive(Clone)]
pub struct ClientConfig {
    /// `https://eu.api.ovh.com/1.0`, without a trailing slash.
    pub base_url: String,
    pub application_key: String,
    pub application_secret: Secret,
    pub consumer_key: Secret,
    /// The Public Cloud project (`serviceName` in OVHcloud's paths).
    pub project: String,
    /// The subsidiary whose public price list the catalog reads (`FR`, `CA`, `US`).
    pub subsidiary: String,
    /// Whole-request timeout (connect, send, response).
    pub request_timeout: Duration,
    /// First interval between polls of an instance's status; later polls back off to
    /// five times this.
    pub poll: Duration,
    /// How long a create, a reinstall or a power action may take.
    pub action_timeout: Duration,
    /// How long a graceful stop waits for the instance to be `SHUTOFF`.
    pub shutdown_timeout: Duration,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("project", &self.project)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    pub fn new(
        base_url: impl Into<String>,
        application_key: impl Into<String>,
        application_secret: Secret,
        consumer_key: Secret,
        project: impl Into<String>,
    ) -> ClientConfig {
        ClientConfig {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            application_key: application_key.into(),
            application_secret,
            consumer_key,
            project: project.into(),
            subsidiary: "FR".into(),
            request_timeout: Duration::from_secs(30),
            poll: Duration::from_secs(2),
            action_timeout: Duration::from_secs(900),
            shutdown_timeout: Duration::from_secs(300),
        }
    }
}

/// `$1$` + hex SHA-1 of `secret+consumer+METHOD+full URL+body+timestamp`, OVHcloud's
/// request signature.
pub fn signature(
    application_secret: &str,
    consumer_key: &str,
    method: &str,
    url: &str,
    body: &str,
    timestamp: i64,
) -> String {
    let mut h = Sha1::new();
    h.update(application_secret.as_bytes());
    h.update(b"+");
    h.update(consumer_key.as_bytes());
    h.update(b"+");
    h.update(method.to_ascii_uppercase().as_bytes());
    h.update(b"+");
    h.update(url.as_bytes());
    h.update(b"+");
    h.update(body.as_bytes());
    h.update(b"+");
    h.update(timestamp.to_string().as_bytes());
    format!("$1${}", hex::encode(h.finalize()))
}

/// Both forms of OVHcloud's error body: `{"errorCode", "httpCode", "message"}` (the
/// authentication layer) and `{"class", "message"}` (the API itself); either may come with
/// only a `message`.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default, rename = "errorCode")]
    error_code: Option<String>,
    #[serde(default)]
    class: Option<String>,
}

/// Whether a call runs through the lane, or directly (inside a verifier, which the lane
/// already runs as a read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    Lane,
    Direct,
}

pub(super) struct Client {
    http: reqwest::Client,
    base: String,
    application_key: String,
    application_secret: Secret,
    consumer_key: Secret,
    project: String,
    subsidiary: String,
    lane: Arc<Lane>,
    /// Server time minus local time, learned once from `/auth/time`.
    clock_offset: Mutex<Option<i64>>,
    poll: Duration,
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
            application_key: config.application_key,
            application_secret: config.application_secret,
            consumer_key: config.consumer_key,
            project: config.project,
            subsidiary: config.subsidiary,
            lane,
            clock_offset: Mutex::new(None),
            poll: config.poll.max(Duration::from_millis(1)),
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

    pub fn subsidiary(&self) -> &str {
        &self.subsidiary
    }

    pub fn poll(&self) -> Duration {
        self.poll
    }

    pub fn action_timeout(&self) -> Duration {
        self.action_timeout
    }

    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> ProviderResult<Url> {
        let raw = format!("{}{}", self.base, path);
        let parsed = if query.is_empty() {
            Url::parse(&raw)
        } else {
            Url::parse_with_params(&raw, query)
        };
        parsed.map_err(|e| {
            ProviderError::new(
                DISPLAY,
                ErrorKind::InvalidInput,
                format!("cannot build the URL of {path}: {e}"),
            )
        })
    }

    /// The server's clock as OVHcloud sees it: local time plus the offset learned once
    /// from the unauthenticated `GET /auth/time`.
    async fn timestamp(&self) -> ProviderResult<i64> {
        let known = *self.clock_offset.lock().unwrap_or_else(|e| e.into_inner());
        let offset = match known {
            Some(o) => o,
            None => {
                let url = self.url("/auth/time", &[])?;
                let resp = self
                    .http
                    .get(url)
                    .header("X-Ovh-Application", &self.application_key)
                    .send()
                    .await
                    .map_err(|e| {
                        transport_error(DISPLAY, &e, &Method::GET, "/auth/time", false, &self.base)
                    })?;
                let (status, _, bytes) =
                    read_response(DISPLAY, resp, &Method::GET, "/auth/time", false, &self.base)
                        .await?;
                if !status.is_success() {
                    return Err(normalize_error(status.as_u16(), &bytes, None));
                }
                let server: i64 = serde_json::from_slice(&bytes)
                    .map_err(|e| unreadable(DISPLAY, &Method::GET, "/auth/time", false, e))?;
                let o = server - unix_now();
                *self.clock_offset.lock().unwrap_or_else(|e| e.into_inner()) = Some(o);
                o
            }
        };
        Ok(unix_now() + offset)
    }

    fn forget_clock(&self) {
        *self.clock_offset.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// One request, signed unless it is to a public route (`signed: false`, the price
    /// list: a consumer key need not be granted it). `write` says whether the request may
    /// change provider state: an unreadable answer to a write is ambiguous (it may have
    /// been applied), to a read it is just malformed. A rejected timestamp (OVHcloud's
    /// `QUERY_TIME_OUT`) was not applied: the clock offset is learned again and the
    /// request sent once more.
    async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        write: bool,
        signed: bool,
    ) -> ProviderResult<Value> {
        let url = self.url(path, query)?;
        // OVHcloud signs the exact bytes sent; calls without parameters send no body at
        // all (a GET or DELETE with a body is refused).
        let body_text = match body {
            Some(v) => serde_json::to_string(v).map_err(|e| {
                ProviderError::new(
                    DISPLAY,
                    ErrorKind::Other,
                    format!("cannot encode the request body: {e}"),
                )
            })?,
            None => String::new(),
        };
        let mut relearned = false;
        loop {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .header("Accept", "application/json")
                .header("X-Ovh-Application", &self.application_key);
            if signed {
                let ts = self.timestamp().await?;
                let sig = signature(
                    self.application_secret.expose(),
                    self.consumer_key.expose(),
                    method.as_str(),
                    url.as_str(),
                    &body_text,
                    ts,
                );
                req = req
                    .header("X-Ovh-Consumer", self.consumer_key.expose())
                    .header("X-Ovh-Timestamp", ts.to_string())
                    .header("X-Ovh-Signature", sig);
            }
            if body.is_some() {
                req = req
                    .header("Content-Type", "application/json;charset=utf-8")
                    .body(body_text.clone());
            }
            let resp = req
                .send()
                .await
                .map_err(|e| transport_error(DISPLAY, &e, &method, path, write, &self.base))?;
            let (status, headers, bytes) =
                read_response(DISPLAY, resp, &method, path, write, &self.base).await?;
            if !status.is_success() {
                // python-ovh and OVHcloud's manager quote this header as the query id.
                let err = normalize_error(status.as_u16(), &bytes, retry_after_header(&headers))
                    .with_request_id(request_id_header(&headers, "X-Ovh-Queryid"));
                if err.code.as_deref() == Some("QUERY_TIME_OUT") && !relearned {
                    relearned = true;
                    self.forget_clock();
                    continue;
                }
                // OVHcloud sends no rate-limit headers; a 429 (with its `Retry-After`)
                // is waited out by the lane.
                return Err(err);
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes)
                .map_err(|e| unreadable(DISPLAY, &method, path, write, e));
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
        let value = self
            .request(method.clone(), path, &[], body, true, true)
            .await?;
        decode(DISPLAY, value, &method, path, true)
    }

    /// A GET, decoded into `T`, without the lane (verifiers).
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> ProviderResult<T> {
        let value = self
            .request(Method::GET, path, query, None, false, true)
            .await?;
        decode(DISPLAY, value, &Method::GET, path, false)
    }

    /// An unsigned GET of a public route, through the lane.
    pub async fn read_public<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> ProviderResult<T> {
        let what = format!("GET {path}");
        self.lane
            .read(&what, || async {
                let value = self
                    .request(Method::GET, path, query, None, false, false)
                    .await?;
                decode(DISPLAY, value, &Method::GET, path, false)
            })
            .await
    }

    /// A GET whose 404 means "absent", without the lane (verifiers).
    pub async fn get_opt<T: DeserializeOwned>(&self, path: &str) -> ProviderResult<Option<T>> {
        match self.get(path, &[]).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A GET through the lane (rate limits, busy instances and concurrency handled there),
    /// or directly.
    pub async fn read<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        via: Via,
    ) -> ProviderResult<T> {
        match via {
            Via::Lane => {
                let what = format!("GET {path}");
                self.lane.read(&what, || self.get(path, query)).await
            }
            Via::Direct => self.get(path, query).await,
        }
    }

    /// [`Client::get_opt`], through the lane or directly.
    pub async fn read_opt<T: DeserializeOwned>(
        &self,
        path: &str,
        via: Via,
    ) -> ProviderResult<Option<T>> {
        match via {
            Via::Lane => {
                let what = format!("GET {path}");
                self.lane.read(&what, || self.get_opt(path)).await
            }
            Via::Direct => self.get_opt(path).await,
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Whether a 409's message says the instance is busy with another task (Nova's "Cannot
/// 'stop' instance … while it is in task_state rebooting"), which clears by itself. A
/// `vm_state` refusal ("… while it is in vm_state stopped") is definite.
fn busy_instance(message: &str) -> bool {
    message.to_ascii_lowercase().contains("task_state")
}

/// What an error code or class means for Legion; `None` when only the status explains it.
fn kind_for_code(code: &str, message: &str) -> Option<ErrorKind> {
    Some(match code {
        "INVALID_SIGNATURE"
        | "INVALID_CREDENTIAL"
        | "NOT_CREDENTIAL"
        | "INVALID_KEY"
        | "QUERY_TIME_OUT"
        | "Client::Unauthorized" => ErrorKind::Unauthorized,
        "NOT_GRANTED_CALL" | "FORBIDDEN" | "Client::Forbidden" => ErrorKind::Forbidden,
        "Client::NotFound" => ErrorKind::NotFound,
        "Client::BadRequest" | "Client::ValidationError" => ErrorKind::InvalidInput,
        "Client::Conflict" if busy_instance(message) => ErrorKind::Locked,
        "Client::Conflict" => ErrorKind::Conflict,
        "Client::Forbidden::QuotaExceeded" | "Client::QuotaExceeded" => ErrorKind::ResourceLimit,
        "Client::TooManyRequests" => ErrorKind::RateLimited,
        "Server::GatewayTimeout" | "Server::Timeout" => ErrorKind::Timeout,
        c if c.starts_with("Server::") => ErrorKind::Unavailable,
        c if c.starts_with("Client::NotFound") => ErrorKind::NotFound,
        c if c.starts_with("Client::BadRequest") => ErrorKind::InvalidInput,
        c if c.starts_with("Client::Forbidden") => ErrorKind::Forbidden,
        c if c.starts_with("Client::Conflict") => ErrorKind::Conflict,
        _ => return None,
    })
}

/// The status's meaning, with a 409 about a busy instance as `Locked`.
fn kind_for(status: u16, message: &str) -> ErrorKind {
    if status == 409 && busy_instance(message) {
        return ErrorKind::Locked;
    }
    kind_for_status(status)
}

/// A non-2xx answer as a provider error: OVHcloud's message and code (the `errorCode`,
/// else the `class`) kept, the kind from the code, else from the status.
pub(super) fn normalize_error(
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
) -> ProviderError {
    let parsed = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .filter(|b| !b.message.is_empty() || b.error_code.is_some() || b.class.is_some());
    let mut err = match parsed {
        Some(b) => {
            let code = b
                .error_code
                .clone()
                .filter(|c| !c.is_empty())
                .or_else(|| b.class.clone().filter(|c| !c.is_empty()));
            let kind = code
                .as_deref()
                .and_then(|c| kind_for_code(c, &b.message))
                .unwrap_or_else(|| kind_for(status, &b.message));
            let message = if b.message.is_empty() {
                generic_message(status)
            } else {
                b.message.trim().to_string()
            };
            let mut err = ProviderError::new(DISPLAY, kind, message);
            if let Some(code) = code {
                err = err.with_code(code);
            }
            err
        }
        None => ProviderError::new(DISPLAY, kind_for(status, ""), generic_message(status)),
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
        401 | 403 => "the credentials were rejected (check the application key, application \
                      secret and consumer key)"
            .to_string(),
        404 => "not found".to_string(),
        429 => "too many requests".to_string(),
        500..=599 => format!("the API is unavailable ({status} {reason})"),
        _ => format!("unexpected answer {status} {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors computed outside Legion from the documented algorithm:
    /// `printf '%s' 'AS+CK+METHOD+URL+BODY+TS' | sha1sum`.
    #[test]
    fn signature_matches_independently_computed_vectors() {
        // printf '%s' 'EgWIz07P0HYwtQDs+MtSwSrPpNjqfVSmJhLbPyr2i45lSDTP+GET+https://eu.api.ovh.com/1.0/auth/currentCredential++1457018875' | sha1sum
        assert_eq!(
            signature(
                "EgWIz07P0HYwtQDs",
                "MtSwSrPpNjqfVSmJhLbPyr2i45lSDTP",
                "GET",
                "https://eu.api.ovh.com/1.0/auth/currentCredential",
                "",
                1_457_018_875,
            ),
            SIG_GET
        );
        // printf '%s' 'secret+consumer+POST+http://127.0.0.1:4010/1.0/cloud/project/p1/sshkey+{"name":"k","publicKey":"ssh-ed25519 AAAA"}+1700000000' | sha1sum
        assert_eq!(
            signature(
                "secret",
                "consumer",
                "post",
                "http://127.0.0.1:4010/1.0/cloud/project/p1/sshkey",
                r#"{"name":"k","publicKey":"ssh-ed25519 AAAA"}"#,
                1_700_000_000,
            ),
            SIG_POST
        );
    }

    const SIG_GET: &str = "$1$0a81778300777bae5f6832da883fb015f9c519c7";
    const SIG_POST: &str = "$1$73a0566171a16f2f41a77ab66307db5bf5f26043";

    #[test]
    fn both_error_forms_keep_ovhclouds_words() {
        let e = normalize_error(
            400,
            br#"{"errorCode":"INVALID_SIGNATURE","httpCode":"400 Bad Request","message":"Invalid signature"}"#,
            None,
        );
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert_eq!(
            e.to_string(),
            "OVHcloud: Invalid signature [INVALID_SIGNATURE]"
        );
        let e = normalize_error(
            404,
            br#"{"class":"Client::NotFound","message":"The requested object (instanceId = 42) does not exist"}"#,
            None,
        );
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.code.as_deref(), Some("Client::NotFound"));
        let e = normalize_error(400, br#"{"message":"Invalid flavor"}"#, None);
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert_eq!(e.to_string(), "OVHcloud: Invalid flavor");
        assert!(!e.to_string().contains("HTTP"));
        let e = normalize_error(
            409,
            br#"{"class":"Client::Conflict","message":"Cannot 'stop' instance 42 while it is in task_state rebooting"}"#,
            None,
        );
        assert_eq!(e.kind, ErrorKind::Locked);
        let e = normalize_error(
            409,
            br#"{"class":"Client::Conflict","message":"An SSH key with this name already exists"}"#,
            None,
        );
        assert_eq!(e.kind, ErrorKind::Conflict);
        let e = normalize_error(
            429,
            br#"{"class":"Client::TooManyRequests","message":"Too many requests"}"#,
            Some(Duration::from_secs(2)),
        );
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
        let e = normalize_error(503, b"<html>down</html>", None);
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(e.is_ambiguous());
        let e = normalize_error(
            403,
            br#"{"errorCode":"INVALID_CREDENTIAL","httpCode":"403 Forbidden","message":"This credential does not exist"}"#,
            None,
        );
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        let e = normalize_error(
            500,
            br#"{"class":"Server::InternalServerError","message":"Internal server error"}"#,
            None,
        );
        assert_eq!(e.kind, ErrorKind::Unavailable);
    }

    #[test]
    fn config_trims_the_base_url_and_hides_the_token() {
        let c = ClientConfig::new(
            "http://127.0.0.1:9/1.0/",
            "app-key",
            Secret::new("hunter2-secret"),
            Secret::new("hunter3-consumer"),
            "p1",
        );
        assert_eq!(c.base_url, "http://127.0.0.1:9/1.0");
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("hunter3"),
            "{shown}"
        );
    }
}
