//! The state file format (version 1), key derivation and encryption.
//!
//! This module owns the bytes: it turns a password and a plaintext into the complete
//! contents of a state file ([`seal`]) and back ([`unseal`]), and checks a file's
//! integrity without a password ([`check_integrity`]). It never touches the file system,
//! never logs, and never puts password or key bytes into an error; the on-disk store
//! (atomic replace, backup, lock) lives in `store`.
//!
//! Layout, all integers little-endian:
//!
//! | offset | size | field                                              |
//! |-------:|-----:|----------------------------------------------------|
//! |      0 |    8 | magic `LEGIONST`                                   |
//! |      8 |    2 | format version (1)                                 |
//! |     10 |    1 | kdf id (1 = Argon2id v0x13)                        |
//! |     11 |    1 | flags (0)                                          |
//! |     12 |    4 | Argon2 memory cost, KiB                            |
//! |     16 |    4 | Argon2 time cost (passes)                          |
//! |     20 |    4 | Argon2 parallelism (lanes)                         |
//! |     24 |   16 | salt (fresh at create and at password change)      |
//! |     40 |   12 | AES-GCM nonce (fresh on every save)                |
//! |     52 |   32 | key check                                          |
//! |     84 |    8 | generation (incremented on every save)             |
//! |     92 |    n | AES-256-GCM ciphertext, whole header as AAD        |
//! |   92+n |   16 | GCM tag                                            |
//! |  108+n |   32 | SHA-256 of every preceding byte                    |
//!
//! The trailing digest is a format invariant for every future version: the last 32 bytes
//! are the SHA-256 of the rest. It is not a MAC (anyone can recompute it); it exists so
//! that a damaged or truncated file is reported as damaged before paying for key
//! derivation, and so that damage is never misreported as a wrong password.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce, Tag};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// First eight bytes of every Legion state file.
pub const MAGIC: [u8; 8] = *b"LEGIONST";
/// The format version this build writes, and the newest it can read.
pub const FORMAT_VERSION: u16 = 1;
/// Header `kdf id` for Argon2id, version 0x13.
pub const KDF_ARGON2ID_V13: u8 = 1;

/// Length of the salt stored in the header.
pub const SALT_LEN: usize = 16;
/// Length of the AES-GCM nonce stored in the header.
pub const NONCE_LEN: usize = 12;
/// Length of the key check stored in the header.
pub const KEY_CHECK_LEN: usize = 32;
/// Length of the fixed header that precedes the ciphertext.
pub const HEADER_LEN: usize = 92;
/// Length of the AES-GCM authentication tag.
pub const TAG_LEN: usize = 16;
/// Length of the trailing SHA-256 digest.
pub const DIGEST_LEN: usize = 32;
/// The smallest well-formed file: header, empty ciphertext, tag and digest.
pub const MIN_FILE_LEN: usize = HEADER_LEN + TAG_LEN + DIGEST_LEN;
/// Largest plaintext Legion will write. The state holds plans, credentials and keys
/// (kilobytes); the cap exists so that a crafted or runaway file cannot make `open`
/// read gigabytes into memory.
pub const MAX_PLAINTEXT_LEN: usize = 64 * 1024 * 1024;
/// Largest file `open` will read (see [`MAX_PLAINTEXT_LEN`]).
pub const MAX_FILE_LEN: usize = MIN_FILE_LEN + MAX_PLAINTEXT_LEN;

const OFF_VERSION: usize = 8;
const OFF_KDF: usize = 10;
const OFF_FLAGS: usize = 11;
const OFF_M: usize = 12;
const OFF_T: usize = 16;
const OFF_P: usize = 20;
const OFF_SALT: usize = 24;
const OFF_NONCE: usize = OFF_SALT + SALT_LEN;
const OFF_KEY_CHECK: usize = OFF_NONCE + NONCE_LEN;
const OFF_GENERATION: usize = OFF_KEY_CHECK + KEY_CHECK_LEN;
const _: () = assert!(OFF_GENERATION + 8 == HEADER_LEN);

