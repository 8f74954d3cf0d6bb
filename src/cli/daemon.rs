//! `legion daemon`: start (in the background or the foreground), stop, status, and the
//! hidden `serve` the background process runs.
//!
//! `start` hands the password, the token and the home to its child over a pipe, never
//! argv or the environment (`ps` shows argv to every user: the child's is
//! `legion daemon serve`, nothing more), and waits for its first line (ready, or why
//! not). The daemon itself is `daemon::host`;
//! this file only launches it and talks to it as a client.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use color_eyre::eyre::{Context, Result, eyre};

use super::Cli;
use super::output::{ago, json, outln};
use super::session::{has_state, init_tracing};
use crate::core::secret::Secret;
use crate::daemon::client::Remote;
use crate::daemon::host::Ready;
use crate::daemon::{Endpoint, Metadata, Probe, TOKEN_ENV};
use crate::engine::{EngineConfig, EngineError};

#[derive(Subcommand)]
pub(crate) enum DaemonCommand {
    /// Unlock the state and serve it from a background process. Prints the new token
    /// once, as `export LEGION_DAEMON_TOKEN=…` (ready for `eval`); a token already in
    /// LEGION_DAEMON_TOKEN or --daemon-token is used instead.
    Start {
        /// Serve from this process until SIGTERM, SIGINT or `daemon stop`.
        #[arg(long)]
        foreground: bool,
    },
    /// Save, lock and stop the daemon (needs the token).
    Stop,
    /// Whether a daemon serves this home (exit 4 when none does); with the token, also
    /// its clients and requests. Removes a stale socket it finds.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The background daemon process itself (started by `daemon start`; reads its
    /// secrets from stdin).
    #[command(hide = true)]
    Serve,
}

/// What `daemon start` hands to its background process over a pipe: the secrets and
/// the home (a path that says whose fleet this is), none of it in argv.
#[derive(serde::Serialize, serde::Deserialize)]
struct Handover {
    password: Secret,
    token: Secret,
    home: PathBuf,
}

pub(crate) async fn run(cli: &Cli, command: &DaemonCommand) -> Result<()> {
    if let DaemonCommand::Serve = command {
        return serve().await;
    }
    let home = cli.home()?;
    let endpoint = Endpoint::for_home(&home);
    match command {
        DaemonCommand::Start { foreground } => start(cli, home, &endpoint, *foreground).await,
        DaemonCommand::Serve => serve().await,
        DaemonCommand::Stop => stop(cli, home, &endpoint).await,
        DaemonCommand::Status { json } => status(cli, home, &endpoint, *json).await,
    }
}

async fn start(cli: &Cli, home: PathBuf, endpoint: &Endpoint, foreground: bool) -> Result<()> {
    if !has_state(&home) {
        return Err(eyre!(
            "no Legion state in {}; create one with `legion config init`",
            home.display()
        ));
    }
    if let Probe::Running(meta) = endpoint.probe() {
        return Err(eyre!(
            "a daemon already serves {}{}",
            home.display(),
            meta.map(|m| format!(" (pid {})", m.pid))
                .unwrap_or_default()
        ));
    }
    let supplied = cli.daemon_token();
    if let Some(t) = &supplied {
        crate::daemon::check_token(t)?;
    }
    let token = match &supplied {
        Some(t) => t.clone(),
        None => crate::daemon::new_token()?,
    };
    let shown = supplied.is_none().then_some(&token);
    let pw = cli.password()?;
    if foreground {
        let _guard = init_tracing(&home);
        crate::daemon::host::run(EngineConfig::new(home), pw, token.clone(), |r| {
            announce(r, shown)
        })
        .await?;
        return Ok(());
    }
    let ready = spawn(Handover {
        password: pw,
        token: token.clone(),
        home: std::path::absolute(&home)?,
    })
    .await?;
    announce(&ready, shown);
    Ok(())
}

/// What `daemon start` tells the shell: the token line (for `eval`) and a comment.
fn announce(ready: &Ready, token: Option<&Secret>) {
    if let Some(note) = &ready.cleaned {
        eprintln!("legion: {note}");
    }
    if let Some(t) = token {
        outln!("export {}={}", TOKEN_ENV, t.expose());
    }
    outln!(
        "# legion daemon {} serving pid {} on {}{}",
        ready.metadata.version,
        ready.metadata.pid,
        ready.metadata.endpoint.display(),
        if token.is_some() {
            " (this is the only time the token is shown)"
        } else {
            " (token from LEGION_DAEMON_TOKEN)"
        }
    );
}

