//! The building blocks every piece of a node's work uses, whichever file runs it
//! (`work.rs`: provision, power, deploy; `replace.rs`: resize and replace): the events it
//! reports to the actor, the provider it works through, and how it saves a step.

use std::sync::Arc;

use super::error::ActorError;
use super::machine::{Machine, System};
use super::{ActorEnv, Connected};
use crate::engine::state::change::Key;
use crate::engine::state::model::State;
use crate::providers::HealthReading;

/// What a piece of work reports to its node actor.
pub(super) enum Event {
    Machine(Machine),
    System(System),
    Operation(String),
    OpDone(Result<(), ActorError>),
    /// A health reading and the number of operations started when its probe was: a
    /// probe from before the latest operation describes a machine that has changed since.
    Health(HealthReading, u64),
}

/// The connected provider `provider`, or why the work cannot start.
pub(super) fn connected(env: &ActorEnv, provider: &str) -> Result<Arc<Connected>, ActorError> {
    env.providers
        .require(provider)
        .map_err(|e| ActorError::precondition(e.to_string()))
}

/// Save one step: `f` changes only what `keys` name (one journal record).
pub(super) async fn persist(
    env: &ActorEnv,
    keys: &[Key],
    f: impl FnOnce(&mut State),
) -> Result<(), ActorError> {
    Ok(env.cell.commit_keys(keys, f).await?)
}
