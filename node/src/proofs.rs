//! Builds auditor proofs from the store: what `/v1/proof/...` serves and `cbec verify`
//! checks offline (see `cbec_ledger::proof` for the format and the verification).

use cbec_ledger::goods::{self, Head, StoredEvent};
use cbec_ledger::proof::{
    validator_key_state_key, AncestorProof, CertifiedHeader, KeyProof, LineageProof, Proof,
    ProofFile, ProvenanceProof, SetChange, StateProof, TrustRoot, TxProof, FORMAT_VERSION,
};
use cbec_ledger::{codec, Hash};

use crate::reads::BlockCache;
use crate::store::{Store, StoreError};
use crate::tree::TreeError;

/// Why a proof could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    /// Nothing to prove: an unknown transaction, a good without events, a future height.
    #[error("{0}")]
    NotFound(String),
    /// The state at that height is no longer kept here.
    #[error("{0}")]
    NotKept(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ProveError {
    fn from(e: StoreError) -> ProveError {
        match e {
            StoreError::Tree(TreeError::NotKept {
                asked,
                oldest,
                latest,
            }) => ProveError::NotKept(format!(
                "the state at height {asked} is no longer kept on this node: it proves \
                 heights {oldest} to {latest} ([store] versions_kept in its config; an archive \
                 node, [store] archive = true, proves every height)"
            )),
            e => ProveError::Store(e),
        }
    }
}

type Result<T> = std::result::Result<T, ProveError>;

/// Most events a provenance proof carries; a good with more is refused, not truncated
/// (a proof that left events out would not verify). Each event is a transaction proof
/// (about 2 kB, a block read and its trees); a parcel's whole flow is about a dozen.
pub const PROVENANCE_EVENTS_MAX: u64 = 256;
/// Most ancestors a provenance proof carries (lots split from, inputs transformed
/// from; each carries its events up to the event that made the good below it).
pub const ANCESTORS_MAX: usize = 64;

fn missing(what: impl std::fmt::Display) -> ProveError {
    StoreError::Corrupt(format!("{what} is missing")).into()
}

/// Proof building over one store, for the chain `trust` describes; blocks come
/// through `blocks`, so their trees are built once for many proofs.
#[derive(Debug)]
pub struct Prover<'a> {
    pub store: &'a Store,
    pub trust: &'a TrustRoot,
    pub blocks: &'a BlockCache,
}

