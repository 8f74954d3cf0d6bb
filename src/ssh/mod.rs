//! SSH to managed servers, all of it in one place: Legion's managed key, host key
//! pinning, login ([`SshAccess`]), the few remote operations the node phases need (run a
//! command, upload a file, install a key, check sudo), the endpoint map that says where a
//! node's sshd really is ([`NodeEndpoints`]), and the long-lived I/O threads of the
//! dashboard: the terminal pane's shell session ([`pane`]) and the node log tail
//! ([`tail`]).
//!
//! This layer sits below the engine: it must not import `crate::engine` or
//! `crate::views`. What differs from one setup to another (where a node's sshd is) comes
//! in as a value ([`NodeEndpoints`]), never as a flag checked here.
//!
//! The API is blocking (libssh2 underneath): callers run it on `spawn_blocking` or a
//! thread of their own. Every network step is bounded by a timeout, so a dead host turns
//! into an error instead of a stuck thread.
//!
//! Host keys are trusted on first use: [`connect`] returns the fingerprint it saw, the
//! caller records it, and passes it back as `pinned` from then on. A different key is
//! refused before any credential is sent ([`SshError::HostKeyChanged`]); only the operator
//! re-trusting the host (connecting with `pinned: None`) replaces a pin. This module never
//! writes `known_hosts` and never reads the user's own SSH configuration or agent.

mod access;
mod error;
mod keys;
pub(crate) mod pane;
mod remote;
mod session;
pub mod tail;
mod wait;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use access::{Endpoint, NodeEndpoints, SshAccess};
pub use error::{AuthMethod, SshError, StreamError};
pub use keys::{HostKeyFingerprint, KeyError, MANAGED_KEY_COMMENT, ManagedKey};
pub use remote::{ExecOutput, KeyInstall, OUTPUT_TAIL_BYTES, SudoStatus};
pub use session::{SshSession, connect, connect_with};

use crate::core::secret::Secret;

/// Where to log in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
}

impl Target {
    pub fn new(host: impl Into<String>, port: u16, user: impl Into<String>) -> Target {
        Target {
            host: host.into(),
            port,
            user: user.into(),
        }
    }

    /// `host`, or `host:port` when the port is not 22 (`[v6]:port` for IPv6 literals).
    pub fn host_label(&self) -> String {
        match (self.port, self.host.contains(':')) {
            (22, _) => self.host.clone(),
            (port, true) => format!("[{}]:{port}", self.host),
            (port, false) => format!("{}:{port}", self.host),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.host_label())
    }
}

/// How to authenticate. `Password` is for the one-time bootstrap of manual hosts, which
/// installs the managed key; everything after uses `Key`.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    Key(&'a ManagedKey),
    Password(&'a Secret),
}

/// Bounds for [`connect_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// The TCP connect, per resolved address.
    pub connect_timeout: Duration,
    /// The SSH handshake, and separately the authentication.
    pub handshake_timeout: Duration,
    /// The bound for operations that take no timeout of their own (upload, key install,
    /// sudo check).
    pub io_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> ConnectOptions {
        ConnectOptions {
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(20),
            io_timeout: Duration::from_secs(120),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_labels() {
        assert_eq!(
            Target::new("h.example", 22, "root").to_string(),
            "root@h.example"
        );
        assert_eq!(
            Target::new("10.0.0.1", 2222, "ops").to_string(),
            "ops@10.0.0.1:2222"
        );
        assert_eq!(Target::new("::1", 2222, "ops").host_label(), "[::1]:2222");
    }

    #[test]
    fn auth_debug_hides_credentials() {
        let pw = Secret::new("hunter2");
        let key = ManagedKey::generate().unwrap();
        let shown = format!("{:?} {:?}", Auth::Password(&pw), Auth::Key(&key));
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains("PRIVATE"));
    }
}
