//! The faces that open the dashboard: `legion` alone (on a local engine, or on the
//! daemon's with `--attach`), and the demo through [`show`]. Also the options only a
//! dashboard reads ([`DashboardArgs`]).
//!
//! The dashboard itself lives in `views::run`; this file only chooses its engine and
//! configuration and runs it on a blocking thread.

use std::path::PathBuf;

use clap::ArgMatches;
use clap::parser::ValueSource;
use color_eyre::eyre::{Result, eyre};

use super::Cli;
use super::password::read_password;
use super::session::init_tracing;
use crate::daemon::Endpoint;
use crate::daemon::client::Remote;
use crate::engine::{Engine, EngineConfig};
use crate::link::Link;
use crate::views::run::DashboardConfig;
use crate::views::theme::ColorDepth;

// Options of the commands that open a dashboard (`legion`, `legion demo`). A plain
// comment: a doc comment on a flattened struct would become the command's about text.
#[derive(clap::Args, Clone)]
pub(crate) struct DashboardArgs {
    /// The global `--readonly`, copied here by `cli::parse_from` for the dashboard.
    #[arg(skip)]
    pub(super) readonly: bool,
    /// Dashboard theme: dark, light, ansi16, or a NAME.toml in the home's themes/.
    #[arg(long, default_value = "dark")]
    pub(super) theme: String,
    /// Colour depth: truecolor, 256, 16 or none (default: detected from TERM/COLORTERM;
    /// NO_COLOR is honoured).
    #[arg(long, value_name = "DEPTH")]
    pub(super) colors: Option<ColorDepth>,
}

impl DashboardArgs {
    /// Take what was given before the subcommand (`legion --theme light demo`) for what
    /// was not given after it; `matches` are the subcommand's.
    pub(crate) fn inherit(&mut self, outer: &DashboardArgs, matches: &ArgMatches) {
        self.colors = self.colors.or(outer.colors);
        if matches.value_source("theme") != Some(ValueSource::CommandLine) {
            self.theme.clone_from(&outer.theme);
        }
    }
}

/// `legion` with no command: the dashboard on this home, or on the daemon's engine.
pub(crate) async fn open(cli: &Cli, rt: &tokio::runtime::Handle) -> Result<()> {
    let home = cli.home()?;
    let _guard = init_tracing(&home);
    if cli.attach {
        let token = cli
            .daemon_token()
            .ok_or_else(|| eyre!("--attach needs the daemon's token: set LEGION_DAEMON_TOKEN"))?;
        let remote = Remote::connect(&Endpoint::for_home(&home), home.clone(), token).await?;
        // The dashboard watches the fleet live: the one face that subscribes.
        remote.follow_logs().await?;
        remote.watch().await?;
        // Quitting only closes this connection: the daemon's engine keeps working.
        return show(&cli.dashboard, rt, Link::Daemon(remote), home, None).await;
    }
    let engine = Engine::start(EngineConfig::new(home.clone()));
    if let Some(pw) = cli.password_file() {
        engine.unlock(read_password(pw)?).await?;
    }
    let link = Link::Local(engine);
    let shown = show(&cli.dashboard, rt, link.clone(), home, None).await;
    // Save and lock whatever happened to the dashboard.
    link.finish().await?;
    shown
}

/// Run the dashboard on a blocking thread (the UI thread), leaving the runtime free.
pub(crate) async fn show(
    args: &DashboardArgs,
    rt: &tokio::runtime::Handle,
    engine: Link,
    home: PathBuf,
    demo: Option<String>,
) -> Result<()> {
    let depth = args
        .colors
        .unwrap_or_else(|| ColorDepth::detect(|k| std::env::var(k).ok()));
    let cfg = DashboardConfig {
        home,
        readonly: args.readonly,
        attached: match &engine {
            Link::Daemon(r) => Some(format!("daemon pid {}", r.status().pid)),
            Link::Local(_) => None,
        },
        demo,
        theme: args.theme.clone(),
        depth,
    };
    let rt = rt.clone();
    tokio::task::spawn_blocking(move || crate::views::run::run(&rt, engine, cfg))
        .await
        .map_err(|e| eyre!("the dashboard stopped: {e}"))??;
    Ok(())
}
