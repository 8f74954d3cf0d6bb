//! Legion's managed client key and host key fingerprints.
//!
//! The managed key is an ed25519 key pair whose private half is only ever held as a
//! [`Secret`] (OpenSSH PEM). It serializes with the private key because it lives inside
//! Legion's encrypted state; `Debug` shows the fingerprint and public key only.
//!
//! This file sits below the rest of the SSH layer: its failures are [`KeyError`], which
//! [`super::KeyError`] wraps, so nothing here imports the connection errors.

use std::fmt;
use std::str::FromStr;

use base64ct::{Base64Unpadded, Encoding};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey};
use zeroize::Zeroizing;

use crate::core::secret::Secret;

/// Why a key or a fingerprint could not be made, read or written. No variant carries
/// key material: a private key that fails to parse is never echoed back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("SSH key: the operating system gave no randomness for a new key: {0}")]
    NoRandomness(String),
    #[error("SSH key: cannot build the new key: {0}")]
    Build(String),
    #[error("SSH key: not an OpenSSH private key: {0}")]
    NotPrivateKey(String),
    #[error(
        "SSH key: the private key is passphrase-protected; Legion's managed key is protected \
         by the state file instead"
    )]
    Encrypted,
    #[error("SSH key: Legion manages ed25519 keys, this one is {0}")]
    NotEd25519(String),
    #[error("SSH key: cannot encode the {which} key: {detail}")]
    Encode { which: &'static str, detail: String },
    #[error("SSH key: a public key must be a single line")]
    MultiLine,
    #[error("SSH key: not an OpenSSH public key line: {0}")]
    NotPublicKey(String),
    #[error(
        "SSH key: not a SHA256 host key fingerprint: {0:?} (expected SHA256:<base64>, as \
         printed by ssh-keygen -lf)"
    )]
    NotFingerprint(String),
}

/// The comment written into keys Legion generates.
pub const MANAGED_KEY_COMMENT: &str = "legion";

/// An ed25519 key pair Legion generated and installs on the servers it manages.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredKey", into = "StoredKey")]
pub struct ManagedKey {
    private_openssh: Secret,
    public_openssh: String,
    fingerprint: String,
}

/// The stored form. The public half is kept for people reading an export; on load it is
/// derived again from the private key, which is the only source of truth.
#[derive(Serialize, Deserialize)]
struct StoredKey {
    private_openssh: Secret,
    public_openssh: String,
}

impl ManagedKey {
    /// A fresh key with the comment `legion`.
    pub fn generate() -> Result<ManagedKey, KeyError> {
        ManagedKey::generate_with_comment(MANAGED_KEY_COMMENT)
    }

    pub fn generate_with_comment(comment: &str) -> Result<ManagedKey, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| KeyError::NoRandomness(e.to_string()))?;
        let pair = Ed25519Keypair::from_seed(&seed);
        let key = PrivateKey::new(KeypairData::Ed25519(pair), comment)
            .map_err(|e| KeyError::Build(e.to_string()))?;
        ManagedKey::from_private(&key)
    }

    /// Load an unencrypted OpenSSH ed25519 private key (`-----BEGIN OPENSSH PRIVATE KEY-----`).
    pub fn from_private_openssh(pem: &Secret) -> Result<ManagedKey, KeyError> {
        let key = PrivateKey::from_openssh(pem.expose())
            .map_err(|e| KeyError::NotPrivateKey(e.to_string()))?;
        if key.is_encrypted() {
            return Err(KeyError::Encrypted);
        }
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(KeyError::NotEd25519(key.algorithm().to_string()));
        }
        ManagedKey::from_private(&key)
    }

    fn from_private(key: &PrivateKey) -> Result<ManagedKey, KeyError> {
        let pem = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| KeyError::Encode {
                which: "private",
                detail: e.to_string(),
            })?;
        let public_openssh = key
            .public_key()
            .to_openssh()
            .map_err(|e| KeyError::Encode {
                which: "public",
                detail: e.to_string(),
            })?;
        Ok(ManagedKey {
            private_openssh: Secret::new(pem.as_str()),
            public_openssh,
            fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        })
    }

    /// `ssh-ed25519 AAAA… legion`: the line for `authorized_keys` and provider key APIs.
    pub fn public_openssh(&self) -> &str {
        &self.public_openssh
    }

    /// The private key in OpenSSH PEM format.
    pub fn private_openssh(&self) -> &Secret {
        &self.private_openssh
    }

    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

impl fmt::Debug for ManagedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedKey")
            .field("fingerprint", &self.fingerprint)
            .field("public", &self.public_openssh)
            .field("private", &"<redacted>")
            .finish()
    }
}

impl TryFrom<StoredKey> for ManagedKey {
    type Error = KeyError;
    fn try_from(stored: StoredKey) -> Result<ManagedKey, KeyError> {
        ManagedKey::from_private_openssh(&stored.private_openssh)
    }
}

impl From<ManagedKey> for StoredKey {
    fn from(key: ManagedKey) -> StoredKey {
        StoredKey {
            private_openssh: key.private_openssh,
            public_openssh: key.public_openssh,
        }
    }
}

