//! The reports: SQL over the indexed tables, each a [`Table`] that prints as text, JSON
//! or CSV. Every figure is a sum over rows that name their transaction.
//!
//! Definitions: a parcel is *released* when customs' decision on it is `released`
//! (at clearance, or a held parcel released later); its value is the order's goods
//! value, its dutiable value adds freight and insurance, and its tax is the tax customs
//! assessed at clearance. A parcel returned after release stays counted where it was
//! released, and is counted again as `returned` where it came back. Periods are the
//! zone's calendar days or months (genesis PARAM `year_utc_offset_minutes`).

use std::fmt::Write as _;

use rusqlite::types::ValueRef;
use rusqlite::Connection;
use serde_json::{Map, Value};

/// Day or month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Period {
    #[default]
    Day,
    Month,
}

impl std::str::FromStr for Period {
    type Err = String;
    fn from_str(s: &str) -> Result<Period, String> {
        match s {
            "day" => Ok(Period::Day),
            "month" => Ok(Period::Month),
            other => Err(format!("`{other}` is not a period: day or month")),
        }
    }
}

impl Period {
    fn column(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }
}

/// The reports, by name.
pub const REPORTS: &[(&str, &str)] = &[
    ("summary", "totals: blocks, transactions, documents, released parcels, value, tax, forex"),
    ("cleared", "per day or month: parcels released, value, dutiable value and tax; held, rejected and returned"),
    ("modes", "released parcels by supervision mode (9610, 1210, 1239)"),
    ("chapters", "released parcels' order lines by HS chapter (the commodity code's first two digits)"),
    ("platforms", "released parcels by platform (ebpCode)"),
    ("sellers", "released parcels by seller (ebcCode)"),
    ("refusals", "refused transactions per rule id"),
    ("forex", "per day or month and enterprise: settled receipts and payments (US cents)"),
    ("tax", "per day or month: import tax assessed on released parcels, export exemptions claimed, assessments"),
];

/// A report's result: named columns, rows of integers, text or nulls.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// Released parcels, each with its order and its assessed tax.
const RELEASED: &str = "
    clearances c
    JOIN blocks b ON b.height = c.height
    JOIN orders o ON o.ebp_code = c.ebp_code AND o.order_no = c.order_no
    JOIN clearances t ON t.ebp_code = c.ebp_code AND t.order_no = c.order_no
        AND t.decision = 'clear'";

