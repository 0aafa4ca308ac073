//! The registry of enabled chaincodes and deterministic block execution.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use cbec_ledger::{
    codec, ChaincodeConfig, Event, Hash, Outcome, PublicKey, TxResult, VerifiedTransaction,
};

use crate::context::{BlockInfo, Caller, Context};
use crate::layout;
use crate::params::Params;
use crate::permission::{is_standing_key, standing, NotPermitted, StandingError};
use crate::state::{BlockOverlay, StateError, StateRead, Writes};
use crate::{Chaincode, RuleError};

/// What executing a block produced: one result per transaction, and the state writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockOutcome {
    pub results: Vec<TxResult>,
    pub writes: Writes,
}

/// A block that must not be committed: a proposer that includes such a transaction is
/// faulty, and validators prevote nil.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBlock {
    #[error("transaction {index} has nonce {found}, expected {expected}")]
    Nonce {
        index: usize,
        expected: u64,
        found: u64,
    },
    /// The ledger is permissioned: see [`crate::permission`].
    #[error("transaction {index}: {reason}")]
    Sender { index: usize, reason: NotPermitted },
}

/// A block built from candidate transactions: those that fit, their outcome, and those
/// left out with the reason (a nonce out of order, a sender that may not transact).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub txs: Vec<VerifiedTransaction>,
    pub outcome: BlockOutcome,
    pub dropped: Vec<(Hash, InvalidBlock)>,
}

/// Why a block produced no outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The block breaks a rule no honest proposer breaks: it must not be committed.
    #[error(transparent)]
    Invalid(#[from] InvalidBlock),
    /// Committed state could not be read. Nothing about the block is known: the node
    /// must stop rather than record anything (another node's disk is fine).
    #[error(transparent)]
    Storage(#[from] StateError),
}

/// The chaincodes enabled at genesis, with their parameters.
pub struct Engine {
    chaincodes: BTreeMap<&'static str, Box<dyn Chaincode>>,
    params: Params,
    /// Chaincode deployed through governance, found in state ([`crate::wasm`]).
    wasm: crate::wasm::Host,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("chaincodes", &self.chaincodes.keys().collect::<Vec<_>>())
            .field("params", &self.params)
            .finish()
    }
}

impl Engine {
    /// The engine for a genesis document's chaincode list.
    pub fn from_configs(configs: &[ChaincodeConfig]) -> Result<Engine, String> {
        let params = Params::from_configs(configs)?;
        let mut chaincodes: BTreeMap<&'static str, Box<dyn Chaincode>> = BTreeMap::new();
        for config in configs {
            let chaincode = crate::builtin(&config.id)
                .ok_or_else(|| format!("unknown chaincode `{}`", config.id))?;
            chaincodes.insert(chaincode.id(), chaincode);
        }
        Ok(Engine {
            chaincodes,
            params,
            wasm: crate::wasm::Host::default(),
        })
    }

    /// Adds (or replaces) a chaincode: the seam for rule developers' own chaincode.
    pub fn with_chaincode(mut self, chaincode: Box<dyn Chaincode>) -> Engine {
        self.chaincodes.insert(chaincode.id(), chaincode);
        self
    }

    /// The state every chain starts with: the agencies and their operator keys.
    pub fn genesis_writes(agencies: &[(String, Vec<PublicKey>)]) -> Writes {
        crate::governance::genesis_writes(agencies)
    }

    /// Executes `txs` in order on top of `state`, as a validator does. Deterministic:
    /// two nodes with the same state and transactions produce byte-identical results
    /// and writes. A transaction no honest proposer includes (a nonce out of order, a
    /// sender that may not transact) makes the block invalid; a failed read of `state`
    /// abandons it ([`ExecError::Storage`]); no result is made of either.
    pub fn execute_block<'s>(
        &self,
        state: &'s (dyn StateRead + 's),
        block: BlockInfo,
        txs: &[VerifiedTransaction],
    ) -> Result<BlockOutcome, ExecError> {
        let mut run = Run::new(state);
        for (index, tx) in txs.iter().enumerate() {
            run.push(self, block, index, tx)??;
        }
        Ok(run.finish(block))
    }

    /// A proposer's block from `candidates`, in order: each that a validator would
    /// accept at its place goes in; the rest are left out (with why), and so are a
    /// sender's later ones whose nonces then no longer follow. The block that comes out
    /// passes [`Engine::execute_block`] with the same outcome.
    pub fn build_block<'s>(
        &self,
        state: &'s (dyn StateRead + 's),
        block: BlockInfo,
        candidates: Vec<VerifiedTransaction>,
    ) -> Result<Built, StateError> {
        let mut run = Run::new(state);
        let mut txs = Vec::with_capacity(candidates.len());
        let mut dropped = Vec::new();
        for tx in candidates {
            match run.push(self, block, txs.len(), &tx)? {
                Ok(()) => txs.push(tx),
                Err(invalid) => dropped.push((tx.hash(), invalid)),
            }
        }
        Ok(Built {
            txs,
            outcome: run.finish(block),
            dropped,
        })
    }

    fn execute_one<'s>(
        &self,
        overlay: &BlockOverlay<'s, dyn StateRead + 's>,
        block: BlockInfo,
        caller: Caller,
        tx: &VerifiedTransaction,
    ) -> Result<(Vec<Event>, Writes), RuleError> {
        let call = &tx.body().call;
        let Some(chaincode) = self.chaincodes.get(call.chaincode.as_str()) else {
            return self.execute_wasm(overlay, block, &caller, tx);
        };
        let mut ctx = Context::new(
            caller,
            tx.body().sender,
            block,
            tx.hash(),
            chaincode.id(),
            &self.params,
            overlay,
        );
        // A panic in a rule is a bug in that rule, not a reason to stop the node: it is
        // recorded as a rejection and the transaction's writes are dropped.
        let run = catch_unwind(AssertUnwindSafe(|| {
            chaincode.execute(&mut ctx, &call.method, &call.args)
        }));
        match run {
            Ok(Ok(events)) => Ok((events, ctx.into_writes())),
            Ok(Err(e)) => Err(e),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Err(RuleError::new(
                    "PANIC",
                    format!("chaincode `{}` panicked: {what}", chaincode.id()),
                ))
            }
        }
    }
}

