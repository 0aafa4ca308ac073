//! A ledger in memory for chaincode tests: agencies from a genesis-like list, real
//! signed transactions, one block per call.
#![allow(dead_code)]

use std::collections::BTreeMap;

use cbec_chaincode::{BlockInfo, Engine, MemoryState};
use cbec_ledger::{codec, Call, Hash, KeyPair, Outcome, Transaction, TxBody, TxResult};
use serde_json::{json, Value};

pub const CHAIN: Hash = Hash([0xcb; 32]);
/// The chain suite of these tests (the default).
pub const SUITE: cbec_ledger::Suite = cbec_ledger::Suite::Ed25519Sha256;
/// 2026-11-26T08:00:00Z.
pub const T0: u64 = 1_795_680_000_000;
pub const DAY_MS: u64 = 86_400_000;

pub struct Ledger {
    pub engine: Engine,
    pub state: MemoryState,
    pub height: u64,
    pub time_ms: u64,
    nonces: BTreeMap<cbec_ledger::PublicKey, u64>,
    pub agencies: BTreeMap<&'static str, KeyPair>,
}

pub fn key(n: u16) -> KeyPair {
    let mut seed = [7u8; 32];
    seed[..2].copy_from_slice(&n.to_be_bytes());
    KeyPair::from_seed(&seed)
}

impl Ledger {
    pub fn new() -> Ledger {
        let engine =
            Engine::from_configs(&cbec_chaincode::catalog::default_configs()).expect("catalog");
        let mut agencies = BTreeMap::new();
        for (i, name) in ["customs", "tax", "forex", "commerce"]
            .into_iter()
            .enumerate()
        {
            agencies.insert(name, key(1000 + i as u16));
        }
        let list: Vec<(String, Vec<_>)> = agencies
            .iter()
            .map(|(n, k)| (n.to_string(), vec![k.public()]))
            .collect();
        let mut state = MemoryState::default();
        state.apply(&Engine::genesis_writes(&list));
        Ledger {
            engine,
            state,
            height: 0,
            time_ms: T0,
            nonces: BTreeMap::new(),
            agencies,
        }
    }

    pub fn agency(&self, name: &str) -> &KeyPair {
        &self.agencies[name]
    }

    /// Signs and executes one transaction in its own block.
    pub fn run(
        &mut self,
        signer: &KeyPair,
        chaincode: &str,
        method: &str,
        args: Value,
    ) -> TxResult {
        let args = cbec_chaincode::args_from_json(chaincode, method, args).expect("args encode");
        self.run_raw(signer, chaincode, method, args)
    }

    pub fn run_raw(
        &mut self,
        signer: &KeyPair,
        chaincode: &str,
        method: &str,
        args: Vec<u8>,
    ) -> TxResult {
        let tx = self.sign(signer, chaincode, method, args);
        let mut results = self.block(vec![tx]);
        results.pop().expect("one result")
    }

    pub fn sign(
        &mut self,
        signer: &KeyPair,
        chaincode: &str,
        method: &str,
        args: Vec<u8>,
    ) -> Transaction {
        let nonce = self.nonces.entry(signer.public()).or_insert(0);
        let body = TxBody {
            chain_id: CHAIN,
            sender: signer.public(),
            nonce: *nonce,
            call: Call {
                chaincode: chaincode.into(),
                method: method.into(),
                args,
            },
        };
        *nonce += 1;
        Transaction::sign(body, signer)
    }

    pub fn block(&mut self, txs: Vec<Transaction>) -> Vec<TxResult> {
        self.height += 1;
        self.time_ms += 1_000;
        let verified: Vec<_> = txs
            .into_iter()
            .map(|t| t.verify(&CHAIN, SUITE).expect("signed"))
            .collect();
        let outcome = self
            .engine
            .execute_block(
                &self.state,
                BlockInfo {
                    height: self.height,
                    time_ms: self.time_ms,
                    suite: SUITE,
                },
                &verified,
            )
            .expect("valid block");
        self.state.apply(&outcome.writes);
        outcome.results
    }

    /// Signs and executes one transaction in its own block, if a block may hold it;
    /// the refusal otherwise (and the signer's nonce is not used up).
    pub fn try_run(
        &mut self,
        signer: &KeyPair,
        chaincode: &str,
        method: &str,
        args: Value,
    ) -> Result<TxResult, cbec_chaincode::ExecError> {
        let args = cbec_chaincode::args_from_json(chaincode, method, args).expect("args encode");
        let tx = self.sign(signer, chaincode, method, args);
        let verified = tx.verify(&CHAIN, SUITE).expect("signed");
        let block = BlockInfo {
            height: self.height + 1,
            time_ms: self.time_ms + 1_000,
            suite: SUITE,
        };
        match self
            .engine
            .execute_block(&self.state, block, std::slice::from_ref(&verified))
        {
            Ok(outcome) => {
                self.height += 1;
                self.time_ms += 1_000;
                self.state.apply(&outcome.writes);
                Ok(outcome.results[0].clone())
            }
            Err(e) => {
                *self.nonces.entry(signer.public()).or_insert(1) -= 1;
                Err(e)
            }
        }
    }

    pub fn get<T: bincode::Decode<()>>(&self, key: &str) -> Option<T> {
        self.state
            .entries
            .get(key.as_bytes())
            .map(|b| codec::decode(b).expect("decodes"))
    }

    /// Files an enterprise through commerce; returns its signing key.
    pub fn file(&mut self, n: u16, uscc: &str, customs_code: &str, roles: &[&str]) -> KeyPair {
        let k = key(n);
        let commerce = self.agency("commerce").clone();
        let r = self.run(
            &commerce,
            "enterprise",
            "approve_filing",
            json!({"uscc": uscc, "name": format!("enterprise {n}"), "roles": roles,
                   "keys": [k.public()], "customs_code": customs_code}),
        );
        accepted(&r);
        k
    }
}

#[track_caller]
pub fn accepted(r: &TxResult) -> &Vec<cbec_ledger::Event> {
    match &r.outcome {
        Outcome::Accepted { events } => events,
        Outcome::Rejected { rule, message } => panic!("rejected by {rule}: {message}"),
    }
}

#[track_caller]
pub fn rejected(r: &TxResult, expected_rule: &str) -> String {
    match &r.outcome {
        Outcome::Rejected { rule, message } => {
            assert_eq!(rule, expected_rule, "rejected by {rule}: {message}");
            message.clone()
        }
        Outcome::Accepted { events } => panic!("accepted ({events:?}), expected {expected_rule}"),
    }
}

pub fn attr(events: &[cbec_ledger::Event], kind: &str, key: &str) -> Option<String> {
    events
        .iter()
        .filter(|e| e.kind == kind)
        .flat_map(|e| e.attributes.iter())
        .find(|a| a.key == key)
        .map(|a| a.value.clone())
}

/// A keyed tag standing for personal data.
pub fn tag(n: u8) -> String {
    format!("v1:{}", hex::encode([n; 32]))
}