/// Domain separation for the key check, so the verifier half of the derived key is never
/// used raw.
const KEY_CHECK_DOMAIN: &[u8] = b"legion-key-check";

/// Argon2id cost parameters, as stored in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub m_cost_kib: u32,
    /// Time cost (number of passes over memory).
    pub t_cost: u32,
    /// Parallelism (lanes).
    pub p_cost: u32,
}

impl KdfParams {
    /// RFC 9106's second recommended option: Argon2id, 64 MiB, 3 passes, 4 lanes.
    ///
    /// One unlock measured 170–250 ms in a release build on the 2-core development box
    /// (the `argon2` crate runs the lanes one after another without its `parallel`
    /// feature, so this does not depend on the core count). Unlocking happens once per
    /// session, so the strongest of the standard settings stays comfortable; the OWASP
    /// fallbacks (46 MiB t=1 p=1, 19 MiB t=2 p=1) were not needed.
    pub const DEFAULT: KdfParams = KdfParams {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 4,
    };

    /// OWASP's minimum for Argon2id (19 MiB, 2 passes, 1 lane): about a fifth of the work
    /// of [`KdfParams::DEFAULT`], for jump hosts short of memory or CPU, and for test
    /// suites that unlock hundreds of fresh homes. Chosen with `LEGION_KDF=light`.
    pub const LIGHT: KdfParams = KdfParams {
        m_cost_kib: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };

    /// The settings an operator may choose by name (`LEGION_KDF`): nothing weaker than
    /// OWASP's minimum can be chosen this way.
    pub fn named(name: &str) -> Option<KdfParams> {
        match name {
            "strong" => Some(Self::DEFAULT),
            "light" => Some(Self::LIGHT),
            _ => None,
        }
    }

    /// Caps applied to parameters read from a file (and to parameters a caller asks for).
    ///
    /// Parameters come from the file *before* the password is checked, so a crafted file
    /// could otherwise make `open` allocate 4 GiB or spin for hours on a shared jump host.
    /// 256 MiB is four times the default, leaving room for operators who want a stronger
    /// setting, while staying well inside the memory of a small VM; 16 passes at that size
    /// is already several seconds; 16 lanes is more than any jump host has cores, and more
    /// lanes only add work here because they are computed sequentially.
    pub const MAX: KdfParams = KdfParams {
        m_cost_kib: 256 * 1024,
        t_cost: 16,
        p_cost: 16,
    };

    /// Checks these parameters against Argon2's minimums and [`KdfParams::MAX`].
    pub fn check(&self) -> Result<(), KdfRejection> {
        let max = Self::MAX;
        if self.p_cost < Params::MIN_P_COST {
            return Err(KdfRejection::TooLow {
                what: "parallelism",
                value: self.p_cost,
                min: Params::MIN_P_COST,
                unit: " lanes",
            });
        }
        if self.p_cost > max.p_cost {
            return Err(KdfRejection::TooHigh {
                what: "parallelism",
                value: self.p_cost,
                max: max.p_cost,
                unit: " lanes",
            });
        }
        if self.t_cost < Params::MIN_T_COST {
            return Err(KdfRejection::TooLow {
                what: "time cost",
                value: self.t_cost,
                min: Params::MIN_T_COST,
                unit: " passes",
            });
        }
        if self.t_cost > max.t_cost {
            return Err(KdfRejection::TooHigh {
                what: "time cost",
                value: self.t_cost,
                max: max.t_cost,
                unit: " passes",
            });
        }
        // Argon2 needs at least 8 KiB (8 blocks) per lane; p <= 16 keeps this from overflowing.
        let min_m = Params::MIN_M_COST.max(8 * self.p_cost);
        if self.m_cost_kib < min_m {
            return Err(KdfRejection::TooLow {
                what: "memory cost",
                value: self.m_cost_kib,
                min: min_m,
                unit: " KiB",
            });
        }
        if self.m_cost_kib > max.m_cost_kib {
            return Err(KdfRejection::TooHigh {
                what: "memory cost",
                value: self.m_cost_kib,
                max: max.m_cost_kib,
                unit: " KiB",
            });
        }
        Ok(())
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a set of key-derivation parameters was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KdfRejection {
    /// The header names a key-derivation function this build does not know.
    UnknownKdf {
        /// The id found in the header.
        id: u8,
    },
    /// A parameter is above [`KdfParams::MAX`].
    TooHigh {
        /// Which parameter.
        what: &'static str,
        /// The value asked for.
        value: u32,
        /// The cap.
        max: u32,
        /// Unit suffix for messages.
        unit: &'static str,
    },
    /// A parameter is below what Argon2 accepts.
    TooLow {
        /// Which parameter.
        what: &'static str,
        /// The value asked for.
        value: u32,
        /// The minimum.
        min: u32,
        /// Unit suffix for messages.
        unit: &'static str,
    },
}

impl fmt::Display for KdfRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KdfRejection::UnknownKdf { id } => write!(
                f,
                "key-derivation function id {id} is unknown (this Legion knows only \
                 {KDF_ARGON2ID_V13} = Argon2id)"
            ),
            KdfRejection::TooHigh {
                what,
                value,
                max,
                unit,
            } => write!(f, "{what} {value}{unit} is above the cap of {max}{unit}"),
            KdfRejection::TooLow {
                what,
                value,
                min,
                unit,
            } => write!(
                f,
                "{what} {value}{unit} is below Argon2's minimum of {min}{unit}"
            ),
        }
    }
}

