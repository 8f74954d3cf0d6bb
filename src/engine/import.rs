//! Importing an existing host (the manual provider): log in once with a password or with
//! the managed key already in place, check the user can act as root, install the managed
//! public key, prove key-only login, then plan and track the node in one commit.
//!
//! The password is used for that one login and dropped; it is never stored or logged.
//! With an expected host key fingerprint (`--host-key-fingerprint`, the form's host key
//! field), a host presenting another key is refused after the key exchange and before
//! any authentication, so the password never reaches an impostor. Without one, the key
//! seen on that first login is trusted on first use and pinned, and the report says so.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::EngineError;
use super::state::model::{Login, NodePlan, TrackedNode};
use crate::core::secret::Secret;
use crate::providers::manual;
use crate::ssh::{self, Auth, KeyInstall, ManagedKey, SshError, SudoStatus, Target};

/// What `legion nodes import` asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportRequest {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    /// One-time password for installing the managed key; `None`: the key is already
    /// authorized on the host.
    pub password: Option<Secret>,
    pub cluster: Option<String>,
    pub role: Option<String>,
    /// The host key fingerprint the operator expects (`SHA256:…`, as `ssh-keygen -lf`
    /// prints it); `None`: trust on first use.
    #[serde(default)]
    pub host_key: Option<String>,
}

/// What the import found and did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    pub name: String,
    /// `user@host:port`, the node's server id.
    pub server_id: String,
    pub host_key: String,
    /// The host key matched the fingerprint the operator gave (false: trusted on first
    /// use, unverified).
    #[serde(default)]
    pub host_key_verified: bool,
    pub sudo: SudoStatus,
    /// The managed key was added to `authorized_keys` (false: it was there already).
    pub key_added: bool,
    /// Set when the user is not root and has no passwordless sudo, but Legion writes
    /// into a sandbox and does not need it.
    pub note: Option<String>,
}

/// Why a host could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// The login user is not root and has no passwordless sudo.
    #[error("{0}")]
    NoSudo(String),
    #[error(
        "{target}: the managed key was installed but key login is refused ({source}); check \
         the server's AuthorizedKeysFile and PubkeyAuthentication settings"
    )]
    KeyLoginRefused { target: String, source: SshError },
    /// The host presented another key than the one the operator expects.
    #[error(
        "{target} presented host key {seen}, not the expected {expected}; nothing was sent \
         (no password, no key): check the fingerprint on the host with \
         `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`, or suspect an impostor"
    )]
    HostKeyMismatch {
        target: String,
        expected: ssh::HostKeyFingerprint,
        seen: ssh::HostKeyFingerprint,
    },
}

/// The blocking half: log in, check sudo, install the key, prove key-only login.
/// `allow_no_sudo`: Legion writes into a sandbox, so a plain user is enough. `expected`:
/// the host key the host must present before anything is authenticated.
pub fn bootstrap(
    target: &Target,
    password: Option<&Secret>,
    key: &ManagedKey,
    allow_no_sudo: bool,
    expected: Option<&ssh::HostKeyFingerprint>,
) -> Result<(ssh::HostKeyFingerprint, SudoStatus, bool, Option<String>), ImportError> {
    let auth = match password {
        Some(p) => Auth::Password(p),
        None => Auth::Key(key),
    };
    // `connect` compares a pinned key right after the key exchange, before `auth`.
    let (mut first, seen) = ssh::connect(target, auth, expected).map_err(|e| match e {
        SshError::HostKeyChanged { old, new, .. } => ImportError::HostKeyMismatch {
            target: target.to_string(),
            expected: old,
            seen: new,
        },
        e => ImportError::Ssh(e),
    })?;
    let sudo = first.sudo_check()?;
    let mut note = None;
    if let Some(refusal) = sudo.refusal(target) {
        if !allow_no_sudo {
            return Err(ImportError::NoSudo(refusal.to_string()));
        }
        note = Some(format!(
            "{refusal} (not needed here: Legion writes into a sandbox)"
        ));
    }
    let added = match password {
        Some(_) => first.install_public_key(key.public_openssh())? == KeyInstall::Added,
        None => false,
    };
    drop(first);
    // Key-only, and the host must present the key just seen.
    let (mut again, _) =
        ssh::connect(target, Auth::Key(key), Some(&seen)).map_err(|e| match e {
            SshError::AuthFailed { .. } => ImportError::KeyLoginRefused {
                target: target.to_string(),
                source: e,
            },
            e => ImportError::Ssh(e),
        })?;
    again.exec_checked("true", Duration::from_secs(30))?;
    Ok((seen, sudo, added, note))
}

