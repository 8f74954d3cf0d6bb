//! `legion logs`: the operation log, read from the home's `logs/operations.jsonl` (no
//! unlock: it holds no secrets), or streamed by the daemon with `--follow` and a token.
//!
//! Messages are printed sanitised; `--json` prints the stored lines byte for byte.

use crate::engine::EngineApi as _;
use std::io::BufRead;
use std::time::Duration;

use color_eyre::eyre::{Context, Result};
use tokio::sync::broadcast::error::RecvError;

use super::Cli;
use super::output::{clean, json_safe, out, outln};
use crate::core::oplog::OpEntry;
use crate::daemon::Endpoint;
use crate::daemon::client::Remote;
use crate::engine::EngineError;

#[derive(clap::Args)]
pub(crate) struct LogsArgs {
    /// Keep printing new lines as they are written.
    #[arg(long)]
    follow: bool,
    /// Only this node's lines.
    #[arg(long)]
    node: Option<String>,
    /// One JSON object per line, as stored.
    #[arg(long)]
    json: bool,
}

/// Print the operation log from the home's JSON-lines file; `--follow` keeps reading.
pub(crate) async fn run(cli: &Cli, args: &LogsArgs) -> Result<()> {
    let home = cli.home()?;
    let node = args.node.as_deref();
    if args.follow
        && let Some(token) = cli.daemon_token()
    {
        // The daemon streams new entries as they happen: no polling of the file.
        let remote = Remote::connect(&Endpoint::for_home(&home), home, token).await?;
        return follow_daemon(remote, node, args.json).await;
    }
    let path = home.join("logs").join("operations.jsonl");
    let file = std::fs::File::open(&path)
        .with_context(|| format!("no operation log at {}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let resource = node.map(|n| format!("node/{n}"));
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            if !args.follow {
                return Ok(());
            }
            // A partial line: read it again whole once the writer finishes it.
            if n > 0 {
                reader.seek_relative(-(n as i64))?;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        let Ok(entry) = serde_json::from_str::<OpEntry>(line.trim_end()) else {
            continue;
        };
        if resource.is_some() && entry.resource != resource {
            continue;
        }
        if args.json {
            // As stored, byte for byte, except characters a terminal acts on.
            out!("{}", json_safe(&line));
        } else {
            print_entry(&entry, false)?;
        }
    }
}

fn print_entry(entry: &OpEntry, json: bool) -> Result<()> {
    if json {
        outln!("{}", json_safe(&serde_json::to_string(entry)?));
    } else {
        let secs = entry.ts_ms / 1000;
        outln!(
            "{:02}:{:02}:{:02} {}",
            (secs / 3600) % 24,
            (secs / 60) % 60,
            secs % 60,
            clean(&entry.message)
        );
    }
    Ok(())
}

/// `logs --follow` through the daemon: the recent entries, then each new one.
async fn follow_daemon(remote: Remote, node: Option<&str>, json: bool) -> Result<()> {
    let resource = node.map(|n| format!("node/{n}"));
    remote.follow_logs().await?;
    let mut rx = remote.subscribe_logs();
    let recent = remote.logs(200, resource.clone()).await?;
    let mut last = 0;
    for e in &recent {
        print_entry(e, json)?;
        last = e.seq;
    }
    loop {
        tokio::select! {
            entry = rx.recv() => match entry {
                Ok(e) if e.seq <= last => {}
                Ok(e) if resource.is_some() && e.resource != resource => {}
                Ok(e) => print_entry(&e, json)?,
                Err(RecvError::Lagged(n)) => {
                    eprintln!("legion: {n} log entries skipped (reading too slowly)");
                }
                Err(RecvError::Closed) => {
                    return Err(
                        EngineError::Unavailable("the daemon closed the connection".into()).into()
                    );
                }
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
