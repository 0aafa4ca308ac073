//! The genesis document end to end: generate a consortium, load it back, and refuse
//! every kind of fault with an error that names the file and the field.

use std::path::{Path, PathBuf};

use cbec_genesis::*;
use cbec_ledger::{ChaincodeConfig, Suite};
use serde_json::Value;

fn options() -> ConsortiumOptions {
    ConsortiumOptions {
        chain_name: "test-zone".into(),
        genesis_time_ms: 1_795_721_744_000,
        consensus: ConsensusParams::default(),
        chaincodes: vec![ChaincodeConfig {
            id: "goods".into(),
            version: 1,
            params: Default::default(),
        }],
        synthetic_state: None,
        crypto: Suite::Ed25519Sha256,
    }
}

/// Stands in for the chaincode catalog: knows `goods` and `customs` only.
fn catalog(cc: &ChaincodeConfig) -> Result<(), String> {
    match cc.id.as_str() {
        "goods" | "customs" => Ok(()),
        other => Err(format!("unknown chaincode `{other}`")),
    }
}

fn generated() -> (tempfile::TempDir, Consortium) {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = generate_consortium(&dir.path().join("net"), &options(), &mut rand_core::OsRng)
        .expect("generate");
    (dir, c)
}

fn genesis_json(c: &Consortium) -> Value {
    let text = std::fs::read_to_string(Consortium::genesis_path(&c.dir)).expect("read");
    serde_json::from_str(&text).expect("json")
}

/// Writes `doc` next to the generated genesis and loads it.
fn load_modified(c: &Consortium, doc: &Value) -> Result<Genesis, GenesisError> {
    let path = c.dir.join("modified.json");
    std::fs::write(&path, serde_json::to_string_pretty(doc).expect("json")).expect("write");
    Genesis::load(&path, catalog)
}

fn assert_fault(c: &Consortium, doc: &Value, field: &str, words: &str) {
    let err = load_modified(c, doc).expect_err("fault not caught");
    let shown = err.to_string();
    assert!(shown.contains("modified.json"), "no file in: {shown}");
    assert!(shown.contains(field), "no field `{field}` in: {shown}");
    assert!(shown.contains(words), "no `{words}` in: {shown}");
    assert!(!shown.contains('\n'), "not one line: {shown}");
}

#[test]
fn generated_consortium_loads_and_has_every_file() {
    let (_tmp, c) = generated();
    let loaded = Genesis::load(&Consortium::genesis_path(&c.dir), catalog).expect("valid");
    assert_eq!(loaded, c.genesis);
    assert_eq!(loaded.chain_id(), c.chain_id);
    assert_eq!(loaded.validator_set().expect("set").len(), 4);
    for agency in AGENCIES {
        let config =
            NodeConfig::load(&Consortium::node_config_path(&c.dir, agency)).expect("config");
        assert_eq!(config.agency, agency);
        assert_eq!(config.genesis, c.dir.join(agency).join("../genesis.json"));
        let validator = read_key(&config.validator_key).expect("validator key");
        let network = read_key(&config.network_key).expect("network key");
        let operator = read_key(&c.dir.join(agency).join("operator.key")).expect("operator key");
        let entry = loaded.agency(agency).expect("agency in genesis");
        assert_eq!(entry.validator_key, validator.public());
        assert_eq!(entry.operator_keys, vec![operator.public()]);
        assert_eq!(peer_id::parse(&entry.peer_id), Ok(network.public()));
        assert_eq!(entry.address, config.p2p_listen);
    }
    let ports: std::collections::BTreeSet<_> = AGENCIES
        .iter()
        .flat_map(|a| {
            let config =
                NodeConfig::load(&Consortium::node_config_path(&c.dir, a)).expect("config");
            [config.p2p_listen, config.api_listen]
        })
        .collect();
    assert_eq!(ports.len(), 8, "ports reused: {ports:?}");
}

#[test]
fn generating_into_an_existing_consortium_is_refused() {
    let (_tmp, c) = generated();
    let err = generate_consortium(&c.dir, &options(), &mut rand_core::OsRng).unwrap_err();
    assert!(matches!(err, GenerateError::Exists { .. }), "{err}");
}

