//! Local sandboxes for the demo's simulated nodes: one OpenSSH `sshd` per node on a
//! loopback port, running as the current user with its own host key and directory, so
//! the shell pane, the deployment phases and the log tail are real in `legion demo`.
//!
//! A sandbox starts the first time a node is reached ([`SandboxFleet::endpoint`]) and
//! lives until the fleet is dropped. Its directory (`<home>/sandboxes/<node>/`) keeps the
//! host key across runs, so the pinned host key stays valid; `root/` is the node's
//! filesystem root for Legion's files (identity, install script, logs). A heartbeat
//! thread appends a line to each running node's `var/log/syslog`, standing in for the
//! node's services, so the log tail has something to follow.
//!
//! The fleet is handed to the engine as its SSH endpoint map ([`NodeEndpoints`], see
//! [`endpoints`]): the SSH/deploy layer asks it where each node's sshd is and never
//! checks whether it runs in the demo. With a map, the simulated cloud's own agent goes
//! in front of the SSH agent (`ssh_agent::LayeredAgent`): a simulated server that is off
//! or has an injected fault fails as before, a running one is then reached over SSH.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ssh::{Endpoint, ManagedKey, NodeEndpoints, SshError};

/// How long a new sandbox's sshd may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Ports tried before giving up (see [`SandboxFleet::start_with`]).
const PORT_ATTEMPTS: usize = 5;
/// Between heartbeat lines.
const HEARTBEAT: Duration = Duration::from_secs(3);

/// Why a node's sandbox could not be had. Each names the node.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0:?} cannot name a sandbox")]
    BadName(String),
    #[error("sandbox for {node}: {what}: {source}")]
    Io {
        node: String,
        what: String,
        source: std::io::Error,
    },
    #[error("sandbox for {node}: {source}")]
    HostKey {
        node: String,
        source: crate::ssh::KeyError,
    },
    #[error("sandbox for {node}: sshd exited ({status}): {last_line}")]
    SshdExited {
        node: String,
        status: std::process::ExitStatus,
        last_line: String,
    },
    #[error("sandbox for {node}: sshd did not listen within {after:?}")]
    NotListening { node: String, after: Duration },
    #[error(
        "sandbox for {node}: every one of {attempts} free loopback ports was taken before \
         sshd could bind it; try again, or stop what is grabbing ports"
    )]
    NoPort { node: String, attempts: usize },
}

struct Sandbox {
    child: Child,
    endpoint: Endpoint,
}

pub struct SandboxFleet {
    base: PathBuf,
    sshd: PathBuf,
    user: String,
    nodes: Mutex<HashMap<String, Sandbox>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for SandboxFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxFleet")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// The OpenSSH server binary, if one is installed.
pub fn find_sshd() -> Option<PathBuf> {
    let fixed = ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"];
    fixed
        .iter()
        .map(PathBuf::from)
        .chain(
            std::env::var_os("PATH")
                .map(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join("sshd"))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        )
        .find(|p| p.is_file())
}

/// Why there is no real shell on simulated nodes here, and the fix.
pub const NO_SSHD: &str = "no OpenSSH server is installed, so the demo's simulated nodes have \
     no SSH sandbox; install openssh-server (apt-get install openssh-server) and restart \
     `legion demo` to get a real shell, deployment and log tail on each node";

impl SandboxFleet {
    /// `None` when no sshd is installed.
    pub fn new(base: PathBuf) -> Option<Arc<SandboxFleet>> {
        let sshd = find_sshd()?;
        let user = rustix::process::getuid();
        let user = user_name(user.as_raw()).unwrap_or_else(|| "root".into());
        let fleet = Arc::new(SandboxFleet {
            base,
            sshd,
            user,
            nodes: Mutex::new(HashMap::new()),
            stop: Arc::new(AtomicBool::new(false)),
        });
        let weak = Arc::downgrade(&fleet);
        let stop = fleet.stop.clone();
        let _ = std::thread::Builder::new()
            .name("legion-sandbox-heartbeat".into())
            .spawn(move || {
                let mut beat = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(HEARTBEAT);
                    let Some(fleet) = weak.upgrade() else { return };
                    beat += 1;
                    fleet.heartbeat(beat);
                }
            });
        Some(fleet)
    }

