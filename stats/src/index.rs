//! The indexer's loop: catch up block by block from the file's tip to the node's, then
//! follow the event stream; after a dropped stream, a restart or a gap, catch up again
//! by height, so no block is missed and none is counted twice (each block's rows and the
//! new tip are one SQL transaction, see [`crate::db`]).
//!
//! A block that fails its checks stops the indexer with the failure: the node it reads
//! served something that the genesis validators did not certify. A node that cannot be
//! reached is retried.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use cbec_ledger::{CertifiedBlock, Follower};

use crate::db::Db;
use crate::ingest::Calendar;
use crate::source::Node;

/// Blocks fetched ahead of the one being written.
const PREFETCH: usize = 32;

/// Tries in a row before a run that stops when caught up gives up on an unreachable
/// node (a following run retries for ever, backing off to 10 s).
const UNREACHABLE_TRIES: u32 = 5;

/// When to stop.
#[derive(Debug, Clone, Copy, Default)]
pub struct Until {
    /// Stop once this height is indexed.
    pub height: Option<u64>,
    /// Stop once the node's current height is indexed (no following).
    pub caught_up: bool,
}

/// Totals since the indexer started.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub blocks: u64,
    pub rows: u64,
    pub txs: u64,
}

#[derive(Debug)]
pub struct Indexer {
    node: Node,
    db: Db,
    follower: Follower,
    calendar: Calendar,
    pub progress: Progress,
}

/// Why catching up stopped early.
enum Stop {
    /// The node could not be read: retry later.
    Unreachable(anyhow::Error),
    /// A block failed its checks, or the file could not be written: stop.
    Fatal(anyhow::Error),
}

impl Indexer {
    pub fn new(
        node: Node,
        db: Db,
        trust: &cbec_ledger::TrustRoot,
        calendar: Calendar,
    ) -> anyhow::Result<Indexer> {
        let follower = db.follower(trust)?;
        Ok(Indexer {
            node,
            db,
            follower,
            calendar,
            progress: Progress::default(),
        })
    }

    pub fn height(&self) -> u64 {
        self.follower.height()
    }

    pub fn into_db(self) -> Db {
        self.db
    }

    /// Indexes the node's blocks after the tip, up to `limit`, until the node has no
    /// more. Returns the height reached.
    fn catch_up(&mut self, limit: Option<u64>) -> Result<u64, Stop> {
        let start = self.height() + 1;
        if limit.is_some_and(|l| start > l) {
            return Ok(self.height());
        }
        let (sender, receiver) = mpsc::sync_channel::<anyhow::Result<CertifiedBlock>>(PREFETCH);
        let node = self.node.clone();
        let fetcher = std::thread::spawn(move || {
            let mut height = start;
            while limit.is_none_or(|l| height <= l) {
                match node.block(height) {
                    Ok(Some(block)) => {
                        if sender.send(Ok(block)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = sender.send(Err(e));
                        return;
                    }
                }
                height += 1;
            }
        });
        let mut result = Ok(());
        for fetched in receiver.iter() {
            let block = match fetched {
                Ok(block) => block,
                Err(e) => {
                    result = Err(Stop::Unreachable(e));
                    break;
                }
            };
            if let Err(e) = self.apply(&block) {
                result = Err(e);
                break;
            }
        }
        drop(receiver);
        let _ = fetcher.join();
        result.map(|()| self.height())
    }

    fn apply(&mut self, block: &CertifiedBlock) -> Result<(), Stop> {
        if self.follower.set_changed(&block.block.header) && self.follower.height() > 0 {
            let at = self.follower.height();
            let keys = self
                .node
                .key_proofs(self.follower.trust(), at)
                .map_err(Stop::Unreachable)?;
            self.follower.change_set(&keys).map_err(|e| {
                Stop::Fatal(anyhow::anyhow!(
                    "validator-set change after block {at}: {e}"
                ))
            })?;
        }
        let (_, rows) = self
            .db
            .apply(&mut self.follower, block, self.calendar)
            .map_err(Stop::Fatal)?;
        self.progress.blocks += 1;
        self.progress.rows += rows as u64;
        self.progress.txs += block.block.txs.len() as u64;
        Ok(())
    }

    /// Indexes until `until` says stop; `report` is called every `every` with the
    /// progress so far. Returns the height reached.
    pub fn run(
        &mut self,
        until: Until,
        every: Duration,
        mut report: impl FnMut(&Indexer, Duration),
    ) -> anyhow::Result<u64> {
        let started = Instant::now();
        let mut last_report = Instant::now();
        let mut wait = Duration::from_millis(200);
        let mut failures = 0;
        loop {
            match self.catch_up(until.height) {
                Ok(height) => {
                    wait = Duration::from_millis(200);
                    failures = 0;
                    if until.height.is_some_and(|l| height >= l) || until.caught_up {
                        report(self, started.elapsed());
                        return Ok(height);
                    }
                }
                Err(Stop::Fatal(e)) => return Err(e),
                Err(Stop::Unreachable(e)) if until.caught_up && failures >= UNREACHABLE_TRIES => {
                    return Err(e.context(format!(
                        "{} could not be read {UNREACHABLE_TRIES} times in a row",
                        self.node.base()
                    )));
                }
                Err(Stop::Unreachable(e)) => {
                    failures += 1;
                    eprintln!(
                        "cannot read {}: {e:#}; retrying in {wait:?}",
                        self.node.base()
                    );
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(10));
                    continue;
                }
            }
            // Caught up: wait for the next block on the event stream, catching up on
            // each, until the stream ends; then catch up by height again.
            let node = self.node.clone();
            let mut fatal = None;
            let followed = node.follow_events(|height| {
                let limit = match until.height {
                    Some(l) => Some(l.min(height)),
                    None => Some(height),
                };
                match self.catch_up(limit) {
                    Ok(reached) => {
                        if last_report.elapsed() >= every {
                            report(self, started.elapsed());
                            last_report = Instant::now();
                        }
                        Ok(until.height.is_none_or(|l| reached < l))
                    }
                    Err(Stop::Fatal(e)) => {
                        fatal = Some(e);
                        Ok(false)
                    }
                    // The next event (or the catch-up after the stream) retries.
                    Err(Stop::Unreachable(_)) => Ok(true),
                }
            });
            if let Some(e) = fatal {
                return Err(e);
            }
            if let Err(e) = followed {
                eprintln!(
                    "event stream of {}: {e:#}; catching up by height",
                    self.node.base()
                );
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// The calendar a genesis file sets: the customs chaincode's
/// `year_utc_offset_minutes` (China Standard Time, +480, when absent).
pub fn calendar_of(genesis: &cbec_genesis::Genesis) -> Calendar {
    let offset = genesis
        .chaincodes
        .iter()
        .find(|c| c.id == "customs")
        .and_then(|c| c.params.get("year_utc_offset_minutes"))
        .and_then(|v| match v {
            cbec_ledger::ParamValue::Int(i) => i32::try_from(*i).ok(),
            _ => None,
        })
        .unwrap_or(480);
    Calendar {
        utc_offset_minutes: offset,
    }
}

/// Reads a genesis file as `cbec verify` does.
pub fn load_genesis(path: &std::path::Path) -> anyhow::Result<cbec_genesis::Genesis> {
    Ok(cbec_genesis::Genesis::load(
        path,
        cbec_chaincode::catalog::check_config,
    )?)
}
