//! The node agent for every provider that reaches its servers over SSH (all but the
//! simulated cloud): wait for SSH with trust on first use, write the node's identity and
//! peers, check readiness and health.
//!
//! Host keys: the first successful handshake pins the server's fingerprint in the node's
//! tracked state; every later connection (deployment, health, the terminal pane) must
//! present the same key. A changed key is refused with both fingerprints named until the
//! operator re-trusts the node (`legion nodes retrust NAME`).
//!
//! Management source: every reachability check and health check reads the node's
//! `SSH_CONNECTION` and records the client address in `tracked.seen_from` (the first
//! one, taken on the first deploy before any firewall is attached, becomes a management
//! source of every managed firewall; see `derive::management_sources`).
//!
//! Settings come from the environment the engine started with: `LEGION_SSH_USER`
//! (default `root`), `LEGION_SSH_PORT` (default 22), and `LEGION_SSH_SANDBOX_ROOT`: a
//! directory on the node under which Legion writes its files instead of `/`, and the
//! hostname is left alone (nodes that are directories of a shared machine: the test
//! harness). Where a node's sshd is comes from its tracked address unless the engine was
//! configured with an endpoint map ([`NodeEndpoints`]); this file asks the map where a
//! node is, never why it has one.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

mod settings;

pub use settings::{RoleFileError, SshSettings};

use super::state::cell::StateCell;
use crate::providers::{AgentError, HealthReading, NodeAgent, NodeConfig, NodeTarget};
use crate::ssh::{
    self, Auth, HostKeyFingerprint, NodeEndpoints, SshAccess, SshError, SshSession, Target,
};
use settings::quote;

/// How long a phase's remote command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a role's install script may run.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Between attempts while a new server boots.
const RETRY: Duration = Duration::from_secs(2);

