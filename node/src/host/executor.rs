//! The executor: blocks built, re-executed and committed, each state its own type.
//!
//! As Iroha's `BlockBuilder<Pending> -> Chained -> ValidBlock -> CommittedBlock`: a
//! [`ExecutedBlock`] is made only by [`Executor::build`] (this validator's own block,
//! checked by the same checks validators run) or [`Executor::validate`] (every
//! deterministic check: header and parent, certificate of the parent, validator set,
//! limits, body, signatures, re-execution of every transaction and the state root; a
//! block whose body the network edge checked comes as a [`CheckedBlock`], through
//! [`Executor::validate_checked`], and its body is not checked twice); a
//! [`CommittedBlock`] only by adding a certificate that verifies for it; and the store
//! commits only a [`CommittedBlock`].
//!
//! Nothing here reads a clock: whether a proposal's time is acceptable is a judgement
//! on voting (see the host), never a property of a block. A certified block from sync is
//! checked exactly like a proposal, minus that judgement.
//!
//! A storage failure is not a verdict: it comes back as [`StorageFailure`], which stops
//! the node; a verdict is `Ok(Err(Invalid))`.

use std::sync::Arc;

use cbec_chaincode::{BlockInfo, Engine, ExecError, InvalidBlock, Writes};
use cbec_ledger::{
    block, codec, merkle, tx, Block, CertificateError, CommitCertificate, Hash, Header, PublicKey,
    Transaction, ValidatorSet, VerifiedTransaction,
};

use crate::store::{PreparedState, Store, StoreError};
use crate::wire::CheckedBlock;

/// A block this validator may vote for or apply: it passed every deterministic check,
/// and its execution's writes and state tree are ready to commit.
#[derive(Debug)]
pub struct ExecutedBlock {
    block: CheckedBlock,
    /// The header's hash (with the chain's suite).
    hash: Hash,
    writes: Writes,
    prepared: PreparedState,
}

impl ExecutedBlock {
    pub fn block(&self) -> &Block {
        self.block.block()
    }

    /// The block with the ids of its transactions.
    pub fn checked(&self) -> &CheckedBlock {
        &self.block
    }

    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The block with the certificate that commits it: checked against `validators` (the
    /// set of the block's height) for this block's hash and height.
    pub fn certify(
        self,
        certificate: CommitCertificate,
        chain_id: &Hash,
        validators: &ValidatorSet,
    ) -> Result<CommittedBlock, (Box<ExecutedBlock>, CertificateError)> {
        match certificate.verify_for(chain_id, validators, self.block().height(), &self.hash()) {
            Ok(()) => Ok(CommittedBlock {
                executed: self,
                certificate,
            }),
            Err(e) => Err((Box::new(self), e)),
        }
    }
}

/// A block decided by consensus (or certified in sync), with its certificate: what the
/// store commits.
#[derive(Debug)]
pub struct CommittedBlock {
    executed: ExecutedBlock,
    certificate: CommitCertificate,
}

impl CommittedBlock {
    pub fn block(&self) -> &Block {
        self.executed.block()
    }

    pub fn certificate(&self) -> &CommitCertificate {
        &self.certificate
    }

    /// What the store applies: the block, its certificate, the execution's writes and
    /// the state tree's prepared version.
    pub(crate) fn into_parts(self) -> (Arc<Block>, CommitCertificate, Writes, PreparedState) {
        let ExecutedBlock {
            block,
            writes,
            prepared,
            ..
        } = self.executed;
        (block.shared(), self.certificate, writes, prepared)
    }
}

/// Why a block must not be voted for or applied: no honest proposer makes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(reason: impl std::fmt::Display) -> Invalid {
    Invalid(reason.to_string())
}

/// The store failed under execution: nothing is known about the block.
#[derive(Debug, thiserror::Error)]
#[error("storage failed: {0}")]
pub struct StorageFailure(pub String);

impl From<StoreError> for StorageFailure {
    fn from(e: StoreError) -> StorageFailure {
        StorageFailure(e.to_string())
    }
}

/// A candidate a block could not take, and why.
pub type Dropped = (Hash, InvalidBlock);

/// Block limits from genesis.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub txs_max: usize,
    pub bytes_max: usize,
}

/// What a block is checked against at its height.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The set that certifies this height.
    pub validators: &'a ValidatorSet,
    /// The set that certified the parent (its certificate is in this block).
    pub previous_validators: &'a ValidatorSet,
    /// The proposer a verified proposal named, when voting on one.
    pub proposer: Option<PublicKey>,
}

