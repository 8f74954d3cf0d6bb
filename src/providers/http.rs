//! What the HTTP adapters share: building the client, turning a request that got no answer into a
//! `ProviderError` without leaking the URL, the HTTP status's meaning when the provider's
//! own code says nothing, and reading numeric and `Retry-After` headers.

use std::time::Duration;

use reqwest::Method;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{ErrorKind, ProviderError};

/// The adapter's one `reqwest` client: the whole-request timeout, a connect timeout of at
/// most 10 s, and a `legion/<version>` user agent.
pub fn build_client(
    display: &str,
    request_timeout: Duration,
) -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .timeout(request_timeout)
        .connect_timeout(request_timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("legion/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            ProviderError::new(
                display,
                ErrorKind::Other,
                format!("cannot build the HTTP client: {e}"),
            )
        })
}

/// A request that got no HTTP answer. Whether a write may have been applied decides the
/// kind: a refused connection never reached the provider (`display`), a timeout or a
/// broken response may have.
pub fn transport_error(
    display: &str,
    e: &reqwest::Error,
    method: &Method,
    path: &str,
    write: bool,
    base: &str,
) -> ProviderError {
    // reqwest's messages may contain the URL (never a secret, which are headers); keep
    // only the kind of failure and Legion's own words.
    let broke = "the connection broke before the response";
    let (kind, what) = if e.is_timeout() {
        (ErrorKind::Timeout, "timed out")
    } else if e.is_connect() {
        (ErrorKind::Connection, "could not connect")
    } else if e.is_body() || e.is_decode() {
        (ErrorKind::ResponseLost, "the response was cut off")
    } else if e.is_request() && write {
        (ErrorKind::ResponseLost, broke)
    } else if e.is_request() {
        (ErrorKind::Connection, broke)
    } else {
        (ErrorKind::Connection, "the request failed")
    };
    let host = base
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or(base);
    let mut message = format!("{method} {path} at {host}: {what}");
    if write && kind != ErrorKind::Connection {
        message.push_str(" (it may have been applied)");
    }
    ProviderError::new(display, kind, message)
}

/// What an HTTP status means when the provider's own error code does not say.
pub fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        400 | 422 => ErrorKind::InvalidInput,
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        423 => ErrorKind::Locked,
        429 => ErrorKind::RateLimited,
        408 | 504 => ErrorKind::Timeout,
        500..=599 => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    }
}

/// A header holding a whole number.
pub fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// A provider's id for the request (`X-Correlation-Id`, `X-Ovh-Queryid`), kept for the
/// operator to quote to support. Only a short run of visible ASCII is kept: the value is
/// shown in a terminal and comes from the network.
pub fn request_id_header(headers: &HeaderMap, name: &str) -> Option<String> {
    let id = headers.get(name)?.to_str().ok()?.trim();
    let ok = !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| id.to_string())
}

/// `Retry-After` in seconds, when given.
pub fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    header_u64(headers, RETRY_AFTER.as_str()).map(Duration::from_secs)
}

/// A 2xx answer whose body is not what was expected: to a write, the write was accepted
/// and what it did is unknown until the provider is read back (`ResponseLost`, which the
/// lane verifies); to a read, `Malformed`.
pub fn unreadable(
    display: &str,
    method: &Method,
    path: &str,
    write: bool,
    e: impl std::fmt::Display,
) -> ProviderError {
    if write {
        ProviderError::new(
            display,
            ErrorKind::ResponseLost,
            format!("{method} {path} was accepted but its response could not be read ({e})"),
        )
    } else {
        ProviderError::new(
            display,
            ErrorKind::Malformed,
            format!("unexpected response to {method} {path}: {e}"),
        )
    }
}

/// A JSON value as `T`, or [`unreadable`].
pub fn decode<T: DeserializeOwned>(
    display: &str,
    value: Value,
    method: &Method,
    path: &str,
    write: bool,
) -> Result<T, ProviderError> {
    serde_json::from_value(value).map_err(|e| unreadable(display, method, path, write, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn request_id_is_kept_only_when_printable_and_short() {
        let mut h = HeaderMap::new();
        assert_eq!(request_id_header(&h, "x-ovh-queryid"), None);
        h.insert(
            "x-ovh-queryid",
            HeaderValue::from_static(" EU.ext-3.5b30.1707 "),
        );
        assert_eq!(
            request_id_header(&h, "X-Ovh-Queryid").as_deref(),
            Some("EU.ext-3.5b30.1707")
        );
        h.insert("x-ovh-queryid", HeaderValue::from_static("a b"));
        assert_eq!(request_id_header(&h, "x-ovh-queryid"), None);
        let long = "x".repeat(129);
        h.insert("x-ovh-queryid", HeaderValue::from_str(&long).unwrap());
        assert_eq!(request_id_header(&h, "x-ovh-queryid"), None);
    }
}