impl Engine {
    /// Runs a transaction for a chaincode deployed through governance: the version
    /// active now judges it, and the result names that version and its code hash (an
    /// accepted call's first event is `wasm_chaincode`; a rejection's message ends with
    /// them).
    fn execute_wasm<'s>(
        &self,
        overlay: &BlockOverlay<'s, dyn StateRead + 's>,
        block: BlockInfo,
        caller: &Caller,
        tx: &VerifiedTransaction,
    ) -> Result<(Vec<Event>, Writes), RuleError> {
        let call = &tx.body().call;
        let Some((_, version, hash)) = crate::wasm::active(overlay, &call.chaincode)? else {
            return Err(RuleError::new(
                "CHAINCODE",
                format!("chaincode `{}` is not enabled", call.chaincode),
            ));
        };
        let judged_by = || {
            crate::event(
                "wasm_chaincode",
                &[
                    ("id", call.chaincode.clone()),
                    ("version", version.to_string()),
                    ("code_hash", hash.to_string()),
                ],
            )
        };
        // As for a built-in rule: a panic (in the interpreter or the host) is recorded
        // as a rejection instead of stopping the node.
        let ran = catch_unwind(AssertUnwindSafe(|| {
            self.wasm.run(
                overlay,
                &self.params,
                block,
                caller,
                &call.chaincode,
                &hash,
                &call.method,
                &call.args,
            )
        }))
        .unwrap_or_else(|_| {
            Err(RuleError::new(
                "PANIC",
                format!("chaincode `{}` panicked in the host", call.chaincode),
            ))
        });
        match ran {
            Ok((events, writes)) => {
                let mut all = vec![judged_by()];
                all.extend(events);
                Ok((all, writes))
            }
            Err(e) if e.rule == "STORAGE" => Err(e),
            Err(e) => Err(RuleError::new(
                &e.rule,
                format!(
                    "{} [{} version {version}, code {hash}]",
                    e.message, call.chaincode
                ),
            )),
        }
    }
}

fn read_u64<'s>(
    overlay: &BlockOverlay<'s, dyn StateRead + 's>,
    key: &str,
) -> Result<u64, StateError> {
    Ok(overlay
        .get(key.as_bytes())?
        .and_then(|b| codec::decode::<u64>(&b).ok())
        .unwrap_or(0))
}

/// A failed read as a rule sees it: the rule stops; the engine, which sees the failure
/// in the overlay, abandons the block, so this is never recorded.
pub(crate) fn storage_failure(e: StateError) -> RuleError {
    RuleError::new("STORAGE", e.to_string())
}

/// A block being executed: the overlay of its writes so far and the results.
struct Run<'s> {
    overlay: BlockOverlay<'s, dyn StateRead + 's>,
    results: Vec<TxResult>,
    /// The senders whose standing this block has read, as it was read: a sender's
    /// transactions after its first in the block take it from here instead of reading
    /// it again (four lookups in the overlay, the key's hex, four formatted keys and
    /// the filing decoded; the overlay already keeps what the state answered).
    /// Forgotten whenever a transaction writes a key [`standing`] reads
    /// ([`is_standing_key`]), so it is always what [`standing`] would say now.
    callers: BTreeMap<PublicKey, Caller>,
}

