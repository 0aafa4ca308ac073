//! `cbec genesis new|verify|inspect`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use cbec_chaincode::catalog;
use cbec_genesis::{generate_consortium, ConsensusParams, Consortium, ConsortiumOptions, Genesis};
use cbec_ledger::{time, Hash, ParamValue, Suite};
use clap::Subcommand;
use serde::Serialize;

use crate::output::Output;

#[derive(Debug, Subcommand)]
pub enum GenesisCommand {
    /// Generate a local four-agency consortium: keys, genesis.json and node configs.
    New {
        /// Directory to create it in (must not hold a consortium already).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Name of the chain, 1-64 characters of a-z, 0-9 and -.
        #[arg(long, default_value = "cbec-pilot-zone")]
        chain_name: String,
        /// Genesis time as RFC 3339 (default: now).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        genesis_time: Option<u64>,
        /// The chain's crypto suite, fixed for its life: ed25519-sha256, or sm2-sm3 for
        /// the national standards (SM2 signatures, SM3 hashes).
        #[arg(long, value_name = "SUITE", default_value = "ed25519-sha256")]
        crypto: Suite,
    },
    /// Check a genesis document; with --chain-id, also that it is the agreed one.
    Verify {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The chain id the agencies agreed on out of band (64 hex characters).
        #[arg(long, value_name = "ID")]
        chain_id: Option<Hash>,
    },
    /// Show what a genesis document says: agencies, keys, parameters, chaincodes.
    Inspect {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

fn parse_time(text: &str) -> Result<u64, String> {
    let ms = time::parse_rfc3339(text).map_err(|e| e.to_string())?;
    u64::try_from(ms).map_err(|_| "genesis time is before 1970".to_string())
}

/// Loads and validates a genesis file against the built-in chaincode catalog.
pub fn load(path: &Path, agreed: Option<&Hash>) -> anyhow::Result<Genesis> {
    Ok(match agreed {
        Some(id) => Genesis::load_expecting(path, id, catalog::check_config)?,
        None => Genesis::load(path, catalog::check_config)?,
    })
}

pub fn run(cmd: GenesisCommand, out: &Output) -> anyhow::Result<()> {
    match cmd {
        GenesisCommand::New {
            out: dir,
            chain_name,
            genesis_time,
            crypto,
        } => new(&dir, chain_name, genesis_time, crypto, out),
        GenesisCommand::Verify { file, chain_id } => {
            let genesis = load(&file, chain_id.as_ref())?;
            let summary = Summary::of(&genesis, &file);
            out.emit(&summary, || {
                let agreed = if chain_id.is_some() {
                    " (matches the agreed chain id)"
                } else {
                    ""
                };
                format!(
                    "{}: valid genesis of `{}`\nchain id {}{agreed}",
                    file.display(),
                    genesis.chain_name,
                    summary.chain_id
                )
            })
        }
        GenesisCommand::Inspect { file } => {
            let genesis = load(&file, None)?;
            let summary = Summary::of(&genesis, &file);
            out.emit(&summary, || summary.to_text(&genesis))
        }
    }
}

fn new(
    dir: &Path,
    chain_name: String,
    genesis_time: Option<u64>,
    crypto: Suite,
    out: &Output,
) -> anyhow::Result<()> {
    let genesis_time_ms = match genesis_time {
        Some(ms) => ms,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("system clock is before 1970")?
            .as_millis() as u64,
    };
    let options = ConsortiumOptions {
        chain_name,
        genesis_time_ms,
        consensus: ConsensusParams::for_suite(crypto),
        chaincodes: catalog::default_configs(),
        synthetic_state: None,
        crypto,
    };
    // Validate the document before writing any key, so a bad --chain-name writes nothing.
    let probe = Genesis {
        chain_name: options.chain_name.clone(),
        genesis_time_ms,
        agencies: vec![],
        consensus: options.consensus.clone(),
        chaincodes: options.chaincodes.clone(),
        synthetic_state: options.synthetic_state,
        crypto,
    };
    if let Err(fault) = probe.validate(catalog::check_config) {
        if fault.field != "agencies" {
            anyhow::bail!("{fault}");
        }
    }
    let consortium = generate_consortium(dir, &options, &mut rand_core::OsRng)
        .with_context(|| format!("cannot generate a consortium in {}", dir.display()))?;
    // Read back what was written, exactly as a node will.
    let genesis_path = Consortium::genesis_path(dir);
    let reloaded = load(&genesis_path, Some(&consortium.chain_id))?;
    let summary = Summary::of(&reloaded, &genesis_path);
    out.emit(&summary, || {
        let mut text = format!(
            "generated a four-agency consortium in {}\ngenesis  {}\nchain id {}\ncrypto   {}\n",
            dir.display(),
            genesis_path.display(),
            summary.chain_id,
            summary.crypto
        );
        for a in &summary.agencies {
            text.push_str(&format!(
                "  {:<9} {}/{}/  (p2p {})\n",
                a.name,
                dir.display(),
                a.name,
                a.address
            ));
        }
        text.push_str(
            "Share genesis.json and the chain id with every agency; each checks it with\n",
        );
        text.push_str(&format!(
            "  cbec genesis verify genesis.json --chain-id {}",
            summary.chain_id
        ));
        text
    })
}

/// What `verify`, `inspect` and `new` report.
#[derive(Debug, Serialize)]
struct Summary {
    file: String,
    chain_name: String,
    chain_id: String,
    /// The crypto suite of every signature and hash on the chain.
    crypto: Suite,
    genesis_time: String,
    total_voting_power: u64,
    agencies: Vec<AgencySummary>,
    consensus: ConsensusParams,
    chaincodes: Vec<cbec_ledger::ChaincodeConfig>,
}

#[derive(Debug, Serialize)]
struct AgencySummary {
    name: String,
    validator_key: String,
    peer_id: String,
    address: String,
    operator_keys: Vec<String>,
    voting_power: u64,
}

impl Summary {
    fn of(genesis: &Genesis, file: &Path) -> Summary {
        Summary {
            file: file.display().to_string(),
            chain_name: genesis.chain_name.clone(),
            chain_id: genesis.chain_id().to_hex(),
            crypto: genesis.crypto,
            genesis_time: time::format_rfc3339(genesis.genesis_time_ms as i64),
            total_voting_power: genesis.agencies.iter().map(|a| a.voting_power).sum(),
            agencies: genesis
                .agencies
                .iter()
                .map(|a| AgencySummary {
                    name: a.name.clone(),
                    validator_key: a.validator_key.to_hex(),
                    peer_id: a.peer_id.clone(),
                    address: a.address.clone(),
                    operator_keys: a.operator_keys.iter().map(|k| k.to_hex()).collect(),
                    voting_power: a.voting_power,
                })
                .collect(),
            consensus: genesis.consensus.clone(),
            chaincodes: genesis.chaincodes.clone(),
        }
    }

    fn to_text(&self, genesis: &Genesis) -> String {
        let c = &genesis.consensus;
        let mut t = format!(
            "chain     {}\nchain id  {}\ncrypto    {}\ngenesis   {}\nfile      {}\n\nagencies (total voting power {}):\n",
            self.chain_name, self.chain_id, self.crypto, self.genesis_time, self.file, self.total_voting_power
        );
        for a in &self.agencies {
            t.push_str(&format!(
                "  {:<9} power {}  validator {}\n            peer {}  at {}\n",
                a.name, a.voting_power, a.validator_key, a.peer_id, a.address
            ));
            for k in &a.operator_keys {
                t.push_str(&format!("            operator {k}\n"));
            }
        }
        t.push_str(&format!(
            "\nconsensus:\n  timeouts propose {} ms, prevote {} ms, precommit {} ms, +{} ms per round\n  batch delay {} ms; block at most {} txs / {} bytes; tx at most {} bytes\n",
            c.timeout_propose_ms,
            c.timeout_prevote_ms,
            c.timeout_precommit_ms,
            c.timeout_increase_per_round_ms,
            c.batch_delay_ms,
            c.block_txs_max,
            c.block_bytes_max,
            c.tx_bytes_max
        ));
        t.push_str("\nchaincodes:\n");
        for cc in &self.chaincodes {
            t.push_str(&format!("  {} v{}\n", cc.id, cc.version));
            for (name, value) in &cc.params {
                let shown = match value {
                    ParamValue::Bool(b) => b.to_string(),
                    ParamValue::Int(i) => i.to_string(),
                    ParamValue::Text(s) => s.clone(),
                    ParamValue::List(l) => format!("[{}]", l.join(", ")),
                };
                t.push_str(&format!("    {name} = {shown}\n"));
            }
        }
        t
    }
}
