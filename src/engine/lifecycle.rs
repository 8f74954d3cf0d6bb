//! The engine task: opens and closes the state, in order.
//!
//! Init, unlock, logout and password changes run here one after another; every other call
//! asks this task for the unlocked [`Session`] and runs on its own task against it, so a
//! long apply never blocks a node action. This file owns the session's birth (connecting
//! providers, starting actors and the publisher) and death (flush, release the lock).

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};

use super::actors::{ActorEnv, Board, ProviderSet};
use super::config::EngineConfig;
use super::error::EngineError;
use super::home;
use super::session::Session;
use super::snapshot::{AppSnapshot, ApplyView, LockState};
use super::state::cell::StateCell;
use super::state::crypto::KdfParams;
use super::state::model::State;
use super::state::store::{StateFile, StateLock, StoreError};
use super::supervisor::Supervisor;
use crate::core::oplog::OpLog;
use crate::core::secret::Secret;
use crate::providers::Credentials;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

/// How long stopping waits for each provider adapter to flush: a provider that does not
/// answer must not keep a stopping daemon alive (SIGTERM is answered within seconds).
const PROVIDER_FLUSH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// Mark every running execution interrupted at its phase; the nodes it marked.
fn interrupt_running(s: &mut State) -> Vec<String> {
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
}

/// Flush every provider adapter, each within [`PROVIDER_FLUSH_DEADLINE`].
async fn flush_providers(session: &Session) {
    for p in session.supervisor.env().providers.all() {
        if tokio::time::timeout(PROVIDER_FLUSH_DEADLINE, p.api.flush())
            .await
            .is_err()
        {
            tracing::warn!(provider = %p.id, "the provider did not flush within the stop's deadline");
        }
    }
}

/// What the engine task is asked to do.
pub(crate) enum Command {
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
    /// The unlocked session, for a call to run against.
    Session {
        reply: Reply<Arc<Session>>,
    },
}

pub(crate) struct Core {
    pub(crate) config: EngineConfig,
    pub(crate) oplog: OpLog,
    pub(crate) snap_tx: watch::Sender<Arc<AppSnapshot>>,
    pub(crate) session: Option<Arc<Session>>,
}