async fn stop(cli: &Cli, home: PathBuf, endpoint: &Endpoint) -> Result<()> {
    let token = cli.daemon_token().ok_or_else(|| {
        let pid = endpoint
            .read_metadata()
            .ok()
            .flatten()
            .map(|m| format!(" (or `kill {}`)", m.pid))
            .unwrap_or_default();
        eyre!("stopping the daemon needs its token in LEGION_DAEMON_TOKEN{pid}")
    })?;
    let remote = Remote::connect(endpoint, home, token).await?;
    let pid = remote.status().pid;
    remote.shutdown().await?;
    // Wait until it has saved, locked, removed its socket and exited (it stops
    // answering a moment before its files are gone).
    let exited = || {
        rustix::process::Pid::from_raw(pid as i32)
            .is_none_or(|p| rustix::process::test_kill_process(p).is_err())
    };
    for _ in 0..200 {
        if matches!(endpoint.probe(), Probe::Absent) || exited() {
            if matches!(endpoint.probe(), Probe::Stale(_)) {
                endpoint.remove();
            }
            outln!("daemon pid {pid} stopped; the state is saved and locked");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(eyre!(
        "daemon pid {pid} accepted the stop but still answers after 10 s"
    ))
}

async fn status(cli: &Cli, home: PathBuf, endpoint: &Endpoint, as_json: bool) -> Result<()> {
    let (state, meta) = match endpoint.probe() {
        Probe::Running(m) => ("running", m),
        Probe::Stale(m) => {
            endpoint.remove();
            ("stale", m)
        }
        Probe::Absent => ("absent", None),
    };
    let live = match (state, cli.daemon_token()) {
        ("running", Some(token)) => {
            let remote = Remote::connect(endpoint, home.clone(), token).await?;
            let status = remote.fresh_status().await?;
            let lock = status.lock;
            Some((status, lock))
        }
        _ => None,
    };
    if as_json {
        json(&serde_json::json!({
            "state": state,
            "endpoint": endpoint.socket,
            "metadata": meta,
            "daemon": live.as_ref().map(|(s, _)| s),
            "lock": live.as_ref().map(|(_, l)| l),
        }))?;
    } else {
        match (state, &meta) {
            ("running", Some(m)) => outln!(
                "daemon {} running: pid {}, socket {}, started {}",
                m.version,
                m.pid,
                m.endpoint.display(),
                ago(crate::daemon::now_secs().saturating_sub(m.created))
            ),
            ("running", None) => outln!(
                "a daemon answers on {} but its metadata is missing",
                endpoint.socket.display()
            ),
            ("stale", m) => outln!(
                "no daemon runs; removed a stale socket{}",
                m.as_ref()
                    .map(|m| format!(" left by pid {}", m.pid))
                    .unwrap_or_default()
            ),
            _ => outln!("no daemon runs for {}", home.display()),
        }
        if let Some((s, lock)) = &live {
            outln!(
                "engine {lock:?}, {} client(s) connected, {} request(s) served",
                s.clients,
                s.requests
            );
        }
    }
    if state == "running" {
        Ok(())
    } else {
        Err(EngineError::Unavailable(format!("no daemon serves {}", home.display())).into())
    }
}

/// Start `legion daemon serve` in its own session, hand it the secrets on stdin and wait
/// for its first line: ready, or why not.
async fn spawn(handover: Handover) -> Result<Ready> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let logs = handover.home.join("logs");
    std::fs::create_dir_all(&logs)?;
    let stderr = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(logs.join("daemon-stderr.log"))?
    };
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["daemon", "serve"])
        .env_remove(TOKEN_ENV)
        .env_remove("LEGION_PASSWORD_FILE")
        .env_remove("LEGION_HOME")
        .current_dir("/")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(false)
        .spawn()
        .context("starting the daemon process")?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| eyre!("no pipe to the daemon"))?;
    let line = serde_json::to_string(&handover)?;
    stdin.write_all(line.as_bytes()).await?;
    stdin.write_all(b"\n").await?;
    drop(stdin);
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| eyre!("no pipe from the daemon"))?;
    let mut first = String::new();
    tokio::io::BufReader::new(stdout)
        .read_line(&mut first)
        .await?;
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Answer {
        Ready {
            metadata: Metadata,
            cleaned: Option<String>,
        },
        Error {
            message: String,
            code: crate::engine::ErrorKind,
        },
    }
    match serde_json::from_str::<Answer>(&first) {
        Ok(Answer::Ready { metadata, cleaned }) => Ok(Ready { metadata, cleaned }),
        Ok(Answer::Error { message, code }) => {
            Err(EngineError::from_wire(code, message, Vec::new()).into())
        }
        Err(_) => {
            let status = child.wait().await?;
            Err(eyre!(
                "the daemon process exited ({status}) before it was ready; see {}",
                logs.join("daemon-stderr.log").display()
            ))
        }
    }
}

/// The background daemon: read the handover, leave the terminal's session, serve.
async fn serve() -> Result<()> {
    use std::io::BufRead;
    // The line holds the password: wiped when dropped.
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin().lock().read_line(&mut line)?;
    let handover: Handover = serde_json::from_str(&line)
        .map_err(|_| eyre!("`daemon serve` is started by `legion daemon start`"))?;
    line.clear();
    let home = handover.home;
    // No controlling terminal: closing the operator's SSH session does not stop it.
    let _ = rustix::process::setsid();
    let _guard = init_tracing(&home);
    let answer = |v: serde_json::Value| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{v}");
        let _ = out.flush();
    };
    let r = crate::daemon::host::run(
        EngineConfig::new(home),
        handover.password,
        handover.token,
        |r| {
            answer(serde_json::json!({"ready": {"metadata": r.metadata, "cleaned": r.cleaned}}));
        },
    )
    .await;
    if let Err(e) = &r {
        answer(serde_json::json!({"error": {"message": e.to_string(), "code": e.code()}}));
    }
    Ok(r?)
}
