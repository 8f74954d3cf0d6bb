//! The `legion` command line: the clap definitions, and one file per subcommand group that
//! turns a parsed command into calls on a [`Link`](crate::link::Link) and lines of text.
//!
//! It owns parsing arguments, prompting for passwords, printing text and JSON, and the
//! exit code. It must not hold engine logic: a command asks the engine (through `Link`)
//! and prints the answer; plan syntaxes it shares with the forms live in
//! `engine::parse`. `main.rs` only calls [`parse`], [`run`], [`error_line`] and
//! [`exit::exit_code`].
//!
//! Every string that came from a provider, a server, an imported host or a remote error
//! is printed through `output::clean` (text) or `output::json` (JSON): the one sanitizer,
//! `core::text`, shows control, C1 and bidi characters escaped.
//!
//! Options every command takes (`--home`, `--password-file`, `--daemon-token`,
//! `--readonly`) are global; the dashboard's (`--theme`, `--colors`: `DashboardArgs`) are
//! offered only where a dashboard opens: `legion` itself and `legion demo`. `--readonly`
//! refuses every command that changes something (`readonly`), before it starts.

mod config;
mod daemon;
mod dashboard;
mod demo;
pub mod exit;
mod fleet;
mod generate;
mod logs;
mod network;
mod nodes;
mod output;
mod password;
mod plan;
mod progress;
mod provider;
mod readonly;
mod session;
mod ssh;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use color_eyre::eyre::Result;

use dashboard::DashboardArgs;

#[derive(Parser)]
#[command(
    name = "legion",
    version,
    about = "Run fleets of cloud servers from a terminal",
    after_help = "Exit codes: 0 ok, 1 failure, 2 usage error (`plan --detailed-exitcode`: changes to make), 3 locked, wrong password, state \
                  held by another process or wrong daemon token, 4 daemon unavailable (not \
                  running, stale socket, connection lost).\n\
                  With LEGION_DAEMON_TOKEN set (or --daemon-token), commands go through the \
                  running daemon instead of unlocking the state themselves."
)]
pub struct Cli {
    /// Legion home (state, logs); default $LEGION_HOME or the platform data directory.
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Read the unlock password from this file (first line).
    #[arg(long, global = true, env = "LEGION_PASSWORD_FILE", value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Change nothing: commands that would (plan edits, apply, node actions, credentials,
    /// `ssh`) are refused with exit code 1; the dashboard offers no action or form that
    /// writes; `demo` shows its fleet without applying it.
    #[arg(long, global = true)]
    readonly: bool,
    // For `legion` alone (the dashboard); `legion demo` takes them too.
    #[command(flatten)]
    dashboard: DashboardArgs,
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
    Demo(demo::DemoArgs),
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
        command: config::ConfigCommand,
    },
    /// Show providers, resources and the apply state.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Plan, inspect and act on nodes.
    Nodes {
        #[command(subcommand)]
        command: nodes::NodesCommand,
    },
    /// What an apply would change: `+` create, `~` update, `-/+` replace, `-` delete.
    Plan(plan::PlanArgs),
    /// Apply the plan: create, converge and tear down what the plan says. Shows the plan
    /// first; on a terminal asks before it starts (`--yes` does not ask).
    Apply {
        /// Wait until every resource settles; exit 1 unless the plan is then empty.
        #[arg(long)]
        wait: bool,
        /// Start without asking for confirmation on a terminal.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// The operation log (provider writes, transitions, actions), from the home's
    /// `logs/operations.jsonl`; needs no unlock.
    Logs(logs::LogsArgs),
    /// DNS zones in the plan.
    Zones {
        #[command(subcommand)]
        command: network::ZonesCommand,
    },
    /// DNS records of planned zones.
    Records {
        #[command(subcommand)]
        command: network::RecordsCommand,
    },
    /// Cluster firewall sets and their extra rules.
    Firewalls {
        #[command(subcommand)]
        command: network::FirewallsCommand,
    },
    /// A provider's catalog: regions, offers and images, the policy's defaults marked.
    Catalog(provider::CatalogArgs),
    /// Providers Legion knows and how they are configured.
    Provider {
        #[command(subcommand)]
        command: provider::ProviderCommand,
    },
    /// Read every provider now instead of at the next observation.
    Refresh,
    /// Legion's managed SSH key.
    SshKey {
        #[command(subcommand)]
        command: ssh::SshKeyCommand,
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
        command: daemon::DaemonCommand,
    },
}

/// Parse the command line (a usage error exits 2 here, as clap does).
pub fn parse() -> Cli {
    match parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    }
}

fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = Cli::command().try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut Cli::command()))?;
    cli.dashboard.readonly = cli.readonly;
    // `legion --readonly demo` kept working when the dashboard options stopped being
    // global: what the demo was not told itself it takes from before `demo`.
    if let Some(Command::Demo(demo)) = &mut cli.command
        && let Some(("demo", m)) = matches.subcommand()
    {
        demo.dashboard.inherit(&cli.dashboard, m);
        demo.dashboard.readonly = cli.readonly;
    }
    Ok(cli)
}

