//! `cbec query tx|block|state`.

use clap::Subcommand;

use crate::client::Client;
use crate::output::Output;

#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// A transaction's status, block and result.
    Tx {
        hash: String,
        #[arg(long, value_name = "URL")]
        node: Option<String>,
    },
    /// A block by height, or `latest`.
    Block {
        height: String,
        #[arg(long, value_name = "URL")]
        node: Option<String>,
    },
    /// A state value by key, e.g. `goods/head/PARCEL-1`.
    State {
        key: String,
        #[arg(long, value_name = "URL")]
        node: Option<String>,
        /// Include the Merkle proof against the latest state root.
        #[arg(long)]
        proof: bool,
    },
}

pub fn run(cmd: QueryCommand, out: &Output) -> anyhow::Result<()> {
    let (node, path) = match cmd {
        QueryCommand::Tx { hash, node } => (node, format!("/v1/tx/{hash}")),
        QueryCommand::Block { height, node } => (node, format!("/v1/blocks/{height}")),
        QueryCommand::State { key, node, proof } => {
            (node, format!("/v1/state/{key}?proof={proof}"))
        }
    };
    let client = Client::new(&crate::node_url(node)?)?;
    let answer = client.get(&path)?;
    out.emit(&answer, || {
        serde_json::to_string_pretty(&answer).unwrap_or_default()
    })
}
