//! `cbec keys new|show`.

use std::path::PathBuf;

use anyhow::Context;
use cbec_genesis::{peer_id, read_key, write_key};
use cbec_ledger::KeyPair;
use clap::Subcommand;
use serde::Serialize;

use crate::output::Output;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a new Ed25519 key and write it to FILE (mode 0600).
    New {
        /// Where to write the key; an existing file is never replaced without --force.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace FILE if it exists (the old key is lost).
        #[arg(long)]
        force: bool,
    },
    /// Show the public key (the address) of a key file, and its libp2p peer id.
    Show {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Debug, Serialize)]
struct KeyInfo {
    file: String,
    public_key: String,
    peer_id: String,
}

pub fn run(cmd: KeysCommand, out: &Output) -> anyhow::Result<()> {
    let (file, key) = match cmd {
        KeysCommand::New { out: file, force } => {
            let key = KeyPair::generate(&mut rand_core::OsRng);
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
        public_key: key.public().to_hex(),
        peer_id: peer_id::from_public_key(&key.public()),
    };
    out.emit(&info, || {
        format!(
            "key file    {}\npublic key  {}\npeer id     {}",
            info.file, info.public_key, info.peer_id
        )
    })
}
