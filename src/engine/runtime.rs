//! The `Engine` handle: commands in, snapshots out.
//!
//! A face (dashboard, CLI, daemon) holds an [`Engine`]; each method sends one command to
//! the engine task and awaits its `Result`. Everything to show comes from
//! [`Engine::snapshots`]. Lifecycle commands (init, unlock, logout, password) run in the
//! engine task in order; the rest run on their own tasks against the unlocked session,
//! so a long apply never blocks a node action.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::actors::SyncState;
use super::actors::{Action, ActorEnv, Board, Connected, ProviderSet, ResourceKey, Snap, Timings};
use super::oplog::{OpKind, OpLog};
use super::plan::{NodeRequest, PlanEdit, apply_edit};
use super::snapshot::{AppSnapshot, ApplyView, LockState};
use super::state::cell::StateCell;
use super::state::crypto::KdfParams;
use super::state::model::{NodePlan, State};
use super::state::store::{StateFile, StateLock, StoreError};
use super::supervisor::Supervisor;
use super::{home, observe};
use crate::engine::secret::Secret;
use crate::providers::{ConnectCtx, Credentials, Env, Lane, ProviderModule, Registry};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("Legion is locked: unlock it first")]
    Locked,
    #[error("Legion is already unlocked")]
    AlreadyUnlocked,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Refused(String),
    #[error("an apply is already running (apply #{0}); wait for it to finish")]
    ApplyRunning(u64),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Provider(String),
    #[error("could not save the state: {0}")]
    Persist(String),
    #[error("the Legion home {path}: {detail}")]
    Home { path: PathBuf, detail: String },
    #[error("the engine has stopped")]
    Stopped,
    /// The daemon cannot be reached (not running, stale socket, connection dropped).
    #[error("the Legion daemon is unavailable: {0}")]
    Unavailable(String),
    /// An error the daemon's engine reported, by its wire code.
    #[error("{message}")]
    Remote { code: String, message: String },
}

impl EngineError {
    pub fn is_wrong_password(&self) -> bool {
        matches!(self, EngineError::Store(StoreError::WrongPassword { .. }))
            || matches!(self, EngineError::Remote { code, .. } if code == "wrong_password")
    }

    /// A stable machine-readable name (the daemon's wire code).
    pub fn code(&self) -> &str {
        match self {
            EngineError::Locked => "locked",
            EngineError::AlreadyUnlocked => "already_unlocked",
            EngineError::Store(StoreError::WrongPassword { .. }) => "wrong_password",
            EngineError::Store(StoreError::InUse { .. }) => "in_use",
            EngineError::Store(_) => "store",
            EngineError::Refused(_) => "refused",
            EngineError::ApplyRunning(_) => "apply_running",
            EngineError::Invalid(_) => "invalid",
            EngineError::NotFound(_) => "not_found",
            EngineError::Provider(_) => "provider",
            EngineError::Persist(_) => "persist",
            EngineError::Home { .. } => "home",
            EngineError::Stopped => "stopped",
            EngineError::Unavailable(_) => "unavailable",
            EngineError::Remote { code, .. } => code,
        }
    }

    /// Rebuild an error from its wire code and message (the daemon client's side).
    pub fn from_wire(code: &str, message: String) -> EngineError {
        match code {
            "locked" => EngineError::Locked,
            "already_unlocked" => EngineError::AlreadyUnlocked,
            "refused" => EngineError::Refused(message),
            "invalid" => EngineError::Invalid(message),
            "not_found" => EngineError::NotFound(message),
            "provider" => EngineError::Provider(message),
            "persist" => EngineError::Persist(message),
            "stopped" => EngineError::Stopped,
            "unavailable" => EngineError::Unavailable(message),
            _ => EngineError::Remote {
                code: code.to_string(),
                message,
            },
        }
    }

    /// Locked, wrong password, or the state held by another process: exit code 3.
    pub fn is_locked(&self) -> bool {
        self.is_wrong_password()
            || matches!(
                self.code(),
                "locked" | "in_use" | "wrong_password" | "unauthorized"
            )
    }
}

type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

enum Command {
    Init {
        password: Secret,
        reply: Reply<()>,
    },
    Unlock {
        password: Secret,
        reply: Reply<()>,
    },
    Logout {
        reply: Reply<()>,
    },
    ChangePassword {
        current: Secret,
        new: Secret,
        reply: Reply<()>,
    },
    Session(
        Box<dyn FnOnce(Arc<Session>) -> JoinHandle<()> + Send>,
        Reply<()>,
    ),
}

/// How an engine is set up; tests inject the registry, environment and timings.
#[derive(Clone)]
pub struct EngineConfig {
    pub home: PathBuf,
    pub registry: Registry,
    pub env: Env,
    pub timings: Timings,
    pub kdf: KdfParams,
    /// Where nodes' sshds are when not at their provider addresses (one local sshd per
    /// simulated node, for instance); `None`: at those addresses.
    pub ssh_endpoints: Option<Arc<dyn crate::ssh::NodeEndpoints>>,
}

