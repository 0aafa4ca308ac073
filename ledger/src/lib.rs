//! The CBEC Ledger data model, with no IO.
//!
//! What belongs here: the canonical encoding, hashes, keys and signatures, transactions
//! and their results, blocks and headers, validator sets and commit certificates, RFC
//! 6962 Merkle trees, sparse Merkle state proofs, the goods-traceability record format,
//! calendar arithmetic on block time, and auditor proofs with their offline verification. This crate is the auditor's trust root, so it depends on
//! nothing heavy: no storage, no network, no async runtime, no clock.
//!
//! What does not: anything that reads files, sockets or the clock (see `cbec-genesis`
//! for key files and `cbec-node` for the rest), and the meaning of chaincode arguments.

#![forbid(unsafe_code)]

pub mod block;
pub mod codec;
pub mod crypto;
pub mod follow;
pub mod goods;
pub mod hash;
mod hex_bytes;
pub mod merkle;
pub mod params;
pub mod proof;
pub mod sparse;
pub mod time;
pub mod tx;
pub mod validators;

pub use block::{Block, BlockError, Header};
pub use crypto::{KeyPair, PublicKey, Scheme, Signature, SignatureError, Suite};
pub use follow::{CertifiedBlock, Follower, FollowerState};
pub use hash::Hash;
pub use hex_bytes::{parse_hex, HexError};
pub use merkle::{InclusionProof, MerkleError, MerkleTree};
pub use params::{ChaincodeConfig, ParamValue};
pub use proof::{ProofError, ProofFile, TrustRoot, Verified};
pub use tx::{
    verify_all, Attribute, Call, Event, Outcome, Transaction, TxBody, TxError, TxResult,
    VerifiedTransaction,
};
pub use validators::{
    vote_sign_bytes, CertificateError, CommitCertificate, CommitSig, Validator, ValidatorSet,
    ValidatorSetError, VoteKind,
};
