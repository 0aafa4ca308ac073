//! Auditor proofs, and their verification from the genesis file alone.
//!
//! Three kinds of proof, each ending in a header and the commit certificate that
//! validators signed for it:
//!
//! - [`TxProof`]: a transaction and its recorded result, with their RFC 6962 paths to
//!   the header's transaction and results roots.
//! - [`StateProof`]: a key's value (or its absence), with its sparse Merkle path to
//!   the header's state root.
//! - [`ProvenanceProof`]: a good's chain head in state, and the transaction proof of
//!   every event of the good, linked by previous-event hashes back to the first.
//!
//! A [`ProofFile`] wraps one of them with the validator-set changes since genesis
//! ([`SetChange`]): the verifier starts from the genesis set and follows each change,
//! which is itself certified by the set before it, up to the set that certified the
//! proven header. A proof therefore stays valid after governance replaces a validator.
//!
//! Verification trusts nothing but a [`TrustRoot`] (built from the genesis file): no
//! network, no clock. Every failure names the part of the proof that failed.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::block::{result_leaves, tx_leaves, Block, Header};
use crate::codec;
use crate::crypto::{PublicKey, Suite};
use crate::goods::{self, EventKind, Head, RecordEvent, StoredEvent};
use crate::hash::Hash;
use crate::merkle::{InclusionProof, MerkleTree};
use crate::sparse::SparseProof;
use crate::tx::{Outcome, Transaction, TxResult};
use crate::validators::{CommitCertificate, Validator, ValidatorSet};

/// The proof format this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The state key under which governance records an agency's replacement validator key.
pub fn validator_key_state_key(agency: &str) -> String {
    format!("gov/validator/{agency}")
}

/// One founding agency as the genesis file names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedAgency {
    pub name: String,
    pub validator_key: PublicKey,
    pub voting_power: u64,
}

/// What an auditor trusts: the chain id, the crypto suite and the agencies of the
/// genesis file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRoot {
    pub chain_id: Hash,
    /// Every hash and signature of a proof is checked with this suite's functions.
    #[serde(default)]
    pub suite: Suite,
    pub agencies: Vec<TrustedAgency>,
}

/// A validator set with the agency behind each key, as the verifier follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roster {
    names: Vec<String>,
    set: ValidatorSet,
}

impl Roster {
    /// The set in agency order, each agency's key replaced where `overrides` names one.
    /// The node derives the set for height `h + 1` from the state after `h` with this.
    pub fn derive(
        agencies: &[TrustedAgency],
        overrides: &[Option<PublicKey>],
    ) -> Result<Roster, crate::ValidatorSetError> {
        let validators = agencies
            .iter()
            .zip(overrides.iter().chain(std::iter::repeat(&None)))
            .map(|(agency, key)| Validator {
                key: key.unwrap_or(agency.validator_key),
                power: agency.voting_power,
            })
            .collect();
        Ok(Roster {
            names: agencies.iter().map(|a| a.name.clone()).collect(),
            set: ValidatorSet::new(validators)?,
        })
    }

    pub fn set(&self) -> &ValidatorSet {
        &self.set
    }

    /// The agency whose validator holds `key`.
    pub fn agency_of(&self, key: &PublicKey) -> Option<&str> {
        self.set.index_of(key).map(|i| self.names[i].as_str())
    }
}

impl TrustRoot {
    /// The set that certifies height 1.
    pub fn genesis_roster(&self) -> Result<Roster, ProofError> {
        for (i, agency) in self.agencies.iter().enumerate() {
            self.suite
                .check_key(&agency.validator_key)
                .map_err(|e| fail(format!("genesis.agencies[{i}].validator_key"), e))?;
        }
        Roster::derive(&self.agencies, &[]).map_err(|e| fail("genesis", e))
    }
}

/// A header and the certificate of its commit.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct CertifiedHeader {
    pub header: Header,
    pub certificate: CommitCertificate,
}

/// A key's value or absence at some header, proven against its state root. The key
/// is given by context (a [`SetChange`] knows which keys it proves).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct KeyProof {
    #[serde(with = "crate::tx::hex_opt_vec")]
    pub value: Option<Vec<u8>>,
    pub proof: SparseProof,
}

/// A change of the validator set: the certified header of the last block under the
/// old set, and the proof of every agency's `gov/validator/<agency>` entry in its
/// state (in genesis agency order), from which the next set follows.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct SetChange {
    pub at: CertifiedHeader,
    pub keys: Vec<KeyProof>,
}

