//! The consensus signing state in a file of its own: two checksummed slots, written in
//! turn, each write one `pwrite` over blocks the file already has and one `fdatasync`.
//!
//! A validator makes its signing state durable before every vote and proposal leaves,
//! two or three times a height. Through RocksDB each such write appended to the
//! write-ahead log (a new file size, so a journal commit of the whole file system) and
//! queued behind the block writes; here it overwrites data in place, which needs no
//! metadata and no journal, and waits for nothing but its own sector.
//!
//! | offset | bytes | |
//! |---|---|---|
//! | 0 | 8 | [`MAGIC`] |
//! | 8 | 8 | sequence number, little-endian (the newer slot has the higher) |
//! | 16 | 4 | payload length, little-endian |
//! | 20 | length | payload (the encoded signing state) |
//! | 20 + length | 32 | SHA-256 of everything before it in the slot |
//!
//! The file is two slots of equal size (a multiple of 4 KiB). A write goes to the slot
//! that does not hold the latest state, so a write torn by a crash leaves the latest
//! durable state whole in the other slot (and nothing signed under the torn one was
//! sent: a signature leaves after its write returns). The file is created, and grown
//! when a state outgrows a slot, by writing a new file whole, syncing it and renaming
//! it over the old one, so a file that exists always holds a good slot: if neither
//! slot's checksum holds, the file was damaged, and [`SigningFile::open`] refuses it
//! rather than let the validator sign with a forgotten past.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The first bytes of a good slot.
pub const MAGIC: &[u8; 8] = b"cbecsig1";

const HEADER: usize = 8 + 8 + 4;
const CHECKSUM: usize = 32;
/// The smallest slot; a signing state is one to two KiB at a height decided in its
/// first round, and tens of KiB only after tens of failed rounds.
const SLOT_MIN: usize = 16 * 1024;

/// Why the signing-state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SigningFileError {
    #[error("signing state file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "signing state file {path} is damaged: {reason}; the validator will not sign \
         without knowing what it signed (restore the file from a backup, or, if this \
         validator has signed nothing at the chain's current height, remove it)"
    )]
    Damaged { path: PathBuf, reason: String },
}

type Result<T> = std::result::Result<T, SigningFileError>;

/// An open signing-state file (see the module comment).
#[derive(Debug)]
pub struct SigningFile {
    path: PathBuf,
    /// Open once the file exists (after the first write).
    file: Option<File>,
    slot: usize,
    /// The latest slot's sequence number; 0 before the first write.
    seq: u64,
}

