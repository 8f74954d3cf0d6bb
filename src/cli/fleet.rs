//! Commands about the whole fleet rather than one resource: `status`, `apply`, `refresh`.
//!
//! Each is one engine call through the [`Link`] and a line or a table of its answer.

use color_eyre::eyre::{Result, eyre};

use super::Cli;
use super::output::{clean, json, outln, print_block};
use super::session::with_link;
use crate::engine::snapshot::ApplyView;
use crate::link::Link;
use crate::views::plain;

/// `legion status [--json]`: which engine answered, then the snapshot.
pub(crate) async fn status(cli: &Cli, as_json: bool) -> Result<()> {
    with_link(cli, async |l: &Link| {
        let snap = l.snapshot();
        let via = match l {
            Link::Local(_) => serde_json::json!({"path": "local"}),
            Link::Daemon(r) => serde_json::json!({
                "path": "daemon",
                "pid": r.status().pid,
                "endpoint": r.status().endpoint,
                "version": r.status().version,
            }),
        };
        if as_json {
            let mut v = serde_json::to_value(&*snap)?;
            v["engine"] = via;
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
        }
        Ok(())
    })
    .await
}

/// `legion apply [--wait]`.
pub(crate) async fn apply(cli: &Cli, wait: bool) -> Result<()> {
    with_link(cli, async |l: &Link| {
        // Said before the apply starts: the firewall actor refuses these sets anyway.
        for why in l.lockouts().await? {
            eprintln!("legion: warning: {}", clean(&why));
        }
        let id = l.apply().await?;
        if wait {
            let snap = l.wait_apply(id).await?;
            outln!("{}", clean(&plain::apply_line(&snap.apply)));
            if !matches!(snap.apply, ApplyView::Finished { ok: true, .. }) {
                return Err(eyre!("apply #{id} did not converge"));
            }
        } else {
            outln!("apply #{id} started");
            if !l.is_daemon() {
                // The engine lives in this process: let the apply finish first.
                l.wait_apply(id).await?;
            }
        }
        Ok(())
    })
    .await
}

/// `legion refresh`.
pub(crate) async fn refresh(cli: &Cli) -> Result<()> {
    with_link(cli, async |l: &Link| Ok(l.refresh().await?)).await?;
    outln!("providers read");
    Ok(())
}