/// Builds and checks blocks over the committed state.
#[derive(Debug)]
pub struct Executor {
    engine: Engine,
    store: Arc<Store>,
    chain_id: Hash,
    limits: Limits,
    genesis_time_ms: u64,
}

impl Executor {
    pub fn new(
        engine: Engine,
        store: Arc<Store>,
        chain_id: Hash,
        limits: Limits,
        genesis_time_ms: u64,
    ) -> Executor {
        Executor {
            engine,
            store,
            chain_id,
            limits,
            genesis_time_ms,
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// This validator's block for `height`, proposed at `now_ms` (never before its
    /// parent), from transactions the mempool reaped (those a validator would refuse
    /// at their place are left out and returned, with why); then checked by the checks
    /// every validator runs on it. A block failing those is a bug here: `Ok(Err(..))`,
    /// and the caller proposes nothing.
    pub fn build(
        &self,
        height: u64,
        now_ms: u64,
        proposer: PublicKey,
        candidates: Vec<VerifiedTransaction>,
        expect: Expect<'_>,
    ) -> Result<Result<(ExecutedBlock, Vec<Dropped>), Invalid>, StorageFailure> {
        let parent = self.store.header(height - 1)?;
        let time_ms = now_ms.max(
            parent
                .as_ref()
                .map_or(self.genesis_time_ms, |p| p.time_ms + 1),
        );
        let info = BlockInfo {
            height,
            time_ms,
            suite: self.store.suite(),
        };
        let built = self
            .engine
            .build_block(self.store.as_ref(), info, candidates)
            .map_err(|e| StorageFailure(e.to_string()))?;
        let (txs, outcome) = (built.txs, built.outcome);
        let dropped = built.dropped;
        let prepared = self.store.prepare_state(height, &outcome.writes)?;
        let txs: Vec<Transaction> = txs
            .into_iter()
            .map(VerifiedTransaction::into_inner)
            .collect();
        let header = Header {
            chain_id: self.chain_id,
            height,
            time_ms,
            previous: parent
                .as_ref()
                .map_or(self.chain_id, |p| p.hash(self.store.suite())),
            proposer,
            tx_count: txs.len() as u64,
            tx_root: merkle::root(self.store.suite(), &block::tx_leaves(&txs)),
            results_root: merkle::root(self.store.suite(), &block::result_leaves(&outcome.results)),
            state_root: prepared.root,
            validators_hash: expect.validators.hash(self.store.suite()),
        };
        let last_commit = if height > 1 {
            self.store.certificate(height - 1)?
        } else {
            None
        };
        let block = Block {
            header,
            txs,
            results: outcome.results,
            last_commit,
        };
        // The very checks validators run, on the proposer's own block.
        let block = match CheckedBlock::check(block, self.store.suite())
            .map_err(invalid)
            .and_then(|block| {
                self.check_shape(block.block(), parent.as_ref(), expect)?;
                Ok(block)
            }) {
            Ok(block) => block,
            Err(e) => {
                return Ok(Err(invalid(format!(
                    "own block fails a validator's check: {e}"
                ))))
            }
        };
        Ok(Ok((
            ExecutedBlock {
                hash: block.block().hash(self.store.suite()),
                block,
                writes: outcome.writes,
                prepared,
            },
            dropped,
        )))
    }

    /// Every deterministic check a block must pass before it is voted for or applied.
    /// `known` returns a transaction this node verified before (exactly these bytes;
    /// it is given the transaction's id too), so its signature is not checked again.
    pub fn validate(
        &self,
        block: Block,
        expect: Expect<'_>,
        known: &dyn Fn(&Transaction, &Hash) -> Option<VerifiedTransaction>,
    ) -> Result<Result<ExecutedBlock, Invalid>, StorageFailure> {
        match CheckedBlock::check(block, self.store.suite()) {
            Ok(block) => self.validate_checked(block, expect, known),
            Err(e) => Ok(Err(invalid(e))),
        }
    }

    /// [`Executor::validate`] for a block whose body was checked (at the network edge):
    /// every other check, with the transaction ids that check computed.
    pub fn validate_checked(
        &self,
        block: CheckedBlock,
        expect: Expect<'_>,
        known: &dyn Fn(&Transaction, &Hash) -> Option<VerifiedTransaction>,
    ) -> Result<Result<ExecutedBlock, Invalid>, StorageFailure> {
        let h = block.block().height();
        if h == 0 {
            return Ok(Err(invalid("height 0 is the genesis state, not a block")));
        }
        let parent = self.store.header(h - 1)?;
        if h > 1 && parent.is_none() {
            return Ok(Err(invalid(format!(
                "parent {} is not committed here",
                h - 1
            ))));
        }
        if let Err(e) = self.check_shape(block.block(), parent.as_ref(), expect) {
            return Ok(Err(e));
        }
        let verified = match self.verify_txs(block.block(), block.ids(), known) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let info = BlockInfo {
            height: h,
            time_ms: block.block().header.time_ms,
            suite: self.store.suite(),
        };
        let outcome = match self
            .engine
            .execute_block(self.store.as_ref(), info, &verified)
        {
            Ok(outcome) => outcome,
            Err(ExecError::Storage(e)) => return Err(StorageFailure(e.to_string())),
            Err(ExecError::Invalid(e)) => return Ok(Err(invalid(e))),
        };
        if outcome.results != block.block().results {
            return Ok(Err(invalid("results differ from re-execution")));
        }
        let prepared = self.store.prepare_state(h, &outcome.writes)?;
        if prepared.root != block.block().header.state_root {
            return Ok(Err(invalid(format!(
                "state root {} differs from re-execution's {}",
                block.block().header.state_root,
                prepared.root
            ))));
        }
        Ok(Ok(ExecutedBlock {
            hash: block.block().hash(self.store.suite()),
            block,
            writes: outcome.writes,
            prepared,
        }))
    }

    /// Checks that need no execution: parent, proposer, the parent's certificate, the
    /// validator set and limits (the body against the header is [`CheckedBlock`]'s).
    fn check_shape(
        &self,
        block: &Block,
        parent: Option<&Header>,
        expect: Expect<'_>,
    ) -> Result<(), Invalid> {
        let h = block.height();
        block
            .check_extends(&self.chain_id, self.store.suite(), parent)
            .map_err(invalid)?;
        if let Some(proposer) = expect.proposer {
            if block.header.proposer != proposer {
                return Err(invalid("header names another proposer than the proposal"));
            }
        }
        if expect.validators.power_of(&block.header.proposer).is_none() {
            return Err(invalid("the header's proposer is not a validator"));
        }
        if h > 1 {
            let cert = block
                .last_commit
                .as_ref()
                .ok_or_else(|| invalid("last commit missing"))?;
            let parent_hash = parent
                .map(|p| p.hash(self.store.suite()))
                .unwrap_or_default();
            // This node's own record of the parent's commit was verified before it
            // was stored: the signatures both hold are not verified again (without a
            // record, or if reading it fails, every signature is).
            let recorded = self.store.certificate(h - 1).ok().flatten();
            cert.verify_for_reusing(
                &self.chain_id,
                expect.previous_validators,
                h - 1,
                &parent_hash,
                recorded.as_ref(),
            )
            .map_err(|e| invalid(format!("last commit: {e}")))?;
        }
        if block.header.validators_hash != expect.validators.hash(self.store.suite()) {
            return Err(invalid("validator set hash differs"));
        }
        if block.txs.len() > self.limits.txs_max {
            return Err(invalid(format!(
                "{} transactions, more than the {} a block may hold",
                block.txs.len(),
                self.limits.txs_max
            )));
        }
        let size = codec::encoded_len(block);
        if size > self.limits.bytes_max {
            return Err(invalid(format!(
                "block of {size} bytes, more than {}",
                self.limits.bytes_max
            )));
        }
        Ok(())
    }

    /// The block's transactions (whose ids are `ids`), verified: those this node
    /// verified before (the same bytes, signature included) are taken as they are, the
    /// rest checked in one batch.
    fn verify_txs(
        &self,
        block: &Block,
        ids: &[Hash],
        known: &dyn Fn(&Transaction, &Hash) -> Option<VerifiedTransaction>,
    ) -> Result<Vec<VerifiedTransaction>, Invalid> {
        let mut verified: Vec<Option<VerifiedTransaction>> = block
            .txs
            .iter()
            .zip(ids)
            .map(|(tx, id)| known(tx, id))
            .collect();
        let unknown: Vec<usize> = (0..verified.len())
            .filter(|i| verified[*i].is_none())
            .collect();
        let checked = tx::verify_all(
            unknown.iter().map(|i| block.txs[*i].clone()).collect(),
            &self.chain_id,
            self.store.suite(),
        );
        for (i, result) in unknown.into_iter().zip(checked) {
            verified[i] = Some(result.map_err(|e| invalid(format!("transaction {i}: {e}")))?);
        }
        Ok(verified.into_iter().flatten().collect())
    }
}
