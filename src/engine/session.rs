//! The unlocked session: the state cell, the supervisor and its actors, the provider
//! connections, the apply in progress, and every task started for them.
//!
//! A session lives from unlock to logout (see `lifecycle.rs`). Calls that change state run
//! on tasks the session tracks ([`Session::run`]), so a logout stops them before it
//! releases the state lock and nothing writes the state after that.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::actors::Connected;
use super::config::EngineConfig;
use super::error::EngineError;
use super::observe;
use super::snapshot::ApplyView;
use super::state::cell::StateCell;
use super::state::store::StateLock;
use super::supervisor::Supervisor;
use crate::providers::{ConnectCtx, Credentials, Lane, ProviderModule};

pub struct Session {
    pub(crate) cell: Arc<StateCell>,
    pub(crate) supervisor: Arc<Supervisor>,
    pub(crate) apply: Arc<Mutex<ApplyView>>,
    pub(crate) apply_lock: Arc<tokio::sync::Mutex<()>>,
    /// Tasks started for this session; `None` once it has stopped, so nothing new starts.
    tasks: Mutex<Option<Vec<JoinHandle<()>>>>,
    /// One observation task per connected provider, replaced on reconfiguration.
    observers: Mutex<HashMap<String, JoinHandle<()>>>,
    pub(crate) config: EngineConfig,
    /// Released by logout (`release_lock`), so a new unlock can follow at once.
    lock: Mutex<Option<StateLock>>,
    /// SSH to nodes: deployment phases, health, the terminal pane, `legion ssh`.
    pub(crate) ssh: Arc<super::ssh_agent::SshAgent>,
}

impl Session {
    pub(crate) fn new(
        cell: Arc<StateCell>,
        supervisor: Arc<Supervisor>,
        apply: Arc<Mutex<ApplyView>>,
        config: EngineConfig,
        lock: StateLock,
        ssh: Arc<super::ssh_agent::SshAgent>,
    ) -> Session {
        Session {
            cell,
            supervisor,
            apply,
            apply_lock: Arc::new(tokio::sync::Mutex::new(())),
            tasks: Mutex::new(Some(Vec::new())),
            observers: Mutex::new(HashMap::new()),
            config,
            lock: Mutex::new(Some(lock)),
            ssh,
        }
    }

    /// Stop every task and actor of this session; later [`Session::run`]s are refused.
    pub(crate) fn stop_tasks(&self) {
        if let Ok(mut t) = self.tasks.lock() {
            for task in t.take().into_iter().flatten() {
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

    pub(crate) fn release_lock(&self) {
        if let Ok(mut l) = self.lock.lock() {
            l.take();
        }
    }

    /// Keep a task for this session: a logout aborts it. A session that has stopped
    /// aborts it at once.
    pub(crate) fn track(&self, task: JoinHandle<()>) {
        match self.tasks.lock().as_deref_mut() {
            Ok(Some(t)) => {
                t.retain(|t| !t.is_finished());
                t.push(task);
            }
            _ => task.abort(),
        }
    }

    /// Run a call that may change the state on a task of this session and await it: a
    /// logout stops it before the state lock is released.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, EngineError>> + Send + 'static,
    ) -> Result<T, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.track(tokio::spawn(async move {
            let _ = tx.send(work.await);
        }));
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    pub(crate) fn module(&self, kind: &str) -> Result<Arc<dyn ProviderModule>, EngineError> {
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

    pub(crate) fn connect(
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
            .map_err(EngineError::Provider)?;
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

    pub(crate) async fn configure_provider(
        &self,
        kind: &str,
        creds: Credentials,
    ) -> Result<(), EngineError> {
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
}