#[test]
fn chain_id_ignores_formatting_but_not_values() {
    let (_tmp, c) = generated();
    let path = Consortium::genesis_path(&c.dir);
    let text = std::fs::read_to_string(&path).expect("read");
    let compact: Value = serde_json::from_str(&text).expect("json");
    std::fs::write(&path, serde_json::to_string(&compact).expect("json")).expect("write");
    assert_eq!(
        Genesis::load(&path, catalog).expect("valid").chain_id(),
        c.chain_id
    );

    // One character of the chain name changed: still valid, but another chain.
    let changed = text.replace("\"test-zone\"", "\"test-zonf\"");
    assert_ne!(changed, text);
    std::fs::write(&path, changed).expect("write");
    let err = Genesis::load_expecting(&path, &c.chain_id, catalog).unwrap_err();
    assert!(matches!(err, GenesisError::ChainIdMismatch { .. }));
    assert!(err.to_string().contains("chain id mismatch"), "{err}");
    assert!(err.to_string().contains(&c.chain_id.to_string()), "{err}");
}

#[test]
fn each_fault_names_its_field() {
    let (_tmp, c) = generated();
    let base = genesis_json(&c);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut doc = base.clone();
        f(&mut doc);
        doc
    };

    let zero = with(&|d| d["agencies"][2]["voting_power"] = 0.into());
    assert_fault(&c, &zero, "agencies[2].voting_power", "greater than zero");

    let unknown = with(&|d| d["agencies"][1]["name"] = "police".into());
    assert_fault(&c, &unknown, "agencies[1].name", "unknown agency `police`");

    let missing = with(&|d| {
        d["agencies"].as_array_mut().expect("array").remove(3);
    });
    assert_fault(&c, &missing, "agencies", "`commerce` is missing");

    let twice = with(&|d| d["agencies"][3]["name"] = "customs".into());
    assert_fault(&c, &twice, "agencies[3].name", "listed twice");

    let dup_key =
        with(&|d| d["agencies"][1]["validator_key"] = d["agencies"][0]["validator_key"].clone());
    assert_fault(&c, &dup_key, "agencies[1].validator_key", "used twice");

    let dup_operator =
        with(&|d| d["agencies"][2]["operator_keys"][0] = d["agencies"][0]["validator_key"].clone());
    assert_fault(
        &c,
        &dup_operator,
        "agencies[2].operator_keys[0]",
        "used twice",
    );

    let bad_key = with(&|d| d["agencies"][0]["validator_key"] = "00".repeat(32).into());
    assert_fault(
        &c,
        &bad_key,
        "agencies[0].validator_key",
        "not a valid ed25519",
    );

    let short_key = with(&|d| d["agencies"][0]["validator_key"] = "abcd".into());
    assert_fault(
        &c,
        &short_key,
        "modified.json",
        "expected 64 hex characters",
    );

    let bad_address = with(&|d| d["agencies"][2]["address"] = "127.0.0.1:9000".into());
    assert_fault(&c, &bad_address, "agencies[2].address", "not a multiaddr");

    let bad_port = with(&|d| d["agencies"][2]["address"] = "/ip4/127.0.0.1/tcp/70000".into());
    assert_fault(&c, &bad_port, "agencies[2].address", "not a TCP port");

    let bad_peer = with(&|d| d["agencies"][3]["peer_id"] = "QmNotAnEd25519Key".into());
    assert_fault(&c, &bad_peer, "agencies[3].peer_id", "peer id");

    let no_operators = with(&|d| d["agencies"][0]["operator_keys"] = Value::Array(vec![]));
    assert_fault(
        &c,
        &no_operators,
        "agencies[0].operator_keys",
        "at least one",
    );

    let unknown_cc = with(&|d| d["chaincodes"][0]["id"] = "lottery".into());
    assert_fault(
        &c,
        &unknown_cc,
        "chaincodes[0]",
        "unknown chaincode `lottery`",
    );

    let dup_cc = with(&|d| {
        let first = d["chaincodes"][0].clone();
        d["chaincodes"].as_array_mut().expect("array").push(first);
    });
    assert_fault(&c, &dup_cc, "chaincodes[1].id", "listed twice");

    let zero_timeout = with(&|d| d["consensus"]["timeout_prevote_ms"] = 0.into());
    assert_fault(&c, &zero_timeout, "consensus.timeout_prevote_ms", "outside");

    let big_tx = with(&|d| d["consensus"]["tx_bytes_max"] = (64 * 1024 * 1024).into());
    assert_fault(&c, &big_tx, "consensus", "tx_bytes_max");

    let bad_name = with(&|d| d["chain_name"] = "Test Zone".into());
    assert_fault(&c, &bad_name, "chain_name", "a-z");

    let bad_time = with(&|d| d["genesis_time"] = "yesterday".into());
    assert_fault(&c, &bad_time, "modified.json", "RFC 3339");

    let extra = with(&|d| d["validators"] = Value::Array(vec![]));
    assert_fault(&c, &extra, "modified.json", "unknown field `validators`");
}

