//! Resource actors: one tokio task per real resource, each with an inbox and a snapshot.
//!
//! Actors are the read model: what Legion believes about a resource and why. They publish
//! snapshots to the [`Board`]; the supervisor's publisher coalesces board changes into
//! `AppSnapshot` updates. Actors never hold decrypted credentials; they reach providers
//! through the connected [`ProviderSet`].

mod error;
pub mod machine;
pub mod node;
pub mod reconcilers;
pub mod replace;
mod step;
pub mod sync;
mod work;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::state::cell::StateCell;
use crate::core::oplog::{OpKind, OpLog};
use crate::providers::{
    Catalog, CatalogPolicy, DeploymentProfile, ErrorClass, ErrorKind, Lane, ProviderApi,
    ProviderError, ProviderModule, ProviderResult,
};

pub use machine::{Action, Machine, System};

/// Timings the engine runs with; tests shorten them and pause time.
#[derive(Debug, Clone)]
pub struct Timings {
    /// Observation interval while an operation is in flight on the provider.
    pub observe_busy: Duration,
    /// Observation interval when idle.
    pub observe_idle: Duration,
    /// Longest interval while a provider is degraded or near its rate limit.
    pub observe_max_backoff: Duration,
    pub catalog_refresh: Duration,
    /// Snapshot changes within this window become one publication.
    pub coalesce: Duration,
    /// Longest wait for a node to become reachable after provisioning.
    pub reachable_timeout: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            observe_busy: Duration::from_secs(3),
            observe_idle: Duration::from_secs(30),
            observe_max_backoff: Duration::from_secs(300),
            catalog_refresh: Duration::from_secs(3600),
            coalesce: Duration::from_millis(25),
            reachable_timeout: Duration::from_secs(600),
        }
    }
}

/// A provider as the actors use it.
pub struct Connected {
    pub id: String,
    pub module: Arc<dyn ProviderModule>,
    pub api: Arc<dyn ProviderApi>,
    pub lane: Arc<Lane>,
    catalog: Mutex<Option<Arc<Catalog>>>,
    /// Held while the managed SSH key is uploaded, so nodes provisioned together
    /// upload it once.
    pub key_upload: tokio::sync::Mutex<()>,
}

impl Connected {
    pub fn new(
        id: String,
        module: Arc<dyn ProviderModule>,
        api: Arc<dyn ProviderApi>,
        lane: Arc<Lane>,
    ) -> Connected {
        Connected {
            id,
            module,
            api,
            lane,
            catalog: Mutex::new(None),
            key_upload: tokio::sync::Mutex::new(()),
        }
    }

    pub fn policy(&self) -> CatalogPolicy {
        self.module.catalog_policy()
    }

    pub fn profile(&self) -> DeploymentProfile {
        self.module.deployment_profile()
    }

    pub fn cached_catalog(&self) -> Option<Arc<Catalog>> {
        self.catalog.lock().ok()?.clone()
    }

    /// The catalog, read from the provider when not cached (or when `fresh`).
    pub async fn catalog(&self, fresh: bool) -> ProviderResult<Arc<Catalog>> {
        if !fresh && let Some(c) = self.cached_catalog() {
            return Ok(c);
        }
        let compute = self.api.compute().ok_or_else(|| {
            ProviderError::new(
                self.lane.display(),
                ErrorKind::Unsupported,
                "this provider has no compute catalog",
            )
        })?;
        let catalog = Arc::new(compute.catalog().await?);
        if let Ok(mut slot) = self.catalog.lock() {
            *slot = Some(catalog.clone());
        }
        Ok(catalog)
    }
}

/// Connected providers of the unlocked session, by id. Providers configured while
/// unlocked are added in place.
#[derive(Default)]
pub struct ProviderSet {
    by_id: std::sync::RwLock<BTreeMap<String, Arc<Connected>>>,
}

impl ProviderSet {
    pub fn insert(&self, c: Connected) -> Arc<Connected> {
        let c = Arc::new(c);
        if let Ok(mut m) = self.by_id.write() {
            m.insert(c.id.clone(), c.clone());
        }
        c
    }

    pub fn get(&self, id: &str) -> Option<Arc<Connected>> {
        self.by_id.read().ok()?.get(id).cloned()
    }

    pub fn require(&self, id: &str) -> Result<Arc<Connected>, crate::engine::EngineError> {
        self.get(id).ok_or_else(|| {
            crate::engine::EngineError::Invalid(format!(
                "provider {id:?} is not configured or not enabled; configure it first"
            ))
        })
    }

    pub fn all(&self) -> Vec<Arc<Connected>> {
        self.by_id
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", content = "name", rename_all = "snake_case")]
pub enum ResourceKey {
    Node(String),
    Zone(String),
    Firewall(String),
    Domain(String),
}

impl std::fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResourceKey::Node(n) => write!(f, "node/{n}"),
            ResourceKey::Zone(n) => write!(f, "zone/{n}"),
            ResourceKey::Firewall(n) => write!(f, "firewall/{n}"),
            ResourceKey::Domain(n) => write!(f, "domain/{n}"),
        }
    }
}

