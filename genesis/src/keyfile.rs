//! Key files: one Ed25519 secret seed as 64 hex characters and a newline, mode 0600.
//!
//! Writes are atomic (temporary file, fsync, link into place), so a crash never leaves
//! a half-written key, and never overwrite an existing key unless asked to. Reads refuse
//! a file that group or others can read: a leaked validator key is a double-sign risk.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cbec_ledger::KeyPair;

/// Why a key file could not be read or written. Every message starts with the path.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: key file not found")]
    Missing { path: PathBuf },
    #[error("{path}: cannot {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: readable by group or others (mode {mode:04o}); run `chmod 600 {path}`")]
    LoosePermissions { path: PathBuf, mode: u32 },
    #[error(
        "{path}: expected 64 hex characters (an Ed25519 secret seed), found {found} characters"
    )]
    WrongLength { path: PathBuf, found: usize },
    #[error("{path}: not hex: {detail}")]
    BadEncoding { path: PathBuf, detail: String },
    #[error("{path}: already exists; refusing to overwrite a key")]
    Exists { path: PathBuf },
}

/// Reads a key file, checking permissions before contents.
pub fn read_key(path: &Path) -> Result<KeyPair, KeyFileError> {
    let io = |action, source| KeyFileError::Io {
        path: path.to_path_buf(),
        action,
        source,
    };
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyFileError::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(io("read", e)),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::LoosePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let bytes = fs::read(path).map_err(|e| io("read", e))?;
    parse_key(&bytes, path)
}

/// A key file's contents (64 hex characters of seed, a newline allowed), to a key;
/// `path` names the file in errors.
pub fn parse_key(bytes: &[u8], path: &Path) -> Result<KeyPair, KeyFileError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| KeyFileError::BadEncoding {
            path: path.to_path_buf(),
            detail: "the file is not text".into(),
        })?
        .trim_end_matches(['\n', '\r']);
    if text.len() != 64 {
        return Err(KeyFileError::WrongLength {
            path: path.to_path_buf(),
            found: text.chars().count(),
        });
    }
    let seed = cbec_ledger::parse_hex::<32>(text).map_err(|e| KeyFileError::BadEncoding {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    Ok(KeyPair::from_seed(&seed))
}

/// Writes `key` to `path` with mode 0600, atomically. Refuses to replace an existing
/// file unless `overwrite`.
pub fn write_key(path: &Path, key: &KeyPair, overwrite: bool) -> Result<(), KeyFileError> {
    let io = |action, source| KeyFileError::Io {
        path: path.to_path_buf(),
        action,
        source,
    };
    if !overwrite && path.exists() {
        return Err(KeyFileError::Exists {
            path: path.to_path_buf(),
        });
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let temp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.as_deref().unwrap_or("key"),
        std::process::id()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| io("create", e))?;
        file.write_all(format!("{}\n", hex::encode(key.seed())).as_bytes())
            .map_err(|e| io("write", e))?;
        file.sync_all().map_err(|e| io("sync", e))?;
        if overwrite {
            fs::rename(&temp, path).map_err(|e| io("replace", e))?;
        } else {
            // link() fails if the target appeared meanwhile: no silent clobbering.
            fs::hard_link(&temp, path).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => KeyFileError::Exists {
                    path: path.to_path_buf(),
                },
                _ => io("create", e),
            })?;
        }
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("sync the directory of", e))
    })();
    let _ = fs::remove_file(&temp); // gone already after a rename; best effort otherwise
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_raw(path: &Path, contents: &[u8], mode: u32) {
        fs::write(path, contents).expect("write");
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn written_key_reads_back_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.key");
        let key = KeyPair::from_seed(&[3; 32]);
        write_key(&path, &key, false).expect("write");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_key(&path).expect("read").public(), key.public());
        assert_eq!(
            fs::read_dir(dir.path()).expect("list").count(),
            1,
            "temp file left"
        );
    }

    #[test]
    fn existing_key_is_not_overwritten_unless_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.key");
        write_key(&path, &KeyPair::from_seed(&[3; 32]), false).expect("write");
        let err = write_key(&path, &KeyPair::from_seed(&[4; 32]), false).unwrap_err();
        assert!(matches!(err, KeyFileError::Exists { .. }));
        assert_eq!(read_key(&path).expect("read").seed(), [3; 32]);
        write_key(&path, &KeyPair::from_seed(&[4; 32]), true).expect("overwrite");
        assert_eq!(read_key(&path).expect("read").seed(), [4; 32]);
    }

    #[test]
    fn bad_key_files_give_errors_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.key");
        let shown = path.display().to_string();

        let err = read_key(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::Missing { .. }), "{err}");
        assert!(err.to_string().starts_with(&shown));

        write_raw(&path, "ab".repeat(31).as_bytes(), 0o600);
        let err = read_key(&path).unwrap_err();
        assert!(
            matches!(err, KeyFileError::WrongLength { found: 62, .. }),
            "{err}"
        );

        write_raw(&path, format!("{}zz\n", "ab".repeat(31)).as_bytes(), 0o600);
        let err = read_key(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::BadEncoding { .. }), "{err}");

        write_raw(&path, &[0xff; 64], 0o600);
        assert!(matches!(
            read_key(&path).unwrap_err(),
            KeyFileError::BadEncoding { .. }
        ));

        write_raw(&path, format!("{}\n", "ab".repeat(32)).as_bytes(), 0o644);
        let err = read_key(&path).unwrap_err();
        assert!(
            matches!(err, KeyFileError::LoosePermissions { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
        assert!(err.to_string().starts_with(&shown));
    }
}