impl EngineConfig {
    pub fn new(home: PathBuf) -> EngineConfig {
        EngineConfig {
            home,
            registry: Registry::builtin(),
            env: Env::from_process(),
            timings: Timings::default(),
            kdf: KdfParams::DEFAULT,
            ssh_endpoints: None,
        }
    }
}

/// The unlocked state and everything running on it. Dropped on logout.
pub struct Session {
    pub cell: Arc<StateCell>,
    pub supervisor: Arc<Supervisor>,
    pub apply: Arc<Mutex<ApplyView>>,
    apply_lock: Arc<tokio::sync::Mutex<()>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// One observation task per connected provider, replaced on reconfiguration.
    observers: Mutex<std::collections::HashMap<String, JoinHandle<()>>>,
    config: EngineConfig,
    /// Released by logout (`release_lock`), so a new unlock can follow at once.
    lock: Mutex<Option<StateLock>>,
    /// SSH to nodes: deployment phases, health, the terminal pane, `legion ssh`.
    pub ssh: Arc<super::ssh_agent::SshAgent>,
}

impl Session {
    /// Stop every task and actor of this session.
    fn stop_tasks(&self) {
        if let Ok(mut t) = self.tasks.lock() {
            for task in t.drain(..) {
                task.abort();
            }
        }
        if let Ok(mut o) = self.observers.lock() {
            for (_, task) in o.drain() {
                task.abort();
            }
        }
        self.supervisor.stop_all();
    }

    fn release_lock(&self) {
        if let Ok(mut l) = self.lock.lock() {
            l.take();
        }
    }

    fn track(&self, task: JoinHandle<()>) {
        if let Ok(mut t) = self.tasks.lock() {
            t.retain(|t| !t.is_finished());
            t.push(task);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop_tasks();
    }
}

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

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Run `f` against the unlocked session on its own task.
    async fn with_session<T, F, Fut>(&self, f: F) -> Result<T, EngineError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Session>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, EngineError>> + Send + 'static,
    {
        let (out_tx, out_rx) = oneshot::channel();
        let job: Box<dyn FnOnce(Arc<Session>) -> JoinHandle<()> + Send> =
            Box::new(move |session| {
                tokio::spawn(async move {
                    let _ = out_tx.send(f(session).await);
                })
            });
        self.call(|reply| Command::Session(job, reply)).await?;
        out_rx.await.map_err(|_| EngineError::Stopped)?
    }

    pub async fn init(&self, password: Secret) -> Result<(), EngineError> {
        self.call(|reply| Command::Init { password, reply }).await
    }

    pub async fn unlock(&self, password: Secret) -> Result<(), EngineError> {
        self.call(|reply| Command::Unlock { password, reply }).await
    }

    pub async fn logout(&self) -> Result<(), EngineError> {
        self.call(|reply| Command::Logout { reply }).await
    }

    pub async fn change_password(&self, current: Secret, new: Secret) -> Result<(), EngineError> {
        self.call(|reply| Command::ChangePassword {
            current,
            new,
            reply,
        })
        .await
    }

    /// Store credentials for a provider kind and connect it.
    pub async fn configure_provider(
        &self,
        kind: String,
        credentials: Credentials,
    ) -> Result<(), EngineError> {
        self.with_session(move |s| async move { s.configure_provider(&kind, credentials).await })
            .await
    }

    pub async fn edit_plan(&self, edit: PlanEdit) -> Result<(), EngineError> {
        self.with_session(move |s| async move { s.edit(edit).await })
            .await
    }

    /// Plan a node, filling empty choices from the provider's catalog policy.
    pub async fn upsert_node(&self, req: NodeRequest) -> Result<(), EngineError> {
        self.with_session(move |s| async move {
            let node = s.resolve_node(&req).await?;
            s.edit(PlanEdit::UpsertNode {
                name: req.name.clone(),
                node,
            })
            .await
        })
        .await
    }

    /// Import an existing host as a node of the manual provider (see
    /// [`super::import`]): one login with the password (or the key already in place),
    /// sudo checked, the managed key installed and key-only login proven, then the node
    /// planned and tracked with its host key pinned. An apply deploys it.
    pub async fn import_node(
        &self,
        req: super::import::ImportRequest,
    ) -> Result<super::import::ImportReport, EngineError> {
        self.with_session(move |s| async move { s.import_node(req).await })
            .await
    }

    /// A copy of the operator's plan (for listings such as planned DNS records).
    pub async fn plan(&self) -> Result<super::state::model::Plan, EngineError> {
        self.with_session(|s| async move { Ok(s.cell.read(|st| st.plan.clone())) })
            .await
    }

    /// The descriptors of every provider enabled here: what settings forms and CLI flags
    /// are made from. Needs no unlock.
    pub fn provider_descriptors(&self) -> Vec<crate::providers::Descriptor> {
        self.registry
            .enabled(&self.env)
            .map(|m| m.descriptor())
            .collect()
    }

    /// A provider's catalog (cached after the first read) and its catalog policy, for
    /// forms and the CLI. Reads the provider; never writes.
    pub async fn catalog(
        &self,
        provider: String,
    ) -> Result<
        (
            Arc<crate::providers::Catalog>,
            crate::providers::CatalogPolicy,
        ),
        EngineError,
    > {
        self.with_session(move |s| async move {
            let c = s
                .supervisor
                .env()
                .providers
                .require(&provider)
                .map_err(EngineError::Invalid)?;
            let catalog = c
                .catalog(false)
                .await
                .map_err(|e| EngineError::Provider(e.to_string()))?;
            Ok((catalog, c.policy()))
        })
        .await
    }

