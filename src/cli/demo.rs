//! `legion demo`: a home of its own beside the operator's, the simulated cloud enabled
//! for its engine only, a seeded fleet, an apply; then the dashboard, text tables
//! redrawn as the apply goes (no terminal), or with `--once` one summary once the fleet
//! has settled (exit 1 naming the rows that did not). `--readonly` seeds a fresh demo
//! but never applies: it shows the fleet as it is, in a read-only dashboard (`--once`:
//! one table).
//!
//! The seed and the sandboxes are the engine's (`engine::demo`, `engine::sandbox`); this
//! file only wires them to a face and must not reach the operator's own state.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use color_eyre::eyre::{Context, Result, eyre};

use super::Cli;
use super::dashboard::{DashboardArgs, show};
use super::output::{clean, outln, write_private};
use super::password::read_password;
use super::session::{has_state, init_tracing};
use crate::core::secret::Secret;
use crate::engine::snapshot::ApplyView;
use crate::engine::status::Settlement;
use crate::engine::{Engine, EngineConfig, demo, home};
use crate::link::Link;
use crate::providers::Env;
use crate::views::plain;

#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// Start the demo fresh.
    #[arg(long)]
    reset: bool,
    /// No dashboard: wait until the demo fleet has settled (every node running and
    /// reachable, every zone and firewall set converged), print one summary and exit 0;
    /// exit 1 naming the rows that failed or did not settle within --timeout.
    #[arg(long)]
    once: bool,
    /// With --once: how long to wait for the fleet to settle (`90s`, `5m`, `1h`).
    #[arg(long, value_name = "DURATION", default_value = "5m",
          value_parser = super::nodes::parse_timeout, requires = "once")]
    timeout: Duration,
    #[command(flatten)]
    pub(crate) dashboard: DashboardArgs,
}

/// The demo's own home, beside the operator's, so it never touches real state.
fn demo_home(cli: &Cli) -> Result<PathBuf> {
    Ok(cli.home()?.join("demo"))
}

pub(crate) async fn run(cli: &Cli, rt: &tokio::runtime::Handle, args: &DemoArgs) -> Result<()> {
    let home = demo_home(cli)?;
    if args.reset && home.exists() {
        std::fs::remove_dir_all(&home)
            .with_context(|| format!("removing the old demo at {}", home.display()))?;
    }
    home::ensure_home(&home).with_context(|| format!("preparing {}", home.display()))?;
    let _guard = init_tracing(&home);
    let pw_path = home.join("demo-password");
    let fresh = !has_state(&home);
    let mut config = EngineConfig::new(home.clone());
    config.env = Env::from_process().with("LEGION_MOCK_NETWORK", "1");
    // With an OpenSSH server installed, every simulated node gets a local sandbox sshd:
    // real shells, deployment phases and log tails.
    config.ssh_endpoints = crate::engine::sandbox::endpoints(home.join("sandboxes"));
    let sandboxed = config.ssh_endpoints.is_some();
    let engine = Engine::start(config);
    if fresh {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| eyre!("system random failed: {e}"))?;
        let pw = hex::encode(bytes);
        write_private(&pw_path, &pw)?;
        engine.init(Secret::new(pw)).await?;
        demo::seed(&engine, 150).await?;
    } else {
        engine.unlock(read_password(&pw_path)?).await?;
    }
    // `--readonly` shows the fleet as it is: no apply (a fresh demo shows its plan).
    let id = if args.dashboard.readonly {
        None
    } else {
        Some(engine.apply().await?)
    };
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    if tty && !args.once {
        let note = format!(
            "demo: simulated cloud{} · password kept in {}",
            if sandboxed {
                ", a local sshd per node"
            } else {
                " (no sshd: no shells)"
            },
            pw_path.display()
        );
        let shown = show(
            &args.dashboard,
            rt,
            Link::Local(engine.clone()),
            home.clone(),
            Some(note),
        )
        .await;
        engine.logout().await?;
        return shown;
    }
    outln!(
        "Legion demo (simulated cloud) in {}\nIts state is encrypted; the demo keeps the password in {}.\n",
        home.display(),
        pw_path.display()
    );
    if args.once {
        let settled = match id {
            Some(id) => once(&engine, id, args.timeout).await,
            None => {
                // Read-only: nothing was applied, so there is nothing to wait for but the
                // first publication that has every planned node's row.
                let shown = tokio::time::timeout(
                    Duration::from_secs(10),
                    engine.wait_for(|s| !s.nodes.is_empty() && s.nodes.iter().all(|n| n.live)),
                )
                .await;
                let snap = match shown {
                    Ok(snap) => snap?,
                    Err(_) => engine.snapshot(),
                };
                let text: String = plain::render(&snap)
                    .lines()
                    .map(|l| clean(l) + "\n")
                    .collect();
                outln!("DEMO  {}", text.trim_end());
                Ok(())
            }
        };
        engine.logout().await?;
        return settled;
    }
    let mut rx = engine.snapshots();
    let mut last = String::new();
    loop {
        let snap = rx.borrow_and_update().clone();
        // Line by line through the sanitizer, as `status` prints it.
        let text: String = plain::render(&snap)
            .lines()
            .map(|l| clean(l) + "\n")
            .collect();
        if text != last {
            let mut out = stdout.lock();
            if tty {
                // Redraw in place: home the cursor and clear below.
                let _ = write!(out, "\x1b[H\x1b[J");
            }
            let _ = write!(out, "DEMO  {text}");
            let _ = out.flush();
            last = text;
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { break },
            _ = tokio::signal::ctrl_c() => break,
        }
        // Coalesce bursts into one redraw.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine.logout().await?;
    Ok(())
}

