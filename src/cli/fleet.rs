//! Commands about the whole fleet rather than one resource: `status`, `apply`, `refresh`
//! (`plan` is `plan.rs`).
//!
//! Each is one engine call through the [`Link`] and a line or a table of its answer.

use color_eyre::eyre::{Result, eyre};

use std::io::IsTerminal;

use super::Cli;
use super::output::{clean, json, outln, print_block};
use super::plan;
use super::session::with_link;
use crate::engine::snapshot::ApplyView;
use crate::link::Link;
use crate::views::plain;

/// `legion status [--json]`: which engine answered, then the snapshot.
pub(crate) async fn status(cli: &Cli, as_json: bool) -> Result<()> {
    with_link(cli, async |l: &Link| {
        let snap = l.current().await?;
        let via = match l {
            Link::Local(_) => serde_json::json!({"path": "local"}),
            Link::Daemon(r) => serde_json::json!({
                "path": "daemon",
                "pid": r.status().pid,
                "endpoint": r.status().endpoint,
                "version": r.status().version,
            }),
        };
        // A fresh local engine may not have published the plan's counts yet: ask it. The
        // daemon's snapshot has them, and the answer must not wait on its engine.
        let counts = match l {
            Link::Local(_) => l.changes().await?.counts(),
            Link::Daemon(_) => snap.changes,
        };
        if as_json {
            let mut v = serde_json::to_value(&*snap)?;
            v["engine"] = via;
            v["changes"] = serde_json::to_value(counts)?;
            json(&v)?;
        } else {
            match l {
                Link::Local(_) => {
                    outln!("engine: this process (unlocked for this command)")
                }
                Link::Daemon(r) => outln!(
                    "engine: daemon pid {} on {}",
                    r.status().pid,
                    clean(&r.status().endpoint)
                ),
            }
            print_block(&plain::render(&snap));
            if counts.is_empty() {
                outln!("plan: in sync with the last readings");
            } else {
                outln!("plan: {counts} (`legion plan` shows them)");
            }
        }
        Ok(())
    })
    .await
}

/// `legion apply [--wait] [--yes]`: the plan first; on a terminal (stdin and stdout) a
/// confirmation unless `--yes`; without one it proceeds, as scripts expect. An empty plan
/// says so and starts nothing.
pub(crate) async fn apply(cli: &Cli, wait: bool, yes: bool) -> Result<()> {
    with_link(cli, async |l: &Link| {
        let set = l.changes().await?;
        if set.is_empty() {
            outln!("nothing to do: the plan matches what the providers show; no apply started");
            return Ok(());
        }
        print_block(&plan::render(&set));
        // Said before the apply starts: the firewall actor refuses these sets anyway.
        for why in l.lockouts().await? {
            eprintln!("legion: warning: {}", clean(&why));
        }
        let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        if terminal && !yes {
            let ok = tokio::task::spawn_blocking(plan::confirmed).await??;
            if !ok {
                return Err(eyre!("apply cancelled; nothing was changed"));
            }
        }
        let id = l.apply().await?;
        if wait {
            // On a terminal, where the apply stands (stderr, one line per change of stage
            // or a tenth of the fleet): the output proper stays the last line alone.
            let mut shown = Shown::default();
            let show = std::io::stderr().is_terminal();
            let done = l
                .wait_apply(id, None, |p| {
                    if show && let Some(line) = shown.next(&p.apply) {
                        eprintln!("{}", clean(&line));
                    }
                })
                .await?;
            outln!("{}", clean(&plain::apply_line(&done.apply)));
            if !matches!(done.apply, ApplyView::Finished { ok: true, .. }) {
                return Err(eyre!(
                    "apply #{id} did not converge; `legion plan` shows what still differs"
                ));
            }
        } else {
            outln!("apply #{id} started");
            if !l.is_daemon() {
                // The engine lives in this process: let the apply finish first.
                l.wait_apply(id, None, |_| {}).await?;
            }
        }
        Ok(())
    })
    .await
}

/// Which progress lines `apply --wait` shows: a new stage, or a tenth more settled.
#[derive(Default)]
struct Shown {
    stage: String,
    tenth: usize,
}

impl Shown {
    fn next(&mut self, apply: &ApplyView) -> Option<String> {
        let ApplyView::Running {
            stage,
            total,
            settled,
            ..
        } = apply
        else {
            return None;
        };
        let tenth = settled * 10 / (*total).max(1);
        if *stage == self.stage && tenth == self.tenth {
            return None;
        }
        self.stage.clone_from(stage);
        self.tenth = tenth;
        Some(plain::apply_line(apply))
    }
}

/// `legion refresh`.
pub(crate) async fn refresh(cli: &Cli) -> Result<()> {
    with_link(cli, async |l: &Link| Ok(l.refresh().await?)).await?;
    outln!("providers read");
    Ok(())
}
