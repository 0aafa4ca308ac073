//! `cbec chaincode`: deploy, upgrade and retire WebAssembly chaincode through governance
//! [issue 19], and show what is deployed.
//!
//! Every step is a governance proposal (an agency operator proposes it; more than 2/3
//! of the agencies approve it with `cbec chaincode vote`; any agency then applies it
//! with `cbec chaincode apply`). The nodes pick the change up at once: no restart.

use std::path::PathBuf;

use anyhow::Context;
use cbec_chaincode::wasm::{self, WasmChaincode};
use cbec_genesis::read_key;
use cbec_ledger::codec;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::Client;
use crate::output::Output;

/// The signer and the node of a governance step.
#[derive(Debug, clap::Args)]
pub struct Agency {
    /// An agency operator's key file (e.g. devnet/customs/operator.key).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The node's API URL [default: $CBEC_NODE, else the devnet's customs node].
    #[arg(long, value_name = "URL")]
    node: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ChaincodeCommand {
    /// Propose installing a WebAssembly module as a version of chaincode ID. The module
    /// is checked here first (no floating point, only the host's imports, exports
    /// `memory` and `run`) and again by every node against the chain's limits.
    Install {
        /// The module (`.wasm`, built for wasm32-unknown-unknown).
        #[arg(long, value_name = "FILE")]
        wasm: PathBuf,
        /// The chaincode's id: 1-32 characters of a-z, 0-9 and -.
        #[arg(long)]
        id: String,
        /// The version it installs [default: the next one].
        #[arg(long, value_name = "N")]
        as_version: Option<u32>,
        #[command(flatten)]
        agency: Agency,
    },
    /// Propose making an installed version the one that runs: the first activation, or
    /// an upgrade (from the transaction after the proposal is applied).
    Activate {
        #[arg(long)]
        id: String,
        /// The installed version to run.
        #[arg(long, value_name = "N")]
        to: u32,
        #[command(flatten)]
        agency: Agency,
    },
    /// Propose retiring chaincode ID for good (its versions stay on the ledger).
    Retire {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        agency: Agency,
    },
    /// Vote on a governance proposal as an agency.
    Vote {
        /// The proposal's number (`cbec chaincode install` prints it).
        proposal: u64,
        /// Approve it.
        #[arg(long, conflicts_with = "reject", required_unless_present = "reject")]
        approve: bool,
        /// Reject it.
        #[arg(long)]
        reject: bool,
        #[command(flatten)]
        agency: Agency,
    },
    /// Apply a proposal more than 2/3 of the agencies approved.
    Apply {
        proposal: u64,
        #[command(flatten)]
        agency: Agency,
    },
    /// A deployed chaincode: every version with its code hash, the one that runs, and
    /// the heights at which versions were activated.
    Status {
        id: String,
        /// The node's API URL [default: $CBEC_NODE, else the devnet's customs node].
        #[arg(long, value_name = "URL")]
        node: Option<String>,
    },
}

pub fn run(cmd: ChaincodeCommand, out: &Output) -> anyhow::Result<()> {
    match cmd {
        ChaincodeCommand::Install {
            wasm: path,
            id,
            as_version: version,
            agency,
        } => {
            wasm::check_id(&id).map_err(|e| anyhow::anyhow!("--id: {}", e.message))?;
            let code =
                std::fs::read(&path).with_context(|| format!("--wasm {}", path.display()))?;
            wasm::check_module(&code, u64::MAX, u64::MAX)
                .map_err(|e| anyhow::anyhow!("--wasm {}: {}", path.display(), e.message))?;
            let client = Client::new(&crate::node_url(agency.node.clone())?)?;
            let version = match version {
                Some(v) => v,
                None => status_of(&client, &id)?
                    .and_then(|r| r.versions.iter().map(|v| v.version).max())
                    .unwrap_or(0)
                    .saturating_add(1),
            };
            propose(
                &client,
                &agency,
                json!({"action": "install_chaincode", "id": id, "version": version,
                       "code": hex::encode(&code)}),
                &format!("install {id} version {version} ({} bytes)", code.len()),
                out,
            )
        }
        ChaincodeCommand::Activate {
            id,
            to: version,
            agency,
        } => {
            let client = Client::new(&crate::node_url(agency.node.clone())?)?;
            propose(
                &client,
                &agency,
                json!({"action": "activate_chaincode", "id": id, "version": version}),
                &format!("activate {id} version {version}"),
                out,
            )
        }
        ChaincodeCommand::Retire { id, agency } => {
            let client = Client::new(&crate::node_url(agency.node.clone())?)?;
            propose(
                &client,
                &agency,
                json!({"action": "retire_chaincode", "id": id}),
                &format!("retire {id}"),
                out,
            )
        }
        ChaincodeCommand::Vote {
            proposal,
            approve,
            agency,
            ..
        } => {
            let client = Client::new(&crate::node_url(agency.node.clone())?)?;
            let answer = governance(
                &client,
                &agency,
                "vote",
                json!({"proposal_id": proposal, "approve": approve}),
            )?;
            let approved = events(&answer)
                .iter()
                .any(|e| e["kind"] == "proposal_approved");
            out.emit(&answer, || {
                format!(
                    "{}{}",
                    crate::commands::tx::describe(&answer),
                    if approved {
                        format!("\nproposal {proposal} is approved; apply it: cbec chaincode apply {proposal} --key <an agency operator key>")
                    } else {
                        String::new()
                    }
                )
            })?;
            ensure_accepted(&answer)
        }
        ChaincodeCommand::Apply { proposal, agency } => {
            let client = Client::new(&crate::node_url(agency.node.clone())?)?;
            let answer = governance(&client, &agency, "apply", json!({"proposal_id": proposal}))?;
            out.emit(&answer, || crate::commands::tx::describe(&answer))?;
            ensure_accepted(&answer)
        }
        ChaincodeCommand::Status { id, node } => {
            let client = Client::new(&crate::node_url(node)?)?;
            let record = status_of(&client, &id)?
                .ok_or_else(|| anyhow::anyhow!("no WebAssembly chaincode `{id}` is installed"))?;
            out.emit(&record, || status_text(&record))
        }
    }
}

/// A deployed chaincode's record at the node's latest height.
fn status_of(client: &Client, id: &str) -> anyhow::Result<Option<WasmChaincode>> {
    let answer = client.get(&format!("/v1/state/{}", wasm::record_key(id)))?;
    let Some(hex_value) = answer["value_hex"].as_str() else {
        return Ok(None);
    };
    let bytes = hex::decode(hex_value).context("the node's value_hex")?;
    Ok(Some(codec::decode(&bytes).map_err(|e| {
        anyhow::anyhow!("the record of `{id}` does not decode: {e}")
    })?))
}

fn status_text(r: &WasmChaincode) -> String {
    let state = match (r.retired_at, r.active()) {
        (Some(h), _) => format!("retired at height {h}"),
        (None, Some(v)) => format!("version {v} runs"),
        (None, None) => "installed, no version active".to_string(),
    };
    let mut text = format!("chaincode {}: {state}\n", r.id);
    for v in &r.versions {
        let active: Vec<String> = r
            .activations
            .iter()
            .filter(|(_, version)| *version == v.version)
            .map(|(h, _)| format!("activated at height {h}"))
            .collect();
        text.push_str(&format!(
            "  version {:<3} code {}  {} bytes  installed at height {}{}\n",
            v.version,
            v.code_hash,
            v.bytes,
            v.installed_at,
            if active.is_empty() {
                String::new()
            } else {
                format!("  {}", active.join(", "))
            }
        ));
    }
    text.trim_end().to_string()
}

fn governance(
    client: &Client,
    agency: &Agency,
    method: &str,
    args: Value,
) -> anyhow::Result<Value> {
    let key = read_key(&agency.key).map_err(|e| anyhow::anyhow!("--key: {e}"))?;
    crate::commands::tx::submit(client, &key, "governance", method, args, true, None)
}

fn events(answer: &Value) -> Vec<Value> {
    answer["result"]["outcome"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn ensure_accepted(answer: &Value) -> anyhow::Result<()> {
    if answer["result"]["outcome"]["status"] == "accepted" {
        Ok(())
    } else {
        anyhow::bail!("{}", crate::commands::tx::describe(answer))
    }
}

/// Proposes `action` and says how to go on.
fn propose(
    client: &Client,
    agency: &Agency,
    action: Value,
    what: &str,
    out: &Output,
) -> anyhow::Result<()> {
    let answer = governance(client, agency, "propose", json!({ "action": action }))?;
    ensure_accepted(&answer)?;
    let id = events(&answer)
        .iter()
        .find(|e| e["kind"] == "proposal")
        .and_then(|e| {
            e["attributes"]
                .as_array()?
                .iter()
                .find(|a| a["key"] == "id")?["value"]
                .as_str()
                .map(String::from)
        })
        .unwrap_or_default();
    let summary = json!({"proposal_id": id.parse::<u64>().ok(), "action": what, "answer": answer});
    out.emit(&summary, || {
        format!(
            "proposal {id}: {what}\n\
             more than 2/3 of the agencies must approve it; each other agency runs:\n  \
             cbec chaincode vote {id} --approve --key <its operator key>\n\
             then any agency: cbec chaincode apply {id} --key <its operator key>"
        )
    })
}
