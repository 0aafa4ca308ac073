//! For auditors: `cbec prove tx|state|provenance` fetches a proof from a node into a
//! file; `cbec verify FILE --genesis FILE` checks it offline, trusting only the genesis
//! file; `cbec provenance GOODS_ID` shows a good's verified timeline.

use std::path::{Path, PathBuf};

use anyhow::Context;
use cbec_chaincode::catalog;
use cbec_genesis::Genesis;
use cbec_ledger::proof::{ProvenBlock, TrustRoot, Verified};
use cbec_ledger::time::format_rfc3339;
use cbec_ledger::ProofFile;
use clap::{Args, Subcommand, ValueEnum};

use crate::client::Client;
use crate::output::Output;

#[derive(Debug, Subcommand)]
pub enum ProveCommand {
    /// Proof that a transaction was committed, with its recorded result.
    Tx {
        /// The transaction hash (hex).
        hash: String,
        #[command(flatten)]
        to: ProveTo,
    },
    /// Proof of a state key's value, or of its absence, e.g. `ent/filing/<USCC>`.
    State {
        key: String,
        /// The block after which to prove it (default: the latest).
        #[arg(long)]
        height: Option<u64>,
        #[command(flatten)]
        to: ProveTo,
    },
    /// Proof of a good's whole history: every event, linked back to the first.
    Provenance {
        goods_id: String,
        #[command(flatten)]
        to: ProveTo,
    },
}

#[derive(Debug, Args)]
pub struct ProveTo {
    /// The node to ask (default: `$CBEC_NODE`, else the local devnet's customs node).
    #[arg(long, value_name = "URL")]
    node: Option<String>,
    /// Where to write the proof.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// JSON (readable, binary parts in hex) or the canonical binary form.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Binary,
}

/// Verifies a proof file offline.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The proof file (JSON or binary, as `cbec prove` wrote it).
    file: PathBuf,
    /// The genesis file: the only thing the verification trusts (its chain id, its
    /// validators, and its crypto suite, whose hash and signatures every check uses).
    #[arg(long, value_name = "FILE")]
    genesis: PathBuf,
}

/// Fetches a good's provenance proof, verifies it against the genesis file, and shows
/// the timeline.
#[derive(Debug, Args)]
pub struct ProvenanceArgs {
    goods_id: String,
    /// The genesis file the proof must verify against.
    #[arg(long, value_name = "FILE")]
    genesis: PathBuf,
    /// The node to ask (default: `$CBEC_NODE`, else the local devnet's customs node).
    #[arg(long, value_name = "URL", conflicts_with = "file")]
    node: Option<String>,
    /// Read a saved proof instead of asking a node.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// `epcis`: print the verified history as an EPCIS 2.0 JSON-LD document instead.
    #[arg(long, value_name = "epcis")]
    format: Option<HistoryFormat>,
    /// The GS1 Digital Link resolver that names goods with a GTIN (EPCIS output).
    #[arg(
        long,
        value_name = "URL",
        default_value = "https://id.cbec-pilot.example"
    )]
    link_base: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HistoryFormat {
    Epcis,
}

fn fetch(client: &Client, path: &str) -> anyhow::Result<ProofFile> {
    let answer = client.get(path)?;
    serde_json::from_value(answer).with_context(|| format!("GET {path}: not a proof"))
}

pub fn prove(cmd: ProveCommand, out: &Output) -> anyhow::Result<()> {
    let (to, path, what) = match cmd {
        ProveCommand::Tx { hash, to } => {
            let hash: cbec_ledger::Hash = hash
                .parse()
                .map_err(|e| anyhow::anyhow!("transaction hash `{hash}`: {e}"))?;
            (
                to,
                format!("/v1/proof/tx/{hash}"),
                format!("transaction {hash}"),
            )
        }
        ProveCommand::State { key, height, to } => {
            let query = height.map_or(String::new(), |h| format!("?height={h}"));
            (
                to,
                format!("/v1/proof/state/{key}{query}"),
                format!("state key `{key}`"),
            )
        }
        ProveCommand::Provenance { goods_id, to } => (
            to,
            format!("/v1/proof/provenance/{goods_id}"),
            format!("the history of {goods_id}"),
        ),
    };
    let client = Client::new(&crate::node_url(to.node)?)?;
    let file = fetch(&client, &path)?;
    let bytes = match to.format {
        Format::Json => serde_json::to_vec_pretty(&file)?,
        Format::Binary => file.to_bytes(),
    };
    cbec_genesis::generate::write_file_atomic(&to.out, &bytes)
        .with_context(|| format!("cannot write {}", to.out.display()))?;
    let summary = serde_json::json!({
        "proof": what,
        "file": to.out,
        "bytes": bytes.len(),
        "set_changes": file.set_changes.len(),
    });
    out.emit(&summary, || {
        format!(
            "wrote the proof of {what} to {} ({} bytes); verify it offline with\n  cbec verify {} --genesis GENESIS.json",
            to.out.display(),
            bytes.len(),
            to.out.display()
        )
    })
}

