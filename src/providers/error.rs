//! Normalized provider errors.
//!
//! A provider module turns every failure into a [`ProviderError`] with the provider's own
//! code and message kept, so a face can say "Hetzner: server type cx22 is not available in
//! fsn1" rather than "HTTP 422". The [`ErrorKind`] decides what the engine does with it: only
//! ambiguous kinds trigger a read-back after a write.

use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug, Clone, PartialEq, Eq)]
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
        }
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
        matches!(
            self.kind,
            ErrorKind::Unavailable
                | ErrorKind::Timeout
                | ErrorKind::Connection
                | ErrorKind::ResponseLost
        )
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