/// What is wrong with a file's bytes, or why sealing failed. Carries no path and no
/// secret; `store` adds the path.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Shorter than the smallest valid file.
    #[error(
        "the file is {len} bytes, shorter than the smallest valid state file \
         ({MIN_FILE_LEN} bytes): it was truncated"
    )]
    Truncated {
        /// Length found.
        len: usize,
    },
    /// Longer than any file Legion writes.
    #[error(
        "the file is {len} bytes, larger than any state file Legion writes \
         ({MAX_FILE_LEN} bytes)"
    )]
    TooLong {
        /// Length found.
        len: u64,
    },
    /// The magic bytes are wrong.
    #[error("it does not start with the Legion state marker: not a Legion state file")]
    BadMagic,
    /// The trailing SHA-256 does not match.
    #[error("the file is corrupted or was modified (checksum mismatch)")]
    ChecksumMismatch,
    /// Version 0 (never written by any Legion).
    #[error("format version {found} does not exist")]
    InvalidVersion {
        /// Version found.
        found: u16,
    },
    /// Written by a newer Legion.
    #[error("format version {found} is newer than the newest this Legion reads ({supported})")]
    NewerVersion {
        /// Version found.
        found: u16,
        /// Newest version this build reads.
        supported: u16,
    },
    /// Header flags this build does not know.
    #[error("header flags {flags:#04x} are not known to this Legion (written by a newer one?)")]
    UnknownFlags {
        /// Flags found.
        flags: u8,
    },
    /// Key-derivation parameters refused.
    #[error("{0}")]
    KdfRejected(KdfRejection),
    /// The derived key does not match the key check.
    #[error("wrong password")]
    WrongPassword,
    /// AES-GCM rejected the ciphertext.
    #[error("authentication failed: the file was modified")]
    AuthenticationFailed,
    /// Plaintext larger than [`MAX_PLAINTEXT_LEN`].
    #[error("the state is {len} bytes, more than the {MAX_PLAINTEXT_LEN} bytes Legion stores")]
    PlaintextTooLarge {
        /// Plaintext length.
        len: usize,
    },
    /// The system random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Randomness(getrandom::Error),
    /// Argon2 itself failed (out of memory; the parameters were already checked).
    #[error("key derivation failed: {0}")]
    Kdf(argon2::Error),
    /// The journal beside the state file does not start with the journal marker.
    #[error("the state journal does not start with the Legion journal marker")]
    JournalBadMagic,
    /// A journal shorter than its header (Legion writes the header in one piece).
    #[error("the state journal is {len} bytes, shorter than its header: it was truncated")]
    JournalTruncatedHeader {
        /// Length found.
        len: usize,
    },
    /// A journal version this build does not know.
    #[error("the state journal uses format version {found}, which this Legion does not know")]
    JournalVersion {
        /// Version found.
        found: u16,
    },
    /// A journal header or complete record failed authentication.
    #[error(
        "{}: the journal was modified (authentication failed); a crash only ever cuts its end",
        match record { Some(n) => format!("state journal record {n}"), None => "state journal header".to_owned() }
    )]
    JournalTampered {
        /// Which record (from 0); `None` for the header.
        record: Option<u64>,
    },
}

