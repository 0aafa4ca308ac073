//! The SQLite file: its schema, the chain it belongs to, and where the indexer stopped.
//!
//! A block's rows and the indexer's new tip are written in one SQL transaction, so after
//! a crash or a kill the file holds every block up to its tip exactly once; the indexer
//! resumes at the block after it.

use std::path::Path;

use anyhow::{bail, Context as _};
use cbec_ledger::proof::ProvenBlock;
use cbec_ledger::{codec, CertifiedBlock, Follower, FollowerState, Hash, TrustRoot};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::ingest::{block_rows, Calendar};
use crate::schema;

#[derive(Debug)]
pub struct Db {
    conn: Connection,
}

impl Db {
    /// Opens `path` for indexing, creating it and its tables if it does not exist.
    pub fn open(path: &Path) -> anyhow::Result<Db> {
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open database {}", path.display()))?;
        // WAL: readers (reports, the HTTP server) run while the indexer writes;
        // NORMAL: a power cut can lose the last blocks, never the file's consistency,
        // and the indexer fetches them again.
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
            .with_context(|| format!("{}: not an SQLite database", path.display()))?;
        Db::init(conn, &path.display().to_string())
    }

    /// Opens an existing file for reading only (reports, export, the HTTP server).
    pub fn open_read_only(path: &Path) -> anyhow::Result<Db> {
        if !path.exists() {
            bail!(
                "no database at {} (create it with `cbec stats index`)",
                path.display()
            );
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open database {}", path.display()))?;
        let db = Db { conn };
        db.check_version(&path.display().to_string())?;
        Ok(db)
    }

    /// An empty database in memory (what `cbec stats verify` rebuilds from the blocks).
    pub fn memory() -> anyhow::Result<Db> {
        Db::init(Connection::open_in_memory()?, "memory")
    }

    fn init(conn: Connection, name: &str) -> anyhow::Result<Db> {
        conn.execute_batch(schema::DDL)
            .with_context(|| format!("{name}: cannot create the tables"))?;
        let db = Db { conn };
        if db.meta("schema")?.is_none() {
            db.set_meta("schema", &schema::VERSION.to_be_bytes())?;
        }
        db.check_version(name)?;
        Ok(db)
    }

    fn check_version(&self, name: &str) -> anyhow::Result<()> {
        let version = self
            .meta("schema")
            .with_context(|| format!("{name}: not a statistics database"))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(i64::from_be_bytes);
        match version {
            Some(schema::VERSION) => Ok(()),
            Some(other) => bail!(
                "{name}: schema version {other}, this cbec reads version {}",
                schema::VERSION
            ),
            None => bail!("{name}: not a statistics database (no schema version)"),
        }
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    fn meta(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    fn set_meta(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// The chain this file indexes, once it has indexed anything.
    pub fn chain_id(&self) -> anyhow::Result<Option<Hash>> {
        self.meta("chain_id")?
            .map(|v| {
                <[u8; 32]>::try_from(v.as_slice())
                    .map(Hash)
                    .map_err(|_| anyhow::anyhow!("meta chain_id is not 32 bytes"))
            })
            .transpose()
    }

    /// The height of the last block indexed (0 for none).
    pub fn height(&self) -> anyhow::Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT COALESCE(MAX(height), 0) FROM blocks", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// The follower where this file stopped, for the chain of `trust`; a file of another
    /// chain is refused.
    pub fn follower(&self, trust: &TrustRoot) -> anyhow::Result<Follower> {
        if let Some(chain) = self.chain_id()? {
            if chain != trust.chain_id {
                bail!(
                    "the database indexes chain {chain}, not the genesis file's {}",
                    trust.chain_id
                );
            }
        }
        let follower = match self.meta("follower")? {
            None => Follower::new(trust.clone()),
            Some(bytes) => {
                let state: FollowerState = codec::decode(&bytes)
                    .map_err(|e| anyhow::anyhow!("meta follower does not decode: {e}"))?;
                Follower::resume(trust.clone(), state)
            }
        }
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let height = self.height()?;
        if follower.height() != height {
            bail!(
                "the database's tip ({}) and its last block ({height}) differ: the file was changed by hand",
                follower.height()
            );
        }
        Ok(follower)
    }

    /// Checks `block` as the one after `follower`'s tip and writes its rows and the new
    /// tip in one transaction. Returns the proven block and the rows written.
    pub fn apply(
        &mut self,
        follower: &mut Follower,
        block: &CertifiedBlock,
        calendar: Calendar,
    ) -> anyhow::Result<(ProvenBlock, usize)> {
        let proven = follower.accept(block).map_err(|e| anyhow::anyhow!("{e}"))?;
        let tx = self.conn.transaction()?;
        let rows = block_rows(&tx, &block.block, &proven, calendar)
            .with_context(|| format!("writing block {}", proven.height))?;
        let state = codec::encode(&follower.state());
        for (key, value) in [
            ("chain_id", follower.trust().chain_id.0.to_vec()),
            ("follower", state),
        ] {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
        }
        tx.commit()?;
        Ok((proven, rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbec_ledger::proof::TrustedAgency;
    use cbec_ledger::{KeyPair, Suite};

    fn trust(chain: u8) -> TrustRoot {
        TrustRoot {
            chain_id: Hash([chain; 32]),
            suite: Suite::Ed25519Sha256,
            agencies: vec![TrustedAgency {
                name: "customs".into(),
                validator_key: KeyPair::from_seed(&[1; 32]).public(),
                voting_power: 1,
            }],
        }
    }

    #[test]
    fn a_file_of_another_chain_or_schema_or_changed_by_hand_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let db = Db::open(&path).expect("create");
        assert_eq!(db.follower(&trust(1)).expect("empty").height(), 0);
        db.set_meta("chain_id", &[1; 32]).expect("meta");
        let err = db.follower(&trust(2)).expect_err("another chain");
        assert!(err.to_string().contains("indexes chain"), "{err}");
        // A block row the tip does not account for.
        db.conn()
            .execute(
                "INSERT INTO blocks VALUES (1, 'h', 0, '1970-01-01', '1970-01', 0, '')",
                [],
            )
            .expect("insert");
        let err = db.follower(&trust(1)).expect_err("changed by hand");
        assert!(err.to_string().contains("changed by hand"), "{err}");
        db.set_meta("schema", &99i64.to_be_bytes()).expect("meta");
        drop(db);
        let err = Db::open_read_only(&path).expect_err("another schema");
        assert!(err.to_string().contains("schema version 99"), "{err}");
        let err = Db::open_read_only(&dir.path().join("none.db")).expect_err("absent");
        assert!(err.to_string().contains("cbec stats index"), "{err}");
    }
}
