//! `cbec stats index|report|serve|export|verify`: statistics monitoring, a process of
//! its own beside the validators (see the `cbec-stats` crate).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use cbec_stats::report::{self, Period, REPORTS};
use cbec_stats::{calendar_of, load_genesis, Db, Indexer, Node, Until};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::output::{print, Output};

#[derive(Debug, Subcommand)]
pub enum StatsCommand {
    /// Follow a node's committed blocks into an SQLite file, checking each block's
    /// certificate against the genesis file; resumes where the file stopped.
    Index(IndexArgs),
    /// Print reports from the file: all of them, or one by name.
    Report(ReportArgs),
    /// Serve the reports over HTTP (`GET /v1/stats/...`) from the file.
    Serve {
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
    },
    /// Write every table to DIR/<table>.parquet.
    Export {
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Rebuild the file's content from the node's blocks and compare every table and
    /// report; exits non-zero on any difference.
    Verify(SourceArgs),
}

#[derive(Debug, Args)]
pub struct SourceArgs {
    /// The SQLite file (created by `index` if absent).
    #[arg(long, value_name = "FILE")]
    db: PathBuf,
    /// The node to read blocks from (default: $CBEC_NODE, else the local devnet's
    /// customs node). A bearer token is taken from $CBEC_API_TOKEN.
    #[arg(long, value_name = "URL")]
    node: Option<String>,
    /// The genesis file: the only thing the certificates are checked against (default:
    /// the local devnet's).
    #[arg(long, value_name = "FILE")]
    genesis: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct IndexArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Also serve the reports over HTTP on this address while indexing.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Stop once this height is indexed.
    #[arg(long, value_name = "HEIGHT")]
    until: Option<u64>,
    /// Stop once the node's current height is indexed, instead of following it.
    #[arg(long)]
    once: bool,
    /// Seconds between progress lines on stderr.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    progress: u64,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The report (summary, cleared, modes, chapters, platforms, sellers, refusals,
    /// forex, tax); all of them when absent.
    name: Option<String>,
    #[arg(long, value_name = "FILE")]
    db: PathBuf,
    /// Periods of the cleared, forex and tax reports.
    #[arg(long, value_name = "day|month", default_value = "day")]
    by: Period,
    /// CSV (RFC 4180) instead of text; with several reports, each is headed by a
    /// `# name` line.
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    /// JSON: an object of report name to rows (also the global --json).
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: StatsCommand, out: &Output) -> anyhow::Result<()> {
    match cmd {
        StatsCommand::Index(args) => index(args, out),
        StatsCommand::Report(args) => report_cmd(args, out),
        StatsCommand::Serve { db, listen } => {
            Db::open_read_only(&db)?;
            let bound = cbec_stats::serve::spawn(db, listen)
                .with_context(|| format!("cannot listen on {listen}"))?;
            eprintln!("serving reports on http://{bound}/v1/stats");
            loop {
                std::thread::park();
            }
        }
        StatsCommand::Export { db, out: dir } => {
            let db = Db::open_read_only(&db)?;
            let files = cbec_stats::export::export(db.conn(), &dir)?;
            let listed: Vec<_> = files
                .iter()
                .map(|(path, rows)| json!({"file": path, "rows": rows}))
                .collect();
            out.emit(&listed, || {
                files
                    .iter()
                    .map(|(path, rows)| format!("{:>9} rows  {}", rows, path.display()))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        StatsCommand::Verify(source) => verify(source, out),
    }
}

fn genesis_path(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = flag {
        return Ok(path);
    }
    let devnet = cbec_genesis::Consortium::genesis_path(Path::new("devnet"));
    if devnet.exists() {
        Ok(devnet)
    } else {
        anyhow::bail!(
            "no --genesis given and no local devnet ({})",
            devnet.display()
        )
    }
}

/// The node to read, with answers capped by what the chain allows: a block's bytes,
/// four times over for its results and certificate, and a megabyte.
fn node(flag: Option<String>, genesis: &cbec_genesis::Genesis) -> anyhow::Result<Node> {
    let token = std::env::var("CBEC_API_TOKEN").ok();
    let limit = u64::from(genesis.consensus.block_bytes_max) * 4 + (1 << 20);
    Ok(Node::new(&crate::node_url(flag)?, token.as_deref())?.with_answer_limit(limit))
}

fn index(args: IndexArgs, out: &Output) -> anyhow::Result<()> {
    let genesis = load_genesis(&genesis_path(args.source.genesis)?)?;
    let node = node(args.source.node, &genesis)?;
    let db = Db::open(&args.source.db)?;
    let mut indexer = Indexer::new(node, db, &genesis.trust_root(), calendar_of(&genesis))?;
    let start = indexer.height();
    eprintln!(
        "indexing chain {} into {} from height {}",
        genesis.chain_id(),
        args.source.db.display(),
        start + 1
    );
    if let Some(listen) = args.listen {
        let bound = cbec_stats::serve::spawn(args.source.db.clone(), listen)
            .with_context(|| format!("cannot listen on {listen}"))?;
        eprintln!("serving reports on http://{bound}/v1/stats");
    }
    let until = Until {
        height: args.until,
        caught_up: args.once,
    };
    let every = Duration::from_secs(args.progress.max(1));
    let height = indexer.run(until, every, |ix, elapsed| {
        let s = elapsed.as_secs_f64().max(1e-3);
        eprintln!(
            "height {}: {} blocks, {} transactions, {} rows in {:.1} s ({:.0} blocks/s, {:.0} rows/s)",
            ix.height(),
            ix.progress.blocks,
            ix.progress.txs,
            ix.progress.rows,
            s,
            ix.progress.blocks as f64 / s,
            ix.progress.rows as f64 / s
        );
    })?;
    let p = indexer.progress;
    out.emit(
        &json!({"height": height, "blocks": p.blocks, "txs": p.txs, "rows": p.rows}),
        || {
            format!(
                "indexed up to height {height} ({} new blocks, {} rows)",
                p.blocks, p.rows
            )
        },
    )
}

fn report_cmd(args: ReportArgs, out: &Output) -> anyhow::Result<()> {
    let db = Db::open_read_only(&args.db)?;
    let names: Vec<&str> = match &args.name {
        Some(name) => vec![name.as_str()],
        None => REPORTS.iter().map(|(n, _)| *n).collect(),
    };
    let tables = names
        .iter()
        .map(|name| report::run(db.conn(), name, args.by))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if args.csv {
        let single = tables.len() == 1;
        let text: Vec<String> = tables
            .iter()
            .map(|t| {
                if single {
                    t.to_csv()
                } else {
                    format!("# {}\r\n{}", t.name, t.to_csv())
                }
            })
            .collect();
        return print(&text.join("\r\n"));
    }
    if args.json || out.json() {
        let value = if tables.len() == 1 {
            tables[0].to_json()
        } else {
            serde_json::Value::Object(
                tables
                    .iter()
                    .map(|t| (t.name.clone(), t.to_json()))
                    .collect(),
            )
        };
        return print(&serde_json::to_string_pretty(&value)?);
    }
    let height = db.height()?;
    let mut text = format!("statistics at height {height} ({})\n", args.db.display());
    for table in &tables {
        text.push_str(&format!("\n== {} ==\n{}", table.name, table.to_text()));
    }
    print(&text)
}

fn verify(source: SourceArgs, out: &Output) -> anyhow::Result<()> {
    let genesis = load_genesis(&genesis_path(source.genesis)?)?;
    let node = node(source.node, &genesis)?;
    let found = cbec_stats::verify::verify(&source.db, node, &genesis, calendar_of(&genesis))?;
    out.emit(&found, || {
        let mut text = format!(
            "rebuilt heights 1-{} from the node's blocks (certificates checked against genesis {})\n",
            found.height,
            genesis.chain_id()
        );
        for t in &found.tables {
            let verdict = if t.extra == 0 && t.missing == 0 {
                "same".to_string()
            } else {
                format!(
                    "DIFFERS: {} rows only in the file, {} only in the blocks; first at {}",
                    t.extra,
                    t.missing,
                    t.first.as_deref().unwrap_or("?")
                )
            };
            text.push_str(&format!("{:>14} {:>9} rows  {verdict}\n", t.table, t.rows));
        }
        if !found.reports_differing.is_empty() {
            text.push_str(&format!(
                "reports that differ: {}\n",
                found.reports_differing.join(", ")
            ));
        }
        text
    })?;
    if found.ok() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} does not match the chain (see above)",
            source.db.display()
        )
    }
}
