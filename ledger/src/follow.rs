//! Following a chain block by block, trusting only the genesis file: what an indexer
//! (or any other reader of every block) checks before it believes a block.
//!
//! A [`Follower`] starts from the genesis validator set. Each block must extend the one
//! before it (chain id, height, previous hash, time), match its own header (transaction
//! and results roots), be certified by more than two thirds of the set in force, and
//! name that set in its header. When governance replaces a validator key, the header of
//! the first block under the new set names a set the follower does not hold: the caller
//! fetches the proofs of every agency's `gov/validator/<agency>` entry in the state
//! after the follower's tip and hands them to [`Follower::change_set`], which checks
//! them against the tip's (certified) state root, exactly as a proof's set changes are
//! checked.
//!
//! The certificate binds the transactions, so their signatures are not checked again
//! here: the validators that signed the certificate checked them.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::block::{Block, Header};
use crate::crypto::PublicKey;
use crate::proof::{
    check_certified, fail, key_overrides, CertifiedHeader, KeyProof, ProofError, ProvenBlock,
    Roster, TrustRoot,
};
use crate::validators::CommitCertificate;

/// A block and the certificate that committed it, as a node serves it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct CertifiedBlock {
    pub block: Block,
    pub certificate: CommitCertificate,
}

/// What a follower must keep to resume where it stopped.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct FollowerState {
    /// The last accepted header; none before height 1.
    pub tip: Option<Header>,
    /// Each genesis agency's replacement validator key in force after the tip, if any.
    pub overrides: Vec<Option<PublicKey>>,
}

/// A chain followed from genesis: the last accepted header and the set in force.
#[derive(Debug, Clone)]
pub struct Follower {
    trust: TrustRoot,
    roster: Roster,
    overrides: Vec<Option<PublicKey>>,
    tip: Option<Header>,
}

impl Follower {
    /// A follower at genesis.
    pub fn new(trust: TrustRoot) -> Result<Follower, ProofError> {
        let roster = trust.genesis_roster()?;
        let overrides = vec![None; trust.agencies.len()];
        Ok(Follower {
            trust,
            roster,
            overrides,
            tip: None,
        })
    }

    /// A follower where `state` (from [`Follower::state`]) left one. The state is the
    /// follower's own record, so it is trusted as written; a tip of another chain is
    /// refused.
    pub fn resume(trust: TrustRoot, state: FollowerState) -> Result<Follower, ProofError> {
        let mut follower = Follower::new(trust)?;
        if let Some(tip) = &state.tip {
            if tip.chain_id != follower.trust.chain_id {
                return Err(fail(
                    "state.tip.chain_id",
                    format!(
                        "{} is not the genesis file's chain {}",
                        tip.chain_id, follower.trust.chain_id
                    ),
                ));
            }
        }
        if state.overrides.len() != follower.trust.agencies.len() {
            return Err(fail(
                "state.overrides",
                format!(
                    "{} keys for {} agencies",
                    state.overrides.len(),
                    follower.trust.agencies.len()
                ),
            ));
        }
        follower.roster = Roster::derive(&follower.trust.agencies, &state.overrides)
            .map_err(|e| fail("state.overrides", e))?;
        follower.overrides = state.overrides;
        follower.tip = state.tip;
        Ok(follower)
    }

    pub fn state(&self) -> FollowerState {
        FollowerState {
            tip: self.tip.clone(),
            overrides: self.overrides.clone(),
        }
    }

    /// The height of the last accepted block (0 before the first).
    pub fn height(&self) -> u64 {
        self.tip.as_ref().map_or(0, |h| h.height)
    }

    pub fn tip(&self) -> Option<&Header> {
        self.tip.as_ref()
    }

    pub fn trust(&self) -> &TrustRoot {
        &self.trust
    }

    /// Whether `next` (the header after the tip) names a set other than the one in
    /// force: then the caller fetches key proofs at the tip's height for
    /// [`Follower::change_set`].
    pub fn set_changed(&self, next: &Header) -> bool {
        next.validators_hash != self.roster.set().hash(self.trust.suite)
    }

    /// Moves to the set that the state after the tip names: `keys` are the proofs of
    /// every agency's `gov/validator/<agency>` entry at the tip, in genesis order.
    pub fn change_set(&mut self, keys: &[KeyProof]) -> Result<(), ProofError> {
        let Some(tip) = &self.tip else {
            return Err(fail(
                "keys",
                "the genesis set cannot change before height 1",
            ));
        };
        let overrides = key_overrides(&self.trust, &tip.state_root, keys, "set_change")?;
        self.roster = Roster::derive(&self.trust.agencies, &overrides)
            .map_err(|e| fail("set_change.keys", e))?;
        self.overrides = overrides;
        Ok(())
    }

