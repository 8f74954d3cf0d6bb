//! `legion nodes`: plan, import, show, act on and destroy nodes.
//!
//! A command sends one request through the [`Link`] and reports what the node's row says
//! afterwards. Refusals and failures come from the engine and its actors; this file
//! decides only what to wait for and what to print.

use std::time::Duration;

use clap::Subcommand;
use color_eyre::eyre::{Result, eyre};

use super::Cli;
use super::output::{clean, json, outln, print_block};
use super::password::import_password;
use super::session::with_link;
use crate::engine::EngineError;
use crate::engine::actors::{Action, Machine, System};
use crate::engine::import::ImportRequest;
use crate::engine::plan::{NodeIntent, NodeRequest, PlanEdit};
use crate::engine::snapshot::{AppSnapshot, NodeRow};
use crate::engine::status::{NodeStatus, Progress, Target, progress};
use crate::link::Link;
use crate::providers::BootMode;
use crate::ssh::SudoStatus;
use crate::views::plain;

#[derive(Subcommand)]
pub(crate) enum NodesCommand {
    /// Every node with its state (`--json`: an array of node objects, see docs/cli.md).
    List {
        #[arg(long)]
        json: bool,
    },
    /// One node in detail: plan vs observed, execution phases.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Plan a node; empty choices take the provider's catalog defaults.
    Add {
        name: String,
        #[arg(long)]
        provider: String,
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        offer: Option<String>,
        #[arg(long)]
        image: Option<String>,
        #[arg(long)]
        cluster: Option<String>,
        #[arg(long)]
        role: Option<String>,
        #[arg(long, value_parser = ["bios", "efi"])]
        boot_mode: Option<String>,
        /// Apply the plan after adding it.
        #[arg(long)]
        apply: bool,
        /// With --apply: wait until it settles (the default with --apply; kept for scripts
        /// that say it); exit 1 if it failed.
        #[arg(long, requires = "apply")]
        wait: bool,
    },
    /// Change a planned node: prints each field that changes (old -> new). Apply makes it
    /// so; a region change needs a new server (a replacement).
    Set(SetArgs),
    /// Import an existing host (the manual provider): log in once with a password to
    /// install Legion's managed key (the password is never stored), check the user is
    /// root or has passwordless sudo, pin its host key, and plan it. `--apply` deploys it.
    Import {
        name: String,
        /// Host name or address.
        #[arg(long)]
        host: String,
        #[arg(long, default_value_t = 22)]
        port: u16,
        /// root, or a user with passwordless sudo.
        #[arg(long, default_value = "root")]
        user: String,
        #[arg(long)]
        cluster: Option<String>,
        #[arg(long)]
        role: Option<String>,
        /// Read the one-time password from this environment variable (never pass it as
        /// an argument). Without it, a terminal is asked.
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
        /// Legion's key is already in the user's authorized_keys: no password.
        #[arg(long, conflicts_with = "password_env")]
        key_only: bool,
        /// The host key the host must present (`SHA256:…`, from `ssh-keygen -lf` on the
        /// host): any other key is refused before the password is sent. Without it, the
        /// key seen first is trusted and pinned (trust on first use).
        #[arg(long, value_name = "SHA256:…")]
        host_key_fingerprint: Option<String>,
        /// Apply the plan after importing (runs the SSH phases); exit 1 if it failed.
        #[arg(long)]
        apply: bool,
        #[arg(long)]
        json: bool,
    },
    /// Start a node.
    Start(NodeActionArgs),
    /// Stop a node (graceful shutdown).
    Stop(NodeActionArgs),
    /// Reboot a node.
    Reboot(NodeActionArgs),
    /// Resume a failed or interrupted execution from its recorded phase.
    Retry(NodeActionArgs),
    /// Reset the node's disk to a current image and run the install phases again.
    Reinstall(NodeActionArgs),
    /// Forget the node's pinned SSH host key: the next connection trusts what it finds.
    /// Do this only after a reinstall, or once you have checked the new key out of band.
    Retrust { name: String },
    /// Remove a node from the plan and apply, destroying its server.
    Destroy {
        name: String,
        /// Required: this deletes the server.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(clap::Args)]
pub(crate) struct SetArgs {
    name: String,
    #[arg(long)]
    offer: Option<String>,
    #[arg(long)]
    image: Option<String>,
    #[arg(long)]
    region: Option<String>,
    #[arg(long)]
    role: Option<String>,
    #[arg(long)]
    cluster: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct NodeActionArgs {
    name: String,
    /// Wait until the node is where the action leads (start, reboot, reinstall, retry:
    /// running and reachable by a health check taken after it; stop: stopped); exit 1
    /// with the reason if it fails or does not get there within --timeout.
    #[arg(long)]
    wait: bool,
    /// With --wait: how long to wait (`90s`, `5m`, `1h`, or seconds).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_timeout,
          requires = "wait")]
    timeout: Duration,
}

/// `90s`, `5m`, `1h` or a number of seconds.
pub(crate) fn parse_timeout(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; say 90s, 5m or 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: the unit must be s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

/// How long `nodes list`/`show` wait for the first health checks: enough for SSH to
/// answer from far away, short of the 10 s connect timeout a blackholed node runs into
/// (that node then shows `unknown`; the daemon answers at once).
const FIRST_HEALTH_WAIT: Duration = Duration::from_secs(8);

pub(crate) async fn run(cli: &Cli, command: &NodesCommand) -> Result<()> {
    with_link(cli, async |l: &Link| on_link(l, command).await).await
}

async fn on_link(engine: &Link, command: &NodesCommand) -> Result<()> {
    let (name, action) = match command {
        NodesCommand::List { json: as_json } => {
            first_health(engine).await;
            let snap = engine.current().await?;
            if *as_json {
                json(&snap.nodes)?;
            } else {
                print_block(&plain::render(&snap));
            }
            return Ok(());
        }
        NodesCommand::Show {
            name,
            json: as_json,
        } => {
            first_health(engine).await;
            let snap = engine.current().await?;
            let row = snap
                .node(name)
                .ok_or_else(|| EngineError::NotFound(format!("no node {name:?}")))?;
            if *as_json {
                json(row)?;
            } else {
                print_node(row);
            }
            return Ok(());
        }
        NodesCommand::Add {
            name,
            provider,
            region,
            offer,
            image,
            cluster,
            role,
            boot_mode,
            apply,
            wait: _,
        } => {
            engine
                .upsert_node(NodeRequest {
                    name: name.clone(),
                    provider: provider.clone(),
                    cluster: cluster.clone(),
                    role: role.clone(),
                    region: region.clone(),
                    offer: offer.clone(),
                    image: image.clone(),
                    boot_mode: boot_mode.as_deref().map(|b| {
                        if b == "efi" {
                            BootMode::Efi
                        } else {
                            BootMode::Bios
                        }
                    }),
                    intent: NodeIntent::Add,
                })
                .await?;
            outln!("{name} is in the plan");
            if *apply {
                apply_and_report(engine, name).await?;
            }
            return Ok(());
        }
        NodesCommand::Import {
            name,
            host,
            port,
            user,
            cluster,
            role,
            password_env,
            key_only,
            host_key_fingerprint,
            apply,
            json: as_json,
        } => {
            let password = import_password(user, host, password_env.as_deref(), *key_only)?;
            let report = engine
                .import_node(ImportRequest {
                    name: name.clone(),
                    host: host.clone(),
                    port: *port,
                    user: user.clone(),
                    password,
                    cluster: cluster.clone(),
                    role: role.clone(),
                    host_key: host_key_fingerprint.clone(),
                })
                .await?;
            if *as_json {
                json(&report)?;
            } else {
                outln!("{name} imported: {}", clean(&report.server_id));
                if report.host_key_verified {
                    outln!(
                        "  host key  {} (matched the fingerprint given; pinned)",
                        clean(&report.host_key)
                    );
                } else {
                    outln!(
                        "  host key  {} (trusted on first use and pinned: not verified; compare \
                         it with `ssh-keygen -lf` on the host, or pass --host-key-fingerprint)",
                        clean(&report.host_key)
                    );
                }
                outln!(
                    "  sudo      {}",
                    match report.sudo {
                        SudoStatus::Root => "root (no sudo needed)",
                        SudoStatus::Passwordless => "passwordless sudo",
                        SudoStatus::NeedsPassword => "sudo needs a password",
                        SudoStatus::Missing => "no sudo",
                    }
                );
                outln!(
                    "  key       {}",
                    if report.key_added {
                        "Legion's key added to authorized_keys"
                    } else {
                        "Legion's key already authorized"
                    }
                );
                if let Some(n) = &report.note {
                    outln!("  note      {}", clean(n));
                }
            }
            if *apply {
                apply_and_report(engine, name).await?;
            } else if !*as_json {
                outln!("run `legion apply` to deploy it");
            }
            return Ok(());
        }
        NodesCommand::Retrust { name } => {
            match engine.retrust(name.clone()).await? {
                Some(fp) => {
                    outln!(
                        "{name}: forgot host key {}; the next connection pins what it finds",
                        clean(&fp)
                    )
                }
                None => outln!("{name}: no host key was pinned"),
            }
            return Ok(());
        }
        NodesCommand::Destroy { name, yes } => return destroy(engine, name, *yes).await,
        NodesCommand::Set(args) => return set(engine, args).await,
        NodesCommand::Start(a) => (a, Action::Start),
        NodesCommand::Stop(a) => (a, Action::Stop),
        NodesCommand::Reboot(a) => (a, Action::Reboot),
        NodesCommand::Retry(a) => (a, Action::Retry),
        NodesCommand::Reinstall(a) => (a, Action::Reinstall),
    };
    node_action(
        engine,
        &name.name,
        action,
        name.wait.then_some(name.timeout),
    )
    .await
}

/// `nodes show NAME` as text.
fn print_node(row: &NodeRow) {
    let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "-".into(), clean);
    outln!("node      {}", clean(&row.name));
    match &row.status {
        NodeStatus::Stale { was, .. } => outln!("status    {} (was {was})", row.status),
        s => outln!("status    {s}"),
    }
    outln!(
        "plan      {} / {} / {} / {} (cluster {}, role {})",
        clean(&row.provider),
        clean(&row.region),
        clean(&row.offer),
        clean(&row.image),
        clean(&row.cluster),
        clean(&row.role)
    );
    outln!("machine   {}", row.machine);
    outln!("system    {}", clean(&row.system.to_string()));
    outln!("address   {}", opt(&row.address));
    outln!("server    {}", opt(&row.server_id));
    outln!("operation {}", opt(&row.operation));
    match (&row.last_error, row.error_class) {
        (Some(e), Some(class)) => outln!("error     {} ({class})", clean(e)),
        _ => outln!("error     {}", opt(&row.last_error)),
    }
    for d in &row.diffs {
        outln!(
            "differs   {}: planned {}, observed {}",
            d.field,
            clean(&d.planned),
            clean(&d.observed)
        );
    }
    if let Some(e) = &row.execution {
        outln!("execution #{} {:?} {:?}", e.id, e.kind, e.status);
        for p in &e.phases {
            outln!(
                "  {:<24} {:?} {}",
                p.phase.to_string(),
                p.status,
                clean(p.error.as_deref().unwrap_or_default())
            );
        }
    }
}

/// Start, stop, reboot, retry or reinstall. The operation is followed to its end when
/// the engine lives in this process (leaving sooner would stop it); `--wait` (with its
/// timeout) also waits for the state the action leads to, after a fresh observation, and
/// turns anything else into exit 1 with the reason.
async fn node_action(
    engine: &Link,
    name: &str,
    action: Action,
    wait: Option<Duration>,
) -> Result<()> {
    let op = engine.node_action(name.to_string(), action).await?;
    outln!("{action} {name}: accepted");
    let Some(timeout) = wait else {
        if engine.is_daemon() {
            // The daemon's engine carries on; the snapshot shows how it ends.
            return Ok(());
        }
        let row = engine.wait_operation(name, op).await?;
        match row.last_error {
            Some(e) => eprintln!("legion: {action} {name} failed: {}", clean(&e)),
            // Right after the operation: what the status says now, not the target.
            None => outln!("{action} {name}: finished; now {}", row.status),
        }
        return Ok(());
    };
    let target = Target::of(action);
    let mut last = String::new();
    let waited = tokio::time::timeout(
        timeout,
        engine.wait_for(|s| {
            let Some(row) = s.node(name) else {
                last = "gone from the state".into();
                return true;
            };
            if row.ops_finished < op {
                last = row.status.to_string();
                return false;
            }
            if row.last_error.is_some() {
                return true;
            }
            match progress(target, &row.status, row.last_error.as_deref()) {
                Progress::Pending(now) => {
                    last = now;
                    false
                }
                Progress::Reached | Progress::Failed(_) => true,
            }
        }),
    )
    .await;
    let snap = match waited {
        Ok(snap) => snap?,
        Err(_) => {
            return Err(eyre!(
                "{action} {name}: not {target} after {}s; it is {}",
                timeout.as_secs(),
                clean(&last)
            ));
        }
    };
    let row = snap
        .node(name)
        .ok_or_else(|| EngineError::NotFound(format!("node {name:?} is gone")))?;
    if let Some(e) = &row.last_error {
        return Err(eyre!("{action} {name} failed ({}): {e}", row.status));
    }
    match progress(target, &row.status, row.last_error.as_deref()) {
        Progress::Reached => {
            outln!("{action} {name}: done ({})", row.status);
            Ok(())
        }
        Progress::Failed(why) | Progress::Pending(why) => {
            Err(eyre!("{action} {name} failed: {}", clean(&why)))
        }
    }
}

/// `nodes set`: change the given fields of a planned node and print what changed, from
/// the plan before and after (the engine checks the new values against the catalog).
async fn set(engine: &Link, args: &SetArgs) -> Result<()> {
    let name = &args.name;
    let before = engine.plan().await?.nodes.get(name).cloned();
    engine
        .upsert_node(NodeRequest {
            name: name.clone(),
            cluster: args.cluster.clone(),
            role: args.role.clone(),
            region: args.region.clone(),
            offer: args.offer.clone(),
            image: args.image.clone(),
            intent: NodeIntent::Set,
            ..NodeRequest::default()
        })
        .await?;
    let after = engine.plan().await?.nodes.get(name).cloned();
    let (Some(before), Some(after)) = (before, after) else {
        return Err(eyre!("{name} is no longer in the plan"));
    };
    let changes = node_changes(&before, &after);
    if changes.is_empty() {
        outln!("{name}: nothing changes");
        return Ok(());
    }
    outln!("{name}:");
    for (field, old, new) in &changes {
        outln!("  ~ {field:<8} {} -> {}", clean(old), clean(new));
    }
    if changes.iter().any(|(f, _, _)| *f == "region") {
        outln!(
            "  a region change needs a new server in the new region: a replacement (-/+ in `legion plan`)"
        );
    }
    outln!("run `legion apply` to make it so");
    Ok(())
}

/// The fields of a planned node that differ: (field, old, new).
fn node_changes(
    before: &crate::engine::state::model::NodePlan,
    after: &crate::engine::state::model::NodePlan,
) -> Vec<(&'static str, String, String)> {
    let fields = |n: &crate::engine::state::model::NodePlan| {
        [
            ("provider", n.provider.clone()),
            ("region", n.region.clone()),
            ("offer", n.offer.clone()),
            ("image", n.image.clone()),
            ("role", n.role.clone()),
            ("cluster", n.cluster.clone()),
        ]
    };
    fields(before)
        .into_iter()
        .zip(fields(after))
        .filter(|((_, old), (_, new))| old != new)
        .map(|((field, old), (_, new))| (field, old, new))
        .collect()
}

async fn destroy(engine: &Link, name: &str, yes: bool) -> Result<()> {
    if !yes {
        return Err(eyre!(
            "destroying {name} deletes its server; say --yes to confirm"
        ));
    }
    engine
        .edit_plan(PlanEdit::RemoveNode {
            name: name.to_string(),
        })
        .await?;
    let id = engine.apply().await?;
    let done = engine.wait_apply(id, Some(name), |_| {}).await?;
    if done.node.is_some() {
        return Err(eyre!(
            "{name} was not torn down: {}",
            clean(&plain::apply_line(&done.apply))
        ));
    }
    outln!("{name} destroyed");
    Ok(())
}

/// An engine started by this command has not checked any node's health yet: give the
/// first checks of running, installed nodes a moment (bounded), so `system` says ready,
/// degraded or unreachable instead of unknown. The daemon's engine has been checking.
async fn first_health(engine: &Link) {
    if engine.is_daemon() {
        return;
    }
    let checked = |s: &AppSnapshot| {
        s.nodes.iter().all(|n| {
            // Only nodes whose check has started: a running server of a connected provider.
            let checking = n.machine == Machine::Running
                && n.server_id.is_some()
                && s.providers.iter().any(|p| p.id == n.provider);
            !checking || n.system != System::Unknown
        })
    };
    let _ = tokio::time::timeout(FIRST_HEALTH_WAIT, engine.wait_for(checked)).await;
}

/// Apply, wait for it, and fail with the node's error when it has one.
async fn apply_and_report(engine: &Link, name: &str) -> Result<()> {
    let id = engine.apply().await?;
    let done = engine.wait_apply(id, Some(name), |_| {}).await?;
    outln!("{}", clean(&plain::apply_line(&done.apply)));
    match done.node.and_then(|r| r.last_error) {
        Some(e) => Err(eyre!("{name}: {e}")),
        None => Ok(()),
    }
}
