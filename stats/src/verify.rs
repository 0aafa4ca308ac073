//! `cbec stats verify`: rebuilds the file's content from the blocks (fetched again and
//! checked against genesis) in memory and compares every table, row by row, and every
//! report. A figure that was changed, lost or counted twice in the file shows as a
//! difference naming its table and rows.

use std::path::Path;

use anyhow::Context as _;
use rusqlite::Connection;

use crate::db::Db;
use crate::index::{Indexer, Until};
use crate::ingest::Calendar;
use crate::report::{self, Period, REPORTS};
use crate::schema::TABLES;
use crate::source::Node;

/// One table compared.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableCheck {
    pub table: String,
    pub rows: u64,
    /// Rows in the file that the blocks do not give.
    pub extra: u64,
    /// Rows the blocks give that the file lacks.
    pub missing: u64,
    /// The first differing row's (height, idx) and which side it is on.
    pub first: Option<String>,
}

/// What verification found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verification {
    pub height: u64,
    pub tables: Vec<TableCheck>,
    /// Reports whose results differ.
    pub reports_differing: Vec<String>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.reports_differing.is_empty()
            && self.tables.iter().all(|t| t.extra == 0 && t.missing == 0)
    }
}

fn count(db: &Connection, sql: &str) -> anyhow::Result<u64> {
    Ok(
        db.query_row(&format!("SELECT COUNT(*) FROM ({sql})"), [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

fn first_row(db: &Connection, sql: &str, side: &str) -> anyhow::Result<Option<String>> {
    use rusqlite::OptionalExtension;
    Ok(db
        .query_row(
            &format!("SELECT height, idx FROM ({sql}) ORDER BY height, idx LIMIT 1"),
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1).unwrap_or(-1))),
        )
        .optional()?
        .map(|(h, i)| format!("height {h}, index {i} ({side})")))
}

/// Verifies the file at `path` against the blocks of `node`, up to the file's height.
pub fn verify(
    path: &Path,
    node: Node,
    genesis: &cbec_genesis::Genesis,
    calendar: Calendar,
) -> anyhow::Result<Verification> {
    let trust = genesis.trust_root();
    let file = Db::open_read_only(path)?;
    // The file's own tip must be on the chain of this genesis.
    file.follower(&trust)?;
    let height = file.height()?;
    drop(file);
    let mut indexer = Indexer::new(node, Db::memory()?, &trust, calendar)?;
    let reached = indexer.run(
        Until {
            height: Some(height),
            caught_up: true,
        },
        std::time::Duration::from_secs(3600),
        |_, _| {},
    )?;
    if reached < height {
        anyhow::bail!("the node has blocks up to {reached}; the file claims {height}");
    }
    let rebuilt = indexer.into_db();
    let db = rebuilt.conn();
    db.execute(
        "ATTACH DATABASE ?1 AS file",
        [format!("file:{}?mode=ro", path.display())],
    )
    .context("cannot attach the file")?;
    let mut tables = Vec::new();
    for table in TABLES {
        // Only the blocks verified: an indexer may be adding to the file meanwhile.
        let in_file = format!("SELECT * FROM file.{table} WHERE height <= {height}");
        let extra_sql = format!("{in_file} EXCEPT SELECT * FROM main.{table}");
        let missing_sql = format!("SELECT * FROM main.{table} EXCEPT {in_file}");
        // A block row has no transaction index: it is named by its height alone.
        let key = if *table == "blocks" {
            "height, 0 AS idx"
        } else {
            "height, idx"
        };
        let extra = count(db, &extra_sql)?;
        let missing = count(db, &missing_sql)?;
        let first = if extra > 0 {
            first_row(
                db,
                &format!("SELECT {key} FROM ({extra_sql})"),
                "in the file only",
            )?
        } else if missing > 0 {
            first_row(
                db,
                &format!("SELECT {key} FROM ({missing_sql})"),
                "in the blocks only",
            )?
        } else {
            None
        };
        tables.push(TableCheck {
            table: table.to_string(),
            rows: count(db, &in_file)?,
            extra,
            missing,
            first,
        });
    }
    db.execute("DETACH DATABASE file", [])?;
    let file = Db::open_read_only(path)?;
    // The reports over the file's rows up to the height verified: temporary views that
    // shadow the tables for this connection only.
    for table in TABLES {
        file.conn().execute_batch(&format!(
            "CREATE TEMP VIEW {table} AS SELECT * FROM main.{table} WHERE height <= {height}"
        ))?;
    }
    let mut reports_differing = Vec::new();
    for (name, _) in REPORTS {
        for by in [Period::Day, Period::Month] {
            if report::run(file.conn(), name, by)? != report::run(db, name, by)? {
                reports_differing.push(format!("{name} (by {by:?})").to_lowercase());
            }
        }
    }
    reports_differing.dedup();
    Ok(Verification {
        height,
        tables,
        reports_differing,
    })
}
