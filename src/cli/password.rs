//! Every password the CLI reads: the unlock password, a new one (asked twice), and the
//! one-time password of a host being imported; from a file, a variable or the terminal.
//!
//! Passwords are never taken from argv and go straight into [`Secret`]s. This file does
//! not decide what a password is used for.

use std::io::IsTerminal;
use std::path::Path;

use color_eyre::eyre::{Context, Result, eyre};

use crate::core::secret::Secret;

/// The first line of a password file.
pub(crate) fn read_password(path: &Path) -> Result<Secret> {
    // The whole file is wiped on drop, not only the line kept.
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the password file {}", path.display()))?,
    );
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(eyre!("the password file {} is empty", path.display()));
    }
    Ok(Secret::new(line))
}

/// The unlock password: from the password file, else asked on the terminal.
pub(crate) fn unlock_password(file: Option<&Path>) -> Result<Secret> {
    match file {
        Some(p) => read_password(p),
        None if std::io::stdin().is_terminal() => ask("Legion password: "),
        None => Err(eyre!(
            "no password: pass --password-file FILE or set LEGION_PASSWORD_FILE (or run \
             on a terminal to be asked)"
        )),
    }
}

/// A new password: from the file, else asked twice on the terminal.
pub(crate) fn new_password(file: Option<&Path>, what: &str) -> Result<Secret> {
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

/// The one-time password for `user@host` of `nodes import`: none with `--key-only`, else
/// from the variable `--password-env` names, else asked on the terminal.
pub(crate) fn import_password(
    user: &str,
    host: &str,
    password_env: Option<&str>,
    key_only: bool,
) -> Result<Option<Secret>> {
    if key_only {
        return Ok(None);
    }
    if let Some(var) = password_env {
        let value = std::env::var(var)
            .map_err(|_| eyre!("{var} is not set (--password-env names a variable)"))?;
        return Ok(Some(Secret::new(value)));
    }
    if std::io::stdin().is_terminal() {
        return Ok(Some(ask(&format!(
            "Password for {user}@{host} (used once to install Legion's key; never stored): "
        ))?));
    }
    Err(eyre!(
        "no terminal to ask for {user}@{host}'s password: give --password-env VAR, \
         or --key-only when Legion's key is already authorized"
    ))
}

fn ask(prompt: &str) -> Result<Secret> {
    let line = Secret::new(rpassword::prompt_password(prompt).context("reading the password")?);
    if line.is_empty() {
        return Err(eyre!("an empty password is not accepted"));
    }
    Ok(line)
}
