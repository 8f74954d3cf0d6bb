//! Why an actor's work failed, kept typed until it becomes a row's `last_error`.
//!
//! The actors' provider calls, node-agent phases and state commits each fail in their own
//! way; this enum keeps the cause (a [`ProviderError`] stays whole, with its kind and
//! request id) so the snapshot can carry its [`ErrorClass`] next to the message and the
//! engine can answer an action's refusal as [`EngineError::Refused`]. Text is made only
//! where a row or the operation log shows it.

use crate::engine::EngineError;
use crate::engine::state::cell::PersistError;
use crate::engine::state::model::Phase;
use crate::providers::{AgentError, ErrorClass, ProviderError};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ActorError {
    /// A provider call failed (boxed: a provider error is large and actors pass results
    /// around by value).
    #[error(transparent)]
    Provider(Box<ProviderError>),
    /// A provider call failed while Legion was doing something the provider's own message
    /// does not say ("uploading Legion's SSH key").
    #[error("{doing}: {source}")]
    ProviderWhile {
        doing: &'static str,
        #[source]
        source: Box<ProviderError>,
    },
    /// A node-agent step (reach, bootstrap, configure, install, readiness) failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// A deployment phase failed; `source` says why.
    #[error("{phase} failed: {source}")]
    Phase {
        phase: Phase,
        #[source]
        source: Box<ActorError>,
    },
    /// What the work needs is not there yet (no server, no agent, the provider is not
    /// configured, a timeout), in the operator's words.
    #[error("{0}")]
    Precondition(String),
    /// The action does not fit the resource's current state.
    #[error("{0}")]
    Refused(String),
    /// The state could not be saved; the work stops rather than run unrecorded.
    #[error("{0}")]
    Persist(String),
    /// The actor stopped (the engine is shutting down).
    #[error("{0}")]
    Stopped(&'static str),
}

impl ActorError {
    pub fn precondition(message: impl Into<String>) -> ActorError {
        ActorError::Precondition(message.into())
    }

    /// The provider's error behind this one, if a provider call failed.
    pub fn provider_error(&self) -> Option<&ProviderError> {
        match self {
            ActorError::Provider(e) | ActorError::ProviderWhile { source: e, .. } => Some(e),
            ActorError::Phase { source, .. } => source.provider_error(),
            _ => None,
        }
    }

    /// The coarse class a face shows (auth, quota, ambiguous, ...), for provider failures.
    pub fn class(&self) -> Option<ErrorClass> {
        self.provider_error().map(ProviderError::class)
    }
}

impl From<ProviderError> for ActorError {
    fn from(e: ProviderError) -> ActorError {
        ActorError::Provider(Box::new(e))
    }
}

impl From<PersistError> for ActorError {
    fn from(e: PersistError) -> ActorError {
        ActorError::Persist(e.to_string())
    }
}

impl From<ActorError> for EngineError {
    fn from(e: ActorError) -> EngineError {
        match e {
            ActorError::Provider(p) => EngineError::Provider(*p),
            ActorError::Refused(m) => EngineError::Refused(m),
            ActorError::Stopped(_) => EngineError::Stopped,
            ActorError::Persist(m) => EngineError::Persist(m),
            other => EngineError::Refused(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ErrorKind;

    #[test]
    fn a_provider_failure_keeps_its_class_through_a_phase() {
        let quota = ProviderError::new("Hetzner", ErrorKind::ResourceLimit, "server limit reached")
            .with_request_id(Some("req-1".into()));
        let e = ActorError::Phase {
            phase: Phase::Provision,
            source: Box::new(ActorError::from(quota)),
        };
        assert_eq!(e.class(), Some(ErrorClass::Quota));
        assert_eq!(
            e.provider_error().and_then(|p| p.request_id.as_deref()),
            Some("req-1")
        );
        assert!(e.to_string().starts_with("provision failed: "), "{e}");
    }

    #[test]
    fn legion_own_failures_have_no_provider_class() {
        let e = ActorError::Phase {
            phase: Phase::Configure,
            source: Box::new(AgentError::Failed("exit 1".into()).into()),
        };
        assert_eq!(e.class(), None);
        assert_eq!(e.to_string(), "configure failed: exit 1");
    }

    #[test]
    fn engine_errors_keep_the_kind() {
        let refused: EngineError = ActorError::Refused("web-1 is already running".into()).into();
        assert_eq!(refused.kind(), crate::engine::ErrorKind::Refused);
        let auth = ProviderError::new("Scaleway", ErrorKind::Unauthorized, "bad token");
        let e: EngineError = ActorError::from(auth).into();
        assert_eq!(e.provider_errors()[0].class(), ErrorClass::Auth);
    }
}
