//! Where a command's engine comes from: the home, the diagnostics log, the daemon token,
//! and the [`Link`] a command works on (the daemon's engine, or one started and unlocked
//! in this process and saved and locked when the command ends).
//!
//! This file decides local versus daemon; it does not run any command itself.

use std::path::{Path, PathBuf};

use color_eyre::eyre::{Result, WrapErr};

use super::Cli;
use super::password::unlock_password;
use crate::core::secret::Secret;
use crate::daemon::client::Remote;
use crate::daemon::{Endpoint, Probe};
use crate::engine::snapshot::LockState;
use crate::engine::state::store::{StateFile, StoreError};
use crate::engine::{Engine, EngineConfig, EngineError, home};
use crate::link::Link;

impl Cli {
    /// The Legion home: `--home`, else `$LEGION_HOME`, else the platform data directory.
    pub(crate) fn home(&self) -> Result<PathBuf> {
        Ok(home::resolve_home(self.home.clone())?)
    }

    pub(crate) fn password_file(&self) -> Option<&Path> {
        self.password_file.as_deref()
    }

    /// The unlock password: from the password file, else asked on the terminal.
    pub(crate) fn password(&self) -> Result<Secret> {
        unlock_password(self.password_file())
    }

    /// The daemon token from `--daemon-token` (with a warning) or LEGION_DAEMON_TOKEN.
    pub(crate) fn daemon_token(&self) -> Option<Secret> {
        if let Some(t) = &self.daemon_token {
            eprintln!(
                "legion: warning: --daemon-token is visible to other processes and lands in \
                 shell history; prefer LEGION_DAEMON_TOKEN"
            );
            return Some(Secret::new(t.clone()));
        }
        std::env::var(crate::daemon::TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty())
            .map(Secret::new)
    }
}

type LogGuard = tracing_appender::non_blocking::WorkerGuard;

/// Whether the home already holds a state.
pub(crate) fn has_state(home: &Path) -> bool {
    StateFile::in_home(home).exists()
}

/// How many daily diagnostics files `logs/` keeps; older ones are deleted at rotation.
pub(crate) const LOG_FILES_KEPT: usize = 14;

/// Diagnostics go to a daily file in the home's `logs/` (the last [`LOG_FILES_KEPT`]
/// days), never to the terminal.
///
/// Also makes the home and `logs/` 0700, warning on stderr when an existing one was
/// looser, and sets the process umask to 077 for the rest of its life: the appender
/// creates a new file at every rotation with the default mode, and every file Legion
/// creates must be private from its first byte. A home that cannot be written (read-only
/// mount, another user's directory) costs the file log, said once, and nothing else: the
/// command goes on and fails, if it must, with its own error.
pub(crate) fn init_tracing(home: &Path) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    match home::ensure_home(home) {
        Ok(tightened) => {
            for t in tightened {
                eprintln!("legion: warning: {t}");
            }
        }
        Err(e) => {
            eprintln!("legion: warning: {e}; continuing without the diagnostics log");
            return None;
        }
    }
    let dir = home.join(home::LOGS_DIR);
    let appender = match tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("legion.log")
        .max_log_files(LOG_FILES_KEPT)
        .build(&dir)
    {
        Ok(appender) => appender,
        Err(e) => {
            eprintln!(
                "legion: warning: cannot write {}/legion.log.* ({e}); continuing without the \
                 diagnostics log",
                dir.display()
            );
            return None;
        }
    };
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEGION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .try_init()
        .ok()?;
    Some(guard)
}

/// The engine a command works on: the daemon's when a token is at hand, else one
/// started here and unlocked with the password.
///
/// The diagnostics log's guard comes back with it: dropping the guard ends the log's
/// writer, so it must live as long as the command.
async fn connect(cli: &Cli) -> Result<(Link, Option<LogGuard>)> {
    let home = cli.home()?;
    let endpoint = Endpoint::for_home(&home);
    if let Some(token) = cli.daemon_token() {
        let remote = Remote::connect(&endpoint, home, token).await?;
        if remote.status().lock != LockState::Unlocked {
            return Err(EngineError::Locked).wrap_err(
                "the daemon's engine is locked; unlock it from `legion --attach` or restart the daemon",
            );
        }
        return Ok((Link::Daemon(remote), None));
    }
    if let Probe::Running(meta) = endpoint.probe() {
        // Its engine holds the state; say how to use it instead of asking for a password.
        let err = EngineError::Store(StoreError::InUse {
            home: home.clone(),
            pid: meta.map(|m| m.pid),
        });
        return Err(err).wrap_err(
            "a Legion daemon serves this home: set LEGION_DAEMON_TOKEN to go through it",
        );
    }
    let guard = init_tracing(&home);
    let engine = Engine::start(EngineConfig::new(home));
    engine.unlock(cli.password()?).await?;
    // Rows are complete once every actor has published.
    engine
        .wait_for(|s| s.lock == LockState::Unlocked && s.nodes.iter().all(|n| n.live))
        .await?;
    Ok((Link::Local(engine), guard))
}

/// Connect, run `f`, then finish (a local engine is saved and locked; the daemon's
/// keeps running).
pub(crate) async fn with_link<T>(cli: &Cli, f: impl AsyncFnOnce(&Link) -> Result<T>) -> Result<T> {
    let (link, _log) = connect(cli).await?;
    let result = super::progress::during(&link, f(&link)).await;
    link.finish().await?;
    result
}
