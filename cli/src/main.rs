//! `cbec`: the command line of CBEC Ledger, for enterprises, agency operators and
//! auditors. Each subcommand lives in its own module under `commands/`; this file only
//! parses arguments, dispatches, and turns errors into one line and an exit code.

#![forbid(unsafe_code)]

mod client;
mod commands;
mod demo;
mod epcis;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// CBEC Ledger: a permissioned ledger for a cross-border e-commerce pilot zone.
#[derive(Debug, Parser)]
#[command(name = "cbec", version, propagate_version = true)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create and show key files (Ed25519, or SM2 for an sm2-sm3 chain).
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
    /// Create, verify and inspect the consortium's genesis document.
    #[command(subcommand)]
    Genesis(commands::genesis::GenesisCommand),
    /// Check identity and commodity codes before putting them in a transaction.
    #[command(subcommand)]
    Codes(commands::codes::CodesCommand),
    /// Run a validator node.
    #[command(subcommand)]
    Node(commands::node::NodeCommand),
    /// A local four-agency consortium: start, inspect, stop.
    #[command(subcommand)]
    Devnet(commands::devnet::DevnetCommand),
    /// Sign and submit transactions.
    #[command(subcommand)]
    Tx(commands::tx::TxCommand),
    /// Read transactions, blocks and state from a node.
    #[command(subcommand)]
    Query(commands::query::QueryCommand),
    /// Fetch a proof (of a transaction, a state value or a good's history) into a file.
    #[command(subcommand)]
    Prove(commands::audit::ProveCommand),
    /// Verify a proof file offline, trusting only the genesis file.
    Verify(commands::audit::VerifyArgs),
    /// Show a good's verified timeline: every event, by whom, when, in which block.
    Provenance(commands::audit::ProvenanceArgs),
    /// A good's GS1 Digital Link URI and its QR code for the parcel label.
    Label(commands::label::LabelArgs),
    /// The auditor page: write the offline copy, or check the one a node serves.
    #[command(subcommand)]
    Audit(commands::audit::AuditCommand),
    /// Load the local consortium with signed transactions; report throughput, latency,
    /// CPU, memory and disk.
    Bench(commands::bench::BenchArgs),
    /// Access to a node's HTTP API: bearer tokens.
    #[command(subcommand)]
    Api(commands::api::ApiCommand),
    /// Identity attestations (R10): an identity service signs one for a buyer tag.
    #[command(subcommand)]
    Identity(commands::identity::IdentityCommand),
    /// Statistics monitoring: index committed blocks into SQLite, reports, Parquet.
    #[command(subcommand)]
    Stats(commands::stats::StatsCommand),
    /// WebAssembly chaincode deployed through governance: install, activate (upgrade),
    /// retire, vote, apply, status.
    #[command(subcommand)]
    Chaincode(commands::chaincode::ChaincodeCommand),
}

/// The node URL: `--node`, else `$CBEC_NODE`, else the local devnet's customs node.
pub fn node_url(flag: Option<String>) -> anyhow::Result<String> {
    if let Some(url) = flag.or_else(|| std::env::var("CBEC_NODE").ok()) {
        return Ok(url);
    }
    commands::devnet::api_url(std::path::Path::new("devnet"), "customs")
        .map_err(|e| anyhow::anyhow!("no --node given, no $CBEC_NODE, and no local devnet ({e})"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = output::Output::new(cli.json);
    let result = match cli.command {
        Command::Keys(cmd) => commands::keys::run(cmd, &out).map(|()| ExitCode::SUCCESS),
        Command::Genesis(cmd) => commands::genesis::run(cmd, &out).map(|()| ExitCode::SUCCESS),
        Command::Codes(cmd) => commands::codes::run(cmd, &out).map(|()| ExitCode::SUCCESS),
        Command::Node(cmd) => return commands::node::run(cmd),
        Command::Devnet(cmd) => commands::devnet::run(cmd, &out).map(|()| ExitCode::SUCCESS),
        Command::Tx(cmd) => commands::tx::run(cmd, &out),
        Command::Query(cmd) => commands::query::run(cmd, &out).map(|()| ExitCode::SUCCESS),
        Command::Prove(cmd) => commands::audit::prove(cmd, &out).map(|()| ExitCode::SUCCESS),
        Command::Verify(args) => commands::audit::verify(args, &out).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => commands::bench::run(args, &out).map(|()| ExitCode::SUCCESS),
        Command::Api(cmd) => commands::api::run(cmd, &out).map(|()| ExitCode::SUCCESS),
        Command::Identity(cmd) => commands::identity::run(cmd, &out).map(|()| ExitCode::SUCCESS),
        Command::Label(args) => commands::label::run(args, &out).map(|()| ExitCode::SUCCESS),
        Command::Audit(cmd) => commands::audit::audit(cmd, &out).map(|()| ExitCode::SUCCESS),
        Command::Stats(cmd) => commands::stats::run(cmd, &out).map(|()| ExitCode::SUCCESS),
        Command::Chaincode(cmd) => commands::chaincode::run(cmd, &out).map(|()| ExitCode::SUCCESS),
        Command::Provenance(args) => {
            commands::audit::provenance(args, &out).map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` joins the context chain into one line: "what: why: detail".
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every command's arguments are well formed (clap checks this only when a command is
    /// parsed, so a clash in one rarely used command would otherwise surface to a user).
    #[test]
    fn every_command_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