fn trust_root(genesis: &Path) -> anyhow::Result<TrustRoot> {
    Ok(Genesis::load(genesis, catalog::check_config)?.trust_root())
}

fn read_proof(path: &Path) -> anyhow::Result<ProofFile> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    ProofFile::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn block_line(block: &ProvenBlock) -> String {
    format!(
        "block {} ({}), {}, certified by {}",
        block.height,
        &block.hash.to_hex()[..16],
        format_rfc3339(block.time_ms as i64),
        block.certified_by.join(", ")
    )
}

fn shown_value(value: &Option<Vec<u8>>) -> String {
    match value {
        None => "absent".to_string(),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) if text.chars().all(|c| !c.is_control()) => format!("`{text}`"),
            _ => format!("{} bytes, hex {}", bytes.len(), hex::encode(bytes)),
        },
    }
}

fn timeline_text(
    goods_id: &str,
    head: &ProvenBlock,
    timeline: &[cbec_ledger::proof::TimelineEntry],
    ancestors: &[cbec_ledger::proof::Ancestry],
) -> String {
    let mut text = format!(
        "provenance of {goods_id}: {} events, complete as of {}\n",
        timeline.len(),
        block_line(head)
    );
    push_events(&mut text, timeline);
    for ancestor in ancestors {
        text.push_str(&format!(
            "  {}\n",
            ancestry_heading(&ancestor.goods_id, &ancestor.timeline)
        ));
        push_events(&mut text, &ancestor.timeline);
    }
    text
}

/// How an ancestor is introduced: a lot split, or an input transformed, with its events
/// up to the event that made the goods below it.
fn ancestry_heading(goods_id: &str, timeline: &[cbec_ledger::proof::TimelineEntry]) -> String {
    let (how, what) = match timeline.last().map(|e| e.kind) {
        Some(cbec_ledger::goods::EventKind::Consumed) => ("made from", "transformation"),
        _ => ("split from", "split"),
    };
    format!(
        "{how} {goods_id}: its {} events, up to the {what} that made the goods above",
        timeline.len()
    )
}

fn push_events(text: &mut String, timeline: &[cbec_ledger::proof::TimelineEntry]) {
    for e in timeline {
        let attributes: Vec<String> = e
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        text.push_str(&format!(
            "  #{:<2} {:<11} {:<20} {}  block {:<6} tx {}{}\n",
            e.seq,
            format!("{:?}", e.kind).to_lowercase(),
            e.actor,
            format_rfc3339(e.block.time_ms as i64),
            e.block.height,
            &e.tx_hash.to_hex()[..16],
            if attributes.is_empty() {
                String::new()
            } else {
                format!("  {}", attributes.join(" "))
            }
        ));
        if !e.children.is_empty() {
            let children: Vec<String> = e
                .children
                .iter()
                .map(|c| format!("{} ({})", c.goods_id, c.quantity))
                .collect();
            let into = if e.kind == cbec_ledger::goods::EventKind::Consumed {
                "transformed into"
            } else {
                "split into"
            };
            text.push_str(&format!("       {into}: {}\n", children.join(", ")));
        }
        if e.kind == cbec_ledger::goods::EventKind::Consumed && !e.members.is_empty() {
            text.push_str(&format!("       inputs: {}\n", e.members.join(", ")));
        }
    }
}

fn summary_text(verified: &Verified) -> String {
    match verified {
        Verified::Tx {
            tx_hash,
            sender,
            chaincode,
            method,
            outcome,
            block,
        } => {
            let outcome = match outcome {
                cbec_ledger::Outcome::Accepted { events } => {
                    format!("accepted ({} events)", events.len())
                }
                cbec_ledger::Outcome::Rejected { rule, message } => {
                    format!("rejected by rule {rule}: {message}")
                }
            };
            format!(
                "verified: transaction {tx_hash}\n  call {chaincode}.{method} signed by {sender}\n  result: {outcome}\n  in {}",
                block_line(block)
            )
        }
        Verified::State { key, value, block } => format!(
            "verified: state key `{}` is {}\n  after {}",
            String::from_utf8_lossy(key),
            shown_value(value),
            block_line(block)
        ),
        Verified::Provenance {
            goods_id,
            head,
            timeline,
            ancestors,
        } => format!(
            "verified: {}",
            timeline_text(goods_id, head, timeline, ancestors)
        ),
    }
}

