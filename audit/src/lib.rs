//! The auditor's verifier as one function, [`verify`]: a proof file (JSON or binary)
//! against a genesis file, trusting nothing else. `cbec verify` calls it; compiled to
//! WebAssembly (`wasm32-unknown-unknown`) it is the verifier of the auditor page, so the
//! page and the command line give the same verdict and name the same failing path.
//!
//! The WebAssembly interface is four exports over linear memory, no generated glue:
//! `input(len)` makes room for `len` bytes and returns where (the page writes the
//! genesis file and then the proof there), `verify_input(genesis_len)` verifies and
//! returns the length of its JSON answer (`genesis_input()` answers for a genesis file
//! alone), and `output()` returns where that answer is.

use std::sync::Mutex;

use cbec_genesis::Genesis;
use cbec_ledger::proof::TrustRoot;
use cbec_ledger::{ProofFile, Verified};
use serde_json::{json, Value};

/// Why a proof was not verified: where (`genesis` for the genesis file, `proof` for
/// a file that is not a proof, else a path like `proof.events[3].tx.signature`) and
/// what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub at: String,
    pub problem: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.problem)
    }
}

/// A genesis file's trust root, checked as `cbec` checks one (the document's own rules
/// and the chaincode catalog).
pub fn trust_root(genesis_json: &[u8]) -> Result<TrustRoot, Failure> {
    let failure = |problem: String| Failure {
        at: "genesis".into(),
        problem,
    };
    let text =
        std::str::from_utf8(genesis_json).map_err(|e| failure(format!("not UTF-8 text: {e}")))?;
    let genesis = Genesis::from_json(text).map_err(failure)?;
    genesis
        .validate(cbec_chaincode::catalog::check_config)
        .map_err(|e| failure(e.to_string()))?;
    Ok(genesis.trust_root())
}

/// Verifies `proof` (JSON or the canonical binary form) against the genesis file.
pub fn verify(genesis_json: &[u8], proof: &[u8]) -> Result<(TrustRoot, Verified), Failure> {
    let trust = trust_root(genesis_json)?;
    let file = ProofFile::parse(proof).map_err(|problem| Failure {
        at: "proof".into(),
        problem,
    })?;
    let verified = file.verify(&trust).map_err(|e| Failure {
        at: e.at,
        problem: e.problem,
    })?;
    Ok((trust, verified))
}

/// [`verify`]'s answer as the page reads it: `{"verified": true, "chain_id", "suite",
/// "statement"}` or `{"verified": false, "at", "problem"}`.
pub fn verify_to_json(genesis_json: &[u8], proof: &[u8]) -> Value {
    match verify(genesis_json, proof) {
        Ok((trust, statement)) => json!({
            "verified": true,
            "chain_id": trust.chain_id,
            "suite": trust.suite,
            "statement": statement,
        }),
        Err(failure) => json!({
            "verified": false,
            "at": failure.at,
            "problem": failure.problem,
        }),
    }
}

/// What the page shows of a genesis file before any proof: `{"chain_id", "suite",
/// "agencies"}`, or `{"error"}`.
pub fn genesis_to_json(genesis_json: &[u8]) -> Value {
    match trust_root(genesis_json) {
        Ok(trust) => json!({
            "chain_id": trust.chain_id,
            "suite": trust.suite,
            "agencies": trust.agencies.iter().map(|a| &a.name).collect::<Vec<_>>(),
        }),
        Err(failure) => json!({ "error": failure.to_string() }),
    }
}

static INPUT: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static OUTPUT: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Makes room for `len` input bytes; returns where the caller writes them.
#[allow(unsafe_code)] // an export: the name must be kept
#[no_mangle]
pub extern "C" fn input(len: u32) -> *mut u8 {
    let mut input = INPUT.lock().unwrap_or_else(|p| p.into_inner());
    input.clear();
    input.resize(len as usize, 0);
    input.as_mut_ptr()
}

/// Verifies the input (the genesis file's first `genesis_len` bytes, then the proof);
/// returns the length of the JSON answer at [`output`].
#[allow(unsafe_code)] // an export: the name must be kept
#[no_mangle]
pub extern "C" fn verify_input(genesis_len: u32) -> u32 {
    let input = INPUT.lock().unwrap_or_else(|p| p.into_inner());
    let split = (genesis_len as usize).min(input.len());
    let (genesis, proof) = input.split_at(split);
    let answer = verify_to_json(genesis, proof).to_string().into_bytes();
    let mut output = OUTPUT.lock().unwrap_or_else(|p| p.into_inner());
    *output = answer;
    output.len() as u32
}

/// Reads the whole input as a genesis file; returns the length of the JSON answer
/// ([`genesis_to_json`]) at [`output`].
#[allow(unsafe_code)] // an export: the name must be kept
#[no_mangle]
pub extern "C" fn genesis_input() -> u32 {
    let input = INPUT.lock().unwrap_or_else(|p| p.into_inner());
    let answer = genesis_to_json(&input).to_string().into_bytes();
    let mut output = OUTPUT.lock().unwrap_or_else(|p| p.into_inner());
    *output = answer;
    output.len() as u32
}

/// Where the last answer is.
#[allow(unsafe_code)] // an export: the name must be kept
#[no_mangle]
pub extern "C" fn output() -> *const u8 {
    OUTPUT.lock().unwrap_or_else(|p| p.into_inner()).as_ptr()
}
