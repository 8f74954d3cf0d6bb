//! The [`Engine`] handle: commands in, snapshots out.
//!
//! A face holds an `Engine` (or a [`Link`](crate::link::Link) to one); each call of
//! [`EngineApi`] sends one request and awaits its `Result`. Everything to show comes from
//! [`Engine::snapshots`]. This file is the implementation of the API: each call asks the
//! engine task for the unlocked session and runs against it (see `lifecycle.rs`).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::actors::Action;
use super::api::{CatalogReply, EngineApi};
use super::changes::ChangeSet;
use super::config::EngineConfig;
use super::error::EngineError;
use super::import::{ImportReport, ImportRequest};
use super::lifecycle::{Command, Core, Reply};
use super::plan::{NodeRequest, PlanEdit};
use super::plan_file::{ImportMode, ImportReport as PlanImportReport, PlanDocument};
use super::session::Session;
use super::snapshot::{AppSnapshot, LockState, NodeRow};
use super::state::model::Plan;
use super::state::store::StateFile;
use crate::core::oplog::{OpEntry, OpLog};
use crate::core::secret::Secret;
use crate::providers::{Credentials, Descriptor, Env, Registry};
use crate::ssh::ManagedKey;
use crate::ssh::SshAccess;

/// Cheap to clone; every clone talks to the same engine task.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::UnboundedSender<Command>,
    snapshots: watch::Receiver<Arc<AppSnapshot>>,
    oplog: OpLog,
    home: PathBuf,
    registry: Registry,
    env: Env,
}

impl Engine {
    /// Start the engine task on the current tokio runtime.
    pub fn start(config: EngineConfig) -> Engine {
        let oplog = OpLog::default();
        let home_s = config.home.display().to_string();
        let lock = if StateFile::in_home(&config.home).exists() {
            LockState::Locked
        } else {
            LockState::Uninitialized
        };
        let (snap_tx, snapshots) = watch::channel(Arc::new(AppSnapshot::empty(home_s, lock)));
        let (tx, rx) = mpsc::unbounded_channel();
        let core = Core {
            config: config.clone(),
            oplog: oplog.clone(),
            snap_tx,
            session: None,
        };
        tokio::spawn(core.run(rx));
        Engine {
            tx,
            snapshots,
            oplog,
            home: config.home,
            registry: config.registry,
            env: config.env,
        }
    }

    pub fn home(&self) -> &PathBuf {
        &self.home
    }

    pub fn snapshots(&self) -> watch::Receiver<Arc<AppSnapshot>> {
        self.snapshots.clone()
    }

    pub fn snapshot(&self) -> Arc<AppSnapshot> {
        self.snapshots.borrow().clone()
    }

    pub fn oplog(&self) -> &OpLog {
        &self.oplog
    }

    async fn command<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// The unlocked session, or `Locked`.
    async fn session(&self) -> Result<Arc<Session>, EngineError> {
        self.command(|reply| Command::Session { reply }).await
    }

    /// Create a new state with this password and open it.
    pub async fn init(&self, password: Secret) -> Result<(), EngineError> {
        self.command(|reply| Command::Init { password, reply })
            .await
    }

    /// Save and lock (the `lock` call).
    pub async fn logout(&self) -> Result<(), EngineError> {
        self.command(|reply| Command::Logout { reply }).await
    }

    /// The descriptors of every provider enabled here. Needs no unlock.
    pub fn provider_descriptors(&self) -> Vec<Descriptor> {
        self.registry
            .enabled(&self.env)
            .map(|m| m.descriptor())
            .collect()
    }

    /// Wait until `pred` holds for a published snapshot.
    pub async fn wait_for(
        &self,
        pred: impl FnMut(&AppSnapshot) -> bool,
    ) -> Result<Arc<AppSnapshot>, EngineError> {
        super::wait::until(self.snapshots.clone(), pred, || EngineError::Stopped).await
    }

    /// Wait for apply `id` to finish; the snapshot's `apply` says how it ended.
    pub async fn wait_apply(&self, id: u64) -> Result<Arc<AppSnapshot>, EngineError> {
        self.wait_for(super::wait::apply_done(id)).await
    }

    /// Wait until operation `op` of node `name` has finished; the row tells how
    /// (`last_error` is set when it failed).
    pub async fn wait_operation(&self, name: &str, op: u64) -> Result<NodeRow, EngineError> {
        let snap = self.wait_for(super::wait::operation_done(name, op)).await?;
        super::wait::operation_row(&snap, name)
    }

    /// Wait until a node has no operation in flight and its row reflects `done`.
    pub async fn wait_node(
        &self,
        name: &str,
        mut done: impl FnMut(&NodeRow) -> bool,
    ) -> Result<Arc<AppSnapshot>, EngineError> {
        self.wait_for(|s| {
            s.node(name)
                .is_some_and(|n| n.operation.is_none() && done(n))
        })
        .await
    }
}