/// How long a failed verdict must hold before `--once` reports it.
const FAILURE_HOLDS: Duration = Duration::from_secs(3);

/// `--once`: wait for apply `id`, then until every row has settled (or one has failed, or
/// waits on something no node will bring, or `timeout` passed), and print one table and
/// one verdict.
async fn once(engine: &Engine, id: u64, timeout: Duration) -> Result<()> {
    let mut verdict = Settlement::Pending(vec![format!("apply #{id} has not finished")]);
    let waited = tokio::time::timeout(
        timeout,
        engine.wait_for(|s| {
            if !matches!(&s.apply, ApplyView::Finished { id: done, .. } if *done >= id) {
                return false;
            }
            verdict = s.settlement();
            !matches!(verdict, Settlement::Pending(_))
        }),
    )
    .await;
    let mut snap = match waited {
        Ok(snap) => snap?,
        Err(_) => engine.snapshot(),
    };
    // A verdict of failure is final once it holds a moment: a zone's actor may still be
    // taking in the state change that ends its wait when the last node settles.
    if matches!(verdict, Settlement::Failed(_))
        && let Ok(settled) = tokio::time::timeout(
            FAILURE_HOLDS,
            engine.wait_for(|s| s.settlement() == Settlement::Settled),
        )
        .await
    {
        snap = settled?;
        verdict = Settlement::Settled;
    }
    let text: String = plain::render(&snap)
        .lines()
        .map(|l| clean(l) + "\n")
        .collect();
    outln!("DEMO  {}", text.trim_end());
    let (nodes, derived) = (
        snap.nodes.len(),
        snap.zones.len() + snap.firewalls.len() + snap.domains.len(),
    );
    match verdict {
        Settlement::Settled => {
            outln!(
                "demo settled: {nodes} nodes running and reachable, {derived} zones, firewall \
                 sets and domains converged"
            );
            Ok(())
        }
        Settlement::Failed(rows) => Err(eyre!("demo did not settle: {}", clean(&rows.join("; ")))),
        Settlement::Pending(rows) => Err(eyre!(
            "demo did not settle within {}s: {}",
            timeout.as_secs(),
            clean(&rows.join("; "))
        )),
    }
}