fn sql(name: &str, by: Period) -> Option<String> {
    let p = by.column();
    Some(match name {
        "summary" => "SELECT
            (SELECT COUNT(*) FROM blocks) AS blocks,
            (SELECT COALESCE(MAX(height), 0) FROM blocks) AS height,
            (SELECT COUNT(*) FROM txs) AS txs,
            (SELECT COUNT(*) FROM refusals) AS refused,
            (SELECT COUNT(*) FROM orders) AS orders,
            (SELECT COUNT(*) FROM payments) AS payments,
            (SELECT COUNT(*) FROM waybills) AS waybills,
            (SELECT COUNT(*) FROM lists) AS lists,
            (SELECT COUNT(*) FROM clearances WHERE status = 'released') AS released,
            (SELECT COALESCE(SUM(o.goods_value_fen), 0) FROM clearances c JOIN orders o
                ON o.ebp_code = c.ebp_code AND o.order_no = c.order_no
                WHERE c.status = 'released') AS value_fen,
            (SELECT COALESCE(SUM(t.tax_due_fen), 0) FROM clearances c JOIN clearances t
                ON t.ebp_code = c.ebp_code AND t.order_no = c.order_no AND t.decision = 'clear'
                WHERE c.status = 'released') AS tax_fen,
            (SELECT COUNT(*) FROM goods_events) AS goods_events,
            (SELECT COALESCE(SUM(amount_cents), 0) FROM forex WHERE direction = 'receipt')
                AS forex_receipts_cents,
            (SELECT COALESCE(SUM(amount_cents), 0) FROM forex WHERE direction = 'payment')
                AS forex_payments_cents"
            .to_string(),
        "cleared" => format!(
            "SELECT b.{p} AS {p},
                SUM(c.status = 'released') AS released,
                SUM(CASE WHEN c.status = 'released' THEN o.goods_value_fen ELSE 0 END) AS value_fen,
                SUM(CASE WHEN c.status = 'released'
                    THEN o.goods_value_fen + o.freight_fen + o.insurance_fen ELSE 0 END)
                    AS dutiable_value_fen,
                SUM(CASE WHEN c.status = 'released' THEN t.tax_due_fen ELSE 0 END) AS tax_fen,
                SUM(c.decision = 'clear' AND c.status = 'held') AS held,
                SUM(c.status = 'rejected') AS rejected,
                SUM(c.status = 'returned') AS returned
             FROM {RELEASED}
             GROUP BY b.{p} ORDER BY b.{p}"
        ),
        "modes" => format!(
            "SELECT l.supervision_mode AS supervision_mode, COUNT(*) AS released,
                SUM(o.goods_value_fen) AS value_fen, SUM(t.tax_due_fen) AS tax_fen
             FROM {RELEASED}
             JOIN lists l ON l.ebp_code = c.ebp_code AND l.order_no = c.order_no
             WHERE c.status = 'released'
             GROUP BY l.supervision_mode ORDER BY l.supervision_mode"
        ),
        "chapters" => format!(
            "SELECT ol.hs_chapter AS hs_chapter, COUNT(DISTINCT o.ebp_code || '/' || o.order_no)
                AS released, COUNT(*) AS lines, SUM(ol.quantity) AS quantity,
                SUM(ol.value_fen) AS value_fen
             FROM {RELEASED}
             JOIN order_lines ol ON ol.height = o.height AND ol.idx = o.idx
             WHERE c.status = 'released'
             GROUP BY ol.hs_chapter ORDER BY ol.hs_chapter"
        ),
        "platforms" => by_party("o.ebp_code", "ebp_code"),
        "sellers" => by_party("o.ebc_code", "ebc_code"),
        "refusals" => "SELECT rule, chaincode, method, COUNT(*) AS refused,
                MIN(height) AS first_height, MAX(height) AS last_height
             FROM refusals GROUP BY rule, chaincode, method
             ORDER BY refused DESC, rule, chaincode, method"
            .to_string(),
        "forex" => format!(
            "SELECT b.{p} AS {p}, f.uscc AS uscc,
                SUM(CASE WHEN f.direction = 'receipt' THEN f.amount_cents ELSE 0 END)
                    AS receipts_cents,
                SUM(CASE WHEN f.direction = 'payment' THEN f.amount_cents ELSE 0 END)
                    AS payments_cents,
                COUNT(*) AS settlements
             FROM forex f JOIN blocks b ON b.height = f.height
             GROUP BY b.{p}, f.uscc ORDER BY b.{p}, f.uscc"
        ),
        "tax" => format!(
            "SELECT {p}, SUM(import_tax_fen) AS import_tax_fen,
                SUM(exemptions) AS export_exemptions, SUM(exempt_fen) AS export_exempt_fen,
                SUM(assessments) AS assessments, SUM(assessed_fen) AS assessed_fen
             FROM (
                SELECT b.{p} AS {p}, t.tax_due_fen AS import_tax_fen, 0 AS exemptions,
                    0 AS exempt_fen, 0 AS assessments, 0 AS assessed_fen
                FROM {RELEASED} WHERE c.status = 'released'
                UNION ALL
                SELECT b.{p}, 0, r.kind = 'export_exemption',
                    CASE WHEN r.kind = 'export_exemption' THEN r.amount_fen ELSE 0 END,
                    r.kind = 'assessment',
                    CASE WHEN r.kind = 'assessment' THEN r.amount_fen ELSE 0 END
                FROM tax_records r JOIN blocks b ON b.height = r.height)
             GROUP BY {p} ORDER BY {p}"
        ),
        _ => return None,
    })
}

fn by_party(expr: &str, column: &str) -> String {
    format!(
        "SELECT {expr} AS {column},
            (SELECT e.name FROM enterprises e WHERE e.customs_code = {expr}
                ORDER BY e.height DESC, e.idx DESC LIMIT 1) AS name,
            COUNT(*) AS released, SUM(o.goods_value_fen) AS value_fen,
            SUM(t.tax_due_fen) AS tax_fen
         FROM {RELEASED}
         WHERE c.status = 'released'
         GROUP BY {expr} ORDER BY {expr}"
    )
}

