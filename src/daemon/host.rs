//! Running the daemon: unlock the engine, claim the endpoint, serve, and on a stop
//! request or signal save, lock and remove the endpoint files.
//!
//! The socket and the signals live on a runtime of their own (one thread,
//! `legion-daemon`), the engine on the caller's: however busy the engine's tasks are (a
//! 10,000-node apply), `status`, `snapshot` and SIGTERM are read and answered at once.

use tokio::signal::unix::{SignalKind, signal};

use super::server::{Daemon, bind};
use super::{Endpoint, Metadata, Probe};
use crate::core::secret::Secret;
use crate::engine::snapshot::LockState;
use crate::engine::{Engine, EngineConfig, EngineError};

/// What the host reports once it serves.
pub struct Ready {
    pub metadata: Metadata,
    /// A stale socket or metadata found and removed before starting.
    pub cleaned: Option<String>,
}

/// Serve one home until stopped. `ready` runs once the socket accepts requests; any
/// failure before that is returned (and nothing is left behind).
pub async fn run(
    config: EngineConfig,
    password: Secret,
    token: Secret,
    ready: impl FnOnce(&Ready),
) -> Result<(), EngineError> {
    let endpoint = Endpoint::for_home(&config.home);
    // Before anything is probed or removed: the directories must be ours and private.
    endpoint
        .prepare()
        .map_err(|e| EngineError::Refused(e.to_string()))?;
    let home_err = |path: &std::path::Path, e: std::io::Error| EngineError::Home {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let cleaned = match endpoint.probe() {
        Probe::Running(meta) => {
            return Err(EngineError::Refused(format!(
                "a daemon already runs for this home{} on {}",
                meta.map(|m| format!(" (pid {})", m.pid))
                    .unwrap_or_default(),
                endpoint.socket.display()
            )));
        }
        Probe::Stale(meta) => {
            endpoint.remove();
            Some(format!(
                "removed a stale socket left by a daemon that no longer runs{}",
                meta.map(|m| format!(" (pid {})", m.pid))
                    .unwrap_or_default()
            ))
        }
        Probe::Absent => None,
    };
    let server = ServerRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("legion-daemon")
            .enable_all()
            .build()
            .map_err(|e| home_err(&endpoint.dir, e))?,
    ));
    let server_rt = server.handle();
    // Registered on the server's runtime, and before the unlock: a signal that comes
    // while the state opens is answered once serving starts.
    let signals = {
        let _on = server_rt.enter();
        let make = |kind| signal(kind).map_err(|e| home_err(&endpoint.dir, e));
        (
            make(SignalKind::terminate())?,
            make(SignalKind::interrupt())?,
            make(SignalKind::hangup())?,
        )
    };

    let engine = Engine::start(config);
    engine.unlock(password).await?;
    // Serve complete rows from the first request on.
    engine
        .wait_for(|s| s.lock == LockState::Unlocked && s.nodes.iter().all(|n| n.live))
        .await?;
    let bound = {
        let _on = server_rt.enter();
        bind(&endpoint)
    };
    let listener = match bound {
        Ok(l) => l,
        Err(e) => {
            let _ = engine.logout().await;
            return Err(EngineError::Refused(e.to_string()));
        }
    };
    let metadata = Metadata {
        version: env!("CARGO_PKG_VERSION").to_string(),
        endpoint: endpoint.socket.clone(),
        pid: std::process::id(),
        created: super::now_secs(),
        state: crate::engine::state::store::StateFile::in_home(engine.home())
            .path()
            .to_path_buf(),
    };
    if let Err(e) = endpoint.write_metadata(&metadata) {
        let _ = std::fs::remove_file(&endpoint.socket);
        let _ = engine.logout().await;
        return Err(home_err(&endpoint.metadata, e));
    }
    tracing::info!(pid = metadata.pid, socket = %endpoint.socket.display(), "daemon serving");
    ready(&Ready { metadata, cleaned });

    let daemon = Daemon::new(engine, token, endpoint);
    let serving = daemon.clone();
    let (mut terminate, mut interrupt, mut hangup) = signals;
    // Served, and stopped, from the server's runtime: the stop is asked at once however
    // busy the engine's runtime is, and a deadline bounds how long it may take.
    let stopped = server_rt.spawn(async move {
        tokio::select! {
            () = serving.serve(listener) => tracing::info!("daemon: shutdown requested"),
            _ = terminate.recv() => tracing::info!("daemon: SIGTERM"),
            _ = interrupt.recv() => tracing::info!("daemon: SIGINT"),
            _ = hangup.recv() => tracing::info!("daemon: SIGHUP"),
        }
        if tokio::time::timeout(STOP_DEADLINE, serving.shut_down())
            .await
            .is_err()
        {
            // As safe as a kill: every confirmed edit is in the journal, and the next
            // unlock marks the executions that were running interrupted.
            tracing::error!(
                "daemon: the engine did not save and lock within {} s of the stop; exiting \
                 without its final save (the next unlock marks running executions interrupted)",
                STOP_DEADLINE.as_secs()
            );
            serving.remove_endpoint();
            std::process::exit(1);
        }
    });
    if let Err(e) = stopped.await {
        tracing::error!("daemon: the server task failed: {e}");
        daemon.shut_down().await;
    }
    Ok(())
}

/// How long a stop (signal or `shutdown`) may take to save and lock before the daemon
/// exits without its final save: SIGTERM is answered within 5 s.
const STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);

/// The server's runtime. Connections still open go with it, without waiting (a runtime
/// may not be dropped the ordinary way inside another one, which `run` is).
struct ServerRuntime(Option<tokio::runtime::Runtime>);

impl ServerRuntime {
    fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            Some(rt) => rt.handle().clone(),
            None => tokio::runtime::Handle::current(),
        }
    }
}

impl Drop for ServerRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}