    /// Ask a configured provider whether its credentials work (one read; no writes).
    pub async fn verify_provider(&self, provider: String) -> Result<(), EngineError> {
        self.with_session(move |s| async move {
            let c = s
                .supervisor
                .env()
                .providers
                .require(&provider)
                .map_err(EngineError::Invalid)?;
            c.api
                .verify()
                .await
                .map_err(|e| EngineError::Provider(e.to_string()))
        })
        .await
    }

    /// How to reach a node over SSH: address, user, the managed key, the pinned host key.
    pub async fn ssh_access(
        &self,
        name: String,
    ) -> Result<super::ssh_agent::SshAccess, EngineError> {
        self.with_session(move |s| async move {
            // A provider with its own node agent (the simulated cloud) has no SSH server
            // behind its addresses.
            let provider = s
                .cell
                .read(|st| st.tracked.nodes.get(&name).map(|t| t.provider.clone()));
            if let Some(p) = provider.and_then(|p| s.supervisor.env().providers.get(&p))
                && p.api.node_agent().is_some()
                && !s.ssh.endpoints_mapped()
            {
                return Err(EngineError::Refused(format!(
                    "{name} is a simulated node ({}): {}",
                    p.lane.display(),
                    super::sandbox::NO_SSHD
                )));
            }
            if s.ssh.endpoints_mapped() {
                // A server that is off has no running endpoint to log in to (and one must
                // not be started for it).
                let status = s.cell.read(|st| {
                    st.observed
                        .servers
                        .get(&name)
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
            s.ssh
                .access_async(&name)
                .await
                .map_err(|e| EngineError::Invalid(e.to_string()))
        })
        .await
    }

    /// Pin a node's host key seen on first contact (no-op when one is pinned already).
    pub async fn pin_host_key(&self, name: String, fingerprint: String) -> Result<(), EngineError> {
        crate::ssh::HostKeyFingerprint::parse(&fingerprint)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        self.with_session(move |s| async move {
            s.cell
                .commit(|st| {
                    if let Some(t) = st.tracked.nodes.get_mut(&name)
                        && t.host_key.is_none()
                    {
                        t.host_key = Some(fingerprint);
                    }
                })
                .await
                .map_err(|e| EngineError::Persist(e.to_string()))
        })
        .await
    }

    /// Forget a node's pinned host key: the next connection trusts what it finds (after
    /// a reinstall, or once the operator has checked a changed key out of band).
    pub async fn retrust(&self, name: String) -> Result<Option<String>, EngineError> {
        self.with_session(move |s| async move {
            let (old, v) = s
                .cell
                .try_mutate(|st| match st.tracked.nodes.get_mut(&name) {
                    Some(t) => Ok(t.host_key.take()),
                    None => Err(EngineError::NotFound(format!(
                        "no node {name:?} with a server"
                    ))),
                })?;
            s.cell
                .persist(v)
                .await
                .map_err(|e| EngineError::Persist(e.to_string()))?;
            s.supervisor.env().oplog.info(
                Some(format!("node/{name}")),
                format!(
                    "{name}: host key pin removed{}; the next connection pins what it finds",
                    old.as_deref()
                        .map(|o| format!(" (was {o})"))
                        .unwrap_or_default()
                ),
            );
            Ok(old)
        })
        .await
    }

    /// Legion's managed SSH key (for `legion ssh-key export`).
    pub async fn managed_key(&self) -> Result<crate::ssh::ManagedKey, EngineError> {
        self.with_session(|s| async move {
            s.cell
                .read(|st| st.managed_key.clone())
                .ok_or_else(|| EngineError::Invalid("this state has no managed SSH key".into()))
        })
        .await
    }

    /// Start an apply; returns its id. Progress and outcome are in the snapshot.
    pub async fn apply(&self) -> Result<u64, EngineError> {
        self.with_session(|s| async move { s.start_apply() }).await
    }

    /// Read every provider now.
    pub async fn refresh(&self) -> Result<(), EngineError> {
        self.with_session(|s| async move { s.refresh().await })
            .await
    }

    /// Start, stop, reboot, retry or reinstall a node. Returns once the node's actor
    /// accepted (the work continues) or refused (with its reason). The number returned
    /// identifies the operation for [`Engine::wait_operation`].
    pub async fn node_action(&self, name: String, action: Action) -> Result<u64, EngineError> {
        self.with_session(move |s| async move {
            s.supervisor.sync_from_state();
            let handle = s
                .supervisor
                .node(&name)
                .ok_or_else(|| EngineError::NotFound(format!("no node {name:?}")))?;
            handle.action(action).await.map_err(EngineError::Refused)
        })
        .await
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
    pub async fn wait_operation(
        &self,
        name: &str,
        op: u64,
    ) -> Result<super::snapshot::NodeRow, EngineError> {
        let snap = self.wait_for(super::wait::operation_done(name, op)).await?;
        super::wait::operation_row(&snap, name)
    }

    /// Wait until a node has no operation in flight and its row reflects `done`.
    pub async fn wait_node(
        &self,
        name: &str,
        mut done: impl FnMut(&super::snapshot::NodeRow) -> bool,
    ) -> Result<Arc<AppSnapshot>, EngineError> {
        self.wait_for(|s| {
            s.node(name)
                .is_some_and(|n| n.operation.is_none() && done(n))
        })
        .await
    }
}

struct Core {
    config: EngineConfig,
    oplog: OpLog,
    snap_tx: watch::Sender<Arc<AppSnapshot>>,
    session: Option<Arc<Session>>,
}

impl Core {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Command::Init { password, reply } => {
                    let r = self.init(password).await;
                    let _ = reply.send(r);
                }
                Command::Unlock { password, reply } => {
                    let r = self.unlock(password).await;
                    let _ = reply.send(r);
                }
                Command::Logout { reply } => {
                    let r = self.logout().await;
                    let _ = reply.send(r);
                }
                Command::ChangePassword {
                    current,
                    new,
                    reply,
                } => {
                    let r = self.change_password(current, new).await;
                    let _ = reply.send(r);
                }
                Command::Session(job, reply) => match &self.session {
                    Some(s) => {
                        // Tracked, so a logout stops work still running for this session.
                        s.track(job(s.clone()));
                        let _ = reply.send(Ok(()));
                    }
                    None => {
                        let _ = reply.send(Err(EngineError::Locked));
                    }
                },
            }
        }
        // Every handle is gone: save what is pending, as logout would.
        if let Some(s) = self.session.take() {
            s.stop_tasks();
            let _ = s.cell.flush().await;
            for p in s.supervisor.env().providers.all() {
                p.api.flush().await;
            }
        }
    }

    fn publish_lock(&self, lock: LockState) {
        let seq = self.snap_tx.borrow().seq + 1;
        let mut snap = AppSnapshot::empty(self.config.home.display().to_string(), lock);
        snap.seq = seq;
        self.snap_tx.send_replace(Arc::new(snap));
    }

    fn prepare_home(&self) -> Result<(), EngineError> {
        home::ensure_home(&self.config.home)
            .map(|tightened| {
                for t in tightened {
                    tracing::warn!(?t, "tightened Legion home permissions");
                }
            })
            .map_err(|e| EngineError::Home {
                path: self.config.home.clone(),
                detail: e.to_string(),
            })
    }

    async fn init(&mut self, password: Secret) -> Result<(), EngineError> {
        if self.session.is_some() {
            return Err(EngineError::AlreadyUnlocked);
        }
        self.prepare_home()?;
        let lock = StateLock::acquire(&self.config.home)?;
        let file = StateFile::in_home(&self.config.home);
        let mut id = [0u8; 8];
        getrandom::fill(&mut id)
            .map_err(|e| EngineError::Invalid(format!("system random failed: {e}")))?;
        let state = State::new(hex::encode(id));
        let plaintext = zeroize::Zeroizing::new(
            serde_json::to_vec(&state).map_err(|e| EngineError::Persist(e.to_string()))?,
        );
        let kdf = self.config.kdf;
        let (file, key) = tokio::task::spawn_blocking(move || {
            file.create(password.expose().as_bytes(), kdf, &plaintext)
                .map(|key| (file, key))
        })
        .await
        .map_err(|_| EngineError::Stopped)??;
        self.oplog.info(
            None,
            format!(
                "created a new Legion state in {}",
                self.config.home.display()
            ),
        );
        self.open_session(state, file, key, lock).await
    }

    async fn unlock(&mut self, password: Secret) -> Result<(), EngineError> {
        if self.session.is_some() {
            return Err(EngineError::AlreadyUnlocked);
        }
        let file = StateFile::in_home(&self.config.home);
        if !file.exists() {
            return Err(StoreError::Missing {
                path: file.path().to_path_buf(),
            }
            .into());
        }
        self.prepare_home()?;
        let lock = StateLock::acquire(&self.config.home)?;
        let (file, key, plaintext) = tokio::task::spawn_blocking(move || {
            file.open(password.expose().as_bytes())
                .map(|(key, pt)| (file, key, pt))
        })
        .await
        .map_err(|_| EngineError::Stopped)??;
        let state: State = serde_json::from_slice(&plaintext).map_err(|e| {
            EngineError::Invalid(format!(
                "the state decrypted but could not be read ({e}); it may come from an incompatible Legion"
            ))
        })?;
        self.open_session(state, file, key, lock).await
    }

    async fn open_session(
        &mut self,
        state: State,
        file: StateFile,
        key: super::state::crypto::StateKey,
        lock: StateLock,
    ) -> Result<(), EngineError> {
        let cfg = self.config.clone();
        let _ = self
            .oplog
            .attach_file(cfg.home.join("logs").join("operations.jsonl"));
        let install_id = state.install_id.clone();
        let mut state = state;
        let new_key = state.managed_key.is_none();
        if new_key {
            // Made at init; a home from before managed keys gets one now.
            state.managed_key = Some(
                crate::ssh::ManagedKey::generate()
                    .map_err(|e| EngineError::Invalid(format!("making the SSH key: {e}")))?,
            );
        }
        let cell = StateCell::start(state, file, key);
        // Executions found running belong to a process that is gone.
        let interrupted = cell.mutate(|s| {
            let mut names = Vec::new();
            for (name, t) in s.tracked.nodes.iter_mut() {
                if t.execution
                    .as_mut()
                    .is_some_and(|e| e.interrupt_if_running())
                {
                    names.push(name.clone());
                }
            }
            names
        });
        cell.persist(interrupted.1)
            .await
            .map_err(|e| EngineError::Persist(e.to_string()))?;
        for name in &interrupted.0 {
            self.oplog.warn(
                Some(format!("node/{name}")),
                format!(
                    "{name}: its execution was interrupted when Legion stopped; retry resumes it"
                ),
            );
        }
        let board = Arc::new(Board::new(self.oplog.clone()));
        let ssh = Arc::new(super::ssh_agent::SshAgent::new(
            cell.clone(),
            super::ssh_agent::SshSettings {
                roles_dir: Some(cfg.home.join("roles")),
                provider_users: cfg
                    .registry
                    .kinds()
                    .into_iter()
                    .filter_map(|k| {
                        let m = cfg.registry.get(k)?;
                        Some((k.to_string(), m.ssh_user().to_string()))
                    })
                    .collect(),
                ..super::ssh_agent::SshSettings::from_env(&cfg.env)
            },
            cfg.ssh_endpoints.clone(),
        ));
        let env = Arc::new(ActorEnv {
            cell: cell.clone(),
            providers: Arc::new(ProviderSet::default()),
            board: board.clone(),
            oplog: self.oplog.clone(),
            timings: cfg.timings.clone(),
            install_id,
            ssh: Some(ssh.clone()),
            ssh_behind_own_agents: cfg.ssh_endpoints.is_some(),
        });
        let supervisor = Arc::new(Supervisor::new(env.clone()));
        let apply = Arc::new(Mutex::new(ApplyView::Idle));
        let session = Arc::new(Session {
            cell: cell.clone(),
            supervisor: supervisor.clone(),
            apply: apply.clone(),
            apply_lock: Arc::new(tokio::sync::Mutex::new(())),
            tasks: Mutex::new(Vec::new()),
            observers: Mutex::new(std::collections::HashMap::new()),
            config: cfg.clone(),
            lock: Mutex::new(Some(lock)),
            ssh,
        });
        let configured: Vec<(String, String, Credentials)> = cell.read(|s| {
            s.providers
                .iter()
                .map(|(id, p)| (id.clone(), p.kind.clone(), p.credentials.clone()))
                .collect()
        });
        for (id, kind, creds) in configured {
            if let Err(e) = session.connect(&id, &kind, creds) {
                self.oplog
                    .warn(Some(format!("provider/{id}")), e.to_string());
            }
        }
        supervisor.sync_from_state();
        let follower = supervisor.spawn_state_follower();
        let publisher =
            supervisor.spawn_publisher(cfg.home.display().to_string(), self.snap_tx.clone(), apply);
        session.track(follower);
        session.track(publisher);
        board.bump();
        self.session = Some(session);
        Ok(())
    }

    async fn logout(&mut self) -> Result<(), EngineError> {
        let Some(session) = self.session.take() else {
            return Err(EngineError::Locked);
        };
        session.stop_tasks();
        let flushed = session.cell.flush().await;
        for p in session.supervisor.env().providers.all() {
            p.api.flush().await;
        }
        session.release_lock();
        drop(session);
        self.oplog.detach_file();
        self.publish_lock(LockState::Locked);
        flushed.map_err(|e| EngineError::Persist(e.to_string()))
    }

    async fn change_password(&mut self, current: Secret, new: Secret) -> Result<(), EngineError> {
        let session = self.session.clone().ok_or(EngineError::Locked)?;
        if new.expose().is_empty() {
            return Err(EngineError::Invalid("the new password is empty".into()));
        }
        // Prove the current password against the file before re-encrypting.
        let file = StateFile::in_home(&self.config.home);
        tokio::task::spawn_blocking(move || file.open(current.expose().as_bytes()).map(|_| ()))
            .await
            .map_err(|_| EngineError::Stopped)??;
        session
            .cell
            .flush()
            .await
            .map_err(|e| EngineError::Persist(e.to_string()))?;
        session
            .cell
            .change_password(new.expose().as_bytes(), self.config.kdf)
            .await
            .map_err(|e| EngineError::Persist(e.to_string()))?;
        self.oplog.info(None, "the state password was changed");
        Ok(())
    }
}

impl Session {
    fn module(&self, kind: &str) -> Result<Arc<dyn ProviderModule>, EngineError> {
        let m = self.config.registry.get(kind).ok_or_else(|| {
            EngineError::Invalid(format!(
                "unknown provider {kind:?}; valid kinds: {}",
                self.config.registry.kinds().join(", ")
            ))
        })?;
        if !m.enabled(&self.config.env) {
            return Err(EngineError::Invalid(format!(
                "provider {kind:?} is not enabled here (the simulated cloud needs LEGION_MOCK_NETWORK=1 or `legion demo`)"
            )));
        }
        Ok(m.clone())
    }