/// Runs report `name`.
pub fn run(db: &Connection, name: &str, by: Period) -> anyhow::Result<Table> {
    let Some(sql) = sql(name, by) else {
        let names: Vec<&str> = REPORTS.iter().map(|(n, _)| *n).collect();
        anyhow::bail!("no report `{name}`: the reports are {}", names.join(", "));
    };
    query(db, name, &sql)
}

/// Any query as a table.
pub fn query(db: &Connection, name: &str, sql: &str) -> anyhow::Result<Table> {
    let mut statement = db.prepare(sql)?;
    let columns: Vec<String> = statement
        .column_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let width = columns.len();
    let rows = statement
        .query_map([], |row| {
            (0..width)
                .map(|i| {
                    Ok(match row.get_ref(i)? {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(n) => Value::from(n),
                        ValueRef::Real(f) => Value::from(f),
                        ValueRef::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(b) => Value::from(format!("{} bytes", b.len())),
                    })
                })
                .collect::<rusqlite::Result<Vec<Value>>>()
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Table {
        name: name.to_string(),
        columns,
        rows,
    })
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Table {
    /// An array of objects, one per row.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|row| {
                    let mut object = Map::new();
                    for (column, value) in self.columns.iter().zip(row) {
                        object.insert(column.clone(), value.clone());
                    }
                    Value::Object(object)
                })
                .collect(),
        )
    }

    /// RFC 4180: a header line, then the rows; fields with a comma, quote or line break
    /// quoted.
    pub fn to_csv(&self) -> String {
        let field = |s: String| {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s
            }
        };
        let mut out = String::new();
        let line = |cells: Vec<String>| cells.into_iter().map(field).collect::<Vec<_>>().join(",");
        out.push_str(&line(self.columns.clone()));
        out.push_str("\r\n");
        for row in &self.rows {
            out.push_str(&line(row.iter().map(cell).collect()));
            out.push_str("\r\n");
        }
        out
    }

    /// Aligned columns for a terminal: numbers to the right.
    pub fn to_text(&self) -> String {
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|row| row.iter().map(cell).collect())
            .collect();
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                cells
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([c.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let numeric: Vec<bool> = (0..self.columns.len())
            .map(|i| {
                self.rows
                    .iter()
                    .all(|r| matches!(r[i], Value::Number(_) | Value::Null))
            })
            .collect();
        let mut out = String::new();
        let mut line = |values: &[String]| {
            let parts: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    if numeric[i] {
                        format!("{v:>w$}", w = widths[i])
                    } else {
                        format!("{v:<w$}", w = widths[i])
                    }
                })
                .collect();
            let _ = writeln!(out, "{}", parts.join("  ").trim_end());
        };
        line(&self.columns);
        for row in &cells {
            line(row);
        }
        if self.rows.is_empty() {
            out.push_str("(no rows)\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting_and_text_aligns_numbers() {
        let table = Table {
            name: "t".into(),
            columns: vec!["name".into(), "n".into()],
            rows: vec![
                vec![Value::from("a, \"b\""), Value::from(7)],
                vec![Value::from("plain"), Value::Null],
            ],
        };
        assert_eq!(table.to_csv(), "name,n\r\n\"a, \"\"b\"\"\",7\r\nplain,\r\n");
        assert_eq!(table.to_text(), "name    n\na, \"b\"  7\nplain\n");
        assert_eq!(
            table.to_json(),
            serde_json::json!([{"name": "a, \"b\"", "n": 7}, {"name": "plain", "n": null}])
        );
    }

    #[test]
    fn every_report_runs_on_an_empty_file_and_unknown_ones_are_named() {
        let db = crate::Db::memory().expect("db");
        for (name, _) in REPORTS {
            for by in [Period::Day, Period::Month] {
                run(db.conn(), name, by).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
        let err = run(db.conn(), "nonesuch", Period::Day).expect_err("unknown");
        assert!(err.to_string().contains("summary, cleared"), "{err}");
        assert!("week".parse::<Period>().is_err());
    }
}
