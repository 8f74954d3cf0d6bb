//! Node actions and node access: what an operator does to one node.
//!
//! An action is resolved against the state by a pure function ([`action_target`]) and sent
//! to that node's actor, which accepts it or refuses it with its reason. Nothing here
//! syncs the supervisor from the state: a node planned a moment ago gets its actor from
//! [`super::supervisor::Supervisor::ensure_node`].

use super::actors::Action;
use super::error::EngineError;
use super::session::Session;
use super::state::model::State;
use super::status::{Freshness, hh_mm, provider_freshness};
use crate::providers::ProviderStatus;
use crate::ssh::SshAccess;

/// Whether `name` is a node of this state (planned or tracked): the node an action is
/// for, or why there is none.
pub(crate) fn action_target(state: &State, name: &str) -> Result<(), EngineError> {
    if state.plan.nodes.contains_key(name) || state.tracked.nodes.contains_key(name) {
        Ok(())
    } else {
        Err(EngineError::NotFound(format!("no node {name:?}")))
    }
}

/// The refusal of an action on a node whose provider is disabled or not answering: the
/// actor would accept it and then fail on the first provider call, while the row showed
/// a reading that is no longer current.
pub(crate) fn stale_refusal(
    state: &State,
    providers: &[ProviderStatus],
    name: &str,
    action: Action,
) -> Result<(), EngineError> {
    let Some(provider) = state
        .tracked
        .nodes
        .get(name)
        .map(|t| t.provider.as_str())
        .or_else(|| state.plan.nodes.get(name).map(|p| p.provider.as_str()))
    else {
        return Ok(());
    };
    let reading = state.observed.servers.get(name).map(|r| r.at_ms);
    match provider_freshness(providers, provider, reading) {
        Freshness::Current => Ok(()),
        Freshness::Stale { since_ms, why } => {
            let since = since_ms.map_or_else(String::new, |ms| {
                format!("; its row is stale since {} UTC", hh_mm(ms))
            });
            let fix = if providers.iter().any(|p| p.id == provider) {
                "try again once it answers (`legion refresh` checks now)".to_string()
            } else if state.providers.contains_key(provider) {
                format!("enable {provider} for this engine (see `legion provider list`)")
            } else {
                format!("configure it with `legion provider configure {provider}`")
            };
            Err(EngineError::Refused(format!(
                "cannot {action} {name}: {why}{since}; {fix}"
            )))
        }
    }
}

impl Session {
    /// Start, stop, reboot, retry or reinstall a node. Returns once the node's actor
    /// accepted (the work continues) or refused (with its reason); the number identifies
    /// the operation for `wait_operation`.
    pub(crate) async fn node_action(&self, name: &str, action: Action) -> Result<u64, EngineError> {
        let providers: Vec<ProviderStatus> = self
            .supervisor
            .env()
            .providers
            .all()
            .iter()
            .map(|c| c.lane.status())
            .collect();
        self.cell.read(|st| {
            action_target(st, name)?;
            stale_refusal(st, &providers, name, action)
        })?;
        let handle = self.supervisor.ensure_node(name);
        Ok(handle.action(action).await?)
    }

    /// How to reach a node over SSH: address, user, the managed key, the pinned host key.
    pub(crate) async fn ssh_access(&self, name: &str) -> Result<SshAccess, EngineError> {
        // A provider with its own node agent (the simulated cloud) has no SSH server
        // behind its addresses.
        let provider = self
            .cell
            .read(|st| st.tracked.nodes.get(name).map(|t| t.provider.clone()));
        if let Some(p) = provider.and_then(|p| self.supervisor.env().providers.get(&p))
            && p.api.node_agent().is_some()
            && !self.ssh.endpoints_mapped()
        {
            return Err(EngineError::Refused(format!(
                "{name} is a simulated node ({}): {}",
                p.lane.display(),
                super::sandbox::NO_SSHD
            )));
        }
        if self.ssh.endpoints_mapped() {
            // A server that is off has no running endpoint to log in to (and one must
            // not be started for it).
            let status = self.cell.read(|st| {
                st.observed
                    .servers
                    .get(name)
                    .and_then(|r| r.server.as_ref())
                    .map(|sv| sv.status)
            });
            if let Some(st) = status
                && st != crate::providers::ServerStatus::Running
            {
                return Err(EngineError::Refused(format!(
                    "{name} is {st}: start it first"
                )));
            }
        }
        self.ssh
            .access_async(name)
            .await
            .map_err(|e| EngineError::Invalid(e.to_string()))
    }

