//! The registry of enabled chaincodes and deterministic block execution.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use cbec_ledger::{
    codec, ChaincodeConfig, Event, Outcome, PublicKey, TxResult, VerifiedTransaction,
};

use crate::context::{BlockInfo, Caller, Context};
use crate::enterprise::Filing;
use crate::layout;
use crate::params::Params;
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
#[error("transaction {index} has nonce {found}, expected {expected}")]
pub struct InvalidBlock {
    pub index: usize,
    pub expected: u64,
    pub found: u64,
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
        Ok(Engine { chaincodes, params })
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

    /// Executes `txs` in order on top of `state`. Deterministic: two nodes with the same
    /// state and transactions produce byte-identical results and writes. A failed read
    /// of `state` abandons the block ([`ExecError::Storage`]); no result is made of it.
    pub fn execute_block<'s>(
        &self,
        state: &'s (dyn StateRead + 's),
        block: BlockInfo,
        txs: &[VerifiedTransaction],
    ) -> Result<BlockOutcome, ExecError> {
        let mut overlay: BlockOverlay<'s, dyn StateRead + 's> = BlockOverlay::new(state);
        let mut results = Vec::with_capacity(txs.len());
        for (index, tx) in txs.iter().enumerate() {
            let sender = tx.body().sender;
            let nonce_key = layout::nonce_key(&sender.to_hex());
            let expected = read_u64(&overlay, &nonce_key)?;
            if tx.body().nonce != expected {
                return Err(InvalidBlock {
                    index,
                    expected,
                    found: tx.body().nonce,
                }
                .into());
            }
            let run = self.execute_one(&overlay, block, tx);
            // Whatever the rule made of a failed read, the block is abandoned.
            if let Some(failure) = overlay.failure() {
                return Err(ExecError::Storage(failure));
            }
            let outcome = match run {
                Ok((events, writes)) => {
                    overlay.commit(writes);
                    Outcome::Accepted { events }
                }
                Err(e) => Outcome::Rejected {
                    rule: e.rule,
                    message: e.message,
                },
            };
            let mut nonce = Writes::new();
            nonce.insert(nonce_key.into_bytes(), Some(codec::encode(&(expected + 1))));
            overlay.commit(nonce);
            results.push(TxResult {
                tx_hash: tx.hash(),
                outcome,
            });
        }
        // Every block changes state at least here, so the authenticated state tree has
        // a version (and a root) for every height.
        let mut last = Writes::new();
        last.insert(
            layout::LAST_BLOCK_KEY.as_bytes().to_vec(),
            Some(codec::encode(&(block.height, block.time_ms))),
        );
        overlay.commit(last);
        Ok(BlockOutcome {
            results,
            writes: overlay.into_writes(),
        })
    }

    fn execute_one<'s>(
        &self,
        overlay: &BlockOverlay<'s, dyn StateRead + 's>,
        block: BlockInfo,
        tx: &VerifiedTransaction,
    ) -> Result<(Vec<Event>, Writes), RuleError> {
        let call = &tx.body().call;
        let chaincode = self
            .chaincodes
            .get(call.chaincode.as_str())
            .ok_or_else(|| {
                RuleError::new(
                    "CHAINCODE",
                    format!("chaincode `{}` is not enabled", call.chaincode),
                )
            })?;
        let caller = resolve_caller(overlay, &tx.body().sender)?;
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

/// Who the key belongs to. A revoked or listed enterprise is refused everything.
fn resolve_caller<'s>(
    overlay: &BlockOverlay<'s, dyn StateRead + 's>,
    key: &PublicKey,
) -> Result<Caller, RuleError> {
    let hex = key.to_hex();
    let read = |key: String| overlay.get(key.as_bytes()).map_err(storage_failure);
    if let Some(bytes) = read(layout::agency_key(&hex))? {
        let name: String = codec::decode(&bytes).map_err(|e| RuleError::internal(e.to_string()))?;
        return Ok(Caller::Agency { name });
    }
    let Some(bytes) = read(layout::enterprise_key(&hex))? else {
        return Ok(Caller::Unknown);
    };
    let uscc: String = codec::decode(&bytes).map_err(|e| RuleError::internal(e.to_string()))?;
    let filing: Filing = read(layout::filing(&uscc))?
        .and_then(|b| codec::decode(&b).ok())
        .ok_or_else(|| RuleError::internal(format!("key of {uscc} has no filing")))?;
    if filing.revoked.is_some() {
        return Err(RuleError::new(
            "FILING",
            format!("the filing of {uscc} is revoked"),
        ));
    }
    if read(layout::negative(&uscc))?.is_some() {
        return Err(RuleError::new(
            "NEGATIVE-LIST",
            format!("{uscc} is on the credit negative list"),
        ));
    }
    Ok(Caller::Enterprise {
        uscc,
        roles: filing.roles.iter().copied().collect(),
        customs_code: filing.customs_code,
    })
}