#[test]
fn unreadable_and_malformed_files_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing: PathBuf = dir.path().join("nope.json");
    let err = Genesis::load(&missing, catalog).unwrap_err();
    assert!(
        err.to_string().starts_with(&missing.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("cannot read"), "{err}");

    let truncated = dir.path().join("truncated.json");
    std::fs::write(&truncated, "{\"chain_name\": \"x\",\n  \"agencies\": [").expect("write");
    let err = Genesis::load(&truncated, catalog).unwrap_err();
    assert!(matches!(err, GenesisError::Parse { .. }));
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn node_config_faults_name_the_field() {
    let (_tmp, c) = generated();
    let path: &Path = &Consortium::node_config_path(&c.dir, "tax");
    let text = std::fs::read_to_string(path).expect("read");
    let bad_api = text.replace("api_listen = \"127.0.0.1:", "api_listen = \"localhost:");
    std::fs::write(path, bad_api).expect("write");
    let err = NodeConfig::load(path).unwrap_err();
    assert!(err.to_string().contains("api_listen"), "{err}");

    std::fs::write(path, format!("{text}\nfoo = 1\n")).expect("write");
    let err = NodeConfig::load(path).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");

    let routed = format!("{text}\n[peer_addresses]\ncustoms = \"/ip4/127.0.0.1/tcp/40001\"\n");
    std::fs::write(path, &routed).expect("write");
    let config = NodeConfig::load(path).expect("a peer address override loads");
    assert_eq!(config.peer_addresses["customs"], "/ip4/127.0.0.1/tcp/40001");
    let archive = format!("{text}\n[store]\narchive = true\n");
    std::fs::write(path, &archive).expect("write");
    let config = NodeConfig::load(path).expect("an archive node's config loads");
    assert!(config.store.archive);
    assert_eq!(
        config.store.versions_kept, 16,
        "the rest of [store] keeps its default"
    );
    assert_eq!(
        config.store.tree_resident_keys, None,
        "the whole tree by default"
    );
    let budget = format!("{text}\n[store]\ntree_resident_keys = 2000000\n");
    std::fs::write(path, &budget).expect("write");
    let config = NodeConfig::load(path).expect("a tree budget loads");
    assert_eq!(config.store.tree_resident_keys, Some(2_000_000));
    std::fs::write(path, budget.replace("2000000", "-1")).expect("write");
    let err = NodeConfig::load(path).unwrap_err();
    assert!(err.to_string().contains("tree_resident_keys"), "{err}");
    std::fs::write(path, archive.replace("archive = true", "archive = \"yes\"")).expect("write");
    let err = NodeConfig::load(path).unwrap_err();
    assert!(err.to_string().contains("(`archive = \"yes\"`)"), "{err}");
    assert!(err.to_string().contains("expected a boolean"), "{err}");

    assert!(
        !config.network.compact_proposals,
        "whole proposals by default"
    );
    let compact = format!("{text}\n[network]\ncompact_proposals = true\n");
    std::fs::write(path, &compact).expect("write");
    let config = NodeConfig::load(path).expect("compact proposals load");
    assert!(config.network.compact_proposals);
    std::fs::write(path, compact.replace("compact_proposals", "compact")).expect("write");
    let err = NodeConfig::load(path).unwrap_err();
    assert!(
        err.to_string().contains("compact"),
        "an unknown key is named: {err}"
    );

    std::fs::write(path, routed.replace("tcp/40001", "tcp/0x1")).expect("write");
    let err = NodeConfig::load(path).unwrap_err();
    assert!(
        err.to_string().contains("peer_addresses: customs:"),
        "{err}"
    );
}

#[test]
fn chain_id_is_the_tagged_hash_of_the_canonical_encoding() {
    let (_tmp, c) = generated();
    let expected = Suite::Ed25519Sha256.tagged(
        cbec_ledger::hash::tag::GENESIS,
        &cbec_ledger::codec::encode(&c.genesis),
    );
    assert_eq!(c.chain_id, expected);
}

/// An `sm2-sm3` consortium: SM2 validator and operator keys (libp2p's network keys stay
/// Ed25519), its chain id hashed with SM3, and the suite covered by the chain id.
#[test]
fn an_sm2_consortium_has_sm2_keys_and_an_sm3_chain_id() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let options = ConsortiumOptions {
        crypto: Suite::Sm2Sm3,
        ..options()
    };
    let c = generate_consortium(tmp.path(), &options, &mut rand_core::OsRng).expect("generate");
    let loaded = Genesis::load(&Consortium::genesis_path(tmp.path()), catalog).expect("load");
    assert_eq!(loaded.crypto, Suite::Sm2Sm3);
    // SM2 blocks are smaller by default (a proposal must be checkable within a round).
    assert_eq!(
        ConsensusParams::for_suite(Suite::Sm2Sm3).block_txs_max,
        2_000
    );
    assert_eq!(
        ConsensusParams::for_suite(Suite::Ed25519Sha256),
        ConsensusParams::default()
    );
    for agency in &loaded.agencies {
        assert_eq!(agency.validator_key.scheme(), cbec_ledger::Scheme::Sm2);
        assert_eq!(agency.operator_keys[0].scheme(), cbec_ledger::Scheme::Sm2);
        let key = read_key(&tmp.path().join(&agency.name).join("validator.key")).expect("key");
        assert_eq!(key.public(), agency.validator_key);
        let network = read_key(&tmp.path().join(&agency.name).join("network.key")).expect("key");
        assert_eq!(network.scheme(), cbec_ledger::Scheme::Ed25519);
    }
    let expected = Suite::Sm2Sm3.tagged(
        cbec_ledger::hash::tag::GENESIS,
        &cbec_ledger::codec::encode(&c.genesis),
    );
    assert_eq!(c.chain_id, expected);
    let json = std::fs::read_to_string(Consortium::genesis_path(tmp.path())).expect("read");
    assert!(json.contains("\"crypto\": \"sm2-sm3\""), "{json}");
    // The same document under the other suite is another chain.
    let mut other = c.genesis.clone();
    other.crypto = Suite::Ed25519Sha256;
    assert_ne!(other.chain_id(), c.chain_id);
    // ... and invalid: its keys are SM2 keys.
    let err = other.validate(catalog).expect_err("sm2 keys on ed25519");
    assert_eq!(err.field, "agencies[0].validator_key");
    assert!(
        err.problem.contains("sm2 key") && err.problem.contains("ed25519-sha256"),
        "{err}"
    );
}

#[test]
fn an_unknown_crypto_suite_is_named() {
    let (_tmp, c) = generated();
    let mut json: Value = serde_json::from_str(&c.genesis.to_json_pretty()).expect("json");
    json["crypto"] = Value::from("rsa-md5");
    let err = Genesis::from_json(&json.to_string()).expect_err("unknown suite");
    assert!(err.contains("unknown crypto suite `rsa-md5`"), "{err}");
}