impl Prover<'_> {
    /// The proof of a committed transaction.
    pub fn tx(&self, hash: &Hash) -> Result<ProofFile> {
        let proof = self.tx_proof(hash)?;
        let height = proof.block.header.height;
        self.file(height, Proof::Tx(proof))
    }

    /// The proof of `key`'s value (or absence) after block `height` (default: latest).
    pub fn state(&self, key: &[u8], height: Option<u64>) -> Result<ProofFile> {
        let latest = self.store.height()?;
        let height = height.unwrap_or(latest);
        if height == 0 || height > latest {
            return Err(ProveError::NotFound(format!(
                "no committed block at height {height} (the latest is {latest})"
            )));
        }
        let proof = self.state_proof(key, height)?;
        self.file(height, Proof::State(proof))
    }

    /// The whole history of a good, at the latest height.
    pub fn provenance(&self, goods_id: &str) -> Result<ProofFile> {
        let height = self.store.height()?;
        if height == 0 {
            return Err(ProveError::NotFound("nothing is committed yet".into()));
        }
        let head = self.state_proof(goods::head_key(goods_id).as_bytes(), height)?;
        let Some(bytes) = &head.value else {
            return Err(ProveError::NotFound(format!(
                "good {goods_id} has no recorded events at height {height}"
            )));
        };
        let head_value: Head = codec::decode(bytes)
            .map_err(|e| StoreError::Corrupt(format!("head of {goods_id}: {e}")))?;
        let (events, first) = self.chain_to(goods_id, head_value.last, head_value.count)?;
        let provenance = ProvenanceProof {
            goods_id: goods_id.to_string(),
            head,
            events,
        };
        // Made from other goods (split from a lot, transformed from inputs): each
        // ancestor's events up to the event that made the good below it, breadth first
        // as the verifier walks them, back to goods made from nothing recorded here.
        let sources = |e: &StoredEvent| {
            goods::sources(e.kind, &e.attributes).map_err(|problem| {
                StoreError::Corrupt(format!("first event of {}: {problem}", e.goods_id))
            })
        };
        let mut ancestors = Vec::new();
        goods::walk_lineage(sources(&first)?, (), |source, ()| {
            if ancestors.len() >= ANCESTORS_MAX {
                return Err(ProveError::NotFound(format!(
                    "{goods_id} descends from more than {ANCESTORS_MAX} goods, more than a proof carries"
                )));
            }
            let made_by = self.event(&source.event, &source.goods_id)?;
            let (events, first) = self.chain_to(&source.goods_id, source.event, made_by.seq + 1)?;
            ancestors.push(AncestorProof {
                goods_id: source.goods_id.clone(),
                events,
            });
            Ok((sources(&first)?, ()))
        })?;
        let proof = if ancestors.is_empty() {
            Proof::Provenance(provenance)
        } else {
            Proof::Lineage(LineageProof {
                provenance,
                ancestors,
            })
        };
        self.file(height, proof)
    }

    fn event(&self, hash: &Hash, goods_id: &str) -> Result<StoredEvent> {
        let bytes = self
            .store
            .state_value(goods::event_key(hash).as_bytes())?
            .ok_or_else(|| missing(format!("event {hash} of {goods_id}")))?;
        Ok(codec::decode(&bytes).map_err(|e| StoreError::Corrupt(format!("event {hash}: {e}")))?)
    }

    /// The transaction proofs of a good's events from its first up to `last` (its
    /// `count` events), first to last, and its first event.
    fn chain_to(
        &self,
        goods_id: &str,
        last: Hash,
        count: u64,
    ) -> Result<(Vec<TxProof>, StoredEvent)> {
        if count > PROVENANCE_EVENTS_MAX {
            return Err(ProveError::NotFound(format!(
                "good {goods_id} has {count} events, more than the {PROVENANCE_EVENTS_MAX} a proof carries"
            )));
        }
        let mut events = Vec::with_capacity(count as usize);
        let mut next = Some(last);
        let mut first = None;
        while let Some(hash) = next {
            let event = self.event(&hash, goods_id)?;
            events.push(self.tx_proof(&event.tx_hash)?);
            next = event.prev;
            first = Some(event);
            if events.len() as u64 > count {
                return Err(StoreError::Corrupt(format!("the chain of {goods_id} loops")).into());
            }
        }
        events.reverse();
        let first = first.ok_or_else(|| missing(format!("the events of {goods_id}")))?;
        Ok((events, first))
    }

    fn tx_proof(&self, hash: &Hash) -> Result<TxProof> {
        let (height, index) = self
            .store
            .tx_location(hash)?
            .ok_or_else(|| ProveError::NotFound(format!("no committed transaction {hash}")))?;
        let treed = self
            .blocks
            .get(self.store, height)?
            .ok_or_else(|| missing(format!("block {height}")))?;
        let certificate = self
            .store
            .certificate(height)?
            .ok_or_else(|| missing(format!("certificate {height}")))?;
        TxProof::build_with(
            &treed.block,
            &treed.txs,
            &treed.results,
            certificate,
            index as usize,
        )
        .ok_or_else(|| missing(format!("transaction {index} of block {height}")))
    }

    fn certified(&self, height: u64) -> Result<CertifiedHeader> {
        Ok(CertifiedHeader {
            header: self
                .store
                .header(height)?
                .ok_or_else(|| missing(format!("block {height}")))?,
            certificate: self
                .store
                .certificate(height)?
                .ok_or_else(|| missing(format!("certificate {height}")))?,
        })
    }

    fn state_proof(&self, key: &[u8], height: u64) -> Result<StateProof> {
        let (value, proof) = self.store.sparse_proof(key, height)?;
        Ok(StateProof {
            key: key.to_vec(),
            value,
            proof,
            block: self.certified(height)?,
        })
    }

    /// Every validator-set change a verifier must follow to reach `height`.
    fn set_changes(&self, height: u64) -> Result<Vec<SetChange>> {
        self.store
            .set_changes_before(height)?
            .into_iter()
            .map(|at| {
                let kept = self.store.set_change_proofs(at)?;
                let keys = self
                    .trust
                    .agencies
                    .iter()
                    .map(|agency| {
                        let key = validator_key_state_key(&agency.name);
                        kept.iter()
                            .find(|(k, _, _)| k.as_slice() == key.as_bytes())
                            .map(|(_, value, proof)| KeyProof {
                                value: value.clone(),
                                proof: proof.clone(),
                            })
                            .ok_or_else(|| missing(format!("the proof of {key} at {at}")))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(SetChange {
                    at: self.certified(at)?,
                    keys,
                })
            })
            .collect()
    }

    /// Wraps a proof about blocks up to `height` with the set changes before it.
    fn file(&self, height: u64, proof: Proof) -> Result<ProofFile> {
        Ok(ProofFile {
            format: FORMAT_VERSION,
            chain_id: self.trust.chain_id,
            set_changes: self.set_changes(height)?,
            proof,
        })
    }
}