/// A decoded header. Decoding does not validate; [`check_integrity`] does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Format version.
    pub version: u16,
    /// Key-derivation function id.
    pub kdf_id: u8,
    /// Flags (0 in version 1).
    pub flags: u8,
    /// Argon2 parameters.
    pub params: KdfParams,
    /// Argon2 salt.
    pub salt: [u8; SALT_LEN],
    /// AES-GCM nonce of this generation.
    pub nonce: [u8; NONCE_LEN],
    /// `SHA-256("legion-key-check" || verifier key)`.
    pub key_check: [u8; KEY_CHECK_LEN],
    /// Save counter.
    pub generation: u64,
}

impl Header {
    /// Encodes the header, magic included.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..OFF_VERSION].copy_from_slice(&MAGIC);
        out[OFF_VERSION..OFF_KDF].copy_from_slice(&self.version.to_le_bytes());
        out[OFF_KDF] = self.kdf_id;
        out[OFF_FLAGS] = self.flags;
        out[OFF_M..OFF_T].copy_from_slice(&self.params.m_cost_kib.to_le_bytes());
        out[OFF_T..OFF_P].copy_from_slice(&self.params.t_cost.to_le_bytes());
        out[OFF_P..OFF_SALT].copy_from_slice(&self.params.p_cost.to_le_bytes());
        out[OFF_SALT..OFF_NONCE].copy_from_slice(&self.salt);
        out[OFF_NONCE..OFF_KEY_CHECK].copy_from_slice(&self.nonce);
        out[OFF_KEY_CHECK..OFF_GENERATION].copy_from_slice(&self.key_check);
        out[OFF_GENERATION..].copy_from_slice(&self.generation.to_le_bytes());
        out
    }

    /// Decodes the fields after the magic (the caller checks the magic).
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Header {
        Header {
            version: u16::from_le_bytes(array(bytes, OFF_VERSION)),
            kdf_id: bytes[OFF_KDF],
            flags: bytes[OFF_FLAGS],
            params: KdfParams {
                m_cost_kib: u32::from_le_bytes(array(bytes, OFF_M)),
                t_cost: u32::from_le_bytes(array(bytes, OFF_T)),
                p_cost: u32::from_le_bytes(array(bytes, OFF_P)),
            },
            salt: array(bytes, OFF_SALT),
            nonce: array(bytes, OFF_NONCE),
            key_check: array(bytes, OFF_KEY_CHECK),
            generation: u64::from_le_bytes(array(bytes, OFF_GENERATION)),
        }
    }
}

/// Copies `N` bytes at `at`. Every caller passes constant offsets into a buffer whose
/// length was checked first (the const assertion keeps header fields inside the header).
fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

/// Key material derived from a password for one state file.
///
/// Holds the AES key (zeroized on drop) and the file's salt, parameters and key check, so
/// a save can rewrite the header without the password. Also tracks the generation last
/// read or written with this key, so the store can refuse to overwrite a file that changed
/// underneath it.
pub struct StateKey {
    aes_key: Zeroizing<[u8; 32]>,
    params: KdfParams,
    salt: [u8; SALT_LEN],
    key_check: [u8; KEY_CHECK_LEN],
    generation: AtomicU64,
}

impl fmt::Debug for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateKey(<redacted>)")
    }
}

