//! The `legion` binary: parses the command line and wires a face to the engine.
//!
//! Faces: the dashboard (`legion`, `legion demo`), `legion config init`,
//! `legion status`, `legion keymap --defaults`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use color_eyre::eyre::{Context, Result, eyre};
use legion::daemon::client::Remote;
use legion::daemon::{Endpoint, Probe};
use legion::engine::secret::Secret;
use legion::engine::snapshot::ApplyView;
use legion::engine::snapshot::LockState;
use legion::engine::{Engine, EngineConfig, EngineError, demo, home};
use legion::link::Link;
use legion::providers::Env;
use legion::views::keymap::Keymap;
use legion::views::plain;
use legion::views::run::DashboardConfig;
use legion::views::theme::ColorDepth;

/// Print to stdout; a closed pipe (`legion nodes list | head`) is not an error.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

/// Exit codes (documented in `--help`).
const EXIT_FAILURE: u8 = 1;
const EXIT_LOCKED: u8 = 3;
const EXIT_DAEMON_UNAVAILABLE: u8 = 4;

#[derive(Parser)]
#[command(
    name = "legion",
    version,
    about = "Run fleets of cloud servers from a terminal",
    after_help = "Exit codes: 0 ok, 1 failure, 2 usage error, 3 locked, wrong password, state \
                  held by another process or wrong daemon token, 4 daemon unavailable (not \
                  running, stale socket, connection lost).\n\
                  With LEGION_DAEMON_TOKEN set (or --daemon-token), commands go through the \
                  running daemon instead of unlocking the state themselves."
)]
struct Cli {
    /// Legion home (state, logs); default $LEGION_HOME or the platform data directory.
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Read the unlock password from this file (first line).
    #[arg(long, global = true, env = "LEGION_PASSWORD_FILE", value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Dashboard: offer no action or form that changes anything.
    #[arg(long, global = true)]
    readonly: bool,
    /// Dashboard theme: dark, light, ansi16, or a NAME.toml in the home's themes/.
    #[arg(long, global = true, default_value = "dark")]
    theme: String,
    /// Colour depth: truecolor, 256, 16 or none (default: detected from TERM/COLORTERM;
    /// NO_COLOR is honoured).
    #[arg(long, global = true, value_name = "DEPTH")]
    colors: Option<ColorDepth>,
    /// Go through the running daemon with this token. Prefer the LEGION_DAEMON_TOKEN
    /// variable: argv is visible to other processes and lands in shell history.
    #[arg(long, global = true, value_name = "TOKEN")]
    daemon_token: Option<String>,
    /// Open the dashboard on the daemon's engine; quitting leaves the engine running.
    #[arg(long)]
    attach: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Open the demo: a simulated cloud with a seeded fleet, applied and shown live.
    Demo {
        /// Start the demo fresh.
        #[arg(long)]
        reset: bool,
        /// Print text tables instead of the dashboard, and exit once the first apply
        /// finishes (for scripts).
        #[arg(long)]
        once: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff): `legion man | man -l -`.
    Man,
    /// Print the default key bindings as a keymap file (save it as HOME/keymap.toml).
    Keymap {
        #[arg(long)]
        defaults: bool,
    },
    /// Create or change the encrypted state.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Show providers, resources and the apply state.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Plan, inspect and act on nodes.
    Nodes {
        #[command(subcommand)]
        command: NodesCommand,
    },
    /// Apply the plan: create, converge and tear down what the plan says.
    Apply {
        /// Wait until every resource settles; exit 1 if any failed.
        #[arg(long)]
        wait: bool,
    },
    /// The operation log (provider writes, transitions, actions), from the home's
    /// `logs/operations.jsonl`; needs no unlock.
    Logs {
        /// Keep printing new lines as they are written.
        #[arg(long)]
        follow: bool,
        /// Only this node's lines.
        #[arg(long)]
        node: Option<String>,
        /// One JSON object per line, as stored.
        #[arg(long)]
        json: bool,
    },
    /// DNS zones in the plan.
    Zones {
        #[command(subcommand)]
        command: ZonesCommand,
    },
    /// DNS records of planned zones.
    Records {
        #[command(subcommand)]
        command: RecordsCommand,
    },
    /// Cluster firewall sets and their extra rules.
    Firewalls {
        #[command(subcommand)]
        command: FirewallsCommand,
    },
    /// A provider's catalog: regions, offers and images, the policy's defaults marked.
    Catalog {
        kind: String,
        /// Only offers orderable in this region.
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Providers Legion knows and how they are configured.
    Provider {
        #[command(subcommand)]
        command: ProviderCommand,
    },
    /// Read every provider now instead of at the next observation.
    Refresh,
    /// Legion's managed SSH key.
    SshKey {
        #[command(subcommand)]
        command: SshKeyCommand,
    },
    /// Open a shell on a node with the system `ssh`, the managed key and the pinned host
    /// key (through a temporary known_hosts file). Arguments after `--` go to the remote.
    Ssh {
        node: String,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The local daemon: one unlocked engine shared by commands and dashboards.
    Daemon {
        #[command(subcommand)]
        command: DaemonCommand,
    },
}

#[derive(Subcommand)]
enum SshKeyCommand {
    /// Write the private key (0600) and `.pub` beside it, and print a ready `ssh` command.
    Export {
        /// Where to write the private key (default ./legion_ed25519).
        #[arg(long, value_name = "FILE")]
        path: Option<PathBuf>,
        /// Print the command for this node (default: the first node with an address).
        #[arg(long)]
        node: Option<String>,
    },
    /// Print the public key (to authorize it by hand on a server).
    Show,
}

#[derive(Subcommand)]
enum DaemonCommand {
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

#[derive(Subcommand)]
enum ZonesCommand {
    List {
        #[arg(long)]
        json: bool,
    },
    /// Plan a zone (apply creates it).
    Add {
        name: String,
        #[arg(long)]
        provider: String,
    },
    /// Remove a zone from the plan (apply deletes what Legion made).
    Remove { name: String },
}

#[derive(Subcommand)]
enum RecordsCommand {
    /// Planned records, of one zone or all.
    List {
        zone: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Plan a record; a VALUE of `@NODE` means that node's address.
    Add {
        zone: String,
        name: String,
        rtype: String,
        value: String,
        #[arg(long, default_value_t = 300)]
        ttl: u32,
    },
    Remove {
        zone: String,
        name: String,
        rtype: String,
    },
}

#[derive(Subcommand)]
enum FirewallsCommand {
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add an inbound allow rule to a cluster's firewall set.
    AddRule {
        cluster: String,
        #[arg(long, default_value = "tcp", value_parser = ["tcp", "udp", "icmp"])]
        protocol: String,
        /// A port or range (22, 8000-8100); none for icmp.
        #[arg(long)]
        port: Option<String>,
        /// CIDR; repeat for several.
        #[arg(long = "source", required = true)]
        sources: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
}

#[derive(Subcommand)]
enum ProviderCommand {
    /// Every provider enabled here, with its credential fields and capabilities.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Check a configured provider's credentials with one read.
    Verify { kind: String },
    /// Store credentials for a provider. Each credential field FIELD (see `provider
    /// list`) takes `--FIELD VALUE` or `--FIELD-env VAR` (read from that environment
    /// variable); without either, the field's default variable is read when set.
    /// Secrets belong in environment variables, not in argv (shell history): a secret
    /// given directly prints a warning.
    Configure {
        kind: String,
        /// `--FIELD VALUE` / `--FIELD-env VAR` pairs, from the provider's descriptor.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "FLAGS"
        )]
        flags: Vec<String>,
    },
}

#[derive(Subcommand)]
enum NodesCommand {
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
struct NodeActionArgs {
    name: String,
    /// Wait for the operation to finish; exit 1 if it failed, printing the node's error.
    #[arg(long)]
    wait: bool,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Create a new state in the Legion home.
    Init,
    /// Change the state's password (re-encrypts it with a new salt and key).
    Passwd {
        /// The new password, first line of this file (asked twice on a terminal when
        /// not given).
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = color_eyre::install() {
        eprintln!("legion: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("legion-engine")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("legion: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let handle = runtime.handle().clone();
    match runtime.block_on(run(cli, handle)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("legion: {e:#}");
            let engine_error = e.chain().find_map(|c| c.downcast_ref::<EngineError>());
            ExitCode::from(match engine_error {
                Some(EngineError::Unavailable(_)) => EXIT_DAEMON_UNAVAILABLE,
                Some(e) if e.is_locked() => EXIT_LOCKED,
                _ => EXIT_FAILURE,
            })
        }
    }
}

/// Diagnostics go to a daily file in the home's `logs/`, never to the terminal.
fn init_tracing(home: &Path) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let dir = home.join("logs");
    std::fs::create_dir_all(&dir).ok()?;
    let appender = tracing_appender::rolling::daily(dir, "legion.log");
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

fn read_password(path: &Path) -> Result<Secret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the password file {}", path.display()))?;
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(eyre!("the password file {} is empty", path.display()));
    }
    Ok(Secret::new(line))
}

/// The unlock password: from the password file, else asked on the terminal.
fn password(cli: &Cli) -> Result<Secret> {
    match &cli.password_file {
        Some(p) => read_password(p),
        None if std::io::stdin().is_terminal() => ask("Legion password: "),
        None => Err(eyre!(
            "no password: pass --password-file FILE or set LEGION_PASSWORD_FILE (or run \
             on a terminal to be asked)"
        )),
    }
}

/// A new password: from the file, else asked twice on the terminal.
fn new_password(file: Option<&Path>, what: &str) -> Result<Secret> {
    if let Some(p) = file {
        return read_password(p);
    }
    if !std::io::stdin().is_terminal() {
        return Err(eyre!(
            "no {what}: pass it in a file (--password-file / --new-password-file), or run on \
             a terminal to be asked"
        ));
    }
    let first = ask(&format!("{what}: "))?;
    let again = ask(&format!("{what} again: "))?;
    if first != again {
        return Err(eyre!("the two entries differ; nothing was changed"));
    }
    Ok(first)
}

fn ask(prompt: &str) -> Result<Secret> {
    let line = Secret::new(rpassword::prompt_password(prompt).context("reading the password")?);
    if line.is_empty() {
        return Err(eyre!("an empty password is not accepted"));
    }
    Ok(line)
}

/// The daemon token from `--daemon-token` (with a warning) or LEGION_DAEMON_TOKEN.
fn daemon_token(cli: &Cli) -> Option<Secret> {
    if let Some(t) = &cli.daemon_token {
        eprintln!(
            "legion: warning: --daemon-token is visible to other processes and lands in shell \
             history; prefer LEGION_DAEMON_TOKEN"
        );
        return Some(Secret::new(t.clone()));
    }
    std::env::var(legion::daemon::TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
        .map(Secret::new)
}

async fn run(cli: Cli, rt: tokio::runtime::Handle) -> Result<()> {
    let Some(command) = &cli.command else {
        let home = home::resolve_home(cli.home.clone())?;
        let _guard = init_tracing(&home);
        if cli.attach {
            let token = daemon_token(&cli).ok_or_else(|| {
                eyre!("--attach needs the daemon's token: set LEGION_DAEMON_TOKEN")
            })?;
            let remote = Remote::connect(&Endpoint::for_home(&home), home.clone(), token).await?;
            // Quitting only closes this connection: the daemon's engine keeps working.
            return dashboard(&cli, &rt, Link::Daemon(remote), home, None).await;
        }
        let engine = Engine::start(EngineConfig::new(home.clone()));
        if let Some(pw) = &cli.password_file {
            engine.unlock(read_password(pw)?).await?;
        }
        let link = Link::Local(engine);
        let shown = dashboard(&cli, &rt, link.clone(), home, None).await;
        // Save and lock whatever happened to the dashboard.
        link.finish().await?;
        return shown;
    };
    match command {
        Command::Demo { reset, once } => run_demo(&cli, &rt, *reset, *once).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            // Into memory first: the generator panics on a closed pipe.
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "legion", &mut buf);
            out!("{}", String::from_utf8_lossy(&buf));
            Ok(())
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut buf = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut buf)?;
            out!("{}", String::from_utf8_lossy(&buf));
            Ok(())
        }
        Command::Keymap { defaults } => {
            if !defaults {
                return Err(eyre!(
                    "say --defaults to print the default keymap (the file it reads is HOME/keymap.toml)"
                ));
            }
            out!("{}", Keymap::defaults_toml());
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Init,
        } => {
            let home = home::resolve_home(cli.home.clone())?;
            let _guard = init_tracing(&home);
            if legion::engine::state::store::StateFile::in_home(&home).exists() {
                return Err(eyre!(
                    "{} already holds a Legion state; `legion config passwd` changes its password",
                    home.display()
                ));
            }
            let pw = new_password(cli.password_file.as_deref(), "New Legion password")?;
            let engine = Engine::start(EngineConfig::new(home.clone()));
            engine.init(pw).await?;
            engine.logout().await?;
            outln!("created a new Legion state in {}", home.display());
            Ok(())
        }
        Command::Nodes { command } => nodes(&cli, command).await,
        Command::Config {
            command: ConfigCommand::Passwd { new_password_file },
        } => {
            let current = password(&cli)?;
            let new = new_password(new_password_file.as_deref(), "New Legion password")?;
            with_link(&cli, async |l: &Link| {
                Ok(l.change_password(current, new).await?)
            })
            .await?;
            outln!(
                "password changed; the previous backup was removed so nothing opens with the old one"
            );
            Ok(())
        }
        Command::Catalog { kind, region, json } => {
            let (catalog, policy) =
                with_link(&cli, async |l: &Link| Ok(l.catalog(kind.clone()).await?)).await?;
            let region = region
                .clone()
                .or_else(|| policy.region(&catalog).map(String::from));
            if *json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "catalog": &*catalog,
                        "defaults": {
                            "region": policy.region(&catalog),
                            "image": policy.image(&catalog),
                            "offer": region.as_deref().and_then(|r| policy.offer(&catalog, r)).map(|o| &o.id),
                        },
                    }))?
                );
                return Ok(());
            }
            let mark = |yes: bool| if yes { "*" } else { " " };
            outln!("regions (* default):");
            for r in &catalog.regions {
                let default = policy.region(&catalog) == Some(r.id.as_str());
                outln!(
                    "  {} {:<14} {}{}",
                    mark(default),
                    r.id,
                    r.name,
                    if r.available { "" } else { " (unavailable)" }
                );
            }
            let default_offer = region
                .as_deref()
                .and_then(|r| policy.offer(&catalog, r))
                .map(|o| o.id.clone());
            outln!(
                "offers{}:",
                region
                    .as_deref()
                    .map(|r| format!(" in {r}"))
                    .unwrap_or_default()
            );
            for o in catalog
                .offers
                .iter()
                .filter(|o| !o.deprecated && region.as_ref().is_none_or(|r| o.regions.contains(r)))
            {
                let price = region
                    .as_ref()
                    .and_then(|r| o.hourly_price.get(r))
                    .map(|p| format!("{p:.4}/h"))
                    .unwrap_or_default();
                outln!(
                    "  {} {:<14} {:>3} cpu {:>6} MB {:>5} GB {}",
                    mark(default_offer.as_deref() == Some(o.id.as_str())),
                    o.id,
                    o.cores,
                    o.memory_mb,
                    o.disk_gb,
                    price
                );
            }
            outln!("images:");
            for i in catalog.images.iter().filter(|i| !i.deprecated) {
                outln!(
                    "  {} {:<14} {} ({}{})",
                    mark(policy.image(&catalog) == Some(i.id.as_str())),
                    i.id,
                    i.name,
                    i.architecture,
                    i.login_user
                        .as_deref()
                        .map(|u| format!(", logs in as {u}"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::Logs { follow, node, json } => logs(&cli, *follow, node.as_deref(), *json).await,
        Command::Zones { command } => {
            with_link(&cli, async |l: &Link| zones(l, command).await).await
        }
        Command::Records { command } => {
            with_link(&cli, async |l: &Link| records(l, command).await).await
        }
        Command::Firewalls { command } => {
            with_link(&cli, async |l: &Link| firewalls(l, command).await).await
        }
        Command::Refresh => {
            with_link(&cli, async |l: &Link| Ok(l.refresh().await?)).await?;
            outln!("providers read");
            Ok(())
        }
        Command::Apply { wait } => {
            with_link(&cli, async |l: &Link| {
                let id = l.apply().await?;
                if *wait {
                    let snap = l.wait_apply(id).await?;
                    outln!("{}", plain::apply_line(&snap.apply));
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
        Command::Daemon { command } => daemon_command(&cli, command).await,
        Command::SshKey {
            command: SshKeyCommand::Show,
        } => {
            let key = with_link(&cli, async |l: &Link| Ok(l.managed_key().await?)).await?;
            outln!("{}", key.public_openssh());
            Ok(())
        }
        Command::SshKey {
            command: SshKeyCommand::Export { path, node },
        } => {
            let path = path
                .clone()
                .unwrap_or_else(|| PathBuf::from("legion_ed25519"));
            let (key, access) = with_link(&cli, async |l: &Link| {
                let key = l.managed_key().await?;
                let snap = l.snapshot();
                let name = node.clone().or_else(|| {
                    snap.nodes
                        .iter()
                        .find(|n| n.address.is_some())
                        .map(|n| n.name.clone())
                });
                let access = match name {
                    Some(n) => Some(l.ssh_access(n).await?),
                    None => None,
                };
                Ok((key, access))
            })
            .await?;
            write_private(&path, key.private_openssh().expose())?;
            std::fs::write(
                path.with_extension("pub"),
                format!("{}\n", key.public_openssh()),
            )?;
            outln!(
                "wrote {} (0600) and {}",
                path.display(),
                path.with_extension("pub").display()
            );
            if let Some(a) = access {
                outln!(
                    "ssh -i {} -p {} {}@{}",
                    path.display(),
                    a.target.port,
                    a.target.user,
                    a.target.host
                );
            }
            Ok(())
        }
        Command::Ssh { node, args } => ssh_to(&cli, node, args).await,
        Command::Provider {
            command: ProviderCommand::Verify { kind },
        } => {
            with_link(&cli, async |l: &Link| {
                Ok(l.verify_provider(kind.clone()).await?)
            })
            .await?;
            outln!("provider {kind}: credentials work");
            Ok(())
        }
        Command::Provider {
            command: ProviderCommand::List { json },
        } => {
            let home = home::resolve_home(cli.home.clone())?;
            let engine = Engine::start(EngineConfig::new(home));
            let descriptors = engine.provider_descriptors();
            if *json {
                outln!("{}", serde_json::to_string_pretty(&descriptors)?);
            } else {
                for d in descriptors {
                    outln!("{:<10} {}", d.kind, d.display_name);
                    for f in d.credential_fields {
                        outln!(
                            "    {:<14} {}{}{}",
                            f.id,
                            f.label,
                            if f.secret { " (secret)" } else { "" },
                            f.env_var.map(|v| format!(" [${v}]")).unwrap_or_default()
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Provider {
            command: ProviderCommand::Configure { kind, flags },
        } => {
            with_link(&cli, async |l: &Link| {
                let descriptors = l.provider_descriptors();
                let Some(desc) = descriptors.iter().find(|d| &d.kind == kind) else {
                    let kinds: Vec<&str> = descriptors.iter().map(|d| d.kind.as_str()).collect();
                    return Err(eyre!(
                        "unknown or disabled provider {kind:?}; valid here: {}",
                        kinds.join(", ")
                    ));
                };
                let creds = credential_flags(desc, flags, |v| std::env::var(v).ok())?;
                Ok(l.configure_provider(kind.clone(), creds).await?)
            })
            .await?;
            outln!("provider {kind} configured");
            Ok(())
        }
        Command::Status { json } => {
            with_link(&cli, async |l: &Link| {
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
                if *json {
                    let mut v = serde_json::to_value(&*snap)?;
                    v["engine"] = via;
                    outln!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    match l {
                        Link::Local(_) => {
                            outln!("engine: this process (unlocked for this command)")
                        }
                        Link::Daemon(r) => outln!(
                            "engine: daemon pid {} on {}",
                            r.status().pid,
                            r.status().endpoint
                        ),
                    }
                    out!("{}", plain::render(&snap));
                }
                Ok(())
            })
            .await
        }
    }
}

/// The demo's own home, beside the operator's, so it never touches real state.
fn demo_home(cli: &Cli) -> Result<PathBuf> {
    Ok(home::resolve_home(cli.home.clone())?.join("demo"))
}

/// Run the dashboard on a blocking thread (the UI thread), leaving the runtime free.
async fn dashboard(
    cli: &Cli,
    rt: &tokio::runtime::Handle,
    engine: Link,
    home: PathBuf,
    demo: Option<String>,
) -> Result<()> {
    let depth = cli
        .colors
        .unwrap_or_else(|| ColorDepth::detect(|k| std::env::var(k).ok()));
    let cfg = DashboardConfig {
        home,
        readonly: cli.readonly,
        attached: match &engine {
            Link::Daemon(r) => Some(format!("daemon pid {}", r.status().pid)),
            Link::Local(_) => None,
        },
        demo,
        theme: cli.theme.clone(),
        depth,
    };
    let rt = rt.clone();
    tokio::task::spawn_blocking(move || legion::views::run::run(&rt, engine, cfg))
        .await
        .map_err(|e| eyre!("the dashboard stopped: {e}"))??;
    Ok(())
}

async fn run_demo(cli: &Cli, rt: &tokio::runtime::Handle, reset: bool, once: bool) -> Result<()> {
    let home = demo_home(cli)?;
    if reset && home.exists() {
        std::fs::remove_dir_all(&home)
            .with_context(|| format!("removing the old demo at {}", home.display()))?;
    }
    home::ensure_home(&home).with_context(|| format!("preparing {}", home.display()))?;
    let _guard = init_tracing(&home);
    let pw_path = home.join("demo-password");
    let fresh = !legion::engine::state::store::StateFile::in_home(&home).exists();
    let mut config = EngineConfig::new(home.clone());
    config.env = Env::from_process().with("LEGION_MOCK_NETWORK", "1");
    // With an OpenSSH server installed, every simulated node gets a local sandbox sshd:
    // real shells, deployment phases and log tails.
    config.ssh_endpoints = legion::engine::sandbox::endpoints(home.join("sandboxes"));
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
    let id = engine.apply().await?;
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    if tty && !once {
        let note = format!(
            "demo: simulated cloud{} · password kept in {}",
            if sandboxed {
                ", a local sshd per node"
            } else {
                " (no sshd: no shells)"
            },
            pw_path.display()
        );
        let shown = dashboard(
            cli,
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
    let mut rx = engine.snapshots();
    let mut last = String::new();
    loop {
        let snap = rx.borrow_and_update().clone();
        let text = plain::render(&snap);
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
        if once && matches!(&snap.apply, ApplyView::Finished { id: done, .. } if *done >= id) {
            break;
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

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// The engine a command works on: the daemon's when a token is at hand, else one
/// started here and unlocked with the password.
async fn connect(cli: &Cli) -> Result<Link> {
    let home = home::resolve_home(cli.home.clone())?;
    let endpoint = Endpoint::for_home(&home);
    if let Some(token) = daemon_token(cli) {
        let remote = Remote::connect(&endpoint, home, token).await?;
        if remote.snapshot().lock != LockState::Unlocked {
            return Err(EngineError::Locked).wrap_err(
                "the daemon's engine is locked; unlock it from `legion --attach` or restart the daemon",
            );
        }
        return Ok(Link::Daemon(remote));
    }
    if let Probe::Running(meta) = endpoint.probe() {
        // Its engine holds the state; say how to use it instead of asking for a password.
        let err = EngineError::Store(legion::engine::state::store::StoreError::InUse {
            home: home.clone(),
            pid: meta.map(|m| m.pid),
        });
        return Err(err).wrap_err(
            "a Legion daemon serves this home: set LEGION_DAEMON_TOKEN to go through it",
        );
    }
    let _ = init_tracing(&home);
    let engine = Engine::start(EngineConfig::new(home));
    engine.unlock(password(cli)?).await?;
    // Rows are complete once every actor has published.
    engine
        .wait_for(|s| s.lock == LockState::Unlocked && s.nodes.iter().all(|n| n.live))
        .await?;
    Ok(Link::Local(engine))
}

async fn nodes(cli: &Cli, command: &NodesCommand) -> Result<()> {
    with_link(cli, async |l: &Link| nodes_with(l, command).await).await
}

/// Connect, run `f`, then finish (a local engine is saved and locked; the daemon's
/// keeps running).
async fn with_link<T>(cli: &Cli, f: impl AsyncFnOnce(&Link) -> Result<T>) -> Result<T> {
    let link = connect(cli).await?;
    let result = f(&link).await;
    link.finish().await?;
    result
}

/// An engine started by this command has not checked any node's health yet: give the
/// first checks of running, installed nodes a moment (bounded), so `system` says ready,
/// degraded or unreachable instead of unknown. The daemon's engine has been checking.
async fn first_health(engine: &Link) {
    use legion::engine::actors::{Machine, System};
    if !matches!(engine, Link::Local(_)) {
        return;
    }
    let checked = |s: &legion::engine::snapshot::AppSnapshot| {
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

/// How long `nodes list`/`show` wait for the first health checks: enough for SSH to
/// answer from far away, short of the 10 s connect timeout a blackholed node runs into
/// (that node then shows `unknown`; the daemon answers at once).
const FIRST_HEALTH_WAIT: Duration = Duration::from_secs(8);

async fn nodes_with(engine: &Link, command: &NodesCommand) -> Result<()> {
    use legion::engine::actors::Action;
    let (name, action, wait) = match command {
        NodesCommand::List { json } => {
            first_health(engine).await;
            let snap = engine.snapshot();
            if *json {
                outln!("{}", serde_json::to_string_pretty(&snap.nodes)?);
            } else {
                out!("{}", plain::render(&snap));
            }
            return Ok(());
        }
        NodesCommand::Show { name, json } => {
            first_health(engine).await;
            let snap = engine.snapshot();
            let row = snap
                .node(name)
                .ok_or_else(|| EngineError::NotFound(format!("no node {name:?}")))?;
            if *json {
                outln!("{}", serde_json::to_string_pretty(row)?);
            } else {
                let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                outln!("node      {}", row.name);
                outln!(
                    "plan      {} / {} / {} / {} (cluster {}, role {})",
                    row.provider,
                    row.region,
                    row.offer,
                    row.image,
                    row.cluster,
                    row.role
                );
                outln!("machine   {}", row.machine);
                outln!("system    {}", row.system);
                outln!("address   {}", opt(&row.address));
                outln!("server    {}", opt(&row.server_id));
                outln!("operation {}", opt(&row.operation));
                outln!("error     {}", opt(&row.last_error));
                for d in &row.diffs {
                    outln!(
                        "differs   {}: planned {}, observed {}",
                        d.field,
                        d.planned,
                        d.observed
                    );
                }
                if let Some(e) = &row.execution {
                    outln!("execution #{} {:?} {:?}", e.id, e.kind, e.status);
                    for p in &e.phases {
                        outln!(
                            "  {:<24} {:?} {}",
                            p.phase.to_string(),
                            p.status,
                            p.error.clone().unwrap_or_default()
                        );
                    }
                }
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
                .upsert_node(legion::engine::plan::NodeRequest {
                    name: name.clone(),
                    provider: provider.clone(),
                    cluster: cluster.clone(),
                    role: role.clone(),
                    region: region.clone(),
                    offer: offer.clone(),
                    image: image.clone(),
                    boot_mode: boot_mode.as_deref().map(|b| {
                        if b == "efi" {
                            legion::providers::BootMode::Efi
                        } else {
                            legion::providers::BootMode::Bios
                        }
                    }),
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
            apply,
            json,
        } => {
            let password = if *key_only {
                None
            } else if let Some(var) = password_env {
                let value = std::env::var(var)
                    .map_err(|_| eyre!("{var} is not set (--password-env names a variable)"))?;
                Some(Secret::new(value))
            } else if std::io::stdin().is_terminal() {
                Some(ask(&format!(
                    "Password for {user}@{host} (used once to install Legion's key; never stored): "
                ))?)
            } else {
                return Err(eyre!(
                    "no terminal to ask for {user}@{host}'s password: give --password-env VAR, \
                     or --key-only when Legion's key is already authorized"
                ));
            };
            let report = engine
                .import_node(legion::engine::import::ImportRequest {
                    name: name.clone(),
                    host: host.clone(),
                    port: *port,
                    user: user.clone(),
                    password,
                    cluster: cluster.clone(),
                    role: role.clone(),
                })
                .await?;
            if *json {
                outln!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                outln!("{name} imported: {}", report.server_id);
                outln!("  host key  {} (pinned)", report.host_key);
                outln!(
                    "  sudo      {}",
                    match report.sudo {
                        legion::ssh::SudoStatus::Root => "root (no sudo needed)",
                        legion::ssh::SudoStatus::Passwordless => "passwordless sudo",
                        legion::ssh::SudoStatus::NeedsPassword => "sudo needs a password",
                        legion::ssh::SudoStatus::Missing => "no sudo",
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
                    outln!("  note      {n}");
                }
            }
            if *apply {
                apply_and_report(engine, name).await?;
            } else if !*json {
                outln!("run `legion apply` to deploy it");
            }
            return Ok(());
        }
        NodesCommand::Retrust { name } => {
            let old = engine.retrust(name.clone()).await?;
            match old {
                Some(fp) => {
                    outln!("{name}: forgot host key {fp}; the next connection pins what it finds")
                }
                None => outln!("{name}: no host key was pinned"),
            }
            return Ok(());
        }
        NodesCommand::Destroy { name, yes } => {
            if !yes {
                return Err(eyre!(
                    "destroying {name} deletes its server; say --yes to confirm"
                ));
            }
            engine
                .edit_plan(legion::engine::plan::PlanEdit::RemoveNode { name: name.clone() })
                .await?;
            let id = engine.apply().await?;
            let snap = engine.wait_apply(id).await?;
            if snap.node(name).is_some() {
                return Err(eyre!(
                    "{name} was not torn down: {}",
                    plain::apply_line(&snap.apply)
                ));
            }
            outln!("{name} destroyed");
            return Ok(());
        }
        NodesCommand::Start(a) => (&a.name, Action::Start, a.wait),
        NodesCommand::Stop(a) => (&a.name, Action::Stop, a.wait),
        NodesCommand::Reboot(a) => (&a.name, Action::Reboot, a.wait),
        NodesCommand::Retry(a) => (&a.name, Action::Retry, a.wait),
        NodesCommand::Reinstall(a) => (&a.name, Action::Reinstall, a.wait),
    };
    let op = engine.node_action(name.clone(), action).await?;
    outln!("{action} {name}: accepted");
    if engine.is_daemon() && !wait {
        // The daemon's engine carries on; the snapshot shows how it ends.
        return Ok(());
    }
    // A local engine lives in this process, so the operation is always waited for;
    // --wait also turns its failure into the exit code.
    let row = engine.wait_operation(name, op).await?;
    match row.last_error {
        Some(e) if wait => Err(eyre!("{action} {name} failed: {e}")),
        Some(e) => {
            eprintln!("legion: {action} {name} failed: {e}");
            Ok(())
        }
        None => {
            outln!("{action} {name}: done ({}, {})", row.machine, row.system);
            Ok(())
        }
    }
}

/// Apply, wait for it, and fail with the node's error when it has one.
async fn apply_and_report(engine: &Link, name: &str) -> Result<()> {
    let id = engine.apply().await?;
    let snap = engine.wait_apply(id).await?;
    let row = snap.node(name).cloned();
    outln!("{}", plain::apply_line(&snap.apply));
    match row.and_then(|r| r.last_error) {
        Some(e) => Err(eyre!("{name}: {e}")),
        None => Ok(()),
    }
}

/// `--FIELD VALUE` and `--FIELD-env VAR` for each credential field of a descriptor; a
/// field given neither takes its default variable when that is set.
fn credential_flags(
    desc: &legion::providers::Descriptor,
    flags: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<legion::providers::Credentials> {
    let field_ids: Vec<String> = desc
        .credential_fields
        .iter()
        .map(|f| f.id.replace('_', "-"))
        .collect();
    let usage = || {
        let forms: Vec<String> = field_ids
            .iter()
            .map(|f| format!("--{f} VALUE | --{f}-env VAR"))
            .collect();
        format!(
            "{}: valid flags are {}",
            desc.display_name,
            forms.join(", ")
        )
    };
    let mut creds = legion::providers::Credentials::new();
    let mut it = flags.iter();
    while let Some(flag) = it.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| eyre!("unexpected {flag:?}; {}", usage()))?;
        let (name, from_env) = match name.strip_suffix("-env") {
            Some(n) => (n, true),
            None => (name, false),
        };
        let field = desc
            .credential_fields
            .iter()
            .find(|f| f.id.replace('_', "-") == name)
            .ok_or_else(|| eyre!("unknown flag {flag:?}; {}", usage()))?;
        let value = it.next().ok_or_else(|| eyre!("{flag} needs a value"))?;
        let value = if from_env {
            env(value)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| eyre!("{flag} {value}: that environment variable is not set"))?
        } else {
            if field.secret {
                eprintln!(
                    "legion: warning: --{name} is a secret and now sits in your shell history; prefer --{name}-env VAR"
                );
            }
            value.clone()
        };
        creds.insert(field.id.clone(), Secret::new(value));
    }
    for f in &desc.credential_fields {
        if !creds.contains_key(&f.id)
            && let Some(v) = f
                .env_var
                .as_deref()
                .and_then(&env)
                .filter(|v| !v.is_empty())
        {
            creds.insert(f.id.clone(), Secret::new(v));
        }
    }
    Ok(creds)
}

fn print_rows(rows: &[legion::engine::snapshot::SyncRow], json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(rows)?);
    } else {
        for r in rows {
            let note = r
                .last_error
                .as_deref()
                .or(r.waiting.as_deref())
                .unwrap_or("");
            outln!(
                "{:<28} {:<8} {:<10} {:<28} {}",
                r.name,
                r.provider,
                r.state.to_string(),
                r.summary,
                note
            );
            for task in &r.tasks {
                outln!("  operator task: {task}");
            }
        }
    }
    Ok(())
}

async fn zones(engine: &Link, command: &ZonesCommand) -> Result<()> {
    use legion::engine::plan::PlanEdit;
    match command {
        ZonesCommand::List { json } => print_rows(&engine.snapshot().zones, *json),
        ZonesCommand::Add { name, provider } => {
            engine
                .edit_plan(PlanEdit::UpsertZone {
                    name: name.clone(),
                    provider: provider.clone(),
                })
                .await?;
            outln!("zone {name} is in the plan; apply creates it");
            Ok(())
        }
        ZonesCommand::Remove { name } => {
            engine
                .edit_plan(PlanEdit::RemoveZone { name: name.clone() })
                .await?;
            outln!("zone {name} removed from the plan; apply deletes what Legion made");
            Ok(())
        }
    }
}

async fn records(engine: &Link, command: &RecordsCommand) -> Result<()> {
    use legion::engine::plan::PlanEdit;
    use legion::engine::state::model::{RecordPlan, RecordValue};
    use legion::providers::RecordType;
    match command {
        RecordsCommand::List { zone, json } => {
            let plan = engine.plan().await?;
            let rows: Vec<serde_json::Value> = plan
                .zones
                .iter()
                .filter(|(z, _)| zone.as_ref().is_none_or(|w| w == *z))
                .flat_map(|(z, p)| {
                    p.records.iter().map(move |r| {
                        serde_json::json!({
                            "zone": z, "name": r.name, "type": r.rtype.to_string(), "ttl": r.ttl,
                            "value": match &r.value {
                                RecordValue::Literal(v) => v.clone(),
                                RecordValue::NodeAddress(n) => format!("@{n}"),
                            },
                        })
                    })
                })
                .collect();
            if *json {
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in rows {
                    outln!(
                        "{:<24} {:<16} {:<6} {:>6} {}",
                        r["zone"].as_str().unwrap_or(""),
                        r["name"].as_str().unwrap_or(""),
                        r["type"].as_str().unwrap_or(""),
                        r["ttl"],
                        r["value"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(())
        }
        RecordsCommand::Add {
            zone,
            name,
            rtype,
            value,
            ttl,
        } => {
            let rtype: RecordType = rtype.parse()?;
            let value = match value.strip_prefix('@') {
                Some(node) if !node.is_empty() => RecordValue::NodeAddress(node.to_string()),
                _ => RecordValue::Literal(value.clone()),
            };
            engine
                .edit_plan(PlanEdit::UpsertRecord {
                    zone: zone.clone(),
                    record: RecordPlan {
                        name: name.clone(),
                        rtype,
                        ttl: *ttl,
                        value,
                    },
                })
                .await?;
            outln!("{rtype} {name}.{zone} is in the plan; apply publishes it");
            Ok(())
        }
        RecordsCommand::Remove { zone, name, rtype } => {
            let rtype: RecordType = rtype.parse()?;
            engine
                .edit_plan(PlanEdit::RemoveRecord {
                    zone: zone.clone(),
                    name: name.clone(),
                    rtype,
                })
                .await?;
            outln!("{rtype} {name}.{zone} removed from the plan");
            Ok(())
        }
    }
}

async fn firewalls(engine: &Link, command: &FirewallsCommand) -> Result<()> {
    use legion::engine::plan::PlanEdit;
    use legion::providers::{FirewallRule, Protocol};
    match command {
        FirewallsCommand::List { json } => print_rows(&engine.snapshot().firewalls, *json),
        FirewallsCommand::AddRule {
            cluster,
            protocol,
            port,
            sources,
            description,
        } => {
            let protocol = match protocol.as_str() {
                "udp" => Protocol::Udp,
                "icmp" => Protocol::Icmp,
                _ => Protocol::Tcp,
            };
            if protocol != Protocol::Icmp && port.is_none() {
                return Err(eyre!("--port is required for tcp and udp"));
            }
            engine
                .edit_plan(PlanEdit::AddFirewallRule {
                    cluster: cluster.clone(),
                    rule: FirewallRule {
                        protocol,
                        port: port.clone(),
                        sources: sources.clone(),
                        description: description.clone(),
                    },
                })
                .await?;
            outln!("rule added to the firewall set of {cluster}; apply makes it so");
            Ok(())
        }
    }
}

/// Print the operation log from the home's JSON-lines file; `--follow` keeps reading.
async fn logs(cli: &Cli, follow: bool, node: Option<&str>, json: bool) -> Result<()> {
    use std::io::BufRead;
    let home = home::resolve_home(cli.home.clone())?;
    if follow && let Some(token) = daemon_token(cli) {
        // The daemon streams new entries as they happen: no polling of the file.
        return follow_daemon(
            Remote::connect(&Endpoint::for_home(&home), home, token).await?,
            node,
            json,
        )
        .await;
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
            if !follow {
                return Ok(());
            }
            // A partial line: read it again whole once the writer finishes it.
            if n > 0 {
                reader.seek_relative(-(n as i64))?;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        let Ok(entry) = serde_json::from_str::<legion::engine::oplog::OpEntry>(line.trim_end())
        else {
            continue;
        };
        if resource.is_some() && entry.resource != resource {
            continue;
        }
        if json {
            // As stored, byte for byte.
            out!("{line}");
        } else {
            print_entry(&entry, false)?;
        }
    }
}

fn print_entry(entry: &legion::engine::oplog::OpEntry, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string(entry)?);
    } else {
        let secs = entry.ts_ms / 1000;
        outln!(
            "{:02}:{:02}:{:02} {}",
            (secs / 3600) % 24,
            (secs / 60) % 60,
            secs % 60,
            plain::clean(&entry.message)
        );
    }
    Ok(())
}

/// `logs --follow` through the daemon: the recent entries, then each new one.
async fn follow_daemon(remote: Remote, node: Option<&str>, json: bool) -> Result<()> {
    let resource = node.map(|n| format!("node/{n}"));
    let mut rx = remote.subscribe_logs();
    let recent = remote.recent_logs(200, resource.as_deref()).await?;
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
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    eprintln!("legion: {n} log entries skipped (reading too slowly)");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Err(EngineError::Unavailable("the daemon closed the connection".into()).into());
                }
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// What `daemon start` tells the shell: the token line (for `eval`) and a comment.
fn announce(ready: &legion::daemon::host::Ready, token: Option<&Secret>) {
    if let Some(note) = &ready.cleaned {
        eprintln!("legion: {note}");
    }
    if let Some(t) = token {
        outln!("export {}={}", legion::daemon::TOKEN_ENV, t.expose());
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

/// The secrets `daemon start` hands to its background process over a pipe (never argv).
#[derive(serde::Serialize, serde::Deserialize)]
struct Handover {
    password: Secret,
    token: Secret,
}

async fn daemon_command(cli: &Cli, command: &DaemonCommand) -> Result<()> {
    let home = home::resolve_home(cli.home.clone())?;
    let endpoint = Endpoint::for_home(&home);
    match command {
        DaemonCommand::Start { foreground } => {
            if !legion::engine::state::store::StateFile::in_home(&home).exists() {
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
            let supplied = daemon_token(cli);
            if let Some(t) = &supplied {
                legion::daemon::check_token(t).map_err(|e| eyre!(e))?;
            }
            let token = match &supplied {
                Some(t) => t.clone(),
                None => legion::daemon::new_token().map_err(|e| eyre!(e))?,
            };
            let shown = supplied.is_none().then_some(&token);
            let pw = password(cli)?;
            if *foreground {
                let _guard = init_tracing(&home);
                legion::daemon::host::run(EngineConfig::new(home), pw, token.clone(), |r| {
                    announce(r, shown)
                })
                .await?;
                return Ok(());
            }
            let ready = spawn_daemon(
                &home,
                Handover {
                    password: pw,
                    token: token.clone(),
                },
            )
            .await?;
            announce(&ready, shown);
            Ok(())
        }
        DaemonCommand::Serve => serve_daemon(home).await,
        DaemonCommand::Stop => {
            let token = daemon_token(cli).ok_or_else(|| {
                let pid = endpoint
                    .read_metadata()
                    .ok()
                    .flatten()
                    .map(|m| format!(" (or `kill {}`)", m.pid))
                    .unwrap_or_default();
                eyre!("stopping the daemon needs its token in LEGION_DAEMON_TOKEN{pid}")
            })?;
            let remote = Remote::connect(&endpoint, home, token).await?;
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
        DaemonCommand::Status { json } => {
            let (state, meta) = match endpoint.probe() {
                Probe::Running(m) => ("running", m),
                Probe::Stale(m) => {
                    endpoint.remove();
                    ("stale", m)
                }
                Probe::Absent => ("absent", None),
            };
            let live = match (state, daemon_token(cli)) {
                ("running", Some(token)) => {
                    let remote = Remote::connect(&endpoint, home.clone(), token).await?;
                    Some((remote.fresh_status().await?, remote.snapshot().lock))
                }
                _ => None,
            };
            if *json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "state": state,
                        "endpoint": endpoint.socket,
                        "metadata": meta,
                        "daemon": live.as_ref().map(|(s, _)| s),
                        "lock": live.as_ref().map(|(_, l)| l),
                    }))?
                );
            } else {
                match (state, &meta) {
                    ("running", Some(m)) => outln!(
                        "daemon {} running: pid {}, socket {}, started {}",
                        m.version,
                        m.pid,
                        m.endpoint.display(),
                        ago(legion::daemon::now_secs().saturating_sub(m.created))
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
    }
}

/// Start `legion daemon serve` in its own session, hand it the secrets on stdin and wait
/// for its first line: ready, or why not.
async fn spawn_daemon(home: &Path, handover: Handover) -> Result<legion::daemon::host::Ready> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let home = std::path::absolute(home)?;
    let logs = home.join("logs");
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
        .arg("--home")
        .arg(&home)
        .args(["daemon", "serve"])
        .env_remove(legion::daemon::TOKEN_ENV)
        .env_remove("LEGION_PASSWORD_FILE")
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
            metadata: legion::daemon::Metadata,
            cleaned: Option<String>,
        },
        Error {
            message: String,
            code: String,
        },
    }
    match serde_json::from_str::<Answer>(&first) {
        Ok(Answer::Ready { metadata, cleaned }) => {
            Ok(legion::daemon::host::Ready { metadata, cleaned })
        }
        Ok(Answer::Error { message, code }) => Err(EngineError::from_wire(&code, message).into()),
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
async fn serve_daemon(home: PathBuf) -> Result<()> {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let handover: Handover = serde_json::from_str(&line)
        .map_err(|_| eyre!("`daemon serve` is started by `legion daemon start`"))?;
    line.clear();
    // No controlling terminal: closing the operator's SSH session does not stop it.
    let _ = rustix::process::setsid();
    let _guard = init_tracing(&home);
    let answer = |v: serde_json::Value| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{v}");
        let _ = out.flush();
    };
    let r = legion::daemon::host::run(
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

fn ago(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h {}m ago", secs / 3600, secs / 60 % 60),
        _ => format!("{}d {}h ago", secs / 86400, secs / 3600 % 24),
    }
}

/// `legion ssh NODE`: verify (or pin) the host key with Legion's own client, then hand
/// the terminal to the system `ssh` with that exact key in a temporary known_hosts.
async fn ssh_to(cli: &Cli, node: &str, args: &[String]) -> Result<()> {
    let access = with_link(cli, async |l: &Link| {
        let access = l.ssh_access(node.to_string()).await?;
        let check = access.clone();
        let (known_host, seen) = tokio::task::spawn_blocking(move || {
            let (session, seen) = legion::ssh::connect(
                &check.target,
                legion::ssh::Auth::Key(&check.key),
                check.pinned.as_ref(),
            )?;
            let line = session.known_hosts_line();
            Ok::<_, legion::ssh::SshError>((line, seen))
        })
        .await??;
        if access.pinned.is_none() {
            l.pin_host_key(node.to_string(), seen.to_string()).await?;
            eprintln!("legion: {node}: trusted host key {seen} on first use");
        }
        Ok((access, known_host))
    })
    .await?;
    let (access, known_host) = access;
    let dir = tempfile::Builder::new().prefix("legion-ssh-").tempdir()?;
    let key_path = dir.path().join("key");
    write_private(&key_path, access.key.private_openssh().expose())?;
    let kh = dir.path().join("known_hosts");
    std::fs::write(&kh, format!("{known_host}\n"))?;
    let status = tokio::process::Command::new("ssh")
        .arg("-i")
        .arg(&key_path)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", kh.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-p",
        ])
        .arg(access.target.port.to_string())
        .arg(format!("{}@{}", access.target.user, access.target.host))
        .args(args)
        .status()
        .await
        .context("running ssh (is openssh-client installed?)")?;
    drop(dir);
    match status.code() {
        Some(0) => Ok(()),
        code => Err(eyre!(
            "ssh exited with {}",
            code.map_or("a signal".into(), |c| c.to_string())
        )),
    }
}