impl<'s> Run<'s> {
    fn new(state: &'s (dyn StateRead + 's)) -> Run<'s> {
        Run {
            overlay: BlockOverlay::new(state),
            results: Vec::new(),
            callers: BTreeMap::new(),
        }
    }

    /// The standing of `sender` now: kept from earlier in the block, or read.
    fn standing(
        &mut self,
        sender: &PublicKey,
    ) -> Result<Result<Caller, NotPermitted>, StandingError> {
        if let Some(caller) = self.callers.get(sender) {
            return Ok(Ok(caller.clone()));
        }
        let read = standing(|key| self.overlay.get(key), sender)?;
        if let Ok(caller) = &read {
            self.callers.insert(*sender, caller.clone());
        }
        Ok(read)
    }

    /// Adds a transaction's writes to the block's; standings they may change are
    /// forgotten.
    fn commit(&mut self, writes: Writes) {
        if writes.keys().any(|key| is_standing_key(key)) {
            self.callers.clear();
        }
        self.overlay.commit(writes);
    }

    /// Executes one transaction at position `index`, or says why a block may not hold
    /// it there (then nothing of it is written). The outer error is a failed read.
    fn push(
        &mut self,
        engine: &Engine,
        block: BlockInfo,
        index: usize,
        tx: &VerifiedTransaction,
    ) -> Result<Result<(), InvalidBlock>, StateError> {
        let sender = tx.body().sender;
        let nonce_key = layout::nonce_key(&sender.to_hex());
        let expected = read_u64(&self.overlay, &nonce_key)?;
        if tx.body().nonce != expected {
            return Ok(Err(InvalidBlock::Nonce {
                index,
                expected,
                found: tx.body().nonce,
            }));
        }
        let caller = match self.standing(&sender) {
            Ok(Ok(caller)) => Ok(caller),
            Ok(Err(reason)) => return Ok(Err(InvalidBlock::Sender { index, reason })),
            Err(StandingError::Storage(e)) => return Err(e),
            // Deterministic: every node reads the same corrupt state.
            Err(StandingError::Corrupt(what)) => Err(RuleError::internal(what)),
        };
        let run = caller.and_then(|caller| engine.execute_one(&self.overlay, block, caller, tx));
        // Whatever the rule made of a failed read, the block is abandoned.
        if let Some(failure) = self.overlay.failure() {
            return Err(failure);
        }
        let outcome = match run {
            Ok((events, writes)) => {
                self.commit(writes);
                Outcome::Accepted { events }
            }
            Err(e) => Outcome::Rejected {
                rule: e.rule,
                message: e.message,
            },
        };
        let mut nonce = Writes::new();
        nonce.insert(nonce_key.into_bytes(), Some(codec::encode(&(expected + 1))));
        self.commit(nonce);
        self.results.push(TxResult {
            tx_hash: tx.hash(),
            outcome,
        });
        Ok(Ok(()))
    }

    fn finish(mut self, block: BlockInfo) -> BlockOutcome {
        // Every block changes state at least here, so the authenticated state tree has
        // a version (and a root) for every height.
        let mut last = Writes::new();
        last.insert(
            layout::LAST_BLOCK_KEY.as_bytes().to_vec(),
            Some(codec::encode(&(block.height, block.time_ms))),
        );
        self.overlay.commit(last);
        BlockOutcome {
            results: self.results,
            writes: self.overlay.into_writes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Role;
    use crate::enterprise::Filing;
    use crate::state::MemoryState;

    const USCC: &str = "91140200MA0GRK2220";

    fn filed(key: &PublicKey) -> MemoryState {
        let filing = Filing {
            uscc: USCC.into(),
            name: "Taiyuan Seller".into(),
            roles: vec![Role::Manufacturer],
            keys: vec![*key],
            customs_code: "1402960002".into(),
            approved_height: 1,
            revoked: None,
            attestations: Vec::new(),
        };
        let mut state = MemoryState::default();
        let mut writes = Writes::new();
        writes.insert(
            layout::enterprise_key(&key.to_hex()).into_bytes(),
            Some(codec::encode(&USCC.to_string())),
        );
        writes.insert(
            layout::filing(USCC).into_bytes(),
            Some(codec::encode(&filing)),
        );
        state.apply(&writes);
        state
    }

    fn write(key: String) -> Writes {
        let mut writes = Writes::new();
        writes.insert(key.into_bytes(), Some(vec![0; 8]));
        writes
    }

    /// A block keeps each sender's standing once read: a later look-up answers from
    /// what was kept, not from the state (shown here by changing the state behind the
    /// block's back). A transaction's write to any other key keeps it; a write to a key
    /// `standing` reads forgets it, and the next look-up reads the state again.
    #[test]
    fn a_kept_standing_is_forgotten_only_when_a_standing_key_is_written() {
        let key = cbec_ledger::KeyPair::from_seed(&[5; 32]).public();
        let state = filed(&key);
        let mut run = Run::new(&state);
        let first = run.standing(&key).expect("reads").expect("permitted");
        assert!(matches!(&first, Caller::Enterprise { uscc, .. } if uscc == USCC));
        // The listing, put in the overlay without going through the run's commit: the
        // kept standing still answers, so it is not read again.
        run.overlay.commit(write(layout::negative(USCC)));
        assert_eq!(run.standing(&key), Ok(Ok(first.clone())));
        // A write to keys `standing` does not read keeps it.
        run.commit(write(layout::nonce_key(&key.to_hex())));
        run.commit(write("goods/head/A".into()));
        assert_eq!(run.standing(&key), Ok(Ok(first)));
        // A write to one it reads forgets it: the listing is seen.
        run.commit(write(layout::negative("91110000MA00OTHER1")));
        assert_eq!(
            run.standing(&key),
            Ok(Err(NotPermitted::Listed(USCC.into())))
        );
    }
}