/// What a node actor believes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSnap {
    pub machine: Machine,
    pub system: System,
    pub health: Option<crate::providers::HealthReading>,
    /// The operation in flight: `provisioning`, `reinstall: configure`, `stop`.
    pub operation: Option<String>,
    pub last_error: Option<String>,
    /// What kind of provider failure `last_error` is (auth, quota, ambiguous, ...), when a
    /// provider call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    /// The newest apply whose sync this actor finished.
    pub synced_apply: u64,
    /// Operations started and finished; an action's reply carries its number, so a
    /// waiter knows when *its* operation is over.
    pub ops_started: u64,
    pub ops_finished: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    Unknown,
    Pending,
    Syncing,
    Converged,
    Waiting,
    Failed,
    Deleting,
}

impl std::fmt::Display for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyncState::Unknown => "unknown",
            SyncState::Pending => "pending",
            SyncState::Syncing => "syncing",
            SyncState::Converged => "converged",
            SyncState::Waiting => "waiting",
            SyncState::Failed => "failed",
            SyncState::Deleting => "deleting",
        })
    }
}

/// What a zone, firewall-set or domain actor believes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncSnap {
    pub state: SyncState,
    /// One line: `12 records`, `5 rules on 3 nodes`.
    pub summary: String,
    pub waiting: Option<String>,
    pub last_error: Option<String>,
    /// As [`NodeSnap::error_class`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    /// The error a later success cleared: history, shown in details only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_error: Option<String>,
    pub operation: Option<String>,
    pub synced_apply: u64,
    /// How many times the actor called the provider to converge (no-ops do not count).
    pub applied_count: u64,
    /// Changes the operator has to make by hand.
    #[serde(default)]
    pub tasks: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Snap {
    Node(Arc<NodeSnap>),
    Sync(Arc<SyncSnap>),
}

/// Where actors publish snapshots. Cheap to write; the publisher reads it in one lock.
pub struct Board {
    snaps: Mutex<HashMap<ResourceKey, Snap>>,
    changes: watch::Sender<u64>,
    oplog: OpLog,
}

impl Board {
    pub fn new(oplog: OpLog) -> Board {
        Board {
            snaps: Mutex::new(HashMap::new()),
            changes: watch::channel(0).0,
            oplog,
        }
    }

    pub fn put(&self, key: ResourceKey, snap: Snap) {
        if let Ok(mut m) = self.snaps.lock() {
            m.insert(key, snap);
        }
        self.bump();
    }

    pub fn remove(&self, key: &ResourceKey) {
        let removed = self.snaps.lock().ok().and_then(|mut m| m.remove(key));
        if removed.is_some() {
            self.bump();
        }
    }

    /// Something outside the actors changed (provider status, apply state).
    pub fn bump(&self) {
        self.changes.send_modify(|c| *c += 1);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn snapshot(&self) -> HashMap<ResourceKey, Snap> {
        self.snaps.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Look at the board in place, under its lock (keep `f` short: actors wait to
    /// publish): no copy of every snapshot for a question about a few.
    pub fn with<R>(&self, f: impl FnOnce(&HashMap<ResourceKey, Snap>) -> R) -> R {
        match self.snaps.lock() {
            Ok(m) => f(&m),
            Err(e) => f(&e.into_inner()),
        }
    }

    pub fn node(&self, name: &str) -> Option<Arc<NodeSnap>> {
        match self
            .snaps
            .lock()
            .ok()?
            .get(&ResourceKey::Node(name.to_string()))?
        {
            Snap::Node(n) => Some(n.clone()),
            Snap::Sync(_) => None,
        }
    }

    pub fn get(&self, key: &ResourceKey) -> Option<Snap> {
        self.snaps.lock().ok()?.get(key).cloned()
    }

    pub fn oplog(&self) -> &OpLog {
        &self.oplog
    }

    pub fn transition(&self, key: &ResourceKey, from: String, to: String) {
        let message = format!("{key}: {from} -> {to}");
        self.oplog.record(
            Some(key.to_string()),
            OpKind::Transition { from, to },
            message,
        );
    }
}

/// What every actor shares.
pub struct ActorEnv {
    pub cell: Arc<StateCell>,
    pub providers: Arc<ProviderSet>,
    pub board: Arc<Board>,
    pub oplog: OpLog,
    pub timings: Timings,
    pub install_id: String,
    /// The node agent for providers without one of their own: SSH.
    pub ssh: Option<Arc<dyn crate::providers::NodeAgent>>,
    /// Nodes of providers with an agent of their own (the simulated cloud) also have an
    /// sshd (an endpoint map places one per node): they are reached over SSH too, after
    /// their own agent ([`crate::engine::ssh_agent::LayeredAgent`]).
    pub ssh_behind_own_agents: bool,
}