/// A transaction and its result in a certified block.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct TxProof {
    pub tx: Transaction,
    pub result: TxResult,
    /// Position in the block; the tree size is the header's `tx_count`.
    pub index: u64,
    pub tx_path: Vec<Hash>,
    pub result_path: Vec<Hash>,
    pub block: CertifiedHeader,
}

impl TxProof {
    /// The proof of transaction `index` of `block`, certified by `certificate`.
    pub fn build(
        suite: Suite,
        block: &Block,
        certificate: CommitCertificate,
        index: usize,
    ) -> Option<TxProof> {
        let txs = MerkleTree::from_leaves(suite, &tx_leaves(&block.txs));
        let results = MerkleTree::from_leaves(suite, &result_leaves(&block.results));
        TxProof::build_with(block, &txs, &results, certificate, index)
    }

    /// [`TxProof::build`] with the block's transaction and result trees already built
    /// (a server proving many transactions of one block builds them once).
    pub fn build_with(
        block: &Block,
        txs: &MerkleTree,
        results: &MerkleTree,
        certificate: CommitCertificate,
        index: usize,
    ) -> Option<TxProof> {
        let tx = block.txs.get(index)?.clone();
        let result = block.results.get(index)?.clone();
        let tx_path = txs.proof(index as u64)?.path;
        let result_path = results.proof(index as u64)?.path;
        Some(TxProof {
            tx,
            result,
            index: index as u64,
            tx_path,
            result_path,
            block: CertifiedHeader {
                header: block.header.clone(),
                certificate,
            },
        })
    }
}

/// A key's value, or its absence, in the state after a certified block.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct StateProof {
    #[serde(with = "crate::tx::hex_vec")]
    pub key: Vec<u8>,
    #[serde(with = "crate::tx::hex_opt_vec")]
    pub value: Option<Vec<u8>>,
    pub proof: SparseProof,
    pub block: CertifiedHeader,
}

/// A good's whole history: its chain head in state and every event, first to last.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ProvenanceProof {
    pub goods_id: String,
    pub head: StateProof,
    pub events: Vec<TxProof>,
}

/// The events of an ancestor (a lot a good was split from), from its first up to the
/// split that made the next good down the line.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct AncestorProof {
    pub goods_id: String,
    pub events: Vec<TxProof>,
}

/// A good's provenance through the lots it was split from: its own whole history, then
/// its parent's history up to the split that made it, the grandparent's up to the split
/// that made the parent, and so on to a good that was not split from another.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct LineageProof {
    pub provenance: ProvenanceProof,
    pub ancestors: Vec<AncestorProof>,
}

/// One of the kinds.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Proof {
    Tx(TxProof),
    State(StateProof),
    Provenance(ProvenanceProof),
    /// Provenance across splits (a later variant: earlier files decode as before).
    Lineage(LineageProof),
}

/// What `cbec prove` writes and `cbec verify` reads: versioned, in JSON (binary parts
/// in hex) or in the canonical binary encoding.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofFile {
    pub format: u32,
    pub chain_id: Hash,
    /// Validator-set changes from genesis up to the proven headers, in height order.
    pub set_changes: Vec<SetChange>,
    pub proof: Proof,
}

/// What failed, and where in the proof: `at` is a path like `proof.events[2].tx_path`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {problem}")]
pub struct ProofError {
    pub at: String,
    pub problem: String,
}

pub(crate) fn fail(at: impl Into<String>, problem: impl std::fmt::Display) -> ProofError {
    ProofError {
        at: at.into(),
        problem: problem.to_string(),
    }
}

/// A proven block, for the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvenBlock {
    pub height: u64,
    pub hash: Hash,
    pub time_ms: u64,
    /// Agencies whose validators signed the certificate, in signing order.
    pub certified_by: Vec<String>,
}

/// One event of a good's verified timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    pub seq: u64,
    pub kind: EventKind,
    /// USCC of the enterprise, or the agency's name.
    pub actor: String,
    pub attributes: std::collections::BTreeMap<String, String>,
    /// The previous event this one names (none for the first).
    pub prev: Option<Hash>,
    pub event_hash: Hash,
    pub tx_hash: Hash,
    pub block: ProvenBlock,
    /// For a `split` event: every child it made and the quantity each took, read from
    /// the certified transaction (where the lot went, 去向; with the head proven, no
    /// split and no child is left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<goods::Child>,
    /// For a container's `aggregated` or `disaggregated` event: the goods packed or
    /// taken out, from the certified transaction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