    fn connect(
        &self,
        id: &str,
        kind: &str,
        creds: Credentials,
    ) -> Result<Arc<Connected>, EngineError> {
        let module = self.module(kind)?;
        let desc = module.descriptor();
        let env = self.supervisor.env();
        let board = env.board.clone();
        let lane = Arc::new(Lane::new(
            id,
            kind,
            desc.display_name.clone(),
            desc.concurrency,
            env.oplog.clone(),
            Arc::new(move || board.bump()),
        ));
        let api = module
            .connect(ConnectCtx {
                id: id.to_string(),
                credentials: creds,
                lane: lane.clone(),
                home: self.config.home.clone(),
                env: self.config.env.clone(),
            })
            .map_err(|e| EngineError::Provider(e.to_string()))?;
        let connected = env
            .providers
            .insert(Connected::new(id.to_string(), module, api, lane));
        let observer = observe::spawn(&self.supervisor, connected.clone());
        if let Ok(mut o) = self.observers.lock()
            && let Some(old) = o.insert(id.to_string(), observer)
        {
            old.abort();
        }
        env.board.bump();
        Ok(connected)
    }

    async fn configure_provider(&self, kind: &str, creds: Credentials) -> Result<(), EngineError> {
        let module = self.module(kind)?;
        let creds = module
            .normalize_credentials(creds)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        if !module.is_configured(&creds) {
            return Err(EngineError::Invalid(format!(
                "{}: credentials are incomplete",
                module.descriptor().display_name
            )));
        }
        // A reconfigured provider: let the old adapter persist what it holds first.
        if let Some(old) = self.supervisor.env().providers.get(kind) {
            old.api.flush().await;
        }
        let id = kind.to_string();
        let stored = creds.clone();
        let kind_s = kind.to_string();
        self.cell
            .commit(move |s| {
                s.providers.insert(
                    id,
                    super::state::model::ProviderConfig {
                        kind: kind_s,
                        credentials: stored,
                    },
                );
            })
            .await
            .map_err(|e| EngineError::Persist(e.to_string()))?;
        self.connect(kind, kind, creds)?;
        self.supervisor.env().oplog.info(
            Some(format!("provider/{kind}")),
            format!("provider {kind} configured"),
        );
        Ok(())
    }