/// The calls as methods of `Engine` too, so a caller needs no trait import.
macro_rules! inherent {
    ($( $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $out:ty; )*) => {
        impl Engine {
            $(
                $(#[$doc])*
                pub async fn $name(&self, $($arg: $ty),*) -> Result<$out, EngineError> {
                    <Self as EngineApi>::$name(self, $($arg),*).await
                }
            )*
        }
    };
}
super::api::engine_calls!(inherent);

impl EngineApi for Engine {
    async fn unlock(&self, password: Secret) -> Result<(), EngineError> {
        self.command(|reply| Command::Unlock { password, reply })
            .await
    }

    async fn lock(&self) -> Result<(), EngineError> {
        self.logout().await
    }

    async fn change_password(&self, current: Secret, new: Secret) -> Result<(), EngineError> {
        self.command(|reply| Command::ChangePassword {
            current,
            new,
            reply,
        })
        .await
    }

    async fn configure_provider(
        &self,
        kind: String,
        credentials: Credentials,
    ) -> Result<(), EngineError> {
        let s = self.session().await?;
        s.clone()
            .run(async move { s.configure_provider(&kind, credentials).await })
            .await
    }

    async fn verify_provider(&self, kind: String) -> Result<(), EngineError> {
        let s = self.session().await?;
        let c = s.supervisor.env().providers.require(&kind)?;
        Ok(c.api.verify().await?)
    }

    async fn providers(&self) -> Result<Vec<Descriptor>, EngineError> {
        Ok(self.provider_descriptors())
    }

    async fn catalog(&self, kind: String) -> Result<CatalogReply, EngineError> {
        let s = self.session().await?;
        let c = s.supervisor.env().providers.require(&kind)?;
        let catalog = c.catalog(false).await?;
        Ok(CatalogReply {
            catalog,
            policy: c.policy(),
        })
    }

    async fn plan(&self) -> Result<Plan, EngineError> {
        let s = self.session().await?;
        Ok(s.cell.read(|st| st.plan.clone()))
    }

    async fn lockouts(&self) -> Result<Vec<String>, EngineError> {
        let s = self.session().await?;
        Ok(s.cell.read(|st| s.supervisor.lockouts(st)))
    }

    async fn edit_plan(&self, edit: PlanEdit) -> Result<(), EngineError> {
        let s = self.session().await?;
        s.clone().run(async move { s.edit(edit).await }).await
    }

    async fn import_plan(
        &self,
        document: PlanDocument,
        mode: ImportMode,
        dry_run: bool,
    ) -> Result<PlanImportReport, EngineError> {
        let s = self.session().await?;
        s.clone()
            .run(async move { s.import_plan(document, mode, dry_run).await })
            .await
    }

    async fn upsert_node(&self, request: NodeRequest) -> Result<(), EngineError> {
        let s = self.session().await?;
        s.clone()
            .run(async move {
                let node = s.resolve_node(&request).await?;
                s.edit(PlanEdit::UpsertNode {
                    name: request.name.clone(),
                    node,
                })
                .await
            })
            .await
    }

    async fn import_node(&self, request: ImportRequest) -> Result<ImportReport, EngineError> {
        let s = self.session().await?;
        s.clone()
            .run(async move { s.import_node(request).await })
            .await
    }

    async fn changes(&self) -> Result<ChangeSet, EngineError> {
        Ok(self.session().await?.changes())
    }

    async fn apply(&self) -> Result<u64, EngineError> {
        self.session().await?.start_apply()
    }

    async fn refresh(&self) -> Result<(), EngineError> {
        let s = self.session().await?;
        s.clone().run(async move { s.refresh().await }).await
    }

    async fn node_action(&self, name: String, action: Action) -> Result<u64, EngineError> {
        self.session().await?.node_action(&name, action).await
    }

    async fn ssh_access(&self, name: String) -> Result<SshAccess, EngineError> {
        self.session().await?.ssh_access(&name).await
    }

    async fn pin_host_key(&self, name: String, fingerprint: String) -> Result<(), EngineError> {
        crate::ssh::HostKeyFingerprint::parse(&fingerprint)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let s = self.session().await?;
        s.clone()
            .run(async move { s.pin_host_key(&name, fingerprint).await })
            .await
    }

    async fn retrust(&self, name: String) -> Result<Option<String>, EngineError> {
        let s = self.session().await?;
        s.clone().run(async move { s.retrust(&name).await }).await
    }

    async fn managed_key(&self) -> Result<ManagedKey, EngineError> {
        self.session()
            .await?
            .cell
            .read(|st| st.managed_key.clone())
            .ok_or_else(|| EngineError::Invalid("this state has no managed SSH key".into()))
    }

    async fn logs(
        &self,
        limit: usize,
        resource: Option<String>,
    ) -> Result<Vec<Arc<OpEntry>>, EngineError> {
        Ok(self.oplog.recent(limit.min(10_000), resource.as_deref()))
    }
}
