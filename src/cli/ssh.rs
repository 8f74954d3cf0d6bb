//! `legion ssh NODE` and `legion ssh-key`: the system `ssh` with Legion's managed key and
//! the node's pinned host key, and the managed key itself.
//!
//! The host key is checked (or pinned on first use) by Legion's own client before the
//! terminal is handed to `ssh`, which then sees only that key in a temporary
//! known_hosts.
//!
//! Nothing from a provider or a node becomes an `ssh` option: the login user (from the
//! provider's catalog or an import), the host and the port are checked
//! ([`check_target`]) and passed as `-l USER -p PORT -- HOST`, so a user named
//! `-oProxyCommand=…` is refused before anything runs.
//!
//! The private key never touches a file or an argv: a private `ssh-agent` (its socket in
//! a fresh 0700 directory under `$XDG_RUNTIME_DIR`) receives it on `ssh-add -`'s stdin,
//! and `ssh` uses it through `IdentityAgent` with `IdentitiesOnly` and the public key as
//! the identity. The agent is killed and the directory removed when `ssh` ends, and when
//! `legion` gets SIGTERM, SIGHUP or SIGINT; the agent also watches a pipe from `legion`,
//! so even a `kill -9` of `legion` ends it within ten seconds (`ssh-agent`'s own check
//! of the command it runs).

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use clap::Subcommand;
use color_eyre::eyre::{Context, Result, eyre};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::signal::unix::{SignalKind, signal};

use super::Cli;
use super::output::{outln, write_private};
use super::session::with_link;
use crate::link::Link;
use crate::ssh::Target;

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
        let snap = l.current().await?;
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
    if let Some(a) = &access {
        check_target(&a.target)?;
    }
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
            "ssh -i {} -l {} -p {} -- {}",
            path.display(),
            a.target.user,
            a.target.port,
            a.target.host
        );
    }
    Ok(())
}

/// `legion ssh NODE [-- ARGS]`: check the login user, host and port, verify (or pin) the
/// host key with Legion's own client, then hand the terminal to the system `ssh` with
/// that exact key in a temporary known_hosts and the managed key in a private agent.
pub(crate) async fn shell(cli: &Cli, node: &str, args: &[String]) -> Result<()> {
    let (access, known_host) = with_link(cli, async |l: &Link| {
        let access = l.ssh_access(node.to_string()).await?;
        // Before any connection: a hostile user name is refused, not tried.
        check_target(&access.target).with_context(|| format!("legion ssh {node}"))?;
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
    // Signals are caught from here on, so each one ends in the cleanup below.
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut int = signal(SignalKind::interrupt())?;
    let dir = private_dir()?;
    let agent = Agent::start(dir.path()).await?;
    let status = async {
        agent.add(access.key.private_openssh().expose()).await?;
        let files = SshFiles {
            identity: dir.path().join("key.pub"),
            known_hosts: dir.path().join("known_hosts"),
        };
        std::fs::write(
            &files.identity,
            format!("{}\n", access.key.public_openssh()),
        )?;
        std::fs::write(&files.known_hosts, format!("{known_host}\n"))?;
        let mut child = tokio::process::Command::new("ssh")
            .args(ssh_argv(&access.target, &files, args)?)
            .env("SSH_AUTH_SOCK", &agent.socket)
            .kill_on_drop(true)
            .spawn()
            .context("running ssh (is openssh-client installed?)")?;
        let why = tokio::select! {
            status = child.wait() => return Ok(status?),
            _ = term.recv() => "SIGTERM",
            _ = hup.recv() => "SIGHUP",
            _ = int.recv() => "SIGINT",
        };
        let _ = child.kill().await;
        Err(eyre!("ssh to {node} ended: legion received {why}"))
    }
    .await;
    agent.stop().await;
    drop(dir);
    match status?.code() {
        Some(0) => Ok(()),
        code => Err(eyre!(
            "ssh exited with {}",
            code.map_or("a signal".into(), |c| c.to_string())
        )),
    }
}

/// Why a login user, host or port from a provider or an import is not handed to `ssh`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum UnsafeTarget {
    #[error(
        "refusing login user {0:?}: a user name must be 1 to 32 of a-z, A-Z, 0-9, `_`, `.`, \
         `-`, not starting with `-`, `.` or a digit (it came from the provider's catalog or \
         the import; LEGION_SSH_USER=NAME logs in as another user)"
    )]
    User(String),
    #[error("refusing host {0:?}: not an IP address or a DNS name")]
    Host(String),
    #[error("refusing port 0")]
    Port,
}

