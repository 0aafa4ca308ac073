//! A chain built in memory with real keys, real certificates and a reference state
//! tree, for proof tests and benchmarks: what a node would serve, without a node.

#![allow(dead_code)]

use std::collections::BTreeMap;

use cbec_ledger::goods::{self, EventKind, Head, RecordEvent, StoredEvent};
use cbec_ledger::proof::{
    validator_key_state_key, CertifiedHeader, KeyProof, Proof, ProofFile, ProvenanceProof,
    SetChange, StateProof, TrustRoot, TrustedAgency, TxProof, FORMAT_VERSION,
};
use cbec_ledger::sparse::{reference, SparseLeaf};
use cbec_ledger::{
    block, codec, merkle, vote_sign_bytes, Attribute, Block, Call, CommitCertificate, CommitSig,
    Event, Hash, Header, KeyPair, Outcome, PublicKey, Suite, Transaction, TxBody, TxResult,
    VoteKind,
};

pub const AGENCIES: [&str; 4] = ["customs", "tax", "forex", "commerce"];

/// A committed block and the state after it.
pub struct Committed {
    pub block: Block,
    pub certificate: CommitCertificate,
    pub state: BTreeMap<Vec<u8>, Vec<u8>>,
}

pub struct Chain {
    pub trust: TrustRoot,
    /// The validator key each agency signs with now.
    pub signers: Vec<KeyPair>,
    pub blocks: Vec<Committed>,
    pub state: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Heights after which the validator set changed.
    pub changes: Vec<u64>,
    nonces: BTreeMap<PublicKey, u64>,
    /// Filler transactions per block, so paths are not trivial.
    pub filler: usize,
}

/// An Ed25519 key (the default suite's).
pub fn key(seed: u8) -> KeyPair {
    KeyPair::from_seed(&[seed; 32])
}

impl Chain {
    /// A chain of the default suite.
    pub fn new() -> Chain {
        Chain::with_suite(Suite::Ed25519Sha256)
    }

    pub fn with_suite(suite: Suite) -> Chain {
        let signers: Vec<KeyPair> = (1..=4)
            .map(|n| KeyPair::derive(suite.scheme(), &[n; 32]))
            .collect();
        let trust = TrustRoot {
            chain_id: suite.tagged("test-chain", b"proofs"),
            suite,
            agencies: AGENCIES
                .iter()
                .zip(&signers)
                .map(|(name, k)| TrustedAgency {
                    name: name.to_string(),
                    validator_key: k.public(),
                    voting_power: 1,
                })
                .collect(),
        };
        Chain {
            trust,
            signers,
            blocks: Vec::new(),
            state: BTreeMap::new(),
            changes: Vec::new(),
            nonces: BTreeMap::new(),
            filler: 3,
        }
    }

    /// A key of the chain's suite.
    pub fn key(&self, seed: u8) -> KeyPair {
        KeyPair::derive(self.trust.suite.scheme(), &[seed; 32])
    }

    pub fn height(&self) -> u64 {
        self.blocks.len() as u64
    }

    pub fn committed(&self, height: u64) -> &Committed {
        &self.blocks[height as usize - 1]
    }

    fn validators_hash(&self) -> Hash {
        let overrides: Vec<_> = self
            .signers
            .iter()
            .zip(&self.trust.agencies)
            .map(|(k, a)| (k.public() != a.validator_key).then(|| k.public()))
            .collect();
        cbec_ledger::proof::Roster::derive(&self.trust.agencies, &overrides)
            .expect("valid set")
            .set()
            .hash(self.trust.suite)
    }

    pub fn sign_tx(
        &mut self,
        key: &KeyPair,
        chaincode: &str,
        method: &str,
        args: Vec<u8>,
    ) -> Transaction {
        let nonce = self.nonces.entry(key.public()).or_insert(0);
        let body = TxBody {
            chain_id: self.trust.chain_id,
            sender: key.public(),
            nonce: *nonce,
            call: Call {
                chaincode: chaincode.into(),
                method: method.into(),
                args,
            },
        };
        *nonce += 1;
        Transaction::sign(body, key)
    }