impl StateKey {
    /// Derives a key for a new file (or a password change): fresh random salt, generation 0.
    pub fn derive_new(password: &[u8], params: KdfParams) -> Result<StateKey, FormatError> {
        params.check().map_err(FormatError::KdfRejected)?;
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(FormatError::Randomness)?;
        Self::derive(password, params, salt, 0)
    }

    fn derive(
        password: &[u8],
        params: KdfParams,
        salt: [u8; SALT_LEN],
        generation: u64,
    ) -> Result<StateKey, FormatError> {
        let argon_params = Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(64))
            .map_err(FormatError::Kdf)?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);
        let mut okm = Zeroizing::new([0u8; 64]);
        argon
            .hash_password_into(password, &salt, okm.as_mut_slice())
            .map_err(FormatError::Kdf)?;
        let mut aes_key = Zeroizing::new([0u8; 32]);
        aes_key.copy_from_slice(&okm[..32]);
        let key_check = key_check(&okm[32..]);
        Ok(StateKey {
            aes_key,
            params,
            salt,
            key_check,
            generation: AtomicU64::new(generation),
        })
    }

    /// The generation last read or written with this key (0 before the first write).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Records that `generation` is now on disk under this key.
    pub(crate) fn set_generation(&self, generation: u64) {
        self.generation.store(generation, Ordering::SeqCst);
    }

    /// The Argon2 parameters this key was derived with.
    pub fn params(&self) -> KdfParams {
        self.params
    }

    /// The salt this key was derived with (the journal names its state file by it).
    pub(crate) fn salt(&self) -> [u8; SALT_LEN] {
        self.salt
    }

    /// Whether `header` belongs to a file written with this key (same salt and key check).
    pub fn matches(&self, header: &Header) -> bool {
        header.salt == self.salt && header.key_check == self.key_check
    }

    fn cipher(&self) -> Aes256Gcm {
        // Borrow the key as an `Array` instead of copying it into one: the copy would not
        // be zeroized.
        let key: &Key<Aes256Gcm> = (&*self.aes_key).into();
        Aes256Gcm::new(key)
    }
}

fn key_check(verifier: &[u8]) -> [u8; KEY_CHECK_LEN] {
    let mut h = Sha256::new();
    h.update(KEY_CHECK_DOMAIN);
    h.update(verifier);
    h.finalize().into()
}

/// Compares without an early exit. The key check is not secret (the ciphertext already
/// lets anyone test a guess), but there is no reason to leak timing either.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Produces the complete bytes of a state file holding `plaintext` as `generation`,
/// with a fresh random nonce.
pub fn seal(key: &StateKey, generation: u64, plaintext: &[u8]) -> Result<Vec<u8>, FormatError> {
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(FormatError::PlaintextTooLarge {
            len: plaintext.len(),
        });
    }
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(FormatError::Randomness)?;
    let header = Header {
        version: FORMAT_VERSION,
        kdf_id: KDF_ARGON2ID_V13,
        flags: 0,
        params: key.params,
        salt: key.salt,
        nonce,
        key_check: key.key_check,
        generation,
    };

    // Encrypt in place inside the output buffer so no second plaintext copy is left in
    // freed memory.
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN + DIGEST_LEN);
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(plaintext);
    let (head, body) = out.split_at_mut(HEADER_LEN);
    let tag = key
        .cipher()
        .encrypt_inout_detached(&Nonce::from(nonce), head, body.into())
        .map_err(|_| FormatError::PlaintextTooLarge {
            len: plaintext.len(),
        })?;
    out.extend_from_slice(tag.as_slice());
    let digest: [u8; DIGEST_LEN] = Sha256::digest(&out).into();
    out.extend_from_slice(&digest);
    Ok(out)
}