    /// Plan choices for a node request; empty ones come from the provider's catalog, read
    /// now when it is not cached yet (an engine just started is still loading it).
    async fn resolve_node(&self, req: &NodeRequest) -> Result<NodePlan, EngineError> {
        let module = self.module(&req.provider)?;
        let policy = module.catalog_policy();
        let connected = self.supervisor.env().providers.get(&req.provider);
        let mut unread = None;
        let catalog = match connected {
            Some(c) if req.region.is_none() || req.offer.is_none() || req.image.is_none() => {
                match c.catalog(false).await {
                    Ok(catalog) => Some(catalog),
                    Err(e) => {
                        unread = Some(e.to_string());
                        None
                    }
                }
            }
            Some(c) => c.cached_catalog(),
            None => None,
        };
        let region = match (&req.region, &catalog) {
            (Some(r), _) => r.clone(),
            (None, Some(c)) => policy.region(c).map(String::from).unwrap_or_default(),
            (None, None) => policy.default_region.clone().unwrap_or_default(),
        };
        if region.is_empty() {
            return Err(EngineError::Invalid(format!(
                "{}: no region given and no default; pass a region",
                module.descriptor().display_name
            )));
        }
        let offer = match (&req.offer, &catalog) {
            (Some(o), _) => o.clone(),
            (None, Some(c)) => policy
                .offer(c, &region)
                .map(|o| o.id.clone())
                .ok_or_else(|| {
                    EngineError::Invalid(format!("no offer is available in {region}"))
                })?,
            (None, None) => match &policy.default_offer {
                crate::providers::OfferSelector::Preferred { id, .. } => id.clone(),
                crate::providers::OfferSelector::Cheapest { .. } => {
                    return Err(EngineError::Invalid(match unread {
                        Some(e) => format!("the provider's catalog could not be read ({e}); pass an offer"),
                        None => "the provider is not connected, so its catalog is unknown; pass an offer".into(),
                    }));
                }
            },
        };
        let image = match (&req.image, &catalog) {
            (Some(i), _) => i.clone(),
            (None, Some(c)) => policy
                .image(c)
                .map(String::from)
                .unwrap_or(policy.default_image.clone()),
            (None, None) => policy.default_image.clone(),
        };
        let mut uid = [0u8; 8];
        getrandom::fill(&mut uid)
            .map_err(|e| EngineError::Invalid(format!("system random failed: {e}")))?;
        Ok(NodePlan {
            uid: hex::encode(uid),
            cluster: req.cluster.clone().unwrap_or_else(|| "default".into()),
            role: req.role.clone().unwrap_or_else(|| "node".into()),
            provider: req.provider.clone(),
            region,
            offer,
            image,
            boot_mode: req
                .boot_mode
                .unwrap_or(module.deployment_profile().default_boot_mode),
        })
    }