/// Why the agent could not reach a node or read a role's files, before or around SSH.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshAgentError {
    #[error("this Legion state has no managed SSH key yet")]
    NoManagedKey,
    #[error("{0} has no server yet")]
    NoServer(String),
    #[error("{0} has no address yet")]
    NoAddress(String),
    #[error(transparent)]
    RoleFile(#[from] RoleFileError),
    /// The blocking task that held the connection panicked or was cancelled.
    #[error("the SSH task stopped: {0}")]
    TaskStopped(String),
    #[error(transparent)]
    Ssh(#[from] SshError),
}

#[derive(Clone)]
pub struct SshAgent {
    cell: Arc<StateCell>,
    settings: SshSettings,
    /// Where nodes' sshds are when not at their tracked addresses; `None`: at them.
    endpoints: Option<Arc<dyn NodeEndpoints>>,
}

impl SshAgent {
    pub fn new(
        cell: Arc<StateCell>,
        settings: SshSettings,
        endpoints: Option<Arc<dyn NodeEndpoints>>,
    ) -> SshAgent {
        SshAgent {
            cell,
            settings,
            endpoints,
        }
    }

    /// Nodes are reached through an endpoint map rather than at their tracked addresses:
    /// every node has an sshd there, including those of a provider with an agent of its
    /// own (whose addresses have none), and an endpoint may be started on first use.
    pub fn endpoints_mapped(&self) -> bool {
        self.endpoints.is_some()
    }

    /// The node's address, the managed key and its pinned host key. With an endpoint
    /// map, this may start the node's endpoint (blocking): async callers use
    /// [`SshAgent::access_async`].
    pub fn access(&self, name: &str) -> Result<SshAccess, SshAgentError> {
        let mut a = access(&self.cell, &self.settings, name)?;
        if let Some(map) = &self.endpoints {
            let ep = map.endpoint(name, &a.key)?;
            a.target = Target::new(ep.host, ep.port, ep.user);
            a.sudo = false;
            let role = self
                .cell
                .read(|s| s.plan.nodes.get(name).map(|p| p.role.clone()))
                .unwrap_or_else(|| "node".into());
            a.log_command = self.settings.log_command(&role, false, &ep.root);
            a.root = ep.root;
        }
        Ok(a)
    }

    /// [`SshAgent::access`] off the async workers when it may start an endpoint.
    pub async fn access_async(&self, name: &str) -> Result<SshAccess, SshAgentError> {
        if self.endpoints.is_none() {
            return self.access(name);
        }
        let me = self.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || me.access(&name))
            .await
            .map_err(|e| SshAgentError::TaskStopped(e.to_string()))?
    }

    pub fn settings(&self) -> &SshSettings {
        &self.settings
    }

    /// The HTTP probe of `name`'s role, if it has one.
    fn probe_of(&self, name: &str) -> Result<Option<String>, SshAgentError> {
        let role = self
            .cell
            .read(|s| s.plan.nodes.get(name).map(|p| p.role.clone()))
            .unwrap_or_else(|| "node".into());
        Ok(self.settings.http_probe(&role)?)
    }

    /// Connect (pinning on first use) and run `f` on the session, off the async workers.
    async fn with_session<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce(&mut SshSession) -> Result<T, SshError> + Send + 'static,
    ) -> Result<T, SshAgentError> {
        let access = self.access_async(name).await?;
        self.with_access(name, access, f).await
    }

    async fn with_access<T: Send + 'static>(
        &self,
        name: &str,
        access: SshAccess,
        f: impl FnOnce(&mut SshSession) -> Result<T, SshError> + Send + 'static,
    ) -> Result<T, SshAgentError> {
        let pinned_before = access.pinned.clone();
        let (out, seen) = tokio::task::spawn_blocking(move || {
            let (mut session, seen) = ssh::connect(
                &access.target,
                Auth::Key(&access.key),
                access.pinned.as_ref(),
            )?;
            f(&mut session).map(|out| (out, seen))
        })
        .await
        .map_err(|e| SshAgentError::TaskStopped(e.to_string()))??;
        if pinned_before.is_none() {
            pin(&self.cell, name, &seen).await;
        }
        Ok(out)
    }

    fn identity_script(node: &NodeTarget, config: &NodeConfig, root: &str) -> String {
        let identity = serde_json::json!({
            "name": node.name,
            "uid": node.uid,
            "cluster": config.cluster,
            "role": config.role,
        });
        let peers = config.peers.join("\n");
        let mut script = format!(
            "set -e\nmkdir -p {dir}\nprintf '%s\\n' {identity} > {dir}/node.json.tmp && mv {dir}/node.json.tmp {dir}/node.json\nprintf '%s\\n' {peers} > {dir}/peers.tmp && mv {dir}/peers.tmp {dir}/peers\n",
            dir = quote(&format!("{root}/etc/legion")),
            identity = quote(&identity.to_string()),
            peers = quote(&peers),
        );
        if root.is_empty() {
            script.push_str(&format!(
                "if command -v hostnamectl >/dev/null 2>&1; then hostnamectl set-hostname {n}; else hostname {n}; fi\n",
                n = quote(&node.name)
            ));
        }
        script
    }
}

fn access(
    cell: &StateCell,
    settings: &SshSettings,
    name: &str,
) -> Result<SshAccess, SshAgentError> {
    cell.read(|s| {
        let key = s.managed_key.clone().ok_or(SshAgentError::NoManagedKey)?;
        let t = s
            .tracked
            .nodes
            .get(name)
            .ok_or_else(|| SshAgentError::NoServer(name.to_string()))?;
        let host = t
            .address()
            .ok_or_else(|| SshAgentError::NoAddress(name.to_string()))?;
        let pinned = match &t.host_key {
            Some(fp) => Some(HostKeyFingerprint::parse(fp).map_err(SshError::from)?),
            None => None,
        };
        let (target, sudo) = match &t.login {
            Some(login) => (
                Target::new(host, login.port, login.user.clone()),
                login.sudo,
            ),
            None => {
                let (user, sudo) = settings.login_user(&t.provider, t.image_user.as_deref());
                (Target::new(host, settings.port, user), sudo)
            }
        };
        let role = s.plan.nodes.get(name).map_or("node", |p| p.role.as_str());
        let root = settings.root_for(name);
        Ok(SshAccess {
            target,
            key,
            pinned,
            sudo,
            log_command: settings.log_command(role, sudo, &root),
            root,
        })
    })
}