/// Check what becomes `ssh`'s `-l`, `-p` and destination: a conservative user name, an
/// IP address or DNS name, a non-zero port.
pub(crate) fn check_target(t: &Target) -> Result<(), UnsafeTarget> {
    let u = t.user.as_bytes();
    let user_ok = (1..=32).contains(&u.len())
        && (u[0].is_ascii_alphabetic() || u[0] == b'_')
        && u.iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !user_ok {
        return Err(UnsafeTarget::User(t.user.clone()));
    }
    if t.host.parse::<IpAddr>().is_err() && !is_dns_name(&t.host) {
        return Err(UnsafeTarget::Host(t.host.clone()));
    }
    if t.port == 0 {
        return Err(UnsafeTarget::Port);
    }
    Ok(())
}

/// Letters, digits and inner hyphens in labels of 1 to 63, at most 253 in all, an
/// optional final dot.
fn is_dns_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The files `ssh` is pointed at: the public half of the agent's key and the one-line
/// known_hosts. Neither is secret.
pub(crate) struct SshFiles {
    pub identity: PathBuf,
    pub known_hosts: PathBuf,
}

/// The system `ssh`'s arguments: Legion's options, `-l USER -p PORT`, `--`, the host, the
/// operator's remote command. Refused when the target does not pass [`check_target`].
pub(crate) fn ssh_argv(
    target: &Target,
    files: &SshFiles,
    remote: &[String],
) -> Result<Vec<OsString>, UnsafeTarget> {
    check_target(target)?;
    let mut argv: Vec<OsString> = vec!["-i".into(), files.identity.clone().into_os_string()];
    let mut kh = OsString::from("UserKnownHostsFile=");
    kh.push(&files.known_hosts);
    for opt in [
        // The agent's socket from SSH_AUTH_SOCK, whatever the operator's config says.
        OsString::from("IdentityAgent=SSH_AUTH_SOCK"),
        "IdentitiesOnly=yes".into(),
        kh,
        "StrictHostKeyChecking=yes".into(),
        "GlobalKnownHostsFile=/dev/null".into(),
    ] {
        argv.push("-o".into());
        argv.push(opt);
    }
    argv.extend([
        "-l".into(),
        target.user.clone().into(),
        "-p".into(),
        target.port.to_string().into(),
        "--".into(),
        target.host.clone().into(),
    ]);
    argv.extend(remote.iter().map(OsString::from));
    Ok(argv)
}

/// A fresh 0700 directory for the agent's socket and `ssh`'s files: under
/// `$XDG_RUNTIME_DIR` (per user, not shared) when it is set, else the temporary
/// directory. `ssh` expands `%` and `~` in file options, so the path must be plain.
fn private_dir() -> Result<tempfile::TempDir> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("legion-ssh-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(&base)
        .with_context(|| format!("creating a private directory in {}", base.display()))?;
    let plain = dir.path().to_str().is_some_and(|p| {
        p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
    });
    if !plain {
        return Err(eyre!(
            "{} holds characters ssh would expand or split; set XDG_RUNTIME_DIR to a plain path",
            dir.path().display()
        ));
    }
    Ok(dir)
}

/// A private `ssh-agent` for one `legion ssh`. It runs `sh -c 'echo $SSH_AGENT_PID; exec
/// cat'` as its command: the pid tells Legion whom to stop, and `cat` lives as long as
/// Legion holds its stdin, so the agent (which exits when its command does) cannot
/// outlive Legion by more than its ten-second check.
struct Agent {
    socket: PathBuf,
    pid: Option<rustix::process::Pid>,
    // Holds the pipe `cat` reads; dropping it ends `cat`, then the agent.
    command: tokio::process::Child,
}