    /// Pin a node's host key seen on first contact (no-op when one is pinned already).
    pub(crate) async fn pin_host_key(
        &self,
        name: &str,
        fingerprint: String,
    ) -> Result<(), EngineError> {
        self.cell
            .commit(|st| {
                if let Some(t) = st.tracked.nodes.get_mut(name)
                    && t.host_key.is_none()
                {
                    t.host_key = Some(fingerprint);
                }
            })
            .await
            .map_err(|e| EngineError::Persist(e.to_string()))
    }

    /// Forget a node's pinned host key: the next connection trusts what it finds (after
    /// a reinstall, or once the operator has checked a changed key out of band).
    pub(crate) async fn retrust(&self, name: &str) -> Result<Option<String>, EngineError> {
        let (old, v) = self
            .cell
            .try_mutate(|st| match st.tracked.nodes.get_mut(name) {
                Some(t) => Ok(t.host_key.take()),
                None => Err(EngineError::NotFound(format!(
                    "no node {name:?} with a server"
                ))),
            })?;
        self.cell
            .persist(v)
            .await
            .map_err(|e| EngineError::Persist(e.to_string()))?;
        self.supervisor.env().oplog.info(
            Some(format!("node/{name}")),
            format!(
                "{name}: host key pin removed{}; the next connection pins what it finds",
                old.as_deref()
                    .map(|o| format!(" (was {o})"))
                    .unwrap_or_default()
            ),
        );
        Ok(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_needs_a_planned_or_tracked_node() {
        let mut st = State::new("install".into());
        assert!(matches!(
            action_target(&st, "web-1"),
            Err(EngineError::NotFound(m)) if m.contains("web-1")
        ));
        let node = serde_json::from_value(serde_json::json!({
            "uid": "0011", "cluster": "web", "role": "node", "provider": "mock",
            "region": "r", "offer": "o", "image": "i", "boot_mode": "bios"
        }))
        .unwrap();
        st.plan.nodes.insert("web-1".into(), node);
        assert!(action_target(&st, "web-1").is_ok());
    }

    #[test]
    fn actions_on_a_stale_provider_are_refused_with_the_reason() {
        let mut st = State::new("install".into());
        let node = serde_json::from_value(serde_json::json!({
            "uid": "0011", "cluster": "web", "role": "node", "provider": "mock",
            "region": "r", "offer": "o", "image": "i", "boot_mode": "bios"
        }))
        .unwrap();
        st.plan.nodes.insert("web-1".into(), node);
        let e = stale_refusal(&st, &[], "web-1", Action::Start).unwrap_err();
        assert!(
            matches!(&e, EngineError::Refused(m)
            if m.contains("cannot start web-1") && m.contains("not enabled")
                && m.contains("legion provider configure mock")),
            "{e}"
        );
        let mut status: ProviderStatus = serde_json::from_value(serde_json::json!({
            "id": "mock", "kind": "mock", "display": "Simulated cloud", "health": "degraded",
            "last_error": "Simulated cloud: connection reset", "in_flight": 0, "calls": 5,
            "writes": 0, "rate_limit": null, "rate_remaining": null, "failures": 4,
            "last_ok_ms": 3_600_000u64
        }))
        .unwrap();
        let e =
            stale_refusal(&st, std::slice::from_ref(&status), "web-1", Action::Reboot).unwrap_err();
        assert!(
            matches!(&e, EngineError::Refused(m)
            if m.contains("not answering") && m.contains("stale since 01:00")
                && m.contains("legion refresh")),
            "{e}"
        );
        status.failures = 1;
        assert!(stale_refusal(&st, &[status], "web-1", Action::Reboot).is_ok());
    }
}
