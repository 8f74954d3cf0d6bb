//! A face's link to an engine: one in this process, or the daemon's over its socket.
//!
//! The dashboard and the CLI are written against [`Link`]; both variants offer the same
//! calls with the same errors, so a command prints the same output either way.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::daemon::client::Remote;
use crate::engine::actors::Action;
use crate::engine::oplog::OpEntry;
use crate::engine::plan::{NodeRequest, PlanEdit};
use crate::engine::secret::Secret;
use crate::engine::snapshot::{AppSnapshot, LockState, NodeRow};
use crate::engine::state::model::Plan;
use crate::engine::wait::Snapshots;
use crate::engine::{Engine, EngineError};
use crate::providers::{Catalog, CatalogPolicy, Credentials, Descriptor};

#[derive(Clone)]
pub enum Link {
    /// An engine in this process: unlocked by this process, locked again when done.
    Local(Engine),
    /// The daemon's engine: stays unlocked and running after this process leaves.
    Daemon(Remote),
}

/// The same call on whichever engine this is.
macro_rules! either {
    ($link:expr, $e:ident => $body:expr) => {
        match $link {
            Link::Local($e) => $body,
            Link::Daemon($e) => $body,
        }
    };
}

impl Link {
    pub fn is_daemon(&self) -> bool {
        matches!(self, Link::Daemon(_))
    }

    pub fn home(&self) -> PathBuf {
        either!(self, e => e.home().clone())
    }

    pub fn snapshots(&self) -> Snapshots {
        either!(self, e => e.snapshots())
    }

    pub fn snapshot(&self) -> Arc<AppSnapshot> {
        either!(self, e => e.snapshot())
    }

    pub fn subscribe_logs(&self) -> broadcast::Receiver<Arc<OpEntry>> {
        match self {
            Link::Local(e) => e.oplog().subscribe(),
            Link::Daemon(r) => r.subscribe_logs(),
        }
    }

    pub async fn recent_logs(
        &self,
        limit: usize,
        resource: Option<&str>,
    ) -> Result<Vec<Arc<OpEntry>>, EngineError> {
        match self {
            Link::Local(e) => Ok(e.oplog().recent(limit, resource)),
            Link::Daemon(r) => r.recent_logs(limit, resource).await,
        }
    }

    pub fn provider_descriptors(&self) -> Vec<Descriptor> {
        either!(self, e => e.provider_descriptors())
    }

    pub async fn unlock(&self, password: Secret) -> Result<(), EngineError> {
        either!(self, e => e.unlock(password).await)
    }

    pub async fn change_password(&self, current: Secret, new: Secret) -> Result<(), EngineError> {
        either!(self, e => e.change_password(current, new).await)
    }

    pub async fn configure_provider(
        &self,
        kind: String,
        credentials: Credentials,
    ) -> Result<(), EngineError> {
        either!(self, e => e.configure_provider(kind, credentials).await)
    }

    pub async fn verify_provider(&self, kind: String) -> Result<(), EngineError> {
        either!(self, e => e.verify_provider(kind).await)
    }

    pub async fn edit_plan(&self, edit: PlanEdit) -> Result<(), EngineError> {
        either!(self, e => e.edit_plan(edit).await)
    }

    pub async fn upsert_node(&self, request: NodeRequest) -> Result<(), EngineError> {
        either!(self, e => e.upsert_node(request).await)
    }

    pub async fn import_node(
        &self,
        request: crate::engine::import::ImportRequest,
    ) -> Result<crate::engine::import::ImportReport, EngineError> {
        either!(self, e => e.import_node(request).await)
    }

    pub async fn plan(&self) -> Result<Plan, EngineError> {
        either!(self, e => e.plan().await)
    }

    pub async fn catalog(
        &self,
        kind: String,
    ) -> Result<(Arc<Catalog>, CatalogPolicy), EngineError> {
        either!(self, e => e.catalog(kind).await)
    }

    pub async fn ssh_access(
        &self,
        name: String,
    ) -> Result<crate::engine::ssh_agent::SshAccess, EngineError> {
        either!(self, e => e.ssh_access(name).await)
    }

    pub async fn pin_host_key(&self, name: String, fingerprint: String) -> Result<(), EngineError> {
        either!(self, e => e.pin_host_key(name, fingerprint).await)
    }

    pub async fn retrust(&self, name: String) -> Result<Option<String>, EngineError> {
        either!(self, e => e.retrust(name).await)
    }

    pub async fn managed_key(&self) -> Result<crate::ssh::ManagedKey, EngineError> {
        either!(self, e => e.managed_key().await)
    }

    pub async fn apply(&self) -> Result<u64, EngineError> {
        either!(self, e => e.apply().await)
    }

    pub async fn refresh(&self) -> Result<(), EngineError> {
        either!(self, e => e.refresh().await)
    }

    pub async fn node_action(&self, name: String, action: Action) -> Result<u64, EngineError> {
        either!(self, e => e.node_action(name, action).await)
    }

    pub async fn wait_for(
        &self,
        pred: impl FnMut(&AppSnapshot) -> bool,
    ) -> Result<Arc<AppSnapshot>, EngineError> {
        either!(self, e => e.wait_for(pred).await)
    }

    pub async fn wait_apply(&self, id: u64) -> Result<Arc<AppSnapshot>, EngineError> {
        either!(self, e => e.wait_apply(id).await)
    }

    pub async fn wait_operation(&self, name: &str, op: u64) -> Result<NodeRow, EngineError> {
        either!(self, e => e.wait_operation(name, op).await)
    }

    /// Done with the engine: a local one is saved and locked; the daemon's keeps running.
    pub async fn finish(&self) -> Result<(), EngineError> {
        match self {
            Link::Local(e) if e.snapshot().lock == LockState::Unlocked => e.logout().await,
            _ => Ok(()),
        }
    }
}
