//! What the HTTP adapters share: building the client, turning a request that got no answer into a
//! `ProviderError` without leaking the URL, the HTTP status's meaning when the provider's
//! own code says nothing, and reading numeric and `Retry-After` headers.
//!
//! It also holds what keeps credentials with the provider they belong to: the client
//! follows no redirect (a 3xx is an error naming where it pointed, so a token, an OVH
//! signature or an `X-Auth-Token` header never reaches another host), an endpoint
//! override must be `https://` unless it is on this machine, and a response body is
//! read only up to [`MAX_BODY`].

use std::time::Duration;

use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{ErrorKind, ProviderError};

/// The largest response body Legion reads from a provider (16 MiB); a bigger one is an
/// error, and memory stays bounded whatever the server sends.
pub const MAX_BODY: usize = 16 << 20;

/// The adapter's one `reqwest` client: the whole-request timeout, a connect timeout of at
/// most 10 s, a `legion/<version>` user agent, and no redirects followed (see
/// [`read_response`]).
pub fn build_client(
    display: &str,
    request_timeout: Duration,
) -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .timeout(request_timeout)
        .connect_timeout(request_timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("legion/", env!("CARGO_PKG_VERSION")))
        // reqwest strips `Authorization` on a cross-host redirect, but not the providers'
        // own headers (Scaleway's `X-Auth-Token`, OVH's `X-Ovh-*` signature). No provider
        // API redirects a correct request, so none is followed at all.
        .redirect(reqwest::redirect::Policy::none())
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

/// Checks an API endpoint override (`var`'s value) at configure time: `https://`, or
/// `http://` to this machine (the tests' local fakes); anything else would send the
/// credentials in clear text.
pub fn check_api_url(display: &str, var: &str, base: &str) -> Result<(), ProviderError> {
    let refuse = |why: &str| {
        Err(ProviderError::new(
            display,
            ErrorKind::InvalidInput,
            format!(
                "{var} = {base:?} {why}; use an https:// URL, or unset {var} for the provider's own API"
            ),
        ))
    };
    let url = match reqwest::Url::parse(base) {
        Ok(url) => url,
        Err(e) => return refuse(&format!("is not a URL ({e})")),
    };
    let host = url.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => refuse("would send the credentials unencrypted to another machine"),
        _ => refuse("must be an http(s) URL"),
    }
}

/// The answer to a request, read: a redirect is refused (naming the host it pointed
/// to, never following it), and the body is read up to [`MAX_BODY`] only. The status and
/// headers come back for the caller's error and rate-limit handling.
pub async fn read_response(
    display: &str,
    mut resp: reqwest::Response,
    method: &Method,
    path: &str,
    write: bool,
    base: &str,
) -> Result<(StatusCode, HeaderMap, Vec<u8>), ProviderError> {
    let status = resp.status();
    if status.is_redirection() {
        let to = resp
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| reqwest::Url::parse(l).ok())
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| "another address".into());
        let mut message = format!(
            "{method} {path} was answered {status} redirecting to {to}: Legion follows no \
             redirect, so the credentials stay with the API; check the API endpoint"
        );
        if write {
            message.push_str(" (the write may have been applied)");
        }
        let kind = if write {
            ErrorKind::ResponseLost
        } else {
            ErrorKind::Other
        };
        return Err(ProviderError::new(display, kind, message));
    }
    let too_big = || {
        let e = format!("the response is larger than {} MiB", MAX_BODY >> 20);
        unreadable(display, method, path, write, e)
    };
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_big());
    }
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| transport_error(display, &e, method, path, write, base))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, headers, body))
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
