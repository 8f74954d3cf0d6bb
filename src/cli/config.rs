//! `legion config`: create the encrypted state, change its password.
//!
//! Passwords come from `password.rs`; the state itself is the engine's to write.

use std::path::PathBuf;

use clap::Subcommand;
use color_eyre::eyre::{Result, eyre};

use super::Cli;
use super::output::outln;
use super::password::new_password;
use super::session::{has_state, init_tracing, with_link};
use crate::engine::state::store::StateFile;
use crate::engine::{Engine, EngineConfig};
use crate::link::Link;

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
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