    /// Checks `c` as the block after the tip and makes it the tip.
    pub fn accept(&mut self, c: &CertifiedBlock) -> Result<ProvenBlock, ProofError> {
        let suite = self.trust.suite;
        let block = &c.block;
        let at = format!("block {}", block.header.height);
        block
            .check_extends(&self.trust.chain_id, suite, self.tip.as_ref())
            .map_err(|e| fail(format!("{at}.header"), e))?;
        block
            .check_body(suite)
            .map_err(|e| fail(format!("{at}.body"), e))?;
        let certified = CertifiedHeader {
            header: block.header.clone(),
            certificate: c.certificate.clone(),
        };
        let proven = check_certified(&self.trust, &self.roster, &certified, &at)?;
        self.tip = Some(certified.header);
        Ok(proven)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{result_leaves, tx_leaves};
    use crate::crypto::{KeyPair, Suite};
    use crate::hash::Hash;
    use crate::merkle;
    use crate::proof::TrustedAgency;
    use crate::validators::{vote_sign_bytes, CommitSig, VoteKind};

    const SUITE: Suite = Suite::Ed25519Sha256;
    const CHAIN: Hash = Hash([5; 32]);

    fn keys() -> Vec<KeyPair> {
        (1..=4u8).map(|i| KeyPair::from_seed(&[i; 32])).collect()
    }

    fn trust() -> TrustRoot {
        TrustRoot {
            chain_id: CHAIN,
            suite: SUITE,
            agencies: ["customs", "tax", "forex", "commerce"]
                .iter()
                .zip(keys())
                .map(|(name, k)| TrustedAgency {
                    name: name.to_string(),
                    validator_key: k.public(),
                    voting_power: 1,
                })
                .collect(),
        }
    }

    /// The block after `parent`, with no transactions, signed by `signers` of `keys`.
    fn next(parent: Option<&Header>, keys: &[KeyPair], signers: usize) -> CertifiedBlock {
        let set = Roster::derive(&trust().agencies, &[])
            .expect("set")
            .set()
            .clone();
        let height = parent.map_or(1, |p| p.height + 1);
        let header = Header {
            chain_id: CHAIN,
            height,
            time_ms: 1_000 * height,
            previous: parent.map_or(CHAIN, |p| p.hash(SUITE)),
            proposer: keys[0].public(),
            tx_count: 0,
            tx_root: merkle::root(SUITE, &tx_leaves(&[])),
            results_root: merkle::root(SUITE, &result_leaves(&[])),
            state_root: Hash::default(),
            validators_hash: set.hash(SUITE),
        };
        let hash = header.hash(SUITE);
        let signatures = keys[..signers]
            .iter()
            .map(|k| CommitSig {
                validator: k.public(),
                signature: k.sign(&vote_sign_bytes(
                    &CHAIN,
                    height,
                    0,
                    VoteKind::Precommit,
                    Some(&hash),
                )),
            })
            .collect();
        let last_commit = parent.map(|p| CommitCertificate {
            height: p.height,
            round: 0,
            block_hash: p.hash(SUITE),
            signatures: vec![],
        });
        CertifiedBlock {
            block: Block {
                header,
                txs: vec![],
                results: vec![],
                last_commit,
            },
            certificate: CommitCertificate {
                height,
                round: 0,
                block_hash: hash,
                signatures,
            },
        }
    }

    #[test]
    fn follows_certified_blocks_and_resumes() {
        let keys = keys();
        let mut f = Follower::new(trust()).expect("genesis");
        let b1 = next(None, &keys, 3);
        let proven = f.accept(&b1).expect("block 1");
        assert_eq!(proven.certified_by, ["customs", "tax", "forex"]);
        let mut resumed = Follower::resume(trust(), f.state()).expect("resume");
        let b2 = next(Some(&b1.block.header), &keys, 4);
        resumed.accept(&b2).expect("block 2 after resuming");
        assert_eq!(resumed.height(), 2);
    }

    #[test]
    fn each_break_is_caught() {
        let keys = keys();
        let b1 = next(None, &keys, 4);
        let accept = |c: &CertifiedBlock| Follower::new(trust()).expect("genesis").accept(c);

        // Two of four signatures are not more than two thirds.
        let err = accept(&next(None, &keys, 2)).expect_err("no quorum");
        assert!(err.at.ends_with("certificate"), "{err}");

        // One byte of a signature flipped.
        let mut bad = b1.clone();
        bad.certificate.signatures[0].signature.0[0] ^= 1;
        assert!(accept(&bad).is_err());

        // A signer outside the set.
        let mut stranger = b1.clone();
        let other = KeyPair::from_seed(&[9; 32]);
        stranger.certificate.signatures[3].validator = other.public();
        assert!(accept(&stranger).is_err());

        // A header changed after signing.
        let mut changed = b1.clone();
        changed.block.header.time_ms += 1;
        assert!(accept(&changed).is_err());

        // A body that is not the header's.
        let mut body = b1.clone();
        body.block.header.tx_count = 1;
        let err = accept(&body).expect_err("body");
        assert!(err.at.ends_with("body"), "{err}");

        // Another chain.
        let mut other_chain = trust();
        other_chain.chain_id = Hash([6; 32]);
        assert!(Follower::new(other_chain).expect("g").accept(&b1).is_err());

        // A gap: block 3 after block 1.
        let mut f = Follower::new(trust()).expect("genesis");
        f.accept(&b1).expect("block 1");
        let b2 = next(Some(&b1.block.header), &keys, 4);
        let b3 = next(Some(&b2.block.header), &keys, 4);
        let err = f.accept(&b3).expect_err("gap");
        assert!(err.problem.contains("height"), "{err}");
        assert_eq!(f.height(), 1, "a refused block leaves the tip");

        // A set other than the one in force.
        let mut unnamed = b2.clone();
        unnamed.block.header.validators_hash = Hash([1; 32]);
        assert!(f.set_changed(&unnamed.block.header));
        assert!(!f.set_changed(&b2.block.header));
        assert!(f.accept(&unnamed).is_err());
    }
}