    fn filler_txs(&mut self) -> Vec<(Transaction, TxResult)> {
        let key = self.key(200);
        (0..self.filler)
            .map(|i| {
                let tx = self.sign_tx(&key, "enterprise", "noop", vec![i as u8; 40]);
                let result = TxResult {
                    tx_hash: tx.hash(self.trust.suite),
                    outcome: Outcome::Rejected {
                        rule: "ARGS".into(),
                        message: "filler".into(),
                    },
                };
                (tx, result)
            })
            .collect()
    }

    /// Commits a block of `txs` (plus filler) whose execution wrote `writes`, certified
    /// by the agencies at `signers` (indexes into the current signers).
    pub fn commit_with(
        &mut self,
        mut txs: Vec<(Transaction, TxResult)>,
        writes: Vec<(Vec<u8>, Vec<u8>)>,
        signers: &[usize],
    ) -> u64 {
        let mut all = self.filler_txs();
        let half = all.len() / 2;
        let tail = all.split_off(half);
        all.append(&mut txs);
        all.extend(tail);
        for (k, v) in writes {
            self.state.insert(k, v);
        }
        let height = self.height() + 1;
        let (txs, results): (Vec<_>, Vec<_>) = all.into_iter().unzip();
        let header = Header {
            chain_id: self.trust.chain_id,
            height,
            time_ms: 1_700_000_000_000 + height * 1_000,
            previous: self
                .blocks
                .last()
                .map_or(self.trust.chain_id, |b| b.block.hash(self.trust.suite)),
            proposer: self.signers[0].public(),
            tx_count: txs.len() as u64,
            tx_root: merkle::root(self.trust.suite, &block::tx_leaves(&txs)),
            results_root: merkle::root(self.trust.suite, &block::result_leaves(&results)),
            state_root: reference::root(self.trust.suite, &self.leaves()),
            validators_hash: self.validators_hash(),
        };
        let block = Block {
            last_commit: self.blocks.last().map(|b| b.certificate.clone()),
            header,
            txs,
            results,
        };
        let certificate = self.certify(&block.header, signers);
        self.blocks.push(Committed {
            block,
            certificate,
            state: self.state.clone(),
        });
        height
    }

