//! `cbec identity attest`: the identity-verification service's side of R10.

use std::path::{Path, PathBuf};

use anyhow::Context;
use cbec_genesis::read_key;
use clap::Subcommand;

use crate::output::Output;

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Check a buyer's resident id number (GB 11643) and name here, compute the buyer
    /// tag with the tag key, and sign an attestation that a declaration list carries
    /// (`buyer_attestation`). The attestation holds the keyed tag only: no number, no
    /// name. Printed as JSON, and written to --out if given.
    Attest {
        /// The identity service's key file (a key of its filing, role `identity`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The tag key shared with the gateways (hex, at least 16 bytes): the buyer tag
        /// is `<version>:` HMAC-SHA-256 under it of `buyer`, a zero byte and the number.
        #[arg(long, value_name = "FILE")]
        tag_key: PathBuf,
        /// The tag key's version, the tag's prefix.
        #[arg(long, value_name = "VERSION", default_value = "v1")]
        key_version: String,
        /// The buyer's resident id number, canonical (18 characters, upper-case X).
        /// Without it (and --name), the number and the name are read from standard input,
        /// one line each, so they appear in no process list or shell history.
        #[arg(long, value_name = "NUMBER", requires = "name")]
        id_number: Option<String>,
        /// The buyer's name as the service's records hold it.
        #[arg(long, requires = "id_number")]
        name: Option<String>,
        /// How long the attestation is valid, from now.
        #[arg(long, value_name = "DAYS", default_value_t = 365)]
        valid_days: u64,
        /// Also write the attestation (JSON) to this file.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// Reads a tag key file: hex (whitespace around it allowed), at least 16 bytes.
pub fn read_tag_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the tag key", path.display()))?;
    let key = hex::decode(text.trim())
        .map_err(|e| anyhow::anyhow!("{}: the tag key is not hex: {e}", path.display()))?;
    if key.len() < 16 {
        anyhow::bail!(
            "{}: the tag key is {} bytes; at least 16 are needed",
            path.display(),
            key.len()
        );
    }
    Ok(key)
}

pub fn run(cmd: IdentityCommand, out: &Output) -> anyhow::Result<()> {
    let IdentityCommand::Attest {
        key,
        tag_key,
        key_version,
        id_number,
        name,
        valid_days,
        out: file,
    } = cmd;
    let (id_number, name) = match (id_number, name) {
        (Some(number), Some(name)) => (number, name),
        _ => {
            let mut lines = std::io::stdin().lines();
            let mut next = |what: &str| -> anyhow::Result<String> {
                lines
                    .next()
                    .transpose()?
                    .map(|l| l.trim_end_matches('\r').to_string())
                    .with_context(|| format!("standard input ended before the {what}"))
            };
            (next("id number")?, next("name")?)
        }
    };
    let service = read_key(&key).context("cannot sign the attestation")?;
    let tag_key = read_tag_key(&tag_key)?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("system clock is before 1970")?
        .as_millis() as u64;
    let attestation = cbec_chaincode::identity::attest(
        &service,
        &tag_key,
        &key_version,
        &id_number,
        &name,
        now_ms,
        valid_days,
    )
    .map_err(|e| anyhow::anyhow!("not attested: {e}"))?;
    let json = serde_json::to_string_pretty(&attestation)?;
    if let Some(file) = &file {
        std::fs::write(file, format!("{json}\n"))
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    out.emit(&attestation, || json.clone())
}
