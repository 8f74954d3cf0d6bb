//! Errors of the SSH layer, written for the operator: what failed, against which host, and
//! what to do about it. No variant carries a password or a private key.

use std::fmt;
use std::io;
use std::time::Duration;

use super::keys::{HostKeyFingerprint, KeyError};

/// How Legion tried to log in; named in [`SshError::AuthFailed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    PublicKey,
    Password,
    KeyboardInteractive,
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMethod::PublicKey => "public key",
            AuthMethod::Password => "password",
            AuthMethod::KeyboardInteractive => "keyboard-interactive password",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    #[error("{target}: connection refused (is sshd running and listening on that port?)")]
    Refused { target: String },

    #[error("{target}: timed out after {} while {during}", secs(*.after))]
    Timeout {
        target: String,
        during: String,
        after: Duration,
    },

    #[error("{target}: unreachable ({reason}); check the address and the network route")]
    Unreachable { target: String, reason: String },

    #[error("{target}: {method} authentication failed: {detail}")]
    AuthFailed {
        target: String,
        method: AuthMethod,
        detail: String,
    },

    #[error(
        "host key for {host} changed: was {old}, now {new}; if the server was reinstalled, \
         re-trust it explicitly"
    )]
    HostKeyChanged {
        host: String,
        old: HostKeyFingerprint,
        new: HostKeyFingerprint,
    },

    #[error("{target}: SSH protocol error while {during}: {detail}")]
    Protocol {
        target: String,
        during: String,
        detail: String,
    },

    #[error("{target}: connection lost while {during}: {detail}")]
    Disconnected {
        target: String,
        during: String,
        detail: String,
    },

    #[error("{target}: {command} failed with exit status {status}{}", tail_suffix(.output_tail))]
    CommandFailed {
        target: String,
        command: String,
        status: i32,
        output_tail: String,
    },

    /// The login can act as root neither directly nor through passwordless sudo.
    #[error(
        "{target}: {why}. Legion needs root or passwordless sudo: log in as root, or add \
         `{user} ALL=(ALL) NOPASSWD:ALL` to /etc/sudoers.d/legion on the host"
    )]
    NeedsRoot {
        target: String,
        user: String,
        why: &'static str,
    },

    /// The node's endpoint (a [`super::NodeEndpoints`] map) could not be had.
    #[error("{detail}")]
    Endpoint { node: String, detail: String },

    /// The managed key, a public key line or a fingerprint (its message starts `SSH key:`).
    #[error(transparent)]
    Key(#[from] KeyError),

    /// The request itself cannot be carried out (a malformed path, for instance).
    #[error("{0}")]
    Invalid(String),
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn tail_suffix(tail: &str) -> String {
    let tail = tail.trim_end();
    if tail.is_empty() {
        String::new()
    } else {
        format!("; output ends with:\n{tail}")
    }
}

// libssh2's error numbers (LIBSSH2_ERROR_*); the ssh2 crate does not re-export them.
pub(crate) const LIBSSH2_ERROR_BANNER_RECV: i32 = -2;
pub(crate) const LIBSSH2_ERROR_SOCKET_SEND: i32 = -7;
pub(crate) const LIBSSH2_ERROR_TIMEOUT: i32 = -9;
pub(crate) const LIBSSH2_ERROR_SOCKET_DISCONNECT: i32 = -13;
pub(crate) const LIBSSH2_ERROR_AUTHENTICATION_FAILED: i32 = -18;
pub(crate) const LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED: i32 = -19;
pub(crate) const LIBSSH2_ERROR_EAGAIN: i32 = -37;
pub(crate) const LIBSSH2_ERROR_SOCKET_RECV: i32 = -43;

/// What an operation was doing, to turn a low-level failure into an [`SshError`].
pub(crate) struct Doing<'a> {
    pub target: &'a str,
    pub during: &'a str,
    pub timeout: Duration,
}

impl Doing<'_> {
    pub fn ssh2(&self, err: &ssh2::Error) -> SshError {
        match err.code() {
            ssh2::ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT) => self.timeout(),
            ssh2::ErrorCode::Session(
                LIBSSH2_ERROR_SOCKET_DISCONNECT
                | LIBSSH2_ERROR_SOCKET_RECV
                | LIBSSH2_ERROR_SOCKET_SEND
                | LIBSSH2_ERROR_BANNER_RECV,
            ) => SshError::Disconnected {
                target: self.target.to_string(),
                during: self.during.to_string(),
                detail: err.message().to_string(),
            },
            _ => SshError::Protocol {
                target: self.target.to_string(),
                during: self.during.to_string(),
                detail: err.message().to_string(),
            },
        }
    }

    pub fn io(&self, err: &io::Error) -> SshError {
        if let Some(inner) = err.get_ref().and_then(|e| e.downcast_ref::<ssh2::Error>()) {
            return self.ssh2(inner);
        }
        match err.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => self.timeout(),
            _ => SshError::Disconnected {
                target: self.target.to_string(),
                during: self.during.to_string(),
                detail: err.to_string(),
            },
        }
    }

    pub fn timeout(&self) -> SshError {
        SshError::Timeout {
            target: self.target.to_string(),
            during: self.during.to_string(),
            after: self.timeout,
        }
    }
}

pub(crate) fn is_code(err: &ssh2::Error, code: i32) -> bool {
    err.code() == ssh2::ErrorCode::Session(code)
}

/// Why a shell pane or a log tail could not start or stopped with an error (its normal
/// end, the remote side closing, is a reason string, not an error).
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Login(#[from] SshError),
    #[error("{what} on {target}: {source}")]
    Channel {
        what: &'static str,
        target: String,
        source: ssh2::Error,
    },
    #[error("no log command for this node")]
    NoLogCommand,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_host_and_remedy() {
        let old = HostKeyFingerprint::from_key_blob(b"old");
        let new = HostKeyFingerprint::from_key_blob(b"new");
        let msg = SshError::HostKeyChanged {
            host: "web-1.example:2222".into(),
            old: old.clone(),
            new: new.clone(),
        }
        .to_string();
        assert!(msg.starts_with("host key for web-1.example:2222 changed: was SHA256:"));
        assert!(msg.contains(old.as_str()) && msg.contains(new.as_str()));
        assert!(msg.contains("re-trust it explicitly"));

        let msg = SshError::Timeout {
            target: "root@h:22".into(),
            during: "running `sleep 9`".into(),
            after: Duration::from_millis(1500),
        }
        .to_string();
        assert_eq!(
            msg,
            "root@h:22: timed out after 1.5s while running `sleep 9`"
        );

        let msg = SshError::CommandFailed {
            target: "root@h".into(),
            command: "`false`".into(),
            status: 1,
            output_tail: "boom\n".into(),
        }
        .to_string();
        assert_eq!(
            msg,
            "root@h: `false` failed with exit status 1; output ends with:\nboom"
        );
    }

    #[test]
    fn socket_errors_are_disconnects_and_timeouts_are_timeouts() {
        let doing = Doing {
            target: "t",
            during: "x",
            timeout: Duration::from_secs(1),
        };
        let e = ssh2::Error::new(
            ssh2::ErrorCode::Session(LIBSSH2_ERROR_SOCKET_DISCONNECT),
            "gone",
        );
        assert!(matches!(doing.ssh2(&e), SshError::Disconnected { .. }));
        let e = ssh2::Error::new(ssh2::ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT), "slow");
        assert!(matches!(
            doing.io(&io::Error::from(e)),
            SshError::Timeout { .. }
        ));
        let e = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(matches!(doing.io(&e), SshError::Disconnected { .. }));
    }
}
