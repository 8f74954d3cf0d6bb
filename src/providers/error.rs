//! Normalized provider errors.
//!
//! A provider module turns every failure into a [`ProviderError`] with the provider's own
//! code and message kept, so a face can say "Hetzner: server type cx22 is not available in
//! fsn1" rather than "HTTP 422". The [`ErrorKind`] decides what the engine does with it: only
//! ambiguous kinds trigger a read-back after a write. [`ErrorKind::class`] is the coarser
//! vocabulary the faces use (exit codes, the daemon protocol, what the dashboard says),
//! so they never match on message text.
//!
//! The error is `Serialize + Deserialize` so the daemon protocol can carry it whole. It
//! holds no request body and no credential: only what the provider said about the call.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    NotFound,
    Unauthorized,
    Forbidden,
    InvalidInput,
    /// Name taken, or another uniqueness rule.
    Conflict,
    ResourceLimit,
    RateLimited,
    /// The resource has a running action; try again later (reads only).
    Locked,
    /// 5xx: the provider may or may not have applied a write.
    Unavailable,
    Timeout,
    Connection,
    /// The request was sent and the response never came back.
    ResponseLost,
    /// The provider does not offer this operation.
    Unsupported,
    /// The response could not be understood.
    Malformed,
    Other,
}

/// What a face needs to know about a failure: who must act and whether trying again can
/// help. Exit codes and the daemon protocol are keyed on this, not on [`ErrorKind`], so a
/// provider may refine its kinds without changing what the operator sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The credentials were rejected: fix them in the provider's settings.
    Auth,
    /// The credentials are valid but may not do this.
    Permission,
    NotFound,
    /// A name is taken or the resource is in a state that forbids the call.
    Conflict,
    /// An account limit (servers, IPs, volumes) was reached.
    Quota,
    /// The provider asked Legion to slow down; `retry_after` says for how long.
    RateLimited,
    /// Worth trying again as it is: the resource is busy with another action.
    Transient,
    /// The provider may or may not have done it (timeout, lost answer, 5xx); a write was
    /// read back and its result could not be confirmed.
    Ambiguous,
    /// The request itself is wrong (a bad value, an offer not sold there).
    InvalidInput,
    /// The provider does not offer this operation.
    Unsupported,
    Other,
}

impl ErrorKind {
    pub fn class(self) -> ErrorClass {
        match self {
            ErrorKind::NotFound => ErrorClass::NotFound,
            ErrorKind::Unauthorized => ErrorClass::Auth,
            ErrorKind::Forbidden => ErrorClass::Permission,
            ErrorKind::InvalidInput => ErrorClass::InvalidInput,
            ErrorKind::Conflict => ErrorClass::Conflict,
            ErrorKind::ResourceLimit => ErrorClass::Quota,
            ErrorKind::RateLimited => ErrorClass::RateLimited,
            ErrorKind::Locked => ErrorClass::Transient,
            // The same four kinds `ProviderError::is_ambiguous` reads back after a write:
            // the design's "timeout, connection reset, 5xx, lost response".
            ErrorKind::Unavailable
            | ErrorKind::Timeout
            | ErrorKind::Connection
            | ErrorKind::ResponseLost => ErrorClass::Ambiguous,
            ErrorKind::Unsupported => ErrorClass::Unsupported,
            ErrorKind::Malformed | ErrorKind::Other => ErrorClass::Other,
        }
    }
}