    /// The node's sandbox, started if it is not running. Authorizes `key` for the login.
    pub fn start_node(&self, node: &str, key: &ManagedKey) -> Result<Endpoint, SandboxError> {
        if node.is_empty() || !node.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(SandboxError::BadName(node.to_string()));
        }
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = nodes.get_mut(node) {
            if matches!(s.child.try_wait(), Ok(None)) {
                return Ok(s.endpoint.clone());
            }
            nodes.remove(node);
        }
        let sandbox = self.start(node, key)?;
        let endpoint = sandbox.endpoint.clone();
        nodes.insert(node.to_string(), sandbox);
        Ok(endpoint)
    }

    fn start(&self, node: &str, key: &ManagedKey) -> Result<Sandbox, SandboxError> {
        self.start_with(node, key, free_port)
    }

    /// [`SandboxFleet::start`] with the port chooser given. A port chosen free can be
    /// taken by another process before sshd binds it: sshd then exits with "Address
    /// already in use" and the next port is tried. Ready means sshd itself logged that it
    /// listens on the port (never "something accepts connections there", which another
    /// process's listener would also satisfy).
    fn start_with(
        &self,
        node: &str,
        key: &ManagedKey,
        mut pick_port: impl FnMut() -> std::io::Result<u16>,
    ) -> Result<Sandbox, SandboxError> {
        let dir = self.base.join(node);
        let root = dir.join("root");
        let io = |what: &str, source: std::io::Error| SandboxError::Io {
            node: node.to_string(),
            what: what.to_string(),
            source,
        };
        std::fs::create_dir_all(root.join("var/log")).map_err(|e| io("creating it", e))?;
        let host_key = dir.join("host_ed25519");
        if !host_key.exists() {
            let k = ManagedKey::generate_with_comment(&format!("legion-sandbox-{node}")).map_err(
                |source| SandboxError::HostKey {
                    node: node.to_string(),
                    source,
                },
            )?;
            write_private(&host_key, k.private_openssh().expose())
                .map_err(|e| io("writing its host key", e))?;
        }
        write_private(
            &dir.join("authorized_keys"),
            &format!("{}\n", key.public_openssh()),
        )
        .map_err(|e| io("writing authorized_keys", e))?;
        if rustix::process::getuid().is_root() {
            // sshd as root wants its privilege separation directory.
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        for _ in 0..PORT_ATTEMPTS {
            let port = pick_port().map_err(|e| io("finding a free port", e))?;
            if let Some(child) = self.spawn_sshd(node, &dir, &root, &host_key, port)? {
                return Ok(Sandbox {
                    child,
                    endpoint: Endpoint {
                        host: "127.0.0.1".into(),
                        port,
                        user: self.user.clone(),
                        root: root.display().to_string(),
                    },
                });
            }
        }
        Err(SandboxError::NoPort {
            node: node.to_string(),
            attempts: PORT_ATTEMPTS,
        })
    }

    /// Starts sshd on `port` and waits until it says it listens there; `None` when the
    /// port was taken.
    fn spawn_sshd(
        &self,
        node: &str,
        dir: &Path,
        root: &Path,
        host_key: &Path,
        port: u16,
    ) -> Result<Option<Child>, SandboxError> {
        let io = |what: &str, source: std::io::Error| SandboxError::Io {
            node: node.to_string(),
            what: what.to_string(),
            source,
        };
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nPidFile none\nUsePAM no\n\
                 StrictModes no\nAuthorizedKeysFile {dir}/authorized_keys\n\
                 PubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 AllowUsers {user}\nX11Forwarding no\nPrintMotd no\nLogLevel VERBOSE\n\
                 SetEnv LEGION_ROOT={root}\n",
                key = host_key.display(),
                dir = dir.display(),
                user = self.user,
                root = root.display(),
            ),
        )
        .map_err(|e| io("writing sshd_config", e))?;
        let log_path = dir.join("sshd.log");
        let log = std::fs::File::create(&log_path).map_err(|e| io("its log", e))?;
        let mut child = Command::new(&self.sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| io(&format!("starting {}", self.sshd.display()), e))?;
        // Logged at VERBOSE once the socket is bound and listening.
        let ready = format!("Server listening on 127.0.0.1 port {port}");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if log.contains(&ready) {
                return Ok(Some(child));
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                if log.contains("Address already in use") {
                    return Ok(None);
                }
                return Err(SandboxError::SshdExited {
                    node: node.to_string(),
                    status,
                    last_line: log.lines().last().unwrap_or("no output").to_string(),
                });
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SandboxError::NotListening {
                    node: node.to_string(),
                    after: START_TIMEOUT,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One line in each running sandbox's `var/log/syslog`.
    fn heartbeat(&self, beat: u64) {
        let roots: Vec<(String, String)> = self
            .nodes
            .lock()
            .map(|n| {
                n.iter()
                    .map(|(name, s)| (name.clone(), s.endpoint.root.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load = load.split_whitespace().next().unwrap_or("?");
        for (name, root) in roots {
            let path = Path::new(&root).join("var/log/syslog");
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(
                    f,
                    "{}Z {name} legion-demo[{}]: heartbeat {beat}, load {load}",
                    crate::core::time::utc_datetime(crate::core::time::now_ms() / 1000),
                    std::process::id()
                );
            }
        }
    }
}

impl Drop for SandboxFleet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let nodes = self.nodes.get_mut().unwrap_or_else(|p| p.into_inner());
        for (_, mut s) in nodes.drain() {
            // SIGTERM: sshd closes its sessions.
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_child(&s.child),
                rustix::process::Signal::TERM,
            );
            let _ = s.child.wait();
        }
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_string())
    })
}