/// What a verified proof establishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verified {
    Tx {
        tx_hash: Hash,
        sender: PublicKey,
        chaincode: String,
        method: String,
        outcome: Outcome,
        block: ProvenBlock,
    },
    State {
        #[serde(with = "crate::tx::hex_vec")]
        key: Vec<u8>,
        #[serde(with = "crate::tx::hex_opt_vec")]
        value: Option<Vec<u8>>,
        block: ProvenBlock,
    },
    Provenance {
        goods_id: String,
        /// The block whose state holds the good's chain head.
        head: ProvenBlock,
        timeline: Vec<TimelineEntry>,
        /// The lots it was split from, parent first, each up to the split that made
        /// the good below it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ancestors: Vec<Ancestry>,
    },
}

/// An ancestor's verified events, from its first to the split that made the good below.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ancestry {
    pub goods_id: String,
    pub timeline: Vec<TimelineEntry>,
}

impl Verified {
    /// The height at which the proof's main statement holds.
    pub fn height(&self) -> u64 {
        match self {
            Verified::Tx { block, .. } | Verified::State { block, .. } => block.height,
            Verified::Provenance { head, .. } => head.height,
        }
    }
}

/// The validator sets in force from genesis through the proof's set changes:
/// `(first height, roster)` in height order.
#[derive(Debug)]
struct History<'a> {
    trust: &'a TrustRoot,
    rosters: Vec<(u64, Roster)>,
}