impl ErrorClass {
    /// The serde name (`not_found`, `rate_limited`), for text output and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Auth => "auth",
            ErrorClass::Permission => "permission",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Conflict => "conflict",
            ErrorClass::Quota => "quota",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Transient => "transient",
            ErrorClass::Ambiguous => "ambiguous",
            ErrorClass::InvalidInput => "invalid_input",
            ErrorClass::Unsupported => "unsupported",
            ErrorClass::Other => "other",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderError {
    /// Display name of the provider ("Hetzner", "Simulated cloud").
    pub provider: String,
    pub kind: ErrorKind,
    /// The provider's own error code, e.g. `uniqueness_error`.
    pub code: Option<String>,
    pub message: String,
    pub http_status: Option<u16>,
    /// Field details (`server_type: not available in fsn1`).
    pub details: Vec<String>,
    /// For rate limits: how long until the budget resets.
    pub retry_after: Option<Duration>,
    /// The provider's id for the failed request (Hetzner's `X-Correlation-Id`, OVHcloud's
    /// `X-Ovh-Queryid`), what its support asks for. Not part of `Display`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ProviderError {
    pub fn new(provider: impl Into<String>, kind: ErrorKind, message: impl Into<String>) -> Self {
        ProviderError {
            provider: provider.into(),
            kind,
            code: None,
            message: message.into(),
            http_status: None,
            details: Vec::new(),
            retry_after: None,
            request_id: None,
        }
    }

    /// Keeps the provider's request id when it sent one.
    pub fn with_request_id(mut self, id: Option<String>) -> Self {
        self.request_id = id;
        self
    }

    pub fn class(&self) -> ErrorClass {
        self.kind.class()
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.http_status = Some(status);
        self
    }

    /// The write may have been applied: read back before deciding.
    pub fn is_ambiguous(&self) -> bool {
        self.class() == ErrorClass::Ambiguous
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// Counts against the provider's health (degraded status), as opposed to errors in
    /// what Legion asked for.
    pub fn is_provider_fault(&self) -> bool {
        self.is_ambiguous() || matches!(self.kind, ErrorKind::Malformed | ErrorKind::Other)
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.provider, self.message)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details.join("; "))?;
        }
        if let Some(code) = &self.code {
            write!(f, " [{code}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProviderError {}

pub type ProviderResult<T> = Result<T, ProviderError>;

/// Credentials a provider module refused before any call was made: the messages name the
/// provider and the field, as the settings form and `legion provider set` show them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CredentialError {
    /// `field` is the field's label ("Consumer key").
    #[error("{provider}: {field} is required")]
    Missing { provider: String, field: String },
    /// `field` is the id that no descriptor field has.
    #[error("{provider}: unknown credential field {field:?}")]
    Unknown { provider: String, field: String },
    /// A value the provider cannot use; `message` says why and what would do.
    #[error("{provider}: {message}")]
    Invalid {
        provider: String,
        field: String,
        message: String,
    },
}

impl CredentialError {
    /// The descriptor field id or label the error is about, for forms to mark.
    pub fn field(&self) -> &str {
        match self {
            CredentialError::Missing { field, .. }
            | CredentialError::Unknown { field, .. }
            | CredentialError::Invalid { field, .. } => field,
        }
    }
}

/// Why a node phase (reach, bootstrap, configure, install, readiness) failed. The text is
/// what the operator sees and what the execution record keeps; the variant says whether
/// the node could be reached at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum AgentError {
    /// Legion could not reach or log in to the node (not running, refused, no route).
    #[error("{0}")]
    Unreachable(String),
    /// The phase reached the node and failed there (a command exited non-zero, a check
    /// refused, a fault was injected).
    #[error("{0}")]
    Failed(String),
}

impl AgentError {
    pub fn message(&self) -> &str {
        match self {
            AgentError::Unreachable(m) | AgentError::Failed(m) => m,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(kind: ErrorKind) -> ErrorClass {
        kind.class()
    }

    #[test]
    fn auth_and_permission() {
        assert_eq!(class(ErrorKind::Unauthorized), ErrorClass::Auth);
        assert_eq!(class(ErrorKind::Forbidden), ErrorClass::Permission);
    }

    #[test]
    fn not_found_conflict_quota() {
        assert_eq!(class(ErrorKind::NotFound), ErrorClass::NotFound);
        assert_eq!(class(ErrorKind::Conflict), ErrorClass::Conflict);
        assert_eq!(class(ErrorKind::ResourceLimit), ErrorClass::Quota);
    }

    #[test]
    fn rate_limited_and_locked() {
        assert_eq!(class(ErrorKind::RateLimited), ErrorClass::RateLimited);
        assert_eq!(class(ErrorKind::Locked), ErrorClass::Transient);
    }

    #[test]
    fn ambiguous_is_what_a_write_reads_back() {
        for kind in [
            ErrorKind::Unavailable,
            ErrorKind::Timeout,
            ErrorKind::Connection,
            ErrorKind::ResponseLost,
        ] {
            assert_eq!(class(kind), ErrorClass::Ambiguous, "{kind:?}");
            assert!(
                ProviderError::new("P", kind, "m").is_ambiguous(),
                "{kind:?}"
            );
        }
        assert!(!ProviderError::new("P", ErrorKind::Locked, "m").is_ambiguous());
    }

    #[test]
    fn invalid_input_unsupported_other() {
        assert_eq!(class(ErrorKind::InvalidInput), ErrorClass::InvalidInput);
        assert_eq!(class(ErrorKind::Unsupported), ErrorClass::Unsupported);
        assert_eq!(class(ErrorKind::Malformed), ErrorClass::Other);
        assert_eq!(class(ErrorKind::Other), ErrorClass::Other);
    }

    #[test]
    fn class_names_are_snake_case_and_match_serde() {
        let all = [
            ErrorClass::Auth,
            ErrorClass::Permission,
            ErrorClass::NotFound,
            ErrorClass::Conflict,
            ErrorClass::Quota,
            ErrorClass::RateLimited,
            ErrorClass::Transient,
            ErrorClass::Ambiguous,
            ErrorClass::InvalidInput,
            ErrorClass::Unsupported,
            ErrorClass::Other,
        ];
        for c in all {
            let json = serde_json::to_string(&c).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
        assert_eq!(ErrorClass::RateLimited.to_string(), "rate_limited");
    }

    #[test]
    fn credential_and_agent_errors_keep_their_text() {
        let e = CredentialError::Missing {
            provider: "OVHcloud".into(),
            field: "Consumer key".into(),
        };
        assert_eq!(e.to_string(), "OVHcloud: Consumer key is required");
        let e = CredentialError::Unknown {
            provider: "Hetzner".into(),
            field: "tokn".into(),
        };
        assert_eq!(e.to_string(), "Hetzner: unknown credential field \"tokn\"");
        assert_eq!(e.field(), "tokn");
        let e = AgentError::Unreachable("server is off".into());
        assert_eq!(e.to_string(), "server is off");
        assert_eq!(e.message(), "server is off");
    }

    #[test]
    fn round_trips_through_json_and_keeps_display() {
        let mut e = ProviderError::new("Hetzner", ErrorKind::RateLimited, "slow down")
            .with_code("rate_limit_exceeded")
            .with_status(429)
            .with_request_id(Some("abc-123".into()));
        e.retry_after = Some(Duration::from_secs(7));
        e.details.push("limit: 3600/h".into());
        let json = serde_json::to_string(&e).unwrap_or_default();
        assert!(json.contains("\"kind\":\"rate_limited\""), "{json}");
        let back: ProviderError = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
        assert_eq!(
            e.to_string(),
            "Hetzner: slow down (limit: 3600/h) [rate_limit_exceeded]"
        );
        // An error from a peer without request ids still reads.
        let old = json.replace(",\"request_id\":\"abc-123\"", "");
        let back: ProviderError = serde_json::from_str(&old).unwrap();
        assert_eq!(back.request_id, None);
    }
}
