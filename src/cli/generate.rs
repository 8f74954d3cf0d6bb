//! Texts generated from definitions rather than state: shell completions and the man
//! page (from the clap definitions), and the default keymap (from the command table).
//!
//! None of these needs a home, a password or an engine.

use clap::CommandFactory;
use color_eyre::eyre::{Result, eyre};

use super::Cli;
use super::output::out;
use crate::views::keymap::Keymap;

/// `legion completions SHELL`.
pub(crate) fn completions(shell: clap_complete::Shell) -> Result<()> {
    // Into memory first: the generator panics on a closed pipe.
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "legion", &mut buf);
    out!("{}", String::from_utf8_lossy(&buf));
    Ok(())
}

/// `legion man`.
pub(crate) fn man() -> Result<()> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut buf)?;
    out!("{}", String::from_utf8_lossy(&buf));
    Ok(())
}

/// `legion keymap --defaults`.
pub(crate) fn keymap(defaults: bool) -> Result<()> {
    if !defaults {
        return Err(eyre!(
            "say --defaults to print the default keymap (the file it reads is HOME/keymap.toml)"
        ));
    }
    out!("{}", Keymap::defaults_toml());
    Ok(())
}