impl<'a> History<'a> {
    fn follow(trust: &'a TrustRoot, changes: &[SetChange]) -> Result<History<'a>, ProofError> {
        let mut history = History {
            trust,
            rosters: vec![(1, trust.genesis_roster()?)],
        };
        let mut last = 0;
        for (i, change) in changes.iter().enumerate() {
            let at = format!("set_changes[{i}]");
            let height = change.at.header.height;
            if height <= last {
                return Err(fail(
                    format!("{at}.at.header.height"),
                    format!("{height} does not follow the previous change at {last}"),
                ));
            }
            history.check_certified(&change.at, &format!("{at}.at"))?;
            let overrides = key_overrides(trust, &change.at.header.state_root, &change.keys, &at)?;
            let roster = Roster::derive(&trust.agencies, &overrides)
                .map_err(|e| fail(format!("{at}.keys"), e))?;
            history.rosters.push((height + 1, roster));
            last = height;
        }
        Ok(history)
    }

    fn roster_at(&self, height: u64) -> &Roster {
        let index = self
            .rosters
            .partition_point(|(from, _)| *from <= height)
            .saturating_sub(1);
        &self.rosters[index].1
    }

    /// Checks a header against the chain and the set in force at its height, and its
    /// certificate against that set.
    fn check_certified(&self, c: &CertifiedHeader, at: &str) -> Result<ProvenBlock, ProofError> {
        check_certified(self.trust, self.roster_at(c.header.height), c, at)
    }

    fn check_tx(&self, p: &TxProof, at: &str) -> Result<ProvenBlock, ProofError> {
        let block = self.check_certified(&p.block, &format!("{at}.block"))?;
        let header = &p.block.header;
        let suite = self.trust.suite;
        let tx_hash = p.tx.hash(suite);
        if p.tx.body.chain_id != self.trust.chain_id {
            return Err(fail(
                format!("{at}.tx.body.chain_id"),
                "the transaction is for another chain",
            ));
        }
        suite
            .check_key(&p.tx.body.sender)
            .map_err(|e| fail(format!("{at}.tx.body.sender"), e))?;
        p.tx.body
            .sender
            .verify(&tx_hash.0, &p.tx.signature)
            .map_err(|_| {
                fail(
                    format!("{at}.tx.signature"),
                    "the sender's signature does not verify",
                )
            })?;
        let path = |path: &[Hash]| InclusionProof {
            leaf_index: p.index,
            tree_size: header.tx_count,
            path: path.to_vec(),
        };
        path(&p.tx_path)
            .verify(suite, &codec::encode(&p.tx), &header.tx_root)
            .map_err(|e| {
                fail(
                    format!("{at}.tx_path"),
                    format!(
                        "transaction {tx_hash} is not leaf {} of the block: {e}",
                        p.index
                    ),
                )
            })?;
        path(&p.result_path)
            .verify(suite, &codec::encode(&p.result), &header.results_root)
            .map_err(|e| {
                fail(
                    format!("{at}.result_path"),
                    format!("the result is not leaf {} of the block: {e}", p.index),
                )
            })?;
        if p.result.tx_hash != tx_hash {
            return Err(fail(
                format!("{at}.result.tx_hash"),
                format!(
                    "the result is for transaction {}, not {tx_hash}",
                    p.result.tx_hash
                ),
            ));
        }
        Ok(block)
    }

    fn check_state(&self, p: &StateProof, at: &str) -> Result<ProvenBlock, ProofError> {
        let block = self.check_certified(&p.block, &format!("{at}.block"))?;
        p.proof
            .verify(
                self.trust.suite,
                &p.block.header.state_root,
                &p.key,
                p.value.as_deref(),
            )
            .map_err(|e| {
                fail(
                    format!("{at}.proof"),
                    format!("key `{}`: {e}", String::from_utf8_lossy(&p.key)),
                )
            })?;
        Ok(block)
    }

    fn check_provenance(&self, p: &ProvenanceProof, at: &str) -> Result<Verified, ProofError> {
        let head_at = format!("{at}.head");
        let head_block = self.check_state(&p.head, &head_at)?;
        let key = goods::head_key(&p.goods_id);
        if p.head.key != key.as_bytes() {
            return Err(fail(
                format!("{head_at}.key"),
                format!(
                    "`{}` is not the head of {} (`{key}`)",
                    String::from_utf8_lossy(&p.head.key),
                    p.goods_id
                ),
            ));
        }
        let head: Option<Head> =
            match &p.head.value {
                None => None,
                Some(bytes) => Some(codec::decode(bytes).map_err(|e| {
                    fail(format!("{head_at}.value"), format!("not a chain head: {e}"))
                })?),
            };
        let count = head.as_ref().map_or(0, |h| h.count);
        if p.events.len() as u64 != count {
            return Err(fail(
                format!("{at}.events"),
                format!(
                    "{} events, but the head at height {} counts {count}",
                    p.events.len(),
                    head_block.height
                ),
            ));
        }
        let timeline = self.check_chain(
            &p.events,
            &p.goods_id,
            &format!("{at}.events"),
            head_block.height,
        )?;
        if let Some(head) = &head {
            let (first, last) = (&timeline[0], &timeline[timeline.len() - 1]);
            if head.first != first.event_hash || head.last != last.event_hash {
                return Err(fail(
                    format!("{head_at}.value"),
                    format!(
                        "the head names events {} .. {}, the proof's chain runs {} .. {}",
                        head.first, head.last, first.event_hash, last.event_hash
                    ),
                ));
            }
        }
        Ok(Verified::Provenance {
            goods_id: p.goods_id.clone(),
            head: head_block,
            timeline,
            ancestors: Vec::new(),
        })
    }

    /// A good's events from its first (no previous) on, each linked to the one before,
    /// numbered in order, none committed after `height_max`.
    fn check_chain(
        &self,
        events: &[TxProof],
        goods_id: &str,
        at: &str,
        height_max: u64,
    ) -> Result<Vec<TimelineEntry>, ProofError> {
        let mut timeline: Vec<TimelineEntry> = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let at = format!("{at}[{i}]");
            let entry = self.check_event(event, goods_id, &at)?;
            let expected_prev = timeline.last().map(|e| e.event_hash);
            let named_prev = entry.prev;
            if named_prev != expected_prev {
                let shown = |h: Option<Hash>| h.map_or("none".to_string(), |h| h.to_string());
                return Err(fail(
                    at,
                    format!(
                        "the event names previous {}, but the event before it in the proof is {}: \
                         an event is missing or out of order",
                        shown(named_prev),
                        shown(expected_prev)
                    ),
                ));
            }
            if entry.seq != i as u64 {
                return Err(fail(
                    at,
                    format!("this is event number {} of the good, not {i}", entry.seq),
                ));
            }
            if entry.block.height > height_max {
                return Err(fail(
                    at,
                    format!(
                        "committed at height {}, after height {}",
                        entry.block.height, height_max
                    ),
                ));
            }
            timeline.push(entry);
        }
        Ok(timeline)
    }