/// Seals `plaintext` in place for the journal (a record, or with an empty plaintext a
/// header's tag) with a fresh random nonce and `aad`; returns the nonce and the tag.
pub(crate) fn journal_seal(
    key: &StateKey,
    aad: &[u8],
    plaintext: &mut [u8],
) -> Result<([u8; NONCE_LEN], [u8; TAG_LEN]), FormatError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(FormatError::Randomness)?;
    let len = plaintext.len();
    let tag = key
        .cipher()
        .encrypt_inout_detached(&Nonce::from(nonce), aad, plaintext.into())
        .map_err(|_| FormatError::PlaintextTooLarge { len })?;
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(tag.as_slice());
    Ok((nonce, out))
}

/// Opens in place what [`journal_seal`] sealed; `AuthenticationFailed` when anything
/// (bytes, nonce, tag or `aad`) differs.
pub(crate) fn journal_open(
    key: &StateKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &mut [u8],
    tag: &[u8],
) -> Result<(), FormatError> {
    if tag.len() != TAG_LEN {
        return Err(FormatError::AuthenticationFailed);
    }
    let tag = Tag::from(array::<TAG_LEN>(tag, 0));
    key.cipher()
        .decrypt_inout_detached(&Nonce::from(*nonce), aad, ciphertext.into(), &tag)
        .map_err(|_| FormatError::AuthenticationFailed)
}

/// Checks everything that can be checked without the password, in order: length and
/// magic, trailing digest, version and flags, key-derivation id and parameter caps.
/// Returns the decoded header.
pub fn check_integrity(bytes: &[u8]) -> Result<Header, FormatError> {
    if bytes.len() > MAX_FILE_LEN {
        return Err(FormatError::TooLong {
            len: bytes.len() as u64,
        });
    }
    if bytes.len() >= MAGIC.len() && bytes[..MAGIC.len()] != MAGIC {
        return Err(FormatError::BadMagic);
    }
    if bytes.len() < MIN_FILE_LEN {
        return Err(FormatError::Truncated { len: bytes.len() });
    }
    let (body, digest) = bytes.split_at(bytes.len() - DIGEST_LEN);
    if Sha256::digest(body).as_slice() != digest {
        return Err(FormatError::ChecksumMismatch);
    }
    let mut raw = [0u8; HEADER_LEN];
    raw.copy_from_slice(&bytes[..HEADER_LEN]);
    let header = Header::decode(&raw);
    if header.version == 0 {
        return Err(FormatError::InvalidVersion { found: 0 });
    }
    if header.version > FORMAT_VERSION {
        return Err(FormatError::NewerVersion {
            found: header.version,
            supported: FORMAT_VERSION,
        });
    }
    if header.flags != 0 {
        return Err(FormatError::UnknownFlags {
            flags: header.flags,
        });
    }
    if header.kdf_id != KDF_ARGON2ID_V13 {
        return Err(FormatError::KdfRejected(KdfRejection::UnknownKdf {
            id: header.kdf_id,
        }));
    }
    header.params.check().map_err(FormatError::KdfRejected)?;
    Ok(header)
}

/// Opens the bytes of a state file with `password`: [`check_integrity`], then key
/// derivation and the key check, then AES-GCM. The returned key remembers the file's
/// generation.
pub fn unseal(
    bytes: &[u8],
    password: &[u8],
) -> Result<(StateKey, Zeroizing<Vec<u8>>), FormatError> {
    let header = check_integrity(bytes)?;
    let key = StateKey::derive(password, header.params, header.salt, header.generation)?;
    if !ct_eq(&key.key_check, &header.key_check) {
        return Err(FormatError::WrongPassword);
    }
    let ct_end = bytes.len() - DIGEST_LEN - TAG_LEN;
    let tag = Tag::from(array::<TAG_LEN>(bytes, ct_end));
    let mut plaintext = Zeroizing::new(bytes[HEADER_LEN..ct_end].to_vec());
    key.cipher()
        .decrypt_inout_detached(
            &Nonce::from(header.nonce),
            &bytes[..HEADER_LEN],
            plaintext.as_mut_slice().into(),
            &tag,
        )
        .map_err(|_| FormatError::AuthenticationFailed)?;
    Ok((key, plaintext))
}