impl NodeEndpoints for SandboxFleet {
    fn endpoint(&self, node: &str, key: &ManagedKey) -> Result<Endpoint, SshError> {
        self.start_node(node, key).map_err(|e| SshError::Endpoint {
            node: node.to_string(),
            detail: e.to_string(),
        })
    }
}

/// The demo's endpoint map: a sandbox fleet under `base`, or `None` when no sshd is
/// installed (then simulated nodes have no SSH, and say so).
pub fn endpoints(base: PathBuf) -> Option<Arc<dyn NodeEndpoints>> {
    SandboxFleet::new(base).map(|fleet| fleet as Arc<dyn NodeEndpoints>)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpStream;

    #[test]
    fn a_port_taken_before_sshd_binds_it_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let Some(fleet) = SandboxFleet::new(dir.path().to_path_buf()) else {
            eprintln!("skipped: no OpenSSH server (sshd) installed");
            return;
        };
        // Another process's listener on the port first chosen: it accepts connections,
        // so only sshd's own word tells the two apart.
        let squatter = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let busy = squatter.local_addr().unwrap().port();
        let mut ports = std::iter::once(Ok(busy)).chain(std::iter::repeat_with(free_port));
        let key = ManagedKey::generate().unwrap();
        let mut sandbox = fleet
            .start_with("race", &key, || ports.next().unwrap())
            .unwrap();
        let port = sandbox.endpoint.port;
        assert_ne!(port, busy, "the taken port was not used");
        let mut banner = [0u8; 8];
        TcpStream::connect(("127.0.0.1", port))
            .unwrap()
            .read_exact(&mut banner)
            .unwrap();
        assert_eq!(&banner, b"SSH-2.0-", "our sshd answers there");
        let _ = sandbox.child.kill();
        let _ = sandbox.child.wait();
    }
}
