//! Export of the tables to Parquet, one file per table, for the warehouses national
//! statistics uses (DuckDB, Spark, ClickHouse read them directly). Integer columns
//! become INT64 and text columns UTF-8 strings, nullable as in SQLite; Snappy
//! compression; row groups of [`ROW_GROUP`] rows.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use parquet::basic::{Compression, LogicalType, Repetition, Type as Physical};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use rusqlite::types::ValueRef;
use rusqlite::Connection;

use crate::schema::TABLES;

/// Rows per Parquet row group.
pub const ROW_GROUP: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Text,
}

/// One column's values in a row group: `None` is SQL NULL.
#[derive(Debug)]
enum Values {
    Integer(Vec<Option<i64>>),
    Text(Vec<Option<ByteArray>>),
}

/// The columns of `table` with their kinds.
fn columns(db: &Connection, table: &str) -> anyhow::Result<Vec<(String, Kind)>> {
    let mut statement = db.prepare(&format!("PRAGMA table_info({table})"))?;
    let columns = statement
        .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    columns
        .into_iter()
        .map(|(name, declared)| {
            let kind = match declared.to_ascii_uppercase().as_str() {
                "INTEGER" => Kind::Integer,
                "TEXT" => Kind::Text,
                other => bail!("{table}.{name}: type {other} has no Parquet mapping here"),
            };
            Ok((name, kind))
        })
        .collect()
}

/// Writes every table to `dir/<table>.parquet`; returns the files and their row counts.
pub fn export(db: &Connection, dir: &Path) -> anyhow::Result<Vec<(PathBuf, usize)>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    TABLES
        .iter()
        .map(|table| {
            let path = dir.join(format!("{table}.parquet"));
            let rows = export_table(db, table, &path)
                .with_context(|| format!("exporting {table} to {}", path.display()))?;
            Ok((path, rows))
        })
        .collect()
}

fn export_table(db: &Connection, table: &str, path: &Path) -> anyhow::Result<usize> {
    let columns = columns(db, table)?;
    let fields = columns
        .iter()
        .map(|(name, kind)| {
            let builder = match kind {
                Kind::Integer => Type::primitive_type_builder(name, Physical::INT64),
                Kind::Text => Type::primitive_type_builder(name, Physical::BYTE_ARRAY)
                    .with_logical_type(Some(LogicalType::String)),
            };
            Ok(Arc::new(
                builder.with_repetition(Repetition::OPTIONAL).build()?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let schema = Arc::new(
        Type::group_type_builder(table)
            .with_fields(fields)
            .build()?,
    );
    let properties = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("cbec {}", env!("CARGO_PKG_VERSION")))
            .build(),
    );
    // Written beside the target and renamed: a reader never sees half a file.
    let partial = path.with_extension("parquet.partial");
    let file =
        File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let mut writer = SerializedFileWriter::new(file, schema, properties)?;
    let mut statement = db.prepare(&format!("SELECT * FROM {table} ORDER BY rowid"))?;
    let mut rows = statement.query([])?;
    let mut total = 0;
    loop {
        let mut group: Vec<Values> = columns
            .iter()
            .map(|(_, kind)| match kind {
                Kind::Integer => Values::Integer(Vec::new()),
                Kind::Text => Values::Text(Vec::new()),
            })
            .collect();
        let mut count = 0;
        while count < ROW_GROUP {
            let Some(row) = rows.next()? else { break };
            for (i, values) in group.iter_mut().enumerate() {
                match (values, row.get_ref(i)?) {
                    (Values::Integer(v), ValueRef::Integer(n)) => v.push(Some(n)),
                    (Values::Integer(v), ValueRef::Null) => v.push(None),
                    (Values::Text(v), ValueRef::Text(t)) => {
                        v.push(Some(ByteArray::from(t.to_vec())))
                    }
                    (Values::Text(v), ValueRef::Null) => v.push(None),
                    (_, other) => bail!(
                        "{table}.{}: a {:?} value in a column of another type",
                        columns[i].0,
                        other.data_type()
                    ),
                }
            }
            count += 1;
        }
        if count == 0 {
            break;
        }
        let mut row_group = writer.next_row_group()?;
        for values in &group {
            let mut column = row_group
                .next_column()?
                .context("the schema has fewer columns than the table")?;
            match values {
                Values::Integer(v) => {
                    let (present, levels) = split(v);
                    column
                        .typed::<Int64Type>()
                        .write_batch(&present, Some(&levels), None)?;
                }
                Values::Text(v) => {
                    let (present, levels) = split(v);
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&present, Some(&levels), None)?;
                }
            }
            column.close()?;
        }
        row_group.close()?;
        total += count;
        if count < ROW_GROUP {
            break;
        }
    }
    writer.close()?;
    std::fs::rename(&partial, path)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), path.display()))?;
    Ok(total)
}

/// The present values and each row's definition level (1 present, 0 null).
fn split<T: Clone>(values: &[Option<T>]) -> (Vec<T>, Vec<i16>) {
    let present = values.iter().flatten().cloned().collect();
    let levels = values.iter().map(|v| i16::from(v.is_some())).collect();
    (present, levels)
}
