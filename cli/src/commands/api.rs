//! `cbec api token`: a bearer token for a client, and the `node.toml` entry granting it.

use clap::Subcommand;
use rand_core::RngCore;
use serde::Serialize;

use crate::output::Output;

#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Make a random bearer token: give the token to the client (it sends it as
    /// `Authorization: Bearer TOKEN`, or `cbec` reads it from $CBEC_API_TOKEN) and add
    /// the printed `[[api.tokens]]` entry to each node's node.toml. Only its SHA-256 is
    /// kept there.
    Token {
        /// Who holds it, for the node's logs (e.g. `tax-ops`, `auditor-1`).
        #[arg(long)]
        name: String,
        /// What it may do, comma-separated: status, submit, read, proofs, events,
        /// metrics.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
    },
}

#[derive(Debug, Serialize)]
struct Token {
    name: String,
    token: String,
    sha256: String,
    scopes: Vec<String>,
}

pub fn run(cmd: ApiCommand, out: &Output) -> anyhow::Result<()> {
    let ApiCommand::Token { name, scopes } = cmd;
    if name.is_empty() || name.contains(['"', '\n']) {
        anyhow::bail!("--name: give a plain name, like `auditor-1`");
    }
    let known: Vec<&str> = cbec_genesis::Scope::ALL.iter().map(|s| s.name()).collect();
    if let Some(bad) = scopes.iter().find(|s| !known.contains(&s.as_str())) {
        anyhow::bail!("--scopes: `{bad}` is not one of {}", known.join(", "));
    }
    let mut secret = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut secret);
    let token = hex::encode(secret);
    let info = Token {
        sha256: cbec_node::access::token_digest(&token),
        name,
        token,
        scopes,
    };
    out.emit(&info, || {
        let scopes: Vec<String> = info.scopes.iter().map(|s| format!("\"{s}\"")).collect();
        format!(
            "token   {}\n\nadd to each node's node.toml:\n\n[[api.tokens]]\nname = \"{}\"\nsha256 = \"{}\"\nscopes = [{}]",
            info.token,
            info.name,
            info.sha256,
            scopes.join(", ")
        )
    })
}