    /// The ancestors of a good whose verified timeline is `timeline`, in the order
    /// [`goods::walk_lineage`] reaches them: each must be the good that the first event
    /// below it names (a split's parent, a transformation's input), its events verified
    /// from its first up to the event named (its `split` or `consumed` event), made in
    /// the same transaction. An ancestor left out, one that is not the good named, or
    /// one more than the lineage holds, fails.
    fn check_ancestors(
        &self,
        timeline: &[TimelineEntry],
        ancestors: &[AncestorProof],
        at: &str,
    ) -> Result<Vec<Ancestry>, ProofError> {
        let Some(first) = timeline.first() else {
            return Ok(Vec::new());
        };
        let sources_of = |e: &TimelineEntry, at: &str| {
            goods::sources(e.kind, &e.attributes).map_err(|problem| fail(at, problem))
        };
        let mut out: Vec<Ancestry> = Vec::with_capacity(ancestors.len());
        goods::walk_lineage(
            sources_of(first, at)?,
            ("the good".to_string(), first.clone()),
            |source, (below_id, below)| {
                let whole = at;
                let k = out.len();
                let at = format!("{whole}[{k}]");
                let what = if source.kind == EventKind::Split {
                    "split"
                } else {
                    "transformation"
                };
                let Some(ancestor) = ancestors.get(k) else {
                    return Err(fail(
                        whole,
                        format!(
                            "{below_id} was made from {} (by its {what}), whose events the proof leaves out",
                            source.goods_id
                        ),
                    ));
                };
                if ancestor.goods_id != source.goods_id {
                    return Err(fail(
                        format!("{at}.goods_id"),
                        format!(
                            "{} is not the parent the {} event of {below_id} names ({})",
                            ancestor.goods_id,
                            format!("{:?}", below.kind).to_lowercase(),
                            source.goods_id
                        ),
                    ));
                }
                let chain = self.check_chain(
                    &ancestor.events,
                    &ancestor.goods_id,
                    &format!("{at}.events"),
                    below.block.height,
                )?;
                let last = chain
                    .last()
                    .ok_or_else(|| fail(format!("{at}.events"), "no events"))?;
                if last.kind != source.kind
                    || last.event_hash != source.event
                    || last.tx_hash != below.tx_hash
                {
                    return Err(fail(
                        format!("{at}.events[{}]", chain.len() - 1),
                        format!(
                            "{} is not the {what} {} that made {below_id}",
                            last.event_hash, source.event
                        ),
                    ));
                }
                let next = sources_of(&chain[0], &format!("{at}.events[0]"))?;
                let reached = (ancestor.goods_id.clone(), chain[0].clone());
                out.push(Ancestry {
                    goods_id: ancestor.goods_id.clone(),
                    timeline: chain,
                });
                Ok((next, reached))
            },
        )?;
        if out.len() < ancestors.len() {
            return Err(fail(
                format!("{at}[{}]", out.len()),
                "every good in the lineage is accounted for before it: this is no ancestor of it",
            ));
        }
        Ok(out)
    }