    pub fn commit(
        &mut self,
        txs: Vec<(Transaction, TxResult)>,
        writes: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> u64 {
        self.commit_with(txs, writes, &[0, 1, 2, 3])
    }

    pub fn certify(&self, header: &Header, signers: &[usize]) -> CommitCertificate {
        let hash = header.hash(self.trust.suite);
        let message = vote_sign_bytes(
            &self.trust.chain_id,
            header.height,
            0,
            VoteKind::Precommit,
            Some(&hash),
        );
        CommitCertificate {
            height: header.height,
            round: 0,
            block_hash: hash,
            signatures: signers
                .iter()
                .map(|&i| CommitSig {
                    validator: self.signers[i].public(),
                    signature: self.signers[i].sign(&message),
                })
                .collect(),
        }
    }

    pub fn leaves_of(&self, state: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<SparseLeaf> {
        let pairs: Vec<(&[u8], &[u8])> = state
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        reference::leaves(self.trust.suite, &pairs)
    }

    fn leaves(&self) -> Vec<SparseLeaf> {
        self.leaves_of(&self.state)
    }

    /// Governance replaces agency `index`'s validator key; the new set certifies the
    /// blocks after this one.
    pub fn replace_validator(&mut self, index: usize, new: KeyPair) -> u64 {
        let name = AGENCIES[index];
        let write = (
            validator_key_state_key(name).into_bytes(),
            codec::encode(&new.public()),
        );
        let height = self.commit(Vec::new(), vec![write]);
        self.signers[index] = new;
        self.changes.push(height);
        height
    }

    /// Records a traceability event of `goods_id` by `actor` (signing with `key`).
    pub fn record(
        &mut self,
        key: &KeyPair,
        actor: &str,
        goods_id: &str,
        kind: EventKind,
    ) -> (u64, Hash) {
        let head_key = goods::head_key(goods_id).into_bytes();
        let head: Option<Head> = self
            .state
            .get(&head_key)
            .map(|b| codec::decode(b).expect("head"));
        let args = RecordEvent {
            goods_id: goods_id.into(),
            kind,
            prev: head.as_ref().map(|h| h.last),
            attributes: BTreeMap::from([("note".to_string(), format!("{kind:?} of {goods_id}"))]),
        };
        let tx = self.sign_tx(
            key,
            goods::CHAINCODE,
            goods::RECORD_METHOD,
            codec::encode(&args),
        );
        let height = self.height() + 1;
        let seq = head.as_ref().map_or(0, |h| h.count);
        let stored = StoredEvent {
            goods_id: goods_id.into(),
            seq,
            kind,
            prev: args.prev,
            actor: actor.into(),
            attributes: args.attributes.clone(),
            height,
            time_ms: 1_700_000_000_000 + height * 1_000,
            tx_hash: tx.hash(self.trust.suite),
        };
        let hash = stored.hash(self.trust.suite);
        let new_head = Head {
            first: head.as_ref().map_or(hash, |h| h.first),
            last: hash,
            count: seq + 1,
        };
        let attr = |k: &str, v: String| Attribute {
            key: k.into(),
            value: v,
        };
        let result = TxResult {
            tx_hash: tx.hash(self.trust.suite),
            outcome: Outcome::Accepted {
                events: vec![Event {
                    kind: goods::RESULT_EVENT.into(),
                    attributes: vec![
                        attr("goods_id", goods_id.into()),
                        attr("kind", format!("{kind:?}").to_lowercase()),
                        attr("event_hash", hash.to_string()),
                        attr("seq", seq.to_string()),
                        attr("actor", actor.into()),
                    ],
                }],
            },
        };
        let writes = vec![
            (goods::event_key(&hash).into_bytes(), codec::encode(&stored)),
            (head_key, codec::encode(&new_head)),
        ];
        let h = self.commit(vec![(tx, result)], writes);
        (h, hash)
    }

    /// Splits `goods_id` into `children` (id, quantity) in one transaction, as the
    /// goods chaincode does ([`goods::split_events`]).
    pub fn split(
        &mut self,
        key: &KeyPair,
        actor: &str,
        goods_id: &str,
        children: &[(&str, u64)],
    ) -> u64 {
        let head_key = goods::head_key(goods_id).into_bytes();
        let head: Head = codec::decode(&self.state[&head_key]).expect("head");
        let args = goods::SplitArgs {
            goods_id: goods_id.into(),
            prev: head.last,
            children: children
                .iter()
                .map(|(id, q)| goods::Child {
                    goods_id: (*id).into(),
                    quantity: *q,
                })
                .collect(),
            attributes: BTreeMap::new(),
        };
        let tx = self.sign_tx(
            key,
            goods::CHAINCODE,
            goods::SPLIT_METHOD,
            codec::encode(&args),
        );
        let height = self.height() + 1;
        let tx_hash = tx.hash(self.trust.suite);
        let (parent, kids) = goods::split_events(
            &args,
            head.count,
            goods::RecordedAt {
                actor,
                height,
                time_ms: 1_700_000_000_000 + height * 1_000,
                tx_hash,
            },
            self.trust.suite,
        );
        let recorded =
            std::iter::once((parent, Some(head))).chain(kids.into_iter().map(|k| (k, None)));
        self.commit_events(tx, actor, recorded.collect())
    }

    /// Transforms `inputs` (id, quantity consumed) into `outputs` (id, quantity) in one
    /// transaction, as the goods chaincode does ([`goods::transform_events`]).
    pub fn transform(
        &mut self,
        key: &KeyPair,
        actor: &str,
        inputs: &[(&str, u64)],
        outputs: &[(&str, u64)],
    ) -> u64 {
        let heads: Vec<Head> = inputs
            .iter()
            .map(|(id, _)| {
                codec::decode(&self.state[&goods::head_key(id).into_bytes()]).expect("head")
            })
            .collect();
        let args = goods::TransformArgs {
            inputs: inputs
                .iter()
                .zip(&heads)
                .map(|((id, q), head)| goods::Input {
                    goods_id: (*id).into(),
                    prev: head.last,
                    quantity: *q,
                })
                .collect(),
            outputs: outputs
                .iter()
                .map(|(id, q)| goods::Output {
                    goods_id: (*id).into(),
                    quantity: *q,
                    attributes: BTreeMap::new(),
                })
                .collect(),
            attributes: BTreeMap::from([("process".to_string(), "cut and packed".to_string())]),
        };
        let tx = self.sign_tx(
            key,
            goods::CHAINCODE,
            goods::TRANSFORM_METHOD,
            codec::encode(&args),
        );
        let height = self.height() + 1;
        let tx_hash = tx.hash(self.trust.suite);
        let seq_of = |id: &str| {
            inputs
                .iter()
                .position(|(i, _)| *i == id)
                .map_or(0, |k| heads[k].count)
        };
        let (consumed, made) = goods::transform_events(
            &args,
            seq_of,
            goods::RecordedAt {
                actor,
                height,
                time_ms: 1_700_000_000_000 + height * 1_000,
                tx_hash,
            },
            self.trust.suite,
        );
        let recorded = consumed
            .into_iter()
            .zip(heads.into_iter().map(Some))
            .chain(made.into_iter().map(|m| (m, None)));
        self.commit_events(tx, actor, recorded.collect())
    }

    /// Commits one transaction that recorded `recorded` (each event with the head it
    /// follows): its result announces each, and state gets each event and new head.
    fn commit_events(
        &mut self,
        tx: Transaction,
        actor: &str,
        recorded: Vec<(StoredEvent, Option<Head>)>,
    ) -> u64 {
        let tx_hash = tx.hash(self.trust.suite);
        let attr = |k: &str, v: String| Attribute {
            key: k.into(),
            value: v,
        };
        let mut events = Vec::new();
        let mut writes = Vec::new();
        for (stored, old) in recorded {
            let hash = stored.hash(self.trust.suite);
            let new_head = Head {
                first: old.as_ref().map_or(hash, |h| h.first),
                last: hash,
                count: stored.seq + 1,
            };
            events.push(Event {
                kind: goods::RESULT_EVENT.into(),
                attributes: vec![
                    attr("goods_id", stored.goods_id.clone()),
                    attr("kind", format!("{:?}", stored.kind).to_lowercase()),
                    attr("event_hash", hash.to_string()),
                    attr("seq", stored.seq.to_string()),
                    attr("actor", actor.into()),
                ],
            });
            writes.push((
                goods::head_key(&stored.goods_id).into_bytes(),
                codec::encode(&new_head),
            ));
            writes.push((goods::event_key(&hash).into_bytes(), codec::encode(&stored)));
        }
        let result = TxResult {
            tx_hash,
            outcome: Outcome::Accepted { events },
        };
        self.commit(vec![(tx, result)], writes)
    }

    /// The proof of `goods_id` through the lots it was split from (as the node builds
    /// it): its provenance, and each ancestor's events up to its split.
    pub fn lineage_file(&self, goods_id: &str) -> ProofFile {
        let file = self.provenance_file(goods_id);
        let Proof::Provenance(provenance) = file.proof else {
            panic!("provenance")
        };
        let event_of = |hash: &Hash| -> StoredEvent {
            codec::decode(&self.state[goods::event_key(hash).as_bytes()]).expect("event")
        };
        let first_of = |p: &[TxProof], id: &str| -> StoredEvent {
            let first = &p[0];
            let announced = match &first.result.outcome {
                Outcome::Accepted { events } => events
                    .iter()
                    .find(|e| {
                        e.attributes
                            .iter()
                            .any(|a| a.key == "goods_id" && a.value == id)
                    })
                    .and_then(|e| e.attributes.iter().find(|a| a.key == "event_hash"))
                    .map(|a| a.value.parse::<Hash>().expect("hash"))
                    .expect("announced"),
                _ => panic!("accepted"),
            };
            event_of(&announced)
        };
        let mut ancestors = Vec::new();
        let first = first_of(&provenance.events, goods_id);
        let sources = |e: &StoredEvent| goods::sources(e.kind, &e.attributes).expect("sources");
        goods::walk_lineage(sources(&first), (), |source, ()| {
            let mut next = Some(source.event);
            let mut events = Vec::new();
            while let Some(hash) = next {
                let stored = event_of(&hash);
                events.push(self.tx_proof(&stored.tx_hash));
                next = stored.prev;
            }
            events.reverse();
            let first = first_of(&events, &source.goods_id);
            ancestors.push(cbec_ledger::proof::AncestorProof {
                goods_id: source.goods_id.clone(),
                events,
            });
            Ok::<_, ()>((sources(&first), ()))
        })
        .expect("walk");
        ProofFile {
            proof: Proof::Lineage(cbec_ledger::proof::LineageProof {
                provenance,
                ancestors,
            }),
            ..file
        }
    }

    pub fn certified(&self, height: u64) -> CertifiedHeader {
        let c = self.committed(height);
        CertifiedHeader {
            header: c.block.header.clone(),
            certificate: c.certificate.clone(),
        }
    }

    /// The set changes a proof about `height` needs.
    pub fn set_changes(&self, height: u64) -> Vec<SetChange> {
        self.changes
            .iter()
            .filter(|&&c| c < height)
            .map(|&c| {
                let state = &self.committed(c).state;
                let leaves = self.leaves_of(state);
                SetChange {
                    at: self.certified(c),
                    keys: AGENCIES
                        .iter()
                        .map(|name| {
                            let key = validator_key_state_key(name).into_bytes();
                            KeyProof {
                                value: state.get(&key).cloned(),
                                proof: reference::prove(self.trust.suite, &leaves, &key),
                            }
                        })
                        .collect(),
                }
            })
            .collect()
    }

    fn file(&self, height: u64, proof: Proof) -> ProofFile {
        ProofFile {
            format: FORMAT_VERSION,
            chain_id: self.trust.chain_id,
            set_changes: self.set_changes(height),
            proof,
        }
    }

    pub fn tx_proof(&self, tx_hash: &Hash) -> TxProof {
        for c in &self.blocks {
            if let Some(i) = c
                .block
                .txs
                .iter()
                .position(|t| t.hash(self.trust.suite) == *tx_hash)
            {
                return TxProof::build(self.trust.suite, &c.block, c.certificate.clone(), i)
                    .expect("index in block");
            }
        }
        panic!("no transaction {tx_hash}");
    }

    pub fn tx_file(&self, tx_hash: &Hash) -> ProofFile {
        let p = self.tx_proof(tx_hash);
        self.file(p.block.header.height, Proof::Tx(p))
    }

    pub fn state_proof(&self, height: u64, key: &[u8]) -> StateProof {
        let state = &self.committed(height).state;
        StateProof {
            key: key.to_vec(),
            value: state.get(key).cloned(),
            proof: reference::prove(self.trust.suite, &self.leaves_of(state), key),
            block: self.certified(height),
        }
    }

    pub fn state_file(&self, height: u64, key: &[u8]) -> ProofFile {
        self.file(height, Proof::State(self.state_proof(height, key)))
    }

    /// The provenance proof of `goods_id` at the latest height.
    pub fn provenance_file(&self, goods_id: &str) -> ProofFile {
        let height = self.height();
        let head = self.state_proof(height, goods::head_key(goods_id).as_bytes());
        let mut events = Vec::new();
        let mut next = head
            .value
            .as_ref()
            .map(|b| codec::decode::<Head>(b).expect("head").last);
        while let Some(hash) = next {
            let bytes = &self.state[goods::event_key(&hash).as_bytes()];
            let stored: StoredEvent = codec::decode(bytes).expect("event");
            events.push(self.tx_proof(&stored.tx_hash));
            next = stored.prev;
        }
        events.reverse();
        self.file(
            height,
            Proof::Provenance(ProvenanceProof {
                goods_id: goods_id.into(),
                head,
                events,
            }),
        )
    }
}