/// Parse and normalize one public key line (`type base64 [comment]`), rejecting anything
/// that is not a single well-formed key, so it can be written into `authorized_keys`.
pub(crate) fn parse_public_line(line: &str) -> Result<PublicKey, KeyError> {
    let line = line.trim();
    if line.contains(['\n', '\r', '\0']) {
        return Err(KeyError::MultiLine);
    }
    PublicKey::from_openssh(line).map_err(|e| KeyError::NotPublicKey(e.to_string()))
}

/// The SHA-256 fingerprint of a host's public key, written `SHA256:<base64>` as OpenSSH
/// prints it. This is what Legion pins per node.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostKeyFingerprint(String);

impl HostKeyFingerprint {
    /// From the key blob as sent by the server (the SSH wire encoding of the public key).
    pub fn from_key_blob(blob: &[u8]) -> HostKeyFingerprint {
        let digest = Sha256::digest(blob);
        HostKeyFingerprint(format!(
            "SHA256:{}",
            Base64Unpadded::encode_string(digest.as_slice())
        ))
    }

    /// Accepts what `ssh-keygen -lf` prints for SHA-256 (`SHA256:` and 43 base64 digits).
    pub fn parse(text: &str) -> Result<HostKeyFingerprint, KeyError> {
        let text = text.trim();
        let bad = || KeyError::NotFingerprint(text.to_string());
        let b64 = text.strip_prefix("SHA256:").ok_or_else(bad)?;
        let mut raw = [0u8; 32];
        match Base64Unpadded::decode(b64, &mut raw) {
            Ok(decoded) if decoded.len() == 32 => Ok(HostKeyFingerprint(text.to_string())),
            _ => Err(bad()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostKeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for HostKeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostKeyFingerprint({})", self.0)
    }
}

impl FromStr for HostKeyFingerprint {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        HostKeyFingerprint::parse(s)
    }
}

impl TryFrom<String> for HostKeyFingerprint {
    type Error = KeyError;
    fn try_from(s: String) -> Result<Self, KeyError> {
        HostKeyFingerprint::parse(&s)
    }
}

impl From<HostKeyFingerprint> for String {
    fn from(f: HostKeyFingerprint) -> String {
        f.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_formats() {
        let key = ManagedKey::generate().unwrap();
        assert!(key.public_openssh().starts_with("ssh-ed25519 AAAA"));
        assert!(key.public_openssh().ends_with(" legion"));
        assert!(
            key.private_openssh()
                .expose()
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n")
        );
        assert!(key.fingerprint().starts_with("SHA256:"));
        assert_eq!(key.fingerprint().len(), "SHA256:".len() + 43);
        assert_ne!(key, ManagedKey::generate().unwrap());
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let key = ManagedKey::generate().unwrap();
        let shown = format!("{key:?} {key:#?}");
        assert!(shown.contains(key.fingerprint()));
        assert!(!shown.contains("PRIVATE KEY"));
        let body: String = key
            .private_openssh()
            .expose()
            .lines()
            .nth(1)
            .unwrap()
            .into();
        assert!(!shown.contains(&body));
    }

    #[test]
    fn serde_round_trip_keeps_the_private_key() {
        let key = ManagedKey::generate().unwrap();
        let json = serde_json::to_string(&key).unwrap();
        assert!(json.contains("OPENSSH PRIVATE KEY"));
        let back: ManagedKey = serde_json::from_str(&json).unwrap();
        assert_eq!(back, key);
        assert_eq!(back.fingerprint(), key.fingerprint());
    }

    #[test]
    fn loading_rejects_garbage() {
        let err = serde_json::from_str::<ManagedKey>(
            r#"{"private_openssh":"not a key","public_openssh":"x"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not an OpenSSH private key"));
        // The message never echoes the secret back.
        let err = ManagedKey::from_private_openssh(&Secret::new("hunter2")).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn host_fingerprint_matches_openssh() {
        let line =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIX2Zh3upVJLPIBjBOXfBWKT/sK51KO6cAjEnf0m4dmk x";
        // What `ssh-keygen -lf` prints for it.
        let expected = "SHA256:HVAF9WATxy3L6EESuASevPTXltH7eqGSKm68ne1nHaE";
        let key = PublicKey::from_openssh(line).unwrap();
        let blob = key.to_bytes().unwrap();
        let fp = HostKeyFingerprint::from_key_blob(&blob);
        assert_eq!(fp.to_string(), expected);
        assert_eq!(HostKeyFingerprint::parse(fp.as_str()).unwrap(), fp);
        let json = serde_json::to_string(&fp).unwrap();
        assert_eq!(
            serde_json::from_str::<HostKeyFingerprint>(&json).unwrap(),
            fp
        );
        assert!(HostKeyFingerprint::parse("MD5:aa:bb").is_err());
        assert!(HostKeyFingerprint::parse("SHA256:abc").is_err());
    }

    #[test]
    fn public_lines_are_validated() {
        let key = ManagedKey::generate().unwrap();
        assert!(parse_public_line(key.public_openssh()).is_ok());
        assert!(parse_public_line("ssh-ed25519 AAAA\nssh-rsa AAAA").is_err());
        assert!(parse_public_line("ssh-ed25519 not-base64 x").is_err());
    }
}