    /// One event: a certified, accepted `goods.record` for this good, or the `goods.split`
    /// that made it (a parent's split event, or a child's first), whose rebuilt record
    /// hashes to the event hash its result announced for this good.
    fn check_event(
        &self,
        p: &TxProof,
        goods_id: &str,
        at: &str,
    ) -> Result<TimelineEntry, ProofError> {
        let block = self.check_tx(p, at)?;
        let call = decode_goods_call(&p.tx, at)?;
        let Outcome::Accepted { events } = &p.result.outcome else {
            return Err(fail(
                format!("{at}.result"),
                "the transaction was rejected, so it recorded no event",
            ));
        };
        // What the result announced for a good: (event hash, seq, actor).
        let announced_for = |good: &str| -> Result<(Hash, u64, String), ProofError> {
            let announced = events
                .iter()
                .filter(|e| e.kind == goods::RESULT_EVENT)
                .find(|e| {
                    e.attributes
                        .iter()
                        .any(|a| a.key == "goods_id" && a.value == good)
                })
                .ok_or_else(|| {
                    fail(
                        format!("{at}.result"),
                        format!("no goods_event for {good} in the result"),
                    )
                })?;
            let attribute = |name: &str| {
                announced
                    .attributes
                    .iter()
                    .find(|a| a.key == name)
                    .map(|a| a.value.as_str())
                    .ok_or_else(|| {
                        fail(
                            format!("{at}.result"),
                            format!("the goods_event has no `{name}`"),
                        )
                    })
            };
            let hash: Hash = attribute("event_hash")?
                .parse()
                .map_err(|e| fail(format!("{at}.result"), format!("event_hash: {e}")))?;
            let seq: u64 = attribute("seq")?
                .parse()
                .map_err(|e| fail(format!("{at}.result"), format!("seq: {e}")))?;
            Ok((hash, seq, attribute("actor")?.to_string()))
        };
        let tx_hash = p.tx.hash(self.trust.suite);
        let (height, time_ms) = (p.block.header.height, p.block.header.time_ms);
        let recorded = |actor| goods::RecordedAt {
            actor,
            height,
            time_ms,
            tx_hash,
        };
        let mut children: Vec<goods::Child> = Vec::new();
        let mut members: Vec<String> = Vec::new();
        let (record, event_hash) = match call {
            GoodsCall::Record(args) => {
                if args.goods_id != goods_id {
                    return Err(fail(
                        format!("{at}.tx"),
                        format!("the event is of good {}, not {goods_id}", args.goods_id),
                    ));
                }
                let (event_hash, seq, actor) = announced_for(goods_id)?;
                let record = StoredEvent {
                    goods_id: args.goods_id,
                    seq,
                    kind: args.kind,
                    prev: args.prev,
                    actor,
                    attributes: args.attributes,
                    height,
                    time_ms,
                    tx_hash,
                };
                (record, event_hash)
            }
            GoodsCall::Split(args) => {
                let (event_hash, _, _) = announced_for(goods_id)?;
                let (_, parent_seq, actor) = announced_for(&args.goods_id)?;
                let (parent, made) =
                    goods::split_events(&args, parent_seq, recorded(&actor), self.trust.suite);
                let record = std::iter::once(parent)
                    .chain(made)
                    .find(|e| e.goods_id == goods_id)
                    .ok_or_else(|| {
                        fail(
                            format!("{at}.tx"),
                            format!(
                                "the split of {} neither is of {goods_id} nor makes it",
                                args.goods_id
                            ),
                        )
                    })?;
                if record.kind == EventKind::Split {
                    children = args.children;
                }
                (record, event_hash)
            }
            GoodsCall::Aggregate(args, unpack) => {
                let (event_hash, _, actor) = announced_for(goods_id)?;
                let seqs = announced_seqs(events);
                let (container, packed) = goods::aggregate_events(
                    &args,
                    unpack,
                    |id| seqs.get(id).copied().unwrap_or(0),
                    recorded(&actor),
                    self.trust.suite,
                );
                let record = std::iter::once(container)
                    .chain(packed)
                    .find(|e| e.goods_id == goods_id)
                    .ok_or_else(|| {
                        fail(
                            format!("{at}.tx"),
                            format!(
                                "the packing of container {} does not name {goods_id}",
                                args.container
                            ),
                        )
                    })?;
                if record.goods_id == args.container {
                    members = args.children.into_iter().map(|m| m.goods_id).collect();
                }
                (record, event_hash)
            }
            GoodsCall::Transform(args) => {
                let (event_hash, _, actor) = announced_for(goods_id)?;
                let seqs = announced_seqs(events);
                let (consumed, made) = goods::transform_events(
                    &args,
                    |id| seqs.get(id).copied().unwrap_or(0),
                    recorded(&actor),
                    self.trust.suite,
                );
                let record = consumed
                    .into_iter()
                    .chain(made)
                    .find(|e| e.goods_id == goods_id)
                    .ok_or_else(|| {
                        fail(
                            format!("{at}.tx"),
                            format!("the transformation neither consumes nor makes {goods_id}"),
                        )
                    })?;
                if record.kind == EventKind::Consumed {
                    // What it went into, and what else went in with it (去向).
                    children = args
                        .outputs
                        .into_iter()
                        .map(|o| goods::Child {
                            goods_id: o.goods_id,
                            quantity: o.quantity,
                        })
                        .collect();
                    members = args.inputs.into_iter().map(|i| i.goods_id).collect();
                }
                (record, event_hash)
            }
        };
        let rebuilt = record.hash(self.trust.suite);
        if rebuilt != event_hash {
            return Err(fail(
                format!("{at}.result"),
                format!(
                    "the event rebuilt from the transaction hashes to {rebuilt}, not the recorded {event_hash}"
                ),
            ));
        }
        Ok(TimelineEntry {
            seq: record.seq,
            kind: record.kind,
            actor: record.actor,
            attributes: record.attributes,
            prev: record.prev,
            event_hash,
            tx_hash: record.tx_hash,
            block,
            children,
            members,
        })
    }
}

