//! `cbec tx submit`: sign a chaincode call and send it to a node.

use std::path::PathBuf;

use anyhow::Context;
use cbec_genesis::read_key;
use cbec_ledger::{Call, Hash, KeyPair, Transaction, TxBody};
use clap::Subcommand;
use serde_json::Value;

use crate::client::Client;
use crate::output::Output;

#[derive(Debug, Subcommand)]
pub enum TxCommand {
    /// Sign `CHAINCODE METHOD` with `--args` and submit it; with --wait, show its outcome.
    Submit {
        /// The signing key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The node's API URL [default: $CBEC_NODE, else the devnet's customs node].
        #[arg(long, value_name = "URL")]
        node: Option<String>,
        /// Chaincode id, e.g. `goods`.
        chaincode: String,
        /// Method, e.g. `record`.
        method: String,
        /// The method's arguments as JSON.
        #[arg(long, value_name = "JSON", default_value = "{}")]
        args: String,
        /// Wait until the transaction is committed and show its result.
        #[arg(long)]
        wait: bool,
        /// Use this nonce instead of asking the node.
        #[arg(long)]
        nonce: Option<u64>,
    },
}

/// Encodes the call's arguments and signs a transaction.
pub fn sign_call(
    key: &KeyPair,
    chain_id: Hash,
    nonce: u64,
    chaincode: &str,
    method: &str,
    args: Value,
) -> anyhow::Result<Transaction> {
    let args = cbec_chaincode::args_from_json(chaincode, method, args)
        .map_err(|e| anyhow::anyhow!("--args: {e}"))?;
    Ok(Transaction::sign(
        TxBody {
            chain_id,
            sender: key.public(),
            nonce,
            call: Call {
                chaincode: chaincode.to_string(),
                method: method.to_string(),
                args,
            },
        },
        key,
    ))
}

/// Signs with the next nonce and submits; returns the node's answer.
pub fn submit(
    client: &Client,
    key: &KeyPair,
    chaincode: &str,
    method: &str,
    args: Value,
    wait: bool,
    nonce: Option<u64>,
) -> anyhow::Result<Value> {
    let (chain_id, suite) = client.chain()?;
    if let Err(e) = suite.check_key(&key.public()) {
        anyhow::bail!("the signing key cannot sign on this chain: {e}");
    }
    let nonce = match nonce {
        Some(n) => n,
        None => client.next_nonce(&key.public())?,
    };
    let tx = sign_call(key, chain_id, nonce, chaincode, method, args)?;
    client.submit(&tx, wait)
}

/// One line describing a node's answer about a transaction.
pub fn describe(answer: &Value) -> String {
    let hash = answer["hash"].as_str().unwrap_or("?");
    match answer["status"].as_str() {
        Some("committed") => {
            let result = &answer["result"]["outcome"];
            let height = answer["height"].as_u64().unwrap_or(0);
            match result["status"].as_str() {
                Some("accepted") => format!("{hash} committed at height {height}: accepted"),
                _ => format!(
                    "{hash} committed at height {height}: rejected by {}: {}",
                    result["rule"].as_str().unwrap_or("?"),
                    result["message"].as_str().unwrap_or("")
                ),
            }
        }
        Some(other) => format!("{hash} {other}"),
        None => format!("{hash}: {answer}"),
    }
}

pub fn is_rejected(answer: &Value) -> bool {
    answer["status"] == "committed" && answer["result"]["outcome"]["status"] == "rejected"
}

pub fn run(cmd: TxCommand, out: &Output) -> anyhow::Result<std::process::ExitCode> {
    let TxCommand::Submit {
        key,
        node,
        chaincode,
        method,
        args,
        wait,
        nonce,
    } = cmd;
    let key_path = key;
    let key = read_key(&key_path).context("cannot sign")?;
    let args: Value =
        serde_json::from_str(&args).map_err(|e| anyhow::anyhow!("--args is not JSON: {e}"))?;
    let client = Client::new(&crate::node_url(node)?)?;
    let (_, suite) = client.chain()?;
    if let Err(e) = suite.check_key(&key.public()) {
        anyhow::bail!("{}: cannot sign on this chain: {e}", key_path.display());
    }
    let answer = submit(&client, &key, &chaincode, &method, args, wait, nonce)?;
    out.emit(&answer, || describe(&answer))?;
    // Exit 3: committed, but a rule refused it (the refusal is on the ledger).
    Ok(if is_rejected(&answer) {
        std::process::ExitCode::from(3)
    } else {
        std::process::ExitCode::SUCCESS
    })
}
