//! `legion ssh NODE` and `legion ssh-key`: the system `ssh` with Legion's managed key and
//! the node's pinned host key, and the managed key itself.
//!
//! The host key is checked (or pinned on first use) by Legion's own client before the
//! terminal is handed to `ssh`, which then sees only that key in a temporary
//! known_hosts. Nothing from the node becomes an `ssh` option.

use std::path::PathBuf;

use clap::Subcommand;
use color_eyre::eyre::{Context, Result, eyre};

use super::Cli;
use super::output::{outln, write_private};
use super::session::with_link;
use crate::link::Link;

#[derive(Subcommand)]
pub(crate) enum SshKeyCommand {
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

/// `legion ssh-key show|export`.
pub(crate) async fn key(cli: &Cli, command: &SshKeyCommand) -> Result<()> {
    let (path, node) = match command {
        SshKeyCommand::Show => {
            let key = with_link(cli, async |l: &Link| Ok(l.managed_key().await?)).await?;
            outln!("{}", key.public_openssh());
            return Ok(());
        }
        SshKeyCommand::Export { path, node } => (path, node),
    };
    let path = path
        .clone()
        .unwrap_or_else(|| PathBuf::from("legion_ed25519"));
    let (key, access) = with_link(cli, async |l: &Link| {
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

/// `legion ssh NODE [-- ARGS]`: verify (or pin) the host key with Legion's own client,
/// then hand the terminal to the system `ssh` with that exact key in a temporary
/// known_hosts.
pub(crate) async fn shell(cli: &Cli, node: &str, args: &[String]) -> Result<()> {
    let (access, known_host) = with_link(cli, async |l: &Link| {
        let access = l.ssh_access(node.to_string()).await?;
        let check = access.clone();
        let (known_host, seen) = tokio::task::spawn_blocking(move || {
            let (session, seen) = crate::ssh::connect(
                &check.target,
                crate::ssh::Auth::Key(&check.key),
                check.pinned.as_ref(),
            )?;
            let line = session.known_hosts_line();
            Ok::<_, crate::ssh::SshError>((line, seen))
        })
        .await??;
        if access.pinned.is_none() {
            l.pin_host_key(node.to_string(), seen.to_string()).await?;
            eprintln!("legion: {node}: trusted host key {seen} on first use");
        }
        Ok((access, known_host))
    })
    .await?;
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