impl Core {
    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
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
                Command::Session { reply } => {
                    let _ = reply.send(self.session.clone().ok_or(EngineError::Locked));
                }
            }
        }
        // Every handle is gone: save what is pending, as logout would.
        if let Some(s) = self.session.take() {
            s.stop_tasks();
            s.cell.mutate(interrupt_running);
            let _ = s.cell.flush().await;
            flush_providers(&s).await;
        }
    }

    pub(crate) fn publish_lock(&self, lock: LockState) {
        let seq = self.snap_tx.borrow().seq + 1;
        let mut snap = AppSnapshot::empty(self.config.home.display().to_string(), lock);
        snap.seq = seq;
        self.snap_tx.send_replace(Arc::new(snap));
    }

    pub(crate) fn prepare_home(&self) -> Result<(), EngineError> {
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

    /// The key-derivation settings for a file written now (a new home, a new password):
    /// `LEGION_KDF` (`strong`, the default, or `light`) when set, else the configured
    /// ones. Files already written keep theirs: the header records them.
    fn kdf_for_new_files(&self) -> Result<KdfParams, EngineError> {
        match self.config.env.get("LEGION_KDF") {
            None => Ok(self.config.kdf),
            Some(name) => KdfParams::named(name).ok_or_else(|| {
                EngineError::Invalid(format!(
                    "LEGION_KDF={:?} is not a key-derivation setting: use strong (the \
                     default: Argon2id, 64 MiB, 3 passes) or light (19 MiB, 2 passes: \
                     OWASP's minimum, for small jump hosts)",
                    name
                ))
            }),
        }
    }

    pub(crate) async fn init(&mut self, password: Secret) -> Result<(), EngineError> {
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
        let kdf = self.kdf_for_new_files()?;
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
        let journal = super::state::journal::Journal::beside(&file);
        let opened = super::state::open::Opened {
            key,
            state,
            journal,
            clean: true,
            replayed: 0,
            warnings: Vec::new(),
        };
        self.open_session(opened, file, lock).await
    }

    pub(crate) async fn unlock(&mut self, password: Secret) -> Result<(), EngineError> {
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
        let (file, opened) = tokio::task::spawn_blocking(move || {
            super::state::open::open(&file, password.expose().as_bytes()).map(|o| (file, o))
        })
        .await
        .map_err(|_| EngineError::Stopped)?
        .map_err(|e| match e {
            super::state::open::OpenError::Store(e) => EngineError::from(e),
            e @ super::state::open::OpenError::Unreadable(_) => EngineError::Invalid(e.to_string()),
        })?;
        for w in &opened.warnings {
            self.oplog.warn(None, w.clone());
        }
        self.open_session(opened, file, lock).await
    }

    pub(crate) async fn open_session(
        &mut self,
        opened: super::state::open::Opened,
        file: StateFile,
        lock: StateLock,
    ) -> Result<(), EngineError> {
        let super::state::open::Opened {
            key,
            state,
            journal,
            clean,
            ..
        } = opened;
        let cfg = self.config.clone();
        if let Err(e) = crate::core::secret::deny_core_dumps() {
            tracing::warn!(%e, "could not disable core dumps while the state is unlocked");
        }
        let _ = self
            .oplog
            .attach_file(cfg.home.join("logs").join("operations.jsonl"));
        let install_id = state.install_id.clone();
        // Made at init; a home from before managed keys gets one now. Set through the
        // cell (which starts from what the file holds) so that the change is saved.
        let managed_key = match state.managed_key {
            Some(_) => None,
            None => Some(
                crate::ssh::ManagedKey::generate()
                    .map_err(|e| EngineError::Invalid(format!("making the SSH key: {e}")))?,
            ),
        };
        let cell = StateCell::start_opened(state, file, key, journal, clean);
        // Executions found running belong to a process that is gone.
        let interrupted = cell.mutate(|s| {
            if managed_key.is_some() {
                s.managed_key = managed_key;
            }
            interrupt_running(s)
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
        let supervisor = Arc::new(Supervisor::new(env.clone()).with_ssh_port(ssh.settings().port));
        let apply = Arc::new(Mutex::new(ApplyView::Idle));
        let session = Arc::new(Session::new(
            cell.clone(),
            supervisor.clone(),
            apply.clone(),
            cfg.clone(),
            lock,
            ssh,
        ));
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

    pub(crate) async fn logout(&mut self) -> Result<(), EngineError> {
        let Some(session) = self.session.take() else {
            return Err(EngineError::Locked);
        };
        session.stop_tasks();
        // The actors are gone: an execution they were running stops at its phase. Said
        // in the state now (saved once, with everything else pending), not left for the
        // next unlock to guess.
        let (names, _) = session.cell.mutate(interrupt_running);
        for name in &names {
            self.oplog.warn(
                Some(format!("node/{name}")),
                format!(
                    "{name}: its execution was interrupted when Legion stopped; retry resumes it"
                ),
            );
        }
        let flushed = session.cell.flush().await;
        flush_providers(&session).await;
        session.release_lock();
        drop(session);
        self.oplog.detach_file();
        self.publish_lock(LockState::Locked);
        flushed.map_err(|e| EngineError::Persist(e.to_string()))
    }

    pub(crate) async fn change_password(
        &mut self,
        current: Secret,
        new: Secret,
    ) -> Result<(), EngineError> {
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
            .change_password(new.expose().as_bytes(), self.kdf_for_new_files()?)
            .await
            .map_err(|e| EngineError::Persist(e.to_string()))?;
        self.oplog.info(None, "the state password was changed");
        Ok(())
    }
}