impl SigningFile {
    /// Opens the file at `path`, returning it with the latest state it holds (`None`
    /// when there is no file yet: nothing was written through it).
    pub fn open(path: &Path) -> Result<(SigningFile, Option<Vec<u8>>)> {
        let io = |source| SigningFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let damaged = |reason: String| SigningFileError::Damaged {
            path: path.to_path_buf(),
            reason,
        };
        let mut file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let empty = SigningFile {
                    path: path.to_path_buf(),
                    file: None,
                    slot: SLOT_MIN,
                    seq: 0,
                };
                return Ok((empty, None));
            }
            Err(e) => return Err(io(e)),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        if bytes.is_empty() || bytes.len() % 2 != 0 || (bytes.len() / 2) % 4096 != 0 {
            return Err(damaged(format!(
                "{} bytes is not two slots of a multiple of 4 KiB",
                bytes.len()
            )));
        }
        let slot = bytes.len() / 2;
        let (first, second) = bytes.split_at(slot);
        let latest = match (read_slot(first), read_slot(second)) {
            (Some(a), Some(b)) if a.0 == b.0 => {
                return Err(damaged(format!("both slots have sequence number {}", a.0)))
            }
            (Some(a), Some(b)) => {
                if a.0 > b.0 {
                    a
                } else {
                    b
                }
            }
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => {
                return Err(damaged(
                    "neither slot holds a state whose checksum is good".to_string(),
                ))
            }
        };
        let (seq, payload) = latest;
        let opened = SigningFile {
            path: path.to_path_buf(),
            file: Some(file),
            slot,
            seq,
        };
        Ok((opened, Some(payload.to_vec())))
    }

    /// Makes `payload` the latest state, durable when this returns.
    pub fn write(&mut self, payload: &[u8]) -> Result<()> {
        let seq = self.seq + 1;
        let needed = HEADER + payload.len() + CHECKSUM;
        match &self.file {
            Some(file) if needed <= self.slot => {
                let at = (seq % 2) as usize * self.slot;
                file.write_all_at(&encode_slot(seq, payload), at as u64)
                    .and_then(|()| file.sync_data())
                    .map_err(|source| SigningFileError::Io {
                        path: self.path.clone(),
                        source,
                    })?;
            }
            _ => {
                let slot = needed.next_power_of_two().max(SLOT_MIN).max(self.slot);
                self.file = Some(self.replace(seq, payload, slot)?);
                self.slot = slot;
            }
        }
        self.seq = seq;
        Ok(())
    }

    /// Writes a new file of two `slot`-byte slots, `payload` in the one `seq` picks,
    /// the other zeroes, and renames it over the old one: the way the file is made and
    /// grown, so no one sees it half made.
    fn replace(&self, seq: u64, payload: &[u8], slot: usize) -> Result<File> {
        let io = |source| SigningFileError::Io {
            path: self.path.clone(),
            source,
        };
        let mut bytes = vec![0u8; 2 * slot];
        let at = (seq % 2) as usize * slot;
        let encoded = encode_slot(seq, payload);
        bytes[at..at + encoded.len()].copy_from_slice(&encoded);
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(".new");
        let temporary = PathBuf::from(temporary);
        {
            let mut file = File::create(&temporary).map_err(io)?;
            file.write_all(&bytes).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        std::fs::rename(&temporary, &self.path).map_err(io)?;
        let directory = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(directory)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(io)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn encode_slot(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len() + CHECKSUM);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let checksum = Sha256::digest(&out);
    out.extend_from_slice(&checksum);
    out
}

/// A slot's sequence number and payload, if its checksum holds.
fn read_slot(slot: &[u8]) -> Option<(u64, &[u8])> {
    if slot.len() < HEADER + CHECKSUM || &slot[..8] != MAGIC {
        return None;
    }
    let seq = u64::from_le_bytes(slot[8..16].try_into().ok()?);
    let len = u32::from_le_bytes(slot[16..20].try_into().ok()?) as usize;
    let end = HEADER.checked_add(len)?;
    if end.checked_add(CHECKSUM)? > slot.len() {
        return None;
    }
    if Sha256::digest(&slot[..end]).as_slice() != &slot[end..end + CHECKSUM] {
        return None;
    }
    Some((seq, &slot[HEADER..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reopen(path: &Path) -> Option<Vec<u8>> {
        SigningFile::open(path).expect("open").1
    }

    #[test]
    fn the_latest_write_is_read_back_after_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("signing-state");
        let (mut file, latest) = SigningFile::open(&path).expect("open");
        assert_eq!(latest, None, "no file: nothing written yet");
        assert!(!path.exists(), "opening writes nothing");
        for i in 0..5u8 {
            file.write(&[i; 100]).expect("write");
            assert_eq!(reopen(&path), Some(vec![i; 100]));
        }
        assert_eq!(
            std::fs::metadata(&path).expect("metadata").len(),
            2 * SLOT_MIN as u64
        );
        let (mut again, latest) = SigningFile::open(&path).expect("open");
        assert_eq!(latest, Some(vec![4; 100]));
        again.write(b"after a restart").expect("write");
        assert_eq!(reopen(&path), Some(b"after a restart".to_vec()));
    }

    #[test]
    fn a_torn_write_leaves_the_state_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("signing-state");
        let (mut file, _) = SigningFile::open(&path).expect("open");
        file.write(b"first").expect("write");
        file.write(b"second").expect("write");
        file.write(b"third").expect("write");
        // The third went to slot 1; every byte of it, flipped, leaves the second.
        let bytes = std::fs::read(&path).expect("read");
        for at in 0..HEADER + 5 + CHECKSUM {
            let mut torn = bytes.clone();
            torn[SLOT_MIN + at] ^= 0x01;
            std::fs::write(&path, &torn).expect("write");
            assert_eq!(reopen(&path), Some(b"second".to_vec()), "byte {at} flipped");
        }
    }

    #[test]
    fn a_file_with_no_good_slot_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("signing-state");
        let (mut file, _) = SigningFile::open(&path).expect("open");
        file.write(b"first").expect("write");
        file.write(b"second").expect("write");
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[HEADER] ^= 0x01;
        bytes[SLOT_MIN + HEADER] ^= 0x01;
        std::fs::write(&path, &bytes).expect("write");
        let err = SigningFile::open(&path).expect_err("refused");
        assert!(
            err.to_string().contains("damaged") && err.to_string().contains("checksum"),
            "{err}"
        );
        std::fs::write(&path, &bytes[..5000]).expect("truncate");
        let err = SigningFile::open(&path).expect_err("refused");
        assert!(err.to_string().contains("5000 bytes"), "{err}");
    }

    #[test]
    fn a_state_larger_than_a_slot_grows_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("signing-state");
        let (mut file, _) = SigningFile::open(&path).expect("open");
        file.write(b"small").expect("write");
        let large = vec![7u8; 3 * SLOT_MIN];
        file.write(&large).expect("write");
        assert_eq!(reopen(&path), Some(large.clone()));
        assert!(std::fs::metadata(&path).expect("metadata").len() >= 6 * SLOT_MIN as u64);
        file.write(b"small again").expect("write");
        assert_eq!(reopen(&path), Some(b"small again".to_vec()));
        assert!(!dir.path().join("signing-state.new").exists());
    }
}
