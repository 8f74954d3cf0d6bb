//! The state journal: an append-only file of encrypted, authenticated records beside the
//! state file (`state.legion.journal`), so a small change costs one small append and one
//! `fdatasync` instead of rewriting the whole state.
//!
//! This module owns the journal's bytes and its file; it treats a record's plaintext as
//! opaque (the cell decides what a record says, `change` how it is replayed). It never
//! logs and never puts key bytes into an error.
//!
//! Layout, all integers little-endian. The header (68 bytes):
//!
//! | offset | size | field                                                   |
//! |-------:|-----:|---------------------------------------------------------|
//! |      0 |    8 | magic `LEGIONJR`                                        |
//! |      8 |    2 | journal format version (1)                              |
//! |     10 |    2 | flags (0)                                               |
//! |     12 |    4 | reserved (0)                                            |
//! |     16 |    8 | the state file generation the records apply on top of   |
//! |     24 |   16 | the state file's salt (which key and which home)        |
//! |     40 |   12 | AES-GCM nonce                                           |
//! |     52 |   16 | GCM tag of an empty plaintext, bytes 0..40 as AAD       |
//!
//! then records, each `len` (u32: ciphertext and tag), a fresh 12-byte nonce and the
//! AES-256-GCM ciphertext and tag, sealed with the state's key and, as associated data,
//! the whole header, the record's sequence number (0, 1, ...) and `len`. A record
//! therefore cannot be moved, replayed, dropped from the middle or carried into another
//! journal without failing authentication; only a cut at the end goes unnoticed, which
//! is what a crash during an append looks like.
//!
//! Reading ([`Journal::read`]): no file, or a header for another generation or salt (a
//! crash between a compaction's rename and the journal's removal, a password change, a
//! state file replaced by hand), means nothing to replay (the last with a warning). A header that fails
//! authentication, or a complete record that does, is refused as damage (`Corrupted`,
//! like a tampered state file). An incomplete last record (the file ends inside it) is a
//! torn append: discarded with a warning, and cut off before the next append.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::crypto::{self, FormatError, MAX_PLAINTEXT_LEN, NONCE_LEN, SALT_LEN, StateKey, TAG_LEN};
use super::store::{StateFile, StoreError};

/// Suffix of the journal beside the state file.
pub const JOURNAL_SUFFIX: &str = ".journal";
/// First eight bytes of a journal.
pub const JOURNAL_MAGIC: [u8; 8] = *b"LEGIONJR";
/// The journal format this build writes and reads.
pub const JOURNAL_VERSION: u16 = 1;
/// Bytes of the header covered by its tag (magic to salt).
const BOUND_LEN: usize = 40;
/// The whole header.
pub const JOURNAL_HEADER_LEN: usize = BOUND_LEN + NONCE_LEN + TAG_LEN;
/// A record's fixed part: length and nonce.
const RECORD_PREFIX: usize = 4 + NONCE_LEN;
/// Largest journal `read` loads (a compaction keeps real ones far below this).
const MAX_JOURNAL_LEN: u64 = 256 * 1024 * 1024;
const FILE_MODE: u32 = 0o600;

/// The journal of one state file.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    bound: Option<Bound>,
    /// An append failed part-way: the file may end in garbage, so nothing more is appended
    /// until a compaction removes it.
    broken: bool,
}

#[derive(Debug)]
struct Bound {
    header: [u8; JOURNAL_HEADER_LEN],
    generation: u64,
    next_seq: u64,
    /// Bytes of header and complete records; a torn tail beyond is cut before appending.
    len: u64,
    file: Option<File>,
}

/// What [`Journal::read`] found.
#[derive(Debug)]
pub struct Replay {
    /// Record plaintexts in order.
    pub records: Vec<Zeroizing<Vec<u8>>>,
    /// Why something was not replayed (torn tail, journal of another generation).
    pub warnings: Vec<String>,
    /// The journal, positioned to append after the last good record.
    pub journal: Journal,
}

fn io_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { path, op, source }
}

fn corrupted(path: &Path, detail: FormatError) -> StoreError {
    StoreError::Corrupted {
        path: path.to_path_buf(),
        detail,
    }
}

fn record_aad(header: &[u8; JOURNAL_HEADER_LEN], seq: u64, len: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(JOURNAL_HEADER_LEN + 12);
    aad.extend_from_slice(header);
    aad.extend_from_slice(&seq.to_le_bytes());
    aad.extend_from_slice(&len.to_le_bytes());
    aad
}

