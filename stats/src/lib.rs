//! Statistics monitoring (统计监测体系): a separate process, not part of a validator,
//! that follows committed blocks, checks each block's certificate against the genesis
//! file, and keeps an SQLite database of the documents and outcomes, with reports
//! (`cbec stats report`, `GET /v1/stats/...`), Parquet export and verification against
//! the chain.
//!
//! - [`schema`]: the tables, every row keyed by block height and transaction index.
//! - [`ingest`]: a certified block into rows, decoded with the chaincode's own types.
//! - [`db`]: the file, with each block's rows and the new tip in one SQL transaction.
//! - [`source`]: the node read over HTTP (blocks in binary, the event stream).
//! - [`index`]: the loop: catch up by height, follow events, resume after anything.
//! - [`report`], [`serve`], [`export`], [`verify`].

#![forbid(unsafe_code)]

pub mod db;
pub mod export;
pub mod index;
pub mod ingest;
pub mod report;
pub mod schema;
pub mod serve;
pub mod source;
pub mod verify;

pub use db::Db;
pub use index::{calendar_of, load_genesis, Indexer, Until};
pub use source::Node;