impl Agent {
    async fn start(dir: &Path) -> Result<Agent> {
        let socket = dir.join("agent.sock");
        let mut command = tokio::process::Command::new("ssh-agent")
            .arg("-a")
            .arg(&socket)
            .args(["sh", "-c", "echo \"$SSH_AGENT_PID\"; exec cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Its own process group: a Ctrl-C at the terminal is Legion's to handle.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .context("starting ssh-agent (is openssh-client installed?)")?;
        let mut line = String::new();
        if let Some(out) = command.stdout.take() {
            BufReader::new(out).read_line(&mut line).await?;
        }
        let pid = line
            .trim()
            .parse::<i32>()
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        let agent = Agent {
            socket,
            pid,
            command,
        };
        if agent.pid.is_none() {
            agent.stop().await;
            return Err(eyre!(
                "ssh-agent did not start (it printed {:?} for its pid)",
                line.trim()
            ));
        }
        Ok(agent)
    }

    /// Give the agent the private key on `ssh-add -`'s stdin (never a file or argv).
    async fn add(&self, private_openssh: &str) -> Result<()> {
        let mut add = tokio::process::Command::new("ssh-add")
            .args(["-q", "-"])
            .env("SSH_AUTH_SOCK", &self.socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("running ssh-add (is openssh-client installed?)")?;
        if let Some(mut stdin) = add.stdin.take() {
            stdin.write_all(private_openssh.as_bytes()).await?;
            if !private_openssh.ends_with('\n') {
                stdin.write_all(b"\n").await?;
            }
        }
        let status = add.wait().await?;
        if !status.success() {
            return Err(eyre!(
                "ssh-add could not load the managed key into the private agent ({status})"
            ));
        }
        Ok(())
    }

    /// Stop the agent (it removes its socket) and its command, and wait (briefly) until
    /// the agent is gone.
    async fn stop(mut self) {
        if let Some(pid) = self.pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        drop(self.command.stdin.take());
        let _ = self.command.kill().await;
        if let Some(pid) = self.pid {
            // The agent is not our child (its command was): poll until it is gone.
            for _ in 0..50 {
                if rustix::process::test_kill_process(pid).is_err() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(user: &str, host: &str, port: u16) -> Target {
        Target::new(host, port, user)
    }

    fn files() -> SshFiles {
        SshFiles {
            identity: PathBuf::from("/run/user/1/legion-ssh-x/key.pub"),
            known_hosts: PathBuf::from("/run/user/1/legion-ssh-x/known_hosts"),
        }
    }

    #[test]
    fn hostile_users_hosts_and_ports_are_refused() {
        for user in [
            "-oProxyCommand=touch /tmp/pwned",
            "-oProxyCommand=sh",
            "root -oProxyCommand=x",
            "a@b",
            "",
            ".hidden",
            "9lives",
            "x\x1b[2J",
            "user\n",
            "abcdefghijklmnopqrstuvwxyz0123456",
        ] {
            assert_eq!(
                ssh_argv(&target(user, "192.0.2.1", 22), &files(), &[]),
                Err(UnsafeTarget::User(user.to_string())),
                "{user:?}"
            );
        }
        for host in [
            "-oProxyCommand=x",
            "a b",
            "x;y",
            "-h",
            "",
            "a..b",
            "[::1]",
            "a-.b",
        ] {
            assert_eq!(
                check_target(&target("root", host, 22)),
                Err(UnsafeTarget::Host(host.to_string())),
                "{host:?}"
            );
        }
        assert_eq!(
            check_target(&target("root", "::1", 0)),
            Err(UnsafeTarget::Port)
        );
    }

    #[test]
    fn ordinary_targets_pass() {
        for (user, host) in [
            ("root", "203.0.113.9"),
            ("ubuntu", "2001:db8::1"),
            ("debian", "web-1.example.com."),
            ("Administrator", "node7"),
            ("_svc.ci-bot", "xn--bcher-kva.example"),
        ] {
            assert_eq!(
                check_target(&target(user, host, 2222)),
                Ok(()),
                "{user}@{host}"
            );
        }
    }

    #[test]
    fn the_destination_comes_after_dash_dash_with_user_and_port_as_values() {
        let argv = ssh_argv(
            &target("debian", "198.51.100.4", 2222),
            &files(),
            &["uptime".into(), "-p".into()],
        )
        .unwrap();
        let argv: Vec<String> = argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let tail = &argv[argv.len() - 8..];
        assert_eq!(
            tail,
            [
                "-l",
                "debian",
                "-p",
                "2222",
                "--",
                "198.51.100.4",
                "uptime",
                "-p"
            ]
        );
        assert!(argv.contains(&"IdentitiesOnly=yes".to_string()));
        assert!(argv.contains(&"IdentityAgent=SSH_AUTH_SOCK".to_string()));
        assert!(argv.contains(&"/run/user/1/legion-ssh-x/key.pub".to_string()));
        assert!(!argv.iter().any(|a| a.contains("PRIVATE")));
    }
}
