//! Where and how Legion logs in to one node ([`SshAccess`]), and the map that says where
//! a node's sshd really is when that is not its provider address ([`NodeEndpoints`]).
//!
//! This file owns no policy about which nodes have an SSH server or which user logs in:
//! the deploy layer (`engine::ssh_agent`) decides that from the state and its settings and
//! hands the result here. It must not import the engine or the views.

use serde::{Deserialize, Serialize};

use super::Auth;
use super::Target;
use super::error::SshError;
use super::keys::{HostKeyFingerprint, ManagedKey};
use super::session::{SshSession, connect};

/// Everything a connection to a node needs: where, as whom, with which key, and the
/// host key it must present (`None`: not pinned yet).
#[derive(Clone, Serialize, Deserialize)]
pub struct SshAccess {
    pub target: Target,
    pub key: ManagedKey,
    pub pinned: Option<HostKeyFingerprint>,
    /// Commands that write system files run under `sudo -n` (a non-root login).
    #[serde(default)]
    pub sudo: bool,
    /// The node's filesystem root for Legion's files: `""` for `/`; a directory when the
    /// node is a directory on a shared machine, where the hostname is also left alone.
    #[serde(default)]
    pub root: String,
    /// The command that follows the node's logs (`SshSettings::log_command`).
    #[serde(default)]
    pub log_command: String,
}

impl SshAccess {
    /// Log in with the managed key, checking the pinned host key; also returns the key
    /// seen when nothing was pinned yet (for the caller to pin).
    pub fn login(&self) -> Result<(SshSession, Option<String>), SshError> {
        let (session, seen) = connect(&self.target, Auth::Key(&self.key), self.pinned.as_ref())?;
        Ok((session, self.pinned.is_none().then(|| seen.to_string())))
    }

    /// Legion manages the whole machine (its files under `/`): it sets the hostname,
    /// needs root or passwordless sudo, and keeps its key in `authorized_keys`. False
    /// when the node is a directory under [`SshAccess::root`], where none of that applies.
    pub fn whole_machine(&self) -> bool {
        self.root.is_empty()
    }
}

impl std::fmt::Debug for SshAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshAccess")
            .field("target", &self.target)
            .field("key", &self.key.fingerprint())
            .field("pinned", &self.pinned)
            .finish()
    }
}

/// Where a node's sshd listens and which directory its commands work under, when that is
/// not the node's provider address and `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// Who logs in there (no sudo: the login owns [`Endpoint::root`]).
    pub user: String,
    /// The node's filesystem root for Legion's files.
    pub root: String,
}

/// Maps nodes to the sshd that plays them. Configured into the deploy layer when nodes
/// are not reached at their provider addresses (one local sshd per simulated node, for
/// instance); production has none. With a map, every node has an SSH server, including nodes of a provider
/// with an agent of its own (the simulated cloud).
pub trait NodeEndpoints: Send + Sync {
    /// `node`'s endpoint, with `key` authorized for its login. May block (it may start
    /// the server): async callers run it on a blocking thread.
    fn endpoint(&self, node: &str, key: &ManagedKey) -> Result<Endpoint, SshError>;
}