/// Record a first-seen host key, unless one was pinned meanwhile.
async fn pin(cell: &StateCell, name: &str, seen: &HostKeyFingerprint) {
    let _ = cell
        .commit(|s| {
            if let Some(t) = s.tracked.nodes.get_mut(name)
                && t.host_key.is_none()
            {
                t.host_key = Some(seen.to_string());
            }
        })
        .await;
}

/// Prints the node's view of this connection: `client-ip client-port server-ip port`.
const SSH_CONNECTION: &str = "printf '%s\\n' \"$SSH_CONNECTION\"";

/// The client address in `SSH_CONNECTION` output (its last non-empty line's first
/// field), when it is an IP address.
fn client_address(stdout: &str) -> Option<String> {
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty())?;
    let addr = line.split_whitespace().next()?;
    addr.parse::<std::net::IpAddr>().ok().map(|a| a.to_string())
}

/// Record where `name` saw Legion connect from: the first address once (a management
/// source of every managed firewall), the latest each time it changes (checked before a
/// firewall is applied). Saves only when something changed.
pub(crate) async fn record_seen(cell: &StateCell, name: &str, addr: &str) {
    let same = cell.read(|s| {
        s.tracked
            .seen_from
            .get(name)
            .is_some_and(|seen| seen.last == addr)
    });
    if same {
        return;
    }
    // Keyed: a journal record, not a full save per node of a large apply.
    let keys = [crate::engine::state::change::Key::SeenFrom(
        name.to_string(),
    )];
    let saved = cell
        .commit_keys(&keys, |s| {
            if !s.tracked.nodes.contains_key(name) {
                return;
            }
            s.tracked
                .seen_from
                .entry(name.to_string())
                .and_modify(|seen| seen.last = addr.to_string())
                .or_insert_with(|| crate::engine::state::model::SeenFrom {
                    first: addr.to_string(),
                    last: addr.to_string(),
                });
        })
        .await;
    if let Err(e) = saved {
        tracing::warn!(node = %name, "could not record the address the node sees Legion from: {e}");
    }
}

/// Seconds the HTTP probe may take.
const PROBE_SECONDS: u32 = 10;

/// GET `url` from the node itself with curl (or wget); a non-2xx answer fails.
fn run_probe(s: &mut SshSession, url: &str) -> Result<crate::ssh::ExecOutput, SshError> {
    let u = quote(url);
    let cmd = format!(
        "if command -v curl >/dev/null 2>&1; then curl -fsS -o /dev/null --max-time {PROBE_SECONDS} {u}; \
         elif command -v wget >/dev/null 2>&1; then wget -q -O /dev/null -T {PROBE_SECONDS} {u}; \
         else echo 'neither curl nor wget on the node for the HTTP probe' >&2; exit 127; fi"
    );
    let out = s.exec(&cmd, Duration::from_secs(u64::from(PROBE_SECONDS) + 5))?;
    if out.success() {
        return Ok(out);
    }
    Err(SshError::CommandFailed {
        target: s.target().to_string(),
        command: format!("HTTP probe {url}"),
        status: out.status,
        output_tail: out.tail(1024),
    })
}

/// A failure worth waiting out while a server boots (not a refusal we must respect).
fn transient(e: &SshAgentError) -> bool {
    let SshAgentError::Ssh(e) = e else {
        return false;
    };
    matches!(
        e,
        SshError::Refused { .. }
            | SshError::Timeout { .. }
            | SshError::Unreachable { .. }
            | SshError::Disconnected { .. }
            | SshError::Protocol { .. }
            // cloud-init may not have installed the key yet
            | SshError::AuthFailed { .. }
    )
}