/// Run the parsed command to its end. Text goes to stdout as it is made; the error, if
/// any, is for the caller to print and turn into an exit code.
pub async fn run(cli: Cli, rt: tokio::runtime::Handle) -> Result<()> {
    let Some(command) = &cli.command else {
        return dashboard::open(&cli, &rt).await;
    };
    if cli.readonly
        && let Some(refused) = readonly::writes(command)
    {
        return Err(refused.into());
    }
    match command {
        Command::Demo(args) => demo::run(&cli, &rt, args).await,
        Command::Completions { shell } => generate::completions(*shell),
        Command::Man => generate::man(),
        Command::Keymap { defaults } => generate::keymap(*defaults),
        Command::Config { command } => config::run(&cli, command).await,
        Command::Status { json } => fleet::status(&cli, *json).await,
        Command::Nodes { command } => nodes::run(&cli, command).await,
        Command::Plan(args) => plan::run(&cli, args).await,
        Command::Apply { wait, yes } => fleet::apply(&cli, *wait, *yes).await,
        Command::Logs(args) => logs::run(&cli, args).await,
        Command::Zones { command } => network::zones(&cli, command).await,
        Command::Records { command } => network::records(&cli, command).await,
        Command::Firewalls { command } => network::firewalls(&cli, command).await,
        Command::Catalog(args) => provider::catalog(&cli, args).await,
        Command::Provider { command } => provider::run(&cli, command).await,
        Command::Refresh => fleet::refresh(&cli).await,
        Command::SshKey { command } => ssh::key(&cli, command).await,
        Command::Ssh { node, args } => ssh::shell(&cli, node, args).await,
        Command::Daemon { command } => daemon::run(&cli, command).await,
    }
}

/// The line `main.rs` prints for a failed command: the whole error chain (`a: b: c`),
/// sanitized, since any link of it may quote a provider, a server or the daemon.
pub fn error_line(err: &color_eyre::Report) -> String {
    format!("legion: {}", crate::core::text::clean(&format!("{err:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_error_chain_is_sanitized() {
        let err = color_eyre::eyre::eyre!("Hetzner: \x1b]52;c;cHduZWQ=\x07 \u{202e}gnp.exe")
            .wrap_err("refreshing hetzner");
        let line = error_line(&err);
        assert_eq!(
            line,
            "legion: refreshing hetzner: Hetzner: \\x1b]52;c;cHduZWQ=\\x07 \\u{202e}gnp.exe"
        );
    }

    fn demo_options(args: &[&str]) -> DashboardArgs {
        match parse_from(args).map(|cli| cli.command) {
            Ok(Some(Command::Demo(demo))) => demo.dashboard,
            _ => panic!("{args:?} is not a demo"),
        }
    }

    #[test]
    fn dashboard_options_reach_the_demo_from_either_side() {
        let d = demo_options(&["legion", "--readonly", "--theme", "light", "demo"]);
        assert!(d.readonly);
        assert_eq!(d.theme, "light");
        let d = demo_options(&["legion", "demo", "--theme", "light", "--colors", "16"]);
        assert!(!d.readonly);
        assert_eq!(d.theme, "light");
        assert!(d.colors.is_some());
        let d = demo_options(&["legion", "--theme", "light", "demo", "--theme", "ansi16"]);
        assert_eq!(d.theme, "ansi16", "the demo's own option wins");
        assert_eq!(demo_options(&["legion", "demo"]).theme, "dark");
    }

    #[test]
    fn dashboard_options_are_not_offered_after_other_commands() {
        let err = parse_from(["legion", "apply", "--theme", "light"]).err();
        assert_eq!(
            err.map(|e| e.kind()),
            Some(clap::error::ErrorKind::UnknownArgument)
        );
        // Before the command they still parse (they did when they were global).
        assert!(parse_from(["legion", "--theme", "light", "apply"]).is_ok());
        assert!(parse_from(["legion", "status", "--home", "/tmp/x"]).is_ok());
    }

    #[test]
    fn readonly_is_global_and_refuses_writes_only() {
        for args in [
            &["legion", "apply", "--readonly"][..],
            &["legion", "--readonly", "apply"],
            &[
                "legion",
                "nodes",
                "--readonly",
                "add",
                "x",
                "--provider",
                "mock",
            ],
            &["legion", "--readonly", "ssh", "web-1"],
            &[
                "legion",
                "--readonly",
                "firewalls",
                "remove-rule",
                "prod",
                "1",
            ],
        ] {
            let cli = parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert!(cli.readonly, "{args:?}");
            let command = cli.command.as_ref().unwrap();
            assert!(readonly::writes(command).is_some(), "{args:?}");
        }
        for args in [
            &["legion", "--readonly", "status"][..],
            &["legion", "nodes", "list", "--readonly"],
            &["legion", "--readonly", "refresh"],
            &["legion", "--readonly", "demo"],
        ] {
            let cli = parse_from(args).unwrap();
            assert!(
                readonly::writes(cli.command.as_ref().unwrap()).is_none(),
                "{args:?}"
            );
        }
        let refused = readonly::writes(
            parse_from([
                "legion",
                "--readonly",
                "nodes",
                "add",
                "x",
                "--provider",
                "mock",
            ])
            .unwrap()
            .command
            .as_ref()
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            refused.to_string(),
            "--readonly: `legion nodes add` changes the plan; run it without --readonly"
        );
        assert_eq!(exit::exit_code(&refused.into()), exit::FAILURE);
        // The dashboard and the demo get it from either side.
        assert!(demo_options(&["legion", "demo", "--readonly"]).readonly);
        assert!(
            parse_from(["legion", "--readonly"])
                .unwrap()
                .dashboard
                .readonly
        );
    }
}
