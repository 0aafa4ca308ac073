//! `cbec keys new|show`.

use std::path::PathBuf;

use anyhow::Context;
use cbec_genesis::{peer_id, read_key, write_key};
use cbec_ledger::{KeyPair, Scheme};
use clap::Subcommand;
use serde::Serialize;

use crate::output::Output;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a new key and write it to FILE (mode 0600), its scheme named in it.
    New {
        /// Where to write the key; an existing file is never replaced without --force.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The signature scheme: ed25519, or sm2 for a chain whose crypto suite is
        /// sm2-sm3 (a chain refuses keys of the other scheme). Network keys are ed25519.
        #[arg(long, value_name = "SCHEME", default_value = "ed25519")]
        scheme: Scheme,
        /// Replace FILE if it exists (the old key is lost).
        #[arg(long)]
        force: bool,
    },
    /// Show the scheme and public key (the address) of a key file, and for an ed25519
    /// key its libp2p peer id.
    Show {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Debug, Serialize)]
struct KeyInfo {
    file: String,
    scheme: String,
    public_key: String,
    /// For ed25519 keys only (libp2p's network identities).
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_id: Option<String>,
}

pub fn run(cmd: KeysCommand, out: &Output) -> anyhow::Result<()> {
    let (file, key) = match cmd {
        KeysCommand::New {
            out: file,
            force,
            scheme,
        } => {
            let key = KeyPair::generate(scheme, &mut rand_core::OsRng);
            write_key(&file, &key, force)?;
            (file, key)
        }
        KeysCommand::Show { file } => {
            let key = read_key(&file).context("cannot show key")?;
            (file, key)
        }
    };
    let info = KeyInfo {
        file: file.display().to_string(),
        scheme: key.scheme().to_string(),
        public_key: key.public().to_hex(),
        peer_id: (key.scheme() == Scheme::Ed25519).then(|| peer_id::from_public_key(&key.public())),
    };
    out.emit(&info, || {
        let mut text = format!(
            "key file    {}\nscheme      {}\npublic key  {}",
            info.file, info.scheme, info.public_key
        );
        if let Some(peer_id) = &info.peer_id {
            text.push_str(&format!("\npeer id     {peer_id}"));
        }
        text
    })
}