    async fn import_node(
        &self,
        req: super::import::ImportRequest,
    ) -> Result<super::import::ImportReport, EngineError> {
        use super::import;
        use crate::providers::manual;
        import::validate(&req)?;
        if self.cell.read(|s| s.plan.nodes.contains_key(&req.name)) {
            return Err(EngineError::Invalid(format!(
                "{} is already in the plan; pick another name or remove it first",
                req.name
            )));
        }
        if self.supervisor.env().providers.get(manual::KIND).is_none() {
            self.configure_provider(manual::KIND, Credentials::new())
                .await?;
        }
        let node = self
            .resolve_node(&NodeRequest {
                name: req.name.clone(),
                provider: manual::KIND.into(),
                cluster: req.cluster.clone(),
                role: req.role.clone(),
                ..NodeRequest::default()
            })
            .await?;
        let key = self
            .cell
            .read(|s| s.managed_key.clone())
            .ok_or_else(|| EngineError::Invalid("this state has no managed SSH key".into()))?;
        let target = crate::ssh::Target::new(req.host.trim(), req.port, req.user.clone());
        let under_root = self.ssh.settings().node_root.is_some();
        let (seen, sudo, added, note) = {
            let target = target.clone();
            let password = req.password.clone();
            tokio::task::spawn_blocking(move || {
                import::bootstrap(&target, password.as_ref(), &key, under_root)
            })
            .await
            .map_err(|e| EngineError::Invalid(format!("the SSH task stopped: {e}")))?
            .map_err(|e| EngineError::Refused(format!("importing {}: {e}", req.name)))?
        };
        let tracked = import::tracked(&node, &target, seen.as_str(), sudo);
        let name = req.name.clone();
        let v = self
            .cell
            .try_mutate(|s| {
                let mut draft = s.clone();
                apply_edit(
                    &mut draft,
                    PlanEdit::UpsertNode {
                        name: name.clone(),
                        node,
                    },
                )?;
                draft.tracked.nodes.insert(name.clone(), tracked);
                *s = draft;
                Ok::<(), String>(())
            })
            .map_err(EngineError::Invalid)?
            .1;
        self.cell
            .persist(v)
            .await
            .map_err(|e| EngineError::Persist(e.to_string()))?;
        let report = import::ImportReport {
            name: req.name.clone(),
            server_id: manual::server_id(&target),
            host_key: seen.to_string(),
            sudo,
            key_added: added,
            note,
        };
        self.supervisor.env().oplog.info(
            Some(format!("node/{}", req.name)),
            format!(
                "imported {} as {} (host key {}, sudo {:?}, managed key {})",
                report.server_id,
                req.name,
                report.host_key,
                sudo,
                if added { "added" } else { "already present" }
            ),
        );
        Ok(report)
    }