/// Each good's event number, as a result announced it.
fn announced_seqs(events: &[crate::Event]) -> std::collections::BTreeMap<&str, u64> {
    events
        .iter()
        .filter(|e| e.kind == goods::RESULT_EVENT)
        .filter_map(|e| {
            let get = |k: &str| {
                e.attributes
                    .iter()
                    .find(|a| a.key == k)
                    .map(|a| a.value.as_str())
            };
            Some((get("goods_id")?, get("seq")?.parse().ok()?))
        })
        .collect()
}

/// A transaction that records goods events.
enum GoodsCall {
    Record(RecordEvent),
    Split(goods::SplitArgs),
    /// `aggregate`, or with `true` `disaggregate`.
    Aggregate(goods::AggregateArgs, bool),
    Transform(goods::TransformArgs),
}

fn decode_goods_call(tx: &Transaction, at: &str) -> Result<GoodsCall, ProofError> {
    let call = &tx.body.call;
    let not_an_event = || {
        fail(
            format!("{at}.tx.body.call"),
            format!(
                "{}.{} is not a traceability event ({}.{}, {}, {}, {} or {})",
                call.chaincode,
                call.method,
                goods::CHAINCODE,
                goods::RECORD_METHOD,
                goods::SPLIT_METHOD,
                goods::AGGREGATE_METHOD,
                goods::DISAGGREGATE_METHOD,
                goods::TRANSFORM_METHOD
            ),
        )
    };
    if call.chaincode != goods::CHAINCODE {
        return Err(not_an_event());
    }
    let bad_args = |e: codec::CodecError| {
        fail(
            format!("{at}.tx.body.call.args"),
            format!("not a traceability event: {e}"),
        )
    };
    match call.method.as_str() {
        goods::RECORD_METHOD => codec::decode(&call.args)
            .map(GoodsCall::Record)
            .map_err(bad_args),
        goods::SPLIT_METHOD => codec::decode(&call.args)
            .map(GoodsCall::Split)
            .map_err(bad_args),
        goods::AGGREGATE_METHOD | goods::DISAGGREGATE_METHOD => codec::decode(&call.args)
            .map(|args| GoodsCall::Aggregate(args, call.method == goods::DISAGGREGATE_METHOD))
            .map_err(bad_args),
        goods::TRANSFORM_METHOD => codec::decode(&call.args)
            .map(GoodsCall::Transform)
            .map_err(bad_args),
        _ => Err(not_an_event()),
    }
}

/// Every agency's `gov/validator/<agency>` entry, proven against `state_root` (in genesis
/// agency order): the key that replaces the agency's genesis key, where there is one.
pub(crate) fn key_overrides(
    trust: &TrustRoot,
    state_root: &Hash,
    keys: &[KeyProof],
    at: &str,
) -> Result<Vec<Option<PublicKey>>, ProofError> {
    if keys.len() != trust.agencies.len() {
        return Err(fail(
            format!("{at}.keys"),
            format!(
                "{} key proofs for {} agencies",
                keys.len(),
                trust.agencies.len()
            ),
        ));
    }
    let mut overrides = Vec::with_capacity(keys.len());
    for (j, (agency, key)) in trust.agencies.iter().zip(keys).enumerate() {
        let state_key = validator_key_state_key(&agency.name);
        key.proof
            .verify(
                trust.suite,
                state_root,
                state_key.as_bytes(),
                key.value.as_deref(),
            )
            .map_err(|e| fail(format!("{at}.keys[{j}] ({state_key})"), e))?;
        let replaced = match &key.value {
            None => None,
            Some(bytes) => Some(codec::decode::<PublicKey>(bytes).map_err(|e| {
                fail(
                    format!("{at}.keys[{j}].value"),
                    format!("not a validator key: {e}"),
                )
            })?),
        };
        if let Some(key) = &replaced {
            trust
                .suite
                .check_key(key)
                .map_err(|e| fail(format!("{at}.keys[{j}].value"), e))?;
        }
        overrides.push(replaced);
    }
    Ok(overrides)
}

