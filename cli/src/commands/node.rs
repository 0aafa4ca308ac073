//! `cbec node run`: the validator, from the same binary (so one `cargo run` builds all).

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Run one validator until SIGINT or SIGTERM (same as `cbec-node --config FILE`).
    Run {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Log as JSON lines instead of text.
        #[arg(long)]
        log_json: bool,
    },
}

pub fn run(cmd: NodeCommand) -> std::process::ExitCode {
    let NodeCommand::Run { config, log_json } = cmd;
    cbec_node::run::main_with(&config, log_json.then_some(cbec_genesis::LogFormat::Json))
}
