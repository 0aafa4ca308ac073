//! `cbec`: the command line of CBEC Ledger, for enterprises, agency operators and
//! auditors. Each subcommand lives in its own module under `commands/`; this file only
//! parses arguments, dispatches, and turns errors into one line and an exit code.

#![forbid(unsafe_code)]

mod commands;
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
    /// Create and show Ed25519 key files.
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
    /// Create, verify and inspect the consortium's genesis document.
    #[command(subcommand)]
    Genesis(commands::genesis::GenesisCommand),
    /// Check identity and commodity codes before putting them in a transaction.
    #[command(subcommand)]
    Codes(commands::codes::CodesCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = output::Output::new(cli.json);
    let result = match cli.command {
        Command::Keys(cmd) => commands::keys::run(cmd, &out),
        Command::Genesis(cmd) => commands::genesis::run(cmd, &out),
        Command::Codes(cmd) => commands::codes::run(cmd, &out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` joins the context chain into one line: "what: why: detail".
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
