//! `legion config`: create the encrypted state, change its password, and the settings
//! kept in the plan (`set` / `get`: the management sources of managed firewalls).
//!
//! Passwords come from `password.rs`; the state itself is the engine's to write.

use std::path::PathBuf;

use clap::Subcommand;
use color_eyre::eyre::{Result, eyre};

use super::Cli;
use super::output::outln;
use super::password::new_password;
use super::session::{has_state, init_tracing, with_link};
use crate::engine::plan::PlanEdit;
use crate::engine::state::store::StateFile;
use crate::engine::{Engine, EngineConfig};
use crate::link::Link;

/// A setting `config set` and `config get` know.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum ConfigKey {
    /// Networks (CIDR, comma-separated) every managed firewall lets reach the nodes'
    /// SSH port, besides the addresses nodes saw Legion connect from; empty clears.
    ManagementSources,
}

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
    /// Change a setting of the plan (apply makes it so on the providers).
    Set { key: ConfigKey, value: String },
    /// Print a setting of the plan.
    Get { key: ConfigKey },
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

pub(crate) async fn run(cli: &Cli, command: &ConfigCommand) -> Result<()> {
    match command {
        ConfigCommand::Init => init(cli).await,
        ConfigCommand::Set {
            key: ConfigKey::ManagementSources,
            value,
        } => {
            let sources = crate::engine::parse::sources(value);
            crate::engine::parse::check_sources(&sources)
                .map_err(|e| eyre!("management-sources: {e}"))?;
            let shown = sources.join(", ");
            with_link(cli, async |l: &Link| {
                Ok(l.edit_plan(PlanEdit::SetManagementSources { sources })
                    .await?)
            })
            .await?;
            if shown.is_empty() {
                outln!(
                    "management sources cleared (the addresses nodes see Legion from stay); apply makes it so"
                );
            } else {
                outln!("management sources: {shown}; apply makes it so");
            }
            Ok(())
        }
        ConfigCommand::Get {
            key: ConfigKey::ManagementSources,
        } => {
            let plan = with_link(cli, async |l: &Link| Ok(l.plan().await?)).await?;
            outln!("{}", plan.management_sources.join(","));
            Ok(())
        }
        ConfigCommand::Passwd { new_password_file } => {
            let current = cli.password()?;
            let new = new_password(new_password_file.as_deref(), "New Legion password")?;
            with_link(cli, async |l: &Link| {
                Ok(l.change_password(current, new).await?)
            })
            .await?;
            let state = StateFile::in_home(&cli.home()?);
            outln!(
                "password changed: {} (plans, tracked resources, provider credentials and \
                 Legion's SSH key) was re-encrypted under a new salt and key, and its previous \
                 generation {} was deleted, so no file Legion keeps opens with the old \
                 password; copies made outside Legion (backups, snapshots) still do",
                state.path().display(),
                state.backup_path().display()
            );
            Ok(())
        }
    }
}

async fn init(cli: &Cli) -> Result<()> {
    let home = cli.home()?;
    let _guard = init_tracing(&home);
    if has_state(&home) {
        return Err(eyre!(
            "{} already holds a Legion state; `legion config passwd` changes its password",
            home.display()
        ));
    }
    let pw = new_password(cli.password_file(), "New Legion password")?;
    let engine = Engine::start(EngineConfig::new(home.clone()));
    engine.init(pw).await?;
    engine.logout().await?;
    outln!("created a new Legion state in {}", home.display());
    Ok(())
}
