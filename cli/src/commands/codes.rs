//! `cbec codes check KIND CODE`: the chaincode's own validators, run before signing.

use cbec_chaincode::codes;
use clap::{Subcommand, ValueEnum};
use serde::Serialize;

use crate::output::Output;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    /// Unified Social Credit Code (18 characters).
    Uscc,
    /// Resident identity number (18 characters); the birth date must be in the past.
    ResidentId,
    /// GTIN-13 barcode.
    Gtin,
    /// Customs commodity code (10 digits).
    Commodity,
    /// Customs registration code of an enterprise (10 characters).
    CustomsCode,
}

#[derive(Debug, Subcommand)]
pub enum CodesCommand {
    /// Check a code exactly as the ledger will; exits 1 with the reason if invalid.
    Check {
        #[arg(value_enum)]
        kind: Kind,
        code: String,
    },
}

#[derive(Debug, Serialize)]
struct Verdict {
    kind: String,
    code: String,
    valid: bool,
}

pub fn run(cmd: CodesCommand, out: &Output) -> anyhow::Result<()> {
    let CodesCommand::Check { kind, code } = cmd;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(u64::MAX);
    let result = match kind {
        Kind::Uscc => codes::uscc(&code),
        Kind::ResidentId => codes::resident_id(&code, now_ms),
        Kind::Gtin => codes::gtin13(&code),
        Kind::Commodity => codes::commodity_code(&code),
        Kind::CustomsCode => codes::customs_code(&code),
    };
    let name = format!("{kind:?}").to_lowercase();
    if let Err(e) = result {
        anyhow::bail!("{name} `{code}`: {e}");
    }
    let verdict = Verdict {
        kind: name.clone(),
        code: code.clone(),
        valid: true,
    };
    out.emit(&verdict, || format!("{name} `{code}` is valid"))
}
