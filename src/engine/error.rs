//! The engine's error: what a face learns when a call fails.
//!
//! One enum for every call, local or through the daemon. Each error has an [`ErrorKind`]:
//! the stable, machine-readable name the daemon puts on the wire, the CLI turns into an
//! exit code and the dashboard uses to decide how to show it. A provider's failure stays a
//! structured [`ProviderError`] (its kind, code, message and request id) all the way to the
//! face; nothing on the way flattens it to text.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::state::store::StoreError;
use crate::providers::ProviderError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("Legion is locked: unlock it first")]
    Locked,
    #[error("Legion is already unlocked")]
    AlreadyUnlocked,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A node action or request that does not fit the resource's current state, with the
    /// reason in the operator's words.
    #[error("{0}")]
    Refused(String),
    #[error("an apply is already running (apply #{0}); wait for it to finish")]
    ApplyRunning(u64),
    /// What the operator asked for is not valid (a bad name, an unknown provider kind).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// A provider's own failure, kept whole.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// Several providers failed (a refresh reads every one).
    #[error("{}", join(.0))]
    Providers(Vec<ProviderError>),
    #[error("could not save the state: {0}")]
    Persist(String),
    #[error("the Legion home {path}: {detail}")]
    Home { path: PathBuf, detail: String },
    /// The system could not give what the engine needs (randomness, a task).
    #[error("{0}")]
    System(String),
    #[error("the engine has stopped")]
    Stopped,
    /// The daemon cannot be reached (not running, stale socket, connection dropped).
    #[error("the Legion daemon is unavailable: {0}")]
    Unavailable(String),
    /// An error the daemon reported whose kind has no variant of its own here (bad token,
    /// a request it could not read, a reply too large).
    #[error("{message}")]
    Remote { kind: ErrorKind, message: String },
}

