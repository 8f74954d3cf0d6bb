//! Running the daemon: unlock the engine, claim the endpoint, serve, and on a stop
//! request or signal save, lock and remove the endpoint files.

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
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| home_err(&endpoint.dir, e))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| home_err(&endpoint.dir, e))?;
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| home_err(&endpoint.dir, e))?;

    let engine = Engine::start(config);
    engine.unlock(password).await?;
    // Serve complete rows from the first request on.
    engine
        .wait_for(|s| s.lock == LockState::Unlocked && s.nodes.iter().all(|n| n.live))
        .await?;
    let listener = match bind(&endpoint) {
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
    tokio::select! {
        () = daemon.serve(listener) => tracing::info!("daemon: shutdown requested"),
        _ = terminate.recv() => tracing::info!("daemon: SIGTERM"),
        _ = interrupt.recv() => tracing::info!("daemon: SIGINT"),
        _ = hangup.recv() => tracing::info!("daemon: SIGHUP"),
    }
    daemon.shut_down().await;
    Ok(())
}