    async fn edit(&self, edit: PlanEdit) -> Result<(), EngineError> {
        if let PlanEdit::UpsertNode { node, .. } = &edit {
            self.module(&node.provider)?;
        }
        if let PlanEdit::UpsertZone { provider, .. } = &edit {
            self.module(provider)?;
        }
        let v = self
            .cell
            .try_mutate(|s| {
                let mut draft = s.clone();
                apply_edit(&mut draft, edit).map(|()| *s = draft)
            })
            .map_err(EngineError::Invalid)?
            .1;
        self.cell
            .persist(v)
            .await
            .map_err(|e| EngineError::Persist(e.to_string()))
    }

    async fn refresh(&self) -> Result<(), EngineError> {
        let mut errors = Vec::new();
        for p in self.supervisor.env().providers.all() {
            if let Err(e) = observe::observe_provider(&self.supervisor, &p).await {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Provider(errors.join("; ")))
        }
    }

    fn start_apply(self: &Arc<Self>) -> Result<u64, EngineError> {
        let guard = self.apply_lock.clone().try_lock_owned().map_err(|_| {
            let running = match &*self.apply.lock().unwrap_or_else(|e| e.into_inner()) {
                ApplyView::Running { id, .. } => *id,
                _ => 0,
            };
            EngineError::ApplyRunning(running)
        })?;
        // Apply ids continue across sessions (the log refers to them).
        let (id, _) = self.cell.mutate(|s| {
            let id = s.next_apply_id.max(1);
            s.next_apply_id = id + 1;
            id
        });
        self.set_apply(ApplyView::Running {
            id,
            stage: "starting".into(),
            total: 0,
            settled: 0,
            failed: 0,
        });
        let session = Arc::downgrade(self);
        self.track(tokio::spawn(async move {
            let _guard = guard;
            if let Some(session) = session.upgrade() {
                session.run_apply(id).await;
            }
        }));
        Ok(id)
    }

    fn set_apply(&self, view: ApplyView) {
        if let Ok(mut a) = self.apply.lock() {
            *a = view;
        }
        self.supervisor.env().board.bump();
    }