fn join(errors: &[ProviderError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What kind of failure an [`EngineError`] is: its name on the daemon's wire, its exit
/// code, how a face shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Locked,
    AlreadyUnlocked,
    WrongPassword,
    /// The state is held by another Legion process.
    InUse,
    /// The state file or its home could not be read or is damaged.
    Store,
    Refused,
    ApplyRunning,
    Invalid,
    NotFound,
    /// A provider failed; the wire error carries the provider's structured error.
    Provider,
    Persist,
    Home,
    System,
    Stopped,
    Unavailable,
    /// The daemon refused the token.
    Unauthorized,
    /// The daemon could not read the request.
    BadRequest,
    TooLarge,
    /// The daemon has as many connections as it serves.
    Busy,
    /// The daemon's reply could not be read.
    BadReply,
    /// The daemon failed to encode a reply.
    Internal,
    /// A kind this Legion does not know (a newer daemon).
    #[serde(other)]
    Other,
}

impl ErrorKind {
    /// The process exit code for an error of this kind: 3 when the state cannot be opened
    /// by this caller (locked, wrong password, held elsewhere, wrong daemon token), 4 when
    /// the daemon cannot be reached, 1 otherwise. Documented in docs/cli.md.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Locked
            | ErrorKind::WrongPassword
            | ErrorKind::InUse
            | ErrorKind::Unauthorized => 3,
            ErrorKind::Unavailable => 4,
            _ => 1,
        }
    }

    /// The wire name (`"wrong_password"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Locked => "locked",
            ErrorKind::AlreadyUnlocked => "already_unlocked",
            ErrorKind::WrongPassword => "wrong_password",
            ErrorKind::InUse => "in_use",
            ErrorKind::Store => "store",
            ErrorKind::Refused => "refused",
            ErrorKind::ApplyRunning => "apply_running",
            ErrorKind::Invalid => "invalid",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Provider => "provider",
            ErrorKind::Persist => "persist",
            ErrorKind::Home => "home",
            ErrorKind::System => "system",
            ErrorKind::Stopped => "stopped",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Busy => "busy",
            ErrorKind::BadReply => "bad_reply",
            ErrorKind::Internal => "internal",
            ErrorKind::Other => "other",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EngineError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Locked => ErrorKind::Locked,
            EngineError::AlreadyUnlocked => ErrorKind::AlreadyUnlocked,
            EngineError::Store(StoreError::WrongPassword { .. }) => ErrorKind::WrongPassword,
            EngineError::Store(StoreError::InUse { .. }) => ErrorKind::InUse,
            EngineError::Store(_) => ErrorKind::Store,
            EngineError::Refused(_) => ErrorKind::Refused,
            EngineError::ApplyRunning(_) => ErrorKind::ApplyRunning,
            EngineError::Invalid(_) => ErrorKind::Invalid,
            EngineError::NotFound(_) => ErrorKind::NotFound,
            EngineError::Provider(_) | EngineError::Providers(_) => ErrorKind::Provider,
            EngineError::Persist(_) => ErrorKind::Persist,
            EngineError::Home { .. } => ErrorKind::Home,
            EngineError::System(_) => ErrorKind::System,
            EngineError::Stopped => ErrorKind::Stopped,
            EngineError::Unavailable(_) => ErrorKind::Unavailable,
            EngineError::Remote { kind, .. } => *kind,
        }
    }

    /// A stable machine-readable name (the daemon's wire code).
    pub fn code(&self) -> &'static str {
        self.kind().as_str()
    }

    pub fn is_wrong_password(&self) -> bool {
        self.kind() == ErrorKind::WrongPassword
    }

    /// Locked, wrong password, the state held by another process or a refused token:
    /// exit code 3.
    pub fn is_locked(&self) -> bool {
        self.exit_code() == 3
    }

    pub fn exit_code(&self) -> u8 {
        self.kind().exit_code()
    }

    /// The provider errors behind this one, if it is a provider failure.
    pub fn provider_errors(&self) -> &[ProviderError] {
        match self {
            EngineError::Provider(e) => std::slice::from_ref(e),
            EngineError::Providers(all) => all,
            _ => &[],
        }
    }

    /// Rebuild an error from the wire (the daemon client's side): the kinds a face acts
    /// on come back as their own variants, provider failures with their structure.
    pub fn from_wire(kind: ErrorKind, message: String, providers: Vec<ProviderError>) -> Self {
        match kind {
            ErrorKind::Locked => EngineError::Locked,
            ErrorKind::AlreadyUnlocked => EngineError::AlreadyUnlocked,
            ErrorKind::Refused => EngineError::Refused(message),
            ErrorKind::Invalid => EngineError::Invalid(message),
            ErrorKind::NotFound => EngineError::NotFound(message),
            ErrorKind::Persist => EngineError::Persist(message),
            ErrorKind::System => EngineError::System(message),
            ErrorKind::Stopped => EngineError::Stopped,
            ErrorKind::Unavailable => EngineError::Unavailable(message),
            ErrorKind::Provider if providers.len() == 1 => {
                let mut providers = providers;
                providers
                    .pop()
                    .map(EngineError::Provider)
                    .unwrap_or(EngineError::Remote { kind, message })
            }
            ErrorKind::Provider if !providers.is_empty() => EngineError::Providers(providers),
            kind => EngineError::Remote { kind, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ErrorKind as ProviderKind;

    #[test]
    fn exit_codes_come_from_the_kind() {
        assert_eq!(EngineError::Locked.exit_code(), 3);
        assert_eq!(EngineError::Unavailable("gone".into()).exit_code(), 4);
        assert_eq!(EngineError::Refused("busy".into()).exit_code(), 1);
        let remote = EngineError::Remote {
            kind: ErrorKind::Unauthorized,
            message: "bad token".into(),
        };
        assert_eq!(remote.exit_code(), 3);
        assert!(remote.is_locked());
    }

    #[test]
    fn kinds_round_trip_by_name_and_unknown_ones_survive() {
        for kind in [
            ErrorKind::WrongPassword,
            ErrorKind::Provider,
            ErrorKind::Busy,
        ] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<ErrorKind>(&json).unwrap(), kind);
        }
        let newer: ErrorKind = serde_json::from_str("\"quantum_flux\"").unwrap();
        assert_eq!(newer, ErrorKind::Other);
    }

    #[test]
    fn a_provider_error_keeps_its_structure() {
        let p = ProviderError::new("Hetzner", ProviderKind::RateLimited, "slow down")
            .with_code("rate_limit_exceeded");
        let e = EngineError::from_wire(ErrorKind::Provider, p.to_string(), vec![p.clone()]);
        assert!(matches!(&e, EngineError::Provider(back) if *back == p));
        assert_eq!(e.provider_errors()[0].kind, ProviderKind::RateLimited);
        assert_eq!(e.to_string(), p.to_string());
    }
}
