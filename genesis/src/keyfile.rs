//! Key files: the key's scheme, a colon and its 32-byte secret as 64 hex characters,
//! then a newline (`sm2:3945...c5b8`), mode 0600. The secret is an Ed25519 seed or an
//! SM2 private key. A file of the 64 hex characters alone (the format before the
//! national suite) is an Ed25519 key.
//!
//! Writes are atomic (temporary file, fsync, link into place), so a crash never leaves
//! a half-written key, and never overwrite an existing key unless asked to. Reads refuse
//! a file that group or others can read: a leaked validator key is a double-sign risk.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cbec_ledger::{KeyPair, Scheme};

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
        "{path}: expected `SCHEME:` and 64 hex characters (a 32-byte secret), found {found} characters"
    )]
    WrongLength { path: PathBuf, found: usize },
    #[error("{path}: {detail}")]
    BadScheme { path: PathBuf, detail: String },
    #[error("{path}: {detail}")]
    BadSecret { path: PathBuf, detail: String },
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

/// A key file's contents (`SCHEME:` and 64 hex characters of secret, a newline
/// allowed; no prefix means Ed25519), to a key; `path` names the file in errors.
pub fn parse_key(bytes: &[u8], path: &Path) -> Result<KeyPair, KeyFileError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| KeyFileError::BadEncoding {
            path: path.to_path_buf(),
            detail: "the file is not text".into(),
        })?
        .trim_end_matches(['\n', '\r']);
    let (scheme, text) = match text.split_once(':') {
        Some((name, rest)) => (
            name.parse::<Scheme>()
                .map_err(|detail| KeyFileError::BadScheme {
                    path: path.to_path_buf(),
                    detail,
                })?,
            rest,
        ),
        None => (Scheme::Ed25519, text),
    };
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
    KeyPair::from_secret(scheme, &seed).map_err(|e| KeyFileError::BadSecret {
        path: path.to_path_buf(),
        detail: format!("not an {scheme} secret key: {e}"),
    })
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
        file.write_all(format!("{}:{}\n", key.scheme(), hex::encode(key.secret())).as_bytes())
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
        assert_eq!(read_key(&path).expect("read").secret(), [3; 32]);
        write_key(&path, &KeyPair::from_seed(&[4; 32]), true).expect("overwrite");
        assert_eq!(read_key(&path).expect("read").secret(), [4; 32]);
    }

    #[test]
    fn key_files_say_their_scheme_and_read_back_as_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        for scheme in Scheme::ALL {
            let path = dir.path().join(format!("{scheme}.key"));
            let key = KeyPair::derive(scheme, &[5; 32]);
            write_key(&path, &key, false).expect("write");
            let text = fs::read_to_string(&path).expect("read");
            assert!(text.starts_with(&format!("{scheme}:")), "{text}");
            let back = read_key(&path).expect("read");
            assert_eq!((back.scheme(), back.public()), (scheme, key.public()));
        }
        // The format before schemes: 64 hex characters alone are an Ed25519 seed.
        let path = dir.path().join("old.key");
        write_raw(&path, format!("{}\n", "ab".repeat(32)).as_bytes(), 0o600);
        let key = read_key(&path).expect("read");
        assert_eq!(key.public(), KeyPair::from_seed(&[0xab; 32]).public());
        // An unknown scheme, and an SM2 secret out of range (n), are named.
        write_raw(
            &path,
            format!("rsa:{}\n", "ab".repeat(32)).as_bytes(),
            0o600,
        );
        let err = read_key(&path).unwrap_err().to_string();
        assert!(err.contains("unknown key scheme `rsa`"), "{err}");
        let n = "fffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54123";
        write_raw(&path, format!("sm2:{n}\n").as_bytes(), 0o600);
        let err = read_key(&path).unwrap_err().to_string();
        assert!(err.contains("not an sm2 secret key"), "{err}");
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