    /// Waves: nodes first, then the derived resources that depend on their endpoints.
    async fn run_apply(&self, id: u64) {
        let env = self.supervisor.env().clone();
        env.oplog
            .record(None, OpKind::Apply, format!("apply #{id} started"));
        // From here on, derived resources follow this plan.
        if let Err(e) = self
            .cell
            .commit(|s| s.tracked.applied_plan = Some(s.plan.clone()))
            .await
        {
            env.oplog
                .warn(None, format!("apply #{id} could not start: {e}"));
            self.set_apply(ApplyView::Finished {
                id,
                ok: false,
                failed: vec![format!("state: {e}")],
                waiting: Vec::new(),
            });
            return;
        }
        self.supervisor.sync_from_state();
        let nodes: Vec<ResourceKey> = self
            .supervisor
            .node_names()
            .into_iter()
            .map(ResourceKey::Node)
            .collect();
        self.supervisor
            .broadcast_nodes(|| super::actors::node::NodeMsg::Sync { apply: id });
        self.wait_settled(id, "nodes", &nodes).await;
        self.reconcile_clusters(id).await;
        let derived = self.supervisor.sync_derived(Some(id));
        self.wait_settled(id, "zones, firewalls and domains", &derived)
            .await;
        let board = env.board.snapshot();
        let mut failed = Vec::new();
        let mut waiting = Vec::new();
        for key in nodes.iter().chain(derived.iter()) {
            match board.get(key) {
                Some(Snap::Node(n)) if n.last_error.is_some() => failed.push(key.to_string()),
                Some(Snap::Sync(s)) if s.state == SyncState::Failed => failed.push(key.to_string()),
                Some(Snap::Sync(s)) if s.state == SyncState::Waiting => {
                    waiting.push(format!("{key}: {}", s.waiting.clone().unwrap_or_default()))
                }
                _ => {}
            }
        }
        let ok = failed.is_empty();
        env.oplog.record(
            None,
            OpKind::Apply,
            if ok {
                format!("apply #{id} finished: converged")
            } else {
                format!(
                    "apply #{id} finished: {} failed ({})",
                    failed.len(),
                    failed.join(", ")
                )
            },
        );
        self.set_apply(ApplyView::Finished {
            id,
            ok,
            failed,
            waiting,
        });
    }

    /// Nodes whose cluster gained or lost members since they were configured write the
    /// new peer list (a reconfigure: configure and readiness); wait for them.
    async fn reconcile_clusters(&self, id: u64) {
        let env = self.supervisor.env().clone();
        let mut started = Vec::new();
        for name in self.supervisor.node_names() {
            let Some(handle) = self.supervisor.node(&name) else {
                continue;
            };
            let (reply, rx) = oneshot::channel();
            if !handle.send(super::actors::node::NodeMsg::Reconcile { reply }) {
                continue;
            }
            if let Ok(Some(op)) = rx.await {
                started.push((name, op));
            }
        }
        if started.is_empty() {
            return;
        }
        let total = started.len();
        let mut changes = env.board.subscribe();
        loop {
            let done = started
                .iter()
                .filter(|(n, op)| env.board.node(n).is_none_or(|s| s.ops_finished >= *op))
                .count();
            self.set_apply(ApplyView::Running {
                id,
                stage: "cluster peer lists".to_string(),
                total,
                settled: done,
                failed: 0,
            });
            changes.borrow_and_update();
            if done == total || changes.changed().await.is_err() {
                return;
            }
        }
    }

    async fn wait_settled(&self, id: u64, stage: &str, keys: &[ResourceKey]) {
        let env = self.supervisor.env().clone();
        let mut changes = env.board.subscribe();
        loop {
            let board = env.board.snapshot();
            let mut settled = 0;
            let mut failed = 0;
            for key in keys {
                // Gone from plan and tracked state: torn down. Checked first, because an
                // actor stopped mid-publication can leave a last snapshot on the board.
                if !env.cell.read(|s| still_stored(s, key)) {
                    settled += 1;
                    continue;
                }
                match board.get(key) {
                    Some(Snap::Node(n)) if n.synced_apply >= id => {
                        settled += 1;
                        if n.last_error.is_some() {
                            failed += 1;
                        }
                    }
                    Some(Snap::Sync(s)) if s.synced_apply >= id => {
                        settled += 1;
                        if s.state == SyncState::Failed {
                            failed += 1;
                        }
                    }
                    _ => {}
                }
            }
            let view = ApplyView::Running {
                id,
                stage: stage.to_string(),
                total: keys.len(),
                settled,
                failed,
            };
            let changed = self.apply.lock().map(|a| *a != view).unwrap_or(true);
            if changed {
                self.set_apply(view);
                changes.borrow_and_update();
            }
            if settled == keys.len() {
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }
}

fn still_stored(s: &State, key: &ResourceKey) -> bool {
    match key {
        ResourceKey::Node(n) => s.plan.nodes.contains_key(n) || s.tracked.nodes.contains_key(n),
        ResourceKey::Zone(n) => s.plan.zones.contains_key(n) || s.tracked.zones.contains_key(n),
        ResourceKey::Firewall(n) => {
            super::derive::planned_clusters(&s.plan).contains(n)
                || s.tracked.firewalls.contains_key(n)
                || s.tracked
                    .applied_plan
                    .as_ref()
                    .is_some_and(|p| super::derive::planned_clusters(p).contains(n))
        }
        ResourceKey::Domain(n) => {
            s.plan.domains.contains_key(n) || s.tracked.domains.contains_key(n)
        }
    }
}