/// Checks a header against the chain and `roster` (the set in force at its height), and
/// its certificate against that set.
pub(crate) fn check_certified(
    trust: &TrustRoot,
    roster: &Roster,
    c: &CertifiedHeader,
    at: &str,
) -> Result<ProvenBlock, ProofError> {
    let header = &c.header;
    if header.chain_id != trust.chain_id {
        return Err(fail(
            format!("{at}.header.chain_id"),
            format!(
                "{} is not the genesis file's chain {}",
                header.chain_id, trust.chain_id
            ),
        ));
    }
    if header.height == 0 {
        return Err(fail(format!("{at}.header.height"), "height 0 has no block"));
    }
    let expected = roster.set.hash(trust.suite);
    if header.validators_hash != expected {
        return Err(fail(
            format!("{at}.header.validators_hash"),
            format!(
                "{} is not the set in force at height {} ({expected}); a validator-set \
                     change is missing from set_changes",
                header.validators_hash, header.height
            ),
        ));
    }
    let hash = header.hash(trust.suite);
    c.certificate
        .verify_for(&trust.chain_id, &roster.set, header.height, &hash)
        .map_err(|e| fail(format!("{at}.certificate"), e))?;
    Ok(ProvenBlock {
        height: header.height,
        hash,
        time_ms: header.time_ms,
        certified_by: c
            .certificate
            .signatures
            .iter()
            .filter_map(|s| roster.agency_of(&s.validator).map(String::from))
            .collect(),
    })
}

impl ProofFile {
    /// Verifies everything against `trust`: format, chain, the validator-set changes
    /// from genesis, every certificate, path and link.
    pub fn verify(&self, trust: &TrustRoot) -> Result<Verified, ProofError> {
        if self.format != FORMAT_VERSION {
            return Err(fail(
                "format",
                format!(
                    "version {} is not supported (this verifier reads version {FORMAT_VERSION})",
                    self.format
                ),
            ));
        }
        if self.chain_id != trust.chain_id {
            return Err(fail(
                "chain_id",
                format!(
                    "{} is not the genesis file's chain {}",
                    self.chain_id, trust.chain_id
                ),
            ));
        }
        let history = History::follow(trust, &self.set_changes)?;
        match &self.proof {
            Proof::Tx(p) => {
                let block = history.check_tx(p, "proof")?;
                Ok(Verified::Tx {
                    tx_hash: p.tx.hash(trust.suite),
                    sender: p.tx.body.sender,
                    chaincode: p.tx.body.call.chaincode.clone(),
                    method: p.tx.body.call.method.clone(),
                    outcome: p.result.outcome.clone(),
                    block,
                })
            }
            Proof::State(p) => {
                let block = history.check_state(p, "proof")?;
                Ok(Verified::State {
                    key: p.key.clone(),
                    value: p.value.clone(),
                    block,
                })
            }
            Proof::Provenance(p) => {
                let verified = history.check_provenance(p, "proof")?;
                if let Verified::Provenance { timeline, .. } = &verified {
                    // A good split from a lot needs its lineage: a plain provenance
                    // proof of it is incomplete.
                    history.check_ancestors(timeline, &[], "proof")?;
                }
                Ok(verified)
            }
            Proof::Lineage(p) => {
                let Verified::Provenance {
                    goods_id,
                    head,
                    timeline,
                    ..
                } = history.check_provenance(&p.provenance, "proof.provenance")?
                else {
                    return Err(fail("proof.provenance", "not a provenance statement"));
                };
                let ancestors =
                    history.check_ancestors(&timeline, &p.ancestors, "proof.ancestors")?;
                Ok(Verified::Provenance {
                    goods_id,
                    head,
                    timeline,
                    ancestors,
                })
            }
        }
    }

    /// The canonical binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<ProofFile, codec::CodecError> {
        codec::decode(bytes)
    }

    /// Reads either form: JSON if the text starts with `{`, else binary.
    pub fn parse(bytes: &[u8]) -> Result<ProofFile, String> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'{') {
            serde_json::from_slice(bytes).map_err(|e| format!("not a proof file (JSON): {e}"))
        } else {
            ProofFile::from_bytes(bytes).map_err(|e| format!("not a proof file (binary): {e}"))
        }
    }
}