/// The phases, typed; [`NodeAgent`] (whose errors are text) forwards to them.
impl SshAgent {
    async fn wait_for_ssh(&self, node: &NodeTarget) -> Result<(), SshAgentError> {
        // The node actor bounds the whole wait; here we retry what a booting server
        // answers, and give up at once on what waiting cannot fix.
        loop {
            match self
                .with_session(&node.name, |s| {
                    s.exec_checked(SSH_CONNECTION, COMMAND_TIMEOUT)
                })
                .await
            {
                Ok(out) => {
                    // Before any firewall is attached on a first deploy: this address
                    // becomes a management source (see `derive::management_sources`).
                    if let Some(addr) = client_address(&out.stdout) {
                        record_seen(&self.cell, &node.name, &addr).await;
                    }
                    return Ok(());
                }
                Err(e) if transient(&e) => {
                    tracing::debug!(node = %node.name, "not reachable yet: {e}");
                    tokio::time::sleep(RETRY).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The login can act as root (root, or passwordless sudo: otherwise refused with the
    /// fix), and the managed key is in its `authorized_keys` (added if a provider's
    /// first-boot setup put it elsewhere). On a node under a root directory neither is
    /// needed: the check is made, nothing is written.
    async fn bootstrap_login(&self, node: &NodeTarget) -> Result<(), SshAgentError> {
        let access = self.access_async(&node.name).await?;
        let whole_machine = access.whole_machine();
        let key = access.key.public_openssh().to_string();
        let target = access.target.clone();
        let sudo = self
            .with_access(&node.name, access, move |s| {
                let sudo = s.sudo_check()?;
                if whole_machine && sudo.refusal(s.target()).is_none() {
                    s.install_public_key(&key)?;
                }
                Ok(sudo)
            })
            .await?;
        match sudo.refusal(&target) {
            Some(refusal) if whole_machine => Err(refusal.into()),
            _ => Ok(()),
        }
    }

    async fn write_identity(
        &self,
        node: &NodeTarget,
        config: &NodeConfig,
    ) -> Result<(), SshAgentError> {
        let access = self.access_async(&node.name).await?;
        let script = Self::identity_script(node, config, &access.root);
        let shell = if access.sudo {
            "sudo -n sh -s"
        } else {
            "sh -s"
        };
        self.with_access(&node.name, access, move |s| {
            let out = s.exec_with_input(shell, script.as_bytes(), COMMAND_TIMEOUT)?;
            if out.success() {
                return Ok(());
            }
            Err(SshError::CommandFailed {
                target: s.target().to_string(),
                command: "write the node identity".into(),
                status: out.status,
                output_tail: out.tail(2048),
            })
        })
        .await
    }

    async fn run_install(&self, node: &NodeTarget, role: &str) -> Result<(), SshAgentError> {
        let script = self.settings.install_script(role)?;
        let access = self.access_async(&node.name).await?;
        let root = access.root.clone();
        let sudo = access.sudo;
        // A sudo user uploads into its login directory and runs the script as root.
        let remote = if sudo {
            ".legion-install.sh".to_string()
        } else {
            format!("{root}/var/lib/legion/install.sh")
        };
        let run = format!(
            "{}LEGION_ROOT={} LEGION_NODE={} LEGION_ROLE={} sh {}",
            if sudo { "sudo -n env " } else { "" },
            quote(&root),
            quote(&node.name),
            quote(role),
            quote(&remote)
        );
        self.with_access(&node.name, access, move |s| {
            if !sudo {
                s.exec_checked(
                    &format!("mkdir -p {}", quote(&format!("{root}/var/lib/legion"))),
                    COMMAND_TIMEOUT,
                )?;
            }
            s.upload(&remote, script.as_bytes(), 0o700)?;
            s.exec_checked(&run, INSTALL_TIMEOUT)
        })
        .await
        .map(drop)
    }

    async fn check_ready(&self, node: &NodeTarget) -> Result<(), SshAgentError> {
        let access = self.access_async(&node.name).await?;
        let probe = self.probe_of(&node.name)?;
        let check = format!(
            "test -s {0}/etc/legion/node.json && test -s {0}/var/lib/legion/installed && uptime",
            quote(&access.root)
        );
        self.with_access(&node.name, access, move |s| {
            s.exec_checked(&check, COMMAND_TIMEOUT)?;
            match &probe {
                Some(url) => run_probe(s, url).map(drop),
                None => Ok(()),
            }
        })
        .await
    }
}

#[async_trait]
impl NodeAgent for SshAgent {
    async fn wait_reachable(&self, node: &NodeTarget) -> Result<(), AgentError> {
        self.wait_for_ssh(node)
            .await
            .map_err(|e| AgentError::Unreachable(e.to_string()))
    }

    async fn bootstrap(&self, node: &NodeTarget) -> Result<(), AgentError> {
        self.bootstrap_login(node)
            .await
            .map_err(|e| AgentError::Failed(e.to_string()))
    }

    async fn configure(&self, node: &NodeTarget, config: &NodeConfig) -> Result<(), AgentError> {
        self.write_identity(node, config)
            .await
            .map_err(|e| AgentError::Failed(e.to_string()))
    }

    async fn install(&self, node: &NodeTarget, role: &str) -> Result<(), AgentError> {
        self.run_install(node, role)
            .await
            .map_err(|e| AgentError::Failed(e.to_string()))
    }

    async fn readiness(&self, node: &NodeTarget) -> Result<(), AgentError> {
        self.check_ready(node)
            .await
            .map_err(|e| AgentError::Failed(e.to_string()))
    }

    /// Reachable over SSH and, when the role has an HTTP probe, answering it; a node
    /// whose probe fails is degraded, not unreachable.
    async fn health(&self, node: &NodeTarget) -> HealthReading {
        let probe = match self.probe_of(&node.name) {
            Ok(p) => p,
            Err(e) => return HealthReading::Degraded(e.to_string()),
        };
        let checked = self
            .with_session(&node.name, move |s| {
                let out = s.exec_checked(
                    &format!("cat /proc/loadavg; {SSH_CONNECTION}"),
                    Duration::from_secs(15),
                )?;
                Ok((
                    client_address(&out.stdout),
                    probe.as_ref().map(|url| run_probe(s, url)),
                ))
            })
            .await;
        if let Ok((Some(addr), _)) = &checked {
            record_seen(&self.cell, &node.name, addr).await;
        }
        match checked.map(|(_, probe)| probe) {
            Ok(None | Some(Ok(_))) => HealthReading::Healthy,
            Ok(Some(Err(e))) => HealthReading::Degraded(e.to_string()),
            Err(e) => HealthReading::Unreachable(e.to_string()),
        }
    }
}

/// A provider's own node agent first (the simulated cloud: power state, injected
/// faults), then SSH: for nodes that have both, which is when an endpoint map gives the
/// provider's nodes an sshd ([`SshAgent::endpoints_mapped`]).
pub struct LayeredAgent {
    pub own: Arc<dyn NodeAgent>,
    pub ssh: Arc<dyn NodeAgent>,
}

#[async_trait]
impl NodeAgent for LayeredAgent {
    async fn wait_reachable(&self, node: &NodeTarget) -> Result<(), AgentError> {
        self.own.wait_reachable(node).await?;
        self.ssh.wait_reachable(node).await
    }

    async fn bootstrap(&self, node: &NodeTarget) -> Result<(), AgentError> {
        self.own.bootstrap(node).await?;
        self.ssh.bootstrap(node).await
    }

    async fn configure(&self, node: &NodeTarget, config: &NodeConfig) -> Result<(), AgentError> {
        self.own.configure(node, config).await?;
        self.ssh.configure(node, config).await
    }

    async fn install(&self, node: &NodeTarget, role: &str) -> Result<(), AgentError> {
        self.own.install(node, role).await?;
        self.ssh.install(node, role).await
    }

    async fn readiness(&self, node: &NodeTarget) -> Result<(), AgentError> {
        self.own.readiness(node).await?;
        self.ssh.readiness(node).await
    }

    async fn health(&self, node: &NodeTarget) -> HealthReading {
        match self.own.health(node).await {
            HealthReading::Healthy => self.ssh.health(node).await,
            other => other,
        }
    }
}
