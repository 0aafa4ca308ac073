//! `cbec-node --config DIR/<agency>/node.toml`: one validator of the consortium.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Runs one CBEC Ledger validator until SIGINT or SIGTERM.
#[derive(Debug, Parser)]
#[command(name = "cbec-node", version)]
struct Args {
    /// The node's configuration file (written by `cbec genesis new`).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Log as JSON lines instead of text (overrides `log_format` in the config).
    #[arg(long)]
    log_json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let format = args.log_json.then_some(cbec_genesis::LogFormat::Json);
    cbec_node::run::main_with(&args.config, format)
}