/// The tracked side of an imported host: its server is the host itself.
pub fn tracked(plan: &NodePlan, target: &Target, host_key: &str, sudo: SudoStatus) -> TrackedNode {
    let v6 = target.host.contains(':');
    TrackedNode {
        uid: plan.uid.clone(),
        provider: plan.provider.clone(),
        server_id: Some(manual::server_id(target)),
        ipv4: (!v6).then(|| target.host.clone()),
        ipv6: v6.then(|| target.host.clone()),
        region: plan.region.clone(),
        offer: plan.offer.clone(),
        image: plan.image.clone(),
        host_key: Some(host_key.to_string()),
        configured_membership: None,
        configured_peers: None,
        login: Some(Login {
            user: target.user.clone(),
            port: target.port,
            sudo: sudo == SudoStatus::Passwordless,
        }),
        image_user: None,
        execution: None,
    }
}

/// Checks before any connection is made.
pub fn validate(req: &ImportRequest) -> Result<(), EngineError> {
    let bad = |m: String| Err(EngineError::Invalid(m));
    let host = req.host.trim();
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@' || c == '/') {
        return bad(format!("{:?} is not a host name or address", req.host));
    }
    if req.port == 0 {
        return bad("the SSH port must be 1 to 65535".into());
    }
    if req.user.is_empty() || req.user.contains(|c: char| c.is_whitespace() || c == '@') {
        return bad(format!("{:?} is not a user name", req.user));
    }
    expected_host_key(req)?;
    Ok(())
}

/// The expected host key of a request, parsed; an empty value means none.
pub fn expected_host_key(
    req: &ImportRequest,
) -> Result<Option<ssh::HostKeyFingerprint>, EngineError> {
    let Some(text) = req
        .host_key
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return Ok(None);
    };
    ssh::HostKeyFingerprint::parse(text).map(Some).map_err(|_| {
        EngineError::Invalid(format!(
            "{text:?} is not a host key fingerprint: give SHA256: and 43 base64 characters, \
             as `ssh-keygen -lf` prints them"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_requests_are_refused_before_connecting() {
        let req = |host: &str, port: u16, user: &str| ImportRequest {
            name: "n".into(),
            host: host.into(),
            port,
            user: user.into(),
            password: None,
            cluster: None,
            role: None,
            host_key: None,
        };
        assert!(validate(&req("h.example", 22, "root")).is_ok());
        let mut pinned = req("h", 22, "root");
        pinned.host_key = Some("SHA256:nope".into());
        assert!(validate(&pinned).is_err());
        pinned.host_key = Some(format!("SHA256:{}", "A".repeat(43)));
        assert!(validate(&pinned).is_ok());
        assert!(validate(&req("", 22, "root")).is_err());
        assert!(validate(&req("a b", 22, "root")).is_err());
        assert!(validate(&req("root@h", 22, "root")).is_err());
        assert!(validate(&req("h", 0, "root")).is_err());
        assert!(validate(&req("h", 22, "")).is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        let r = ImportRequest {
            name: "n".into(),
            host: "h".into(),
            port: 22,
            user: "root".into(),
            password: Some(Secret::new("hunter2-secret")),
            cluster: None,
            role: None,
            host_key: None,
        };
        assert!(!format!("{r:?}").contains("hunter2"));
    }
}