impl Journal {
    /// The journal of `state` (`<state path>.journal`), not read yet: nothing to replay,
    /// and the first append starts a new file.
    pub fn beside(state: &StateFile) -> Journal {
        let mut name = state.path().as_os_str().to_owned();
        name.push(JOURNAL_SUFFIX);
        Journal {
            path: PathBuf::from(name),
            bound: None,
            broken: false,
        }
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records appended to the current journal.
    pub fn records(&self) -> u64 {
        self.bound.as_ref().map_or(0, |b| b.next_seq)
    }

    /// Bytes of the current journal (0 when there is none).
    pub fn bytes(&self) -> u64 {
        self.bound.as_ref().map_or(0, |b| b.len)
    }

    /// Whether an append failed part-way (a compaction must replace the journal).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Reads the journal of `state` for the generation `key` last read: checks and
    /// decrypts every record. Writes nothing.
    pub fn read(state: &StateFile, key: &StateKey) -> Result<Replay, StoreError> {
        let mut journal = Journal::beside(state);
        let path = journal.path.clone();
        let mut warnings = Vec::new();
        let bytes = match read_capped(&path)? {
            Some(b) => b,
            None => {
                return Ok(Replay {
                    records: Vec::new(),
                    warnings,
                    journal,
                });
            }
        };
        if bytes.len() >= 8 && bytes[..8] != JOURNAL_MAGIC {
            return Err(corrupted(&path, FormatError::JournalBadMagic));
        }
        if bytes.len() < JOURNAL_HEADER_LEN {
            return Err(corrupted(
                &path,
                FormatError::JournalTruncatedHeader { len: bytes.len() },
            ));
        }
        let mut header = [0u8; JOURNAL_HEADER_LEN];
        header.copy_from_slice(&bytes[..JOURNAL_HEADER_LEN]);
        let version = u16::from_le_bytes([header[8], header[9]]);
        if version == 0 || version > JOURNAL_VERSION {
            return Err(corrupted(
                &path,
                FormatError::JournalVersion { found: version },
            ));
        }
        let mut generation = [0u8; 8];
        generation.copy_from_slice(&header[16..24]);
        let generation = u64::from_le_bytes(generation);
        let salt_matches = header[24..24 + SALT_LEN] == key.salt();
        if generation != key.generation() || !salt_matches {
            if generation > key.generation() && salt_matches {
                warnings.push(format!(
                    "{} belongs to generation {generation} of the state, but the state file \
                     holds generation {} (was it replaced by an older copy?); its changes \
                     were not applied, and the next save replaces it",
                    path.display(),
                    key.generation()
                ));
            }
            // Older: a compaction saved everything in it, then stopped before removing it.
            // Another salt: a password change did the same, or another home's leftover.
            return Ok(Replay {
                records: Vec::new(),
                warnings,
                journal,
            });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&header[BOUND_LEN..BOUND_LEN + NONCE_LEN]);
        crypto::journal_open(
            key,
            &nonce,
            &header[..BOUND_LEN],
            &mut [],
            &header[BOUND_LEN + NONCE_LEN..],
        )
        .map_err(|_| corrupted(&path, FormatError::JournalTampered { record: None }))?;
        if header[10..16] != [0u8; 6] {
            return Err(corrupted(
                &path,
                FormatError::JournalVersion { found: version },
            ));
        }

        let mut records = Vec::new();
        let mut at = JOURNAL_HEADER_LEN;
        let mut seq = 0u64;
        while at < bytes.len() {
            let rest = &bytes[at..];
            let torn = |what: &str| {
                format!(
                    "{}: the last change ({what}) was cut short by a crash and was discarded; \
                     it had not been confirmed as saved",
                    path.display()
                )
            };
            if rest.len() < RECORD_PREFIX {
                warnings.push(torn("an incomplete record header"));
                break;
            }
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let body = len as usize;
            if !(TAG_LEN..=MAX_PLAINTEXT_LEN + TAG_LEN).contains(&body) {
                return Err(corrupted(
                    &path,
                    FormatError::JournalTampered { record: Some(seq) },
                ));
            }
            if rest.len() < RECORD_PREFIX + body {
                warnings.push(torn("an incomplete record"));
                break;
            }
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(&rest[4..RECORD_PREFIX]);
            let (ct, tag) = rest[RECORD_PREFIX..RECORD_PREFIX + body].split_at(body - TAG_LEN);
            let mut plain = Zeroizing::new(ct.to_vec());
            crypto::journal_open(key, &nonce, &record_aad(&header, seq, len), &mut plain, tag)
                .map_err(|_| {
                    corrupted(&path, FormatError::JournalTampered { record: Some(seq) })
                })?;
            records.push(plain);
            at += RECORD_PREFIX + body;
            seq += 1;
        }
        journal.bound = Some(Bound {
            header,
            generation,
            next_seq: seq,
            len: at as u64,
            file: None,
        });
        Ok(Replay {
            records,
            warnings,
            journal,
        })
    }

    /// Appends `records` (plaintexts) after the last good record and waits until they are
    /// on disk. A journal of another generation than `key`'s (or none) is replaced by a
    /// new one first. On failure the journal is broken until [`Journal::discard`].
    pub fn append(
        &mut self,
        key: &StateKey,
        records: &[Zeroizing<Vec<u8>>],
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        if self.broken {
            return Err(StoreError::Io {
                path: self.path.clone(),
                op: "append to (an earlier append failed; a full save is due)",
                source: io::Error::other("journal broken"),
            });
        }
        let result = self.try_append(key, records);
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    fn try_append(
        &mut self,
        key: &StateKey,
        records: &[Zeroizing<Vec<u8>>],
    ) -> Result<(), StoreError> {
        let mut out = Vec::new();
        let fresh = self.bound.as_ref().is_none_or(|b| {
            b.generation != key.generation() || b.header[24..BOUND_LEN] != key.salt()
        });
        if fresh {
            let mut header = [0u8; JOURNAL_HEADER_LEN];
            header[..8].copy_from_slice(&JOURNAL_MAGIC);
            header[8..10].copy_from_slice(&JOURNAL_VERSION.to_le_bytes());
            header[16..24].copy_from_slice(&key.generation().to_le_bytes());
            header[24..BOUND_LEN].copy_from_slice(&key.salt());
            let (nonce, tag) = crypto::journal_seal(key, &header[..BOUND_LEN], &mut [])
                .map_err(|e| corrupted(&self.path, e))?;
            header[BOUND_LEN..BOUND_LEN + NONCE_LEN].copy_from_slice(&nonce);
            header[BOUND_LEN + NONCE_LEN..].copy_from_slice(&tag);
            out.extend_from_slice(&header);
            self.bound = Some(Bound {
                header,
                generation: key.generation(),
                next_seq: 0,
                len: 0,
                file: None,
            });
        }
        let Some(bound) = self.bound.as_mut() else {
            return Ok(());
        };
        let mut seq = bound.next_seq;
        for plain in records {
            let len = u32::try_from(plain.len() + TAG_LEN)
                .ok()
                .filter(|l| *l as usize <= MAX_PLAINTEXT_LEN + TAG_LEN)
                .ok_or(StoreError::TooLarge {
                    len: plain.len(),
                    max: MAX_PLAINTEXT_LEN,
                })?;
            let mut body = Zeroizing::new(plain.to_vec());
            let (nonce, tag) =
                crypto::journal_seal(key, &record_aad(&bound.header, seq, len), &mut body)
                    .map_err(|e| corrupted(&self.path, e))?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&nonce);
            out.extend_from_slice(&body);
            out.extend_from_slice(&tag);
            seq += 1;
        }
        let path = self.path.clone();
        if fresh {
            // A new journal: the previous one (if any) belongs to an older generation that
            // the state file already holds, so it is truncated, not kept.
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(FILE_MODE)
                .open(&path)
                .map_err(io_err(&path, "create the state journal"))?;
            file.write_all(&out)
                .and_then(|()| file.sync_all())
                .map_err(io_err(&path, "write the state journal"))?;
            // The new file's name must survive a power loss too.
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&dir, "flush to disk the directory"))?;
            bound.file = Some(file);
        } else {
            if bound.file.is_none() {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path, "open the state journal"))?;
                // Cut a torn tail left by a crash, so new records follow the last good one.
                file.set_len(bound.len)
                    .map_err(io_err(&path, "cut the torn end of the state journal"))?;
                bound.file = Some(file);
            }
            let Some(file) = bound.file.as_mut() else {
                return Ok(());
            };
            use std::io::{Seek, SeekFrom};
            file.seek(SeekFrom::Start(bound.len))
                .and_then(|_| file.write_all(&out))
                .and_then(|()| file.sync_data())
                .map_err(io_err(&path, "append to the state journal"))?;
        }
        bound.len += out.len() as u64;
        bound.next_seq = seq;
        Ok(())
    }

    /// Forgets the journal and removes its file: a full save holds everything in it.
    /// Removing it is best effort, since a leftover journal of an older generation is
    /// ignored when read.
    pub fn discard(&mut self) {
        self.bound = None;
        self.broken = false;
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove the state journal")
            }
        }
    }
}

/// The journal's bytes, `None` when there is no journal. Refuses a non-regular file and
/// one larger than any journal Legion writes.
fn read_capped(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "inspect")(e)),
    };
    if !meta.file_type().is_file() {
        return Err(StoreError::NotRegularFile {
            path: path.to_path_buf(),
            what: if meta.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "not a regular file"
            },
        });
    }
    if meta.len() > MAX_JOURNAL_LEN {
        return Err(corrupted(path, FormatError::TooLong { len: meta.len() }));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    File::open(path)
        .and_then(|f| f.take(MAX_JOURNAL_LEN + 1).read_to_end(&mut bytes))
        .map_err(io_err(path, "read"))?;
    Ok(Some(bytes))
}