pub fn verify(args: VerifyArgs, out: &Output) -> anyhow::Result<()> {
    let trust = trust_root(&args.genesis)?;
    let file = read_proof(&args.file)?;
    // The verdict comes from the verifier the auditor page runs as WebAssembly.
    let genesis = std::fs::read(&args.genesis)
        .with_context(|| format!("cannot read {}", args.genesis.display()))?;
    let proof = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let (_, verified) = cbec_audit::verify(&genesis, &proof)
        .map_err(|e| anyhow::anyhow!("{}: NOT VERIFIED: {e}", args.file.display()))?;
    let value = serde_json::json!({
        "verified": true,
        "chain_id": trust.chain_id,
        "set_changes": file.set_changes.len(),
        "statement": verified,
    });
    out.emit(&value, || summary_text(&verified))
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Write the auditor page (one self-contained HTML file that verifies proofs in the
    /// browser) to DIR/index.html and print its code hash; or, with --check, compare
    /// the page a node serves with this one.
    Page {
        /// Where to write index.html (open it from disk; it needs no server).
        #[arg(long, value_name = "DIR", required_unless_present = "check")]
        out: Option<PathBuf>,
        /// The page a node serves, e.g. http://127.0.0.1:8080/audit/: is it this one?
        #[arg(long, value_name = "URL")]
        check: Option<String>,
    },
}

pub fn audit(cmd: AuditCommand, out: &Output) -> anyhow::Result<()> {
    let AuditCommand::Page { out: dir, check } = cmd;
    let ours = cbec_audit_page::CODE_HASH;
    if let Some(dir) = dir {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("index.html");
        cbec_genesis::generate::write_file_atomic(&path, cbec_audit_page::PAGE.as_bytes())?;
        out.emit(
            &serde_json::json!({"page": path, "code_hash": ours}),
            || {
                format!(
                    "wrote the auditor page to {}
code hash {ours}",
                    path.display()
                )
            },
        )?;
    }
    if let Some(url) = check {
        let body = reqwest::blocking::get(&url)
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.text())
            .with_context(|| format!("cannot fetch {url}"))?;
        let theirs = cbec_audit_page::code_hash_of(&body)
            .with_context(|| format!("{url} is not an auditor page (it states no code hash)"))?;
        if theirs != ours || body != cbec_audit_page::PAGE {
            anyhow::bail!(
                "{url} serves another page: its code hash is {theirs}, this cbec's is {ours}; trust your own copy"
            );
        }
        out.emit(
            &serde_json::json!({"url": url, "identical": true, "code_hash": ours}),
            || format!("{url} serves this very page (code hash {ours})"),
        )?;
    }
    Ok(())
}

pub fn provenance(args: ProvenanceArgs, out: &Output) -> anyhow::Result<()> {
    let trust = trust_root(&args.genesis)?;
    let (file, source) = match &args.file {
        Some(path) => (read_proof(path)?, path.display().to_string()),
        None => {
            let client = Client::new(&crate::node_url(args.node.clone())?)?;
            let file = fetch(&client, &format!("/v1/proof/provenance/{}", args.goods_id))?;
            (file, client.base().to_string())
        }
    };
    let verified = file
        .verify(&trust)
        .map_err(|e| anyhow::anyhow!("the proof from {source} is NOT VERIFIED: {e}"))?;
    let Verified::Provenance {
        goods_id,
        head,
        timeline,
        ancestors,
    } = &verified
    else {
        anyhow::bail!("{source} holds a proof of another kind, not provenance");
    };
    if *goods_id != args.goods_id {
        anyhow::bail!(
            "{source} proves the history of {goods_id}, not {}",
            args.goods_id
        );
    }
    if args.format == Some(HistoryFormat::Epcis) {
        // Block times are shown at the zone's offset (China Standard Time).
        let document =
            crate::epcis::document(goods_id, timeline, ancestors, "+08:00", &args.link_base);
        return crate::output::print(&serde_json::to_string_pretty(&document)?);
    }
    out.emit(&verified, || {
        timeline_text(goods_id, head, timeline, ancestors)
    })
}
