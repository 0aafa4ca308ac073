//! Only genesis peers get in; a genesis peer that sends garbage or a forgery is dropped,
//! and never the validator a forgery names as its author. Transactions travel between
//! peers on push streams, and a bad push costs its sender the connection.

use std::time::Duration;

use cbec_ledger::codec;
use cbec_node::wire::TxBatch;
use cbec_tests::Consortium;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::swarm::SwarmEvent;
use libp2p::{identity, noise, tcp, yamux, Multiaddr, PeerId};
use serde_json::{json, Value};

const NODE: &str = env!("CARGO_BIN_EXE_cbec-e2e-node");

fn p2p_address(c: &Consortium, i: usize) -> Multiaddr {
    let config = cbec_genesis::NodeConfig::load(&c.config(i)).expect("config");
    config.p2p_listen.parse().expect("multiaddr")
}

/// Starts nodes 0-2 and waits until each has committed `height`; commerce (node 3)
/// stays down, so its network key can play a genesis peer that misbehaves.
fn start_all_but_commerce(c: &mut Consortium, height: u64) {
    for i in 0..3 {
        c.start(i);
    }
    c.wait_for("first blocks", Duration::from_secs(60), |c| {
        (0..3).all(|i| c.height(i).is_some_and(|h| h >= height))
    });
}

/// Commerce's network identity: a peer the genesis lets in.
fn commerce_keypair(c: &Consortium) -> identity::Keypair {
    let mut seed = cbec_genesis::read_key(&c.net().join("commerce/network.key"))
        .expect("key")
        .secret();
    identity::Keypair::ed25519_from_bytes(&mut seed).expect("keypair")
}

fn swarm(keypair: identity::Keypair) -> libp2p::Swarm<gossipsub::Behaviour> {
    let config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Strict)
        .heartbeat_interval(Duration::from_millis(200))
        .build()
        .expect("gossipsub config");
    swarm_with(keypair, |key| {
        gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), config)
            .expect("gossipsub")
    })
}

/// A swarm over TCP, Noise and Yamux, as the nodes run, with `behaviour`.
fn swarm_with<B: libp2p::swarm::NetworkBehaviour>(
    keypair: identity::Keypair,
    behaviour: impl FnOnce(&identity::Keypair) -> B,
) -> libp2p::Swarm<B> {
    libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|key| behaviour(key))
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// Dials `address`; reports whether a connection to the expected peer stayed up.
async fn connect(
    swarm: &mut libp2p::Swarm<gossipsub::Behaviour>,
    address: Multiaddr,
    wait: Duration,
) -> (bool, bool) {
    swarm.dial(address).expect("dial");
    let mut established = false;
    let mut closed = false;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            Err(_) => return (established, closed),
            Ok(SwarmEvent::ConnectionEstablished { .. }) => established = true,
            Ok(SwarmEvent::ConnectionClosed { .. }) => {
                closed = true;
                return (established, closed);
            }
            Ok(SwarmEvent::OutgoingConnectionError { .. }) => return (established, true),
            Ok(_) => {}
        }
    }
}

#[test]
fn a_stranger_is_refused_and_a_garbage_sender_is_dropped() {
    let mut c = Consortium::generate(NODE);
    // Nodes 0-2 run; commerce's network key plays a faulty genesis peer.
    start_all_but_commerce(&mut c, 1);
    let target = p2p_address(&c, 0);
    let keypair = commerce_keypair(&c);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    // A peer id that is not in genesis: refused at the connection.
    let (_, closed) = runtime.block_on(async {
        let mut stranger = swarm(identity::Keypair::generate_ed25519());
        connect(&mut stranger, target.clone(), Duration::from_secs(5)).await
    });
    assert!(closed, "a stranger's connection stayed open");
    c.wait_for("the refusal in the log", Duration::from_secs(5), |c| {
        c.log(0).contains("refused a connection")
    });

    // A genesis peer sending bytes that are no message at all.
    let dropped = runtime.block_on(async {
        let me = PeerId::from(keypair.public());
        let mut faulty = swarm(keypair);
        let topic = IdentTopic::new("cbec/consensus/1");
        faulty.behaviour_mut().subscribe(&topic).expect("subscribe");
        faulty.dial(target).expect("dial");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut interval = tokio::time::interval(Duration::from_millis(300));
        while tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = interval.tick() => {
                    let _ = faulty.behaviour_mut().publish(topic.clone(), vec![0xde, 0xad, 0xbe, 0xef, 0x00, 0x01]);
                }
                event = faulty.select_next_some() => {
                    if let SwarmEvent::ConnectionClosed { peer_id, .. } = event {
                        if peer_id != me {
                            return true;
                        }
                    }
                }
            }
        }
        false
    });
    assert!(dropped, "the garbage sender was not disconnected");
    assert!(
        c.log(0).contains("undecodable message"),
        "garbage not logged"
    );
    // The node keeps working.
    let before = c.height(0).expect("status");
    c.wait_for(
        "more blocks after the garbage",
        Duration::from_secs(30),
        |c| c.height(0).is_some_and(|h| h > before),
    );
}

/// A gossip swarm that names `author` as the author of what it publishes (gossipsub's
/// unsigned `Author` mode, as the nodes run): a forger putting words in an honest
/// validator's mouth.
fn forger(keypair: identity::Keypair, author: PeerId) -> libp2p::Swarm<gossipsub::Behaviour> {
    let config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Permissive)
        .heartbeat_interval(Duration::from_millis(200))
        .build()
        .expect("gossipsub config");
    swarm_with(keypair, |_| {
        gossipsub::Behaviour::new(MessageAuthenticity::Author(author), config).expect("gossipsub")
    })
}

/// Item 6 of issue 12: a bad message costs the connection that delivered it, never the
/// author it claims. A genesis peer forges a proposal (its block is not the block it
/// names) as if node 1 had written it; node 0 drops the forger and keeps node 1.
#[test]
fn a_bad_message_costs_the_peer_that_delivered_it_not_the_author_it_names() {
    let mut c = Consortium::generate(NODE);
    start_all_but_commerce(&mut c, 2);
    let genesis = cbec_genesis::Genesis::from_json(
        &std::fs::read_to_string(c.net().join("genesis.json")).expect("genesis"),
    )
    .expect("parse");
    let framed: PeerId = genesis.agencies[1].peer_id.parse().expect("peer id");
    let block: Value = c.get(0, "/v1/blocks/1").expect("block 1");
    let block: cbec_ledger::Block =
        serde_json::from_value(block["block"].clone()).expect("a block");
    let proposal = cbec_consensus::SignedProposal {
        proposal: cbec_consensus::Proposal {
            height: block.header.height,
            round: 0,
            value: cbec_ledger::Hash([0x42; 32]), // not this block's hash
            valid_round: None,
        },
        proposer: genesis.agencies[1].validator_key,
        signature: cbec_ledger::Signature([0; 64]),
    };
    let forged = cbec_node::wire::envelope(
        1,
        &cbec_ledger::codec::encode(&cbec_node::wire::NetMessage::Proposal {
            proposal,
            block: std::sync::Arc::new(block),
        }),
    );
    let target = p2p_address(&c, 0);
    let keypair = commerce_keypair(&c);
    let me = PeerId::from(keypair.public());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dropped = runtime.block_on(async {
        let mut swarm = forger(keypair, framed);
        let topic = IdentTopic::new("cbec/consensus/1");
        swarm.behaviour_mut().subscribe(&topic).expect("subscribe");
        swarm.dial(target).expect("dial");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut interval = tokio::time::interval(Duration::from_millis(300));
        while tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = interval.tick() => {
                    let _ = swarm.behaviour_mut().publish(topic.clone(), forged.clone());
                }
                event = swarm.select_next_some() => {
                    if let SwarmEvent::ConnectionClosed { .. } = event {
                        return true;
                    }
                }
            }
        }
        false
    });
    assert!(dropped, "the forger was not disconnected");
    let log = c.log(0);
    assert!(
        log.contains(&format!("disconnecting {me}")),
        "node 0 names the delivering peer:\n{log}"
    );
    assert!(
        !log.contains(&format!("disconnecting {framed}"))
            && !log.contains(&format!("peer disconnected peer={framed}")),
        "node 0 dropped the framed validator:\n{log}"
    );
    // The framed validator and node 0 keep committing together.
    let before = c.height(0).expect("status");
    c.wait_for(
        "more blocks after the forgery",
        Duration::from_secs(30),
        |c| c.height(0).is_some_and(|h| h > before + 1) && c.height(1).is_some_and(|h| h > before),
    );
}

/// A genesis peer whose connection stays up but whose gossip stops (the way every link
/// of a run once went quiet for good) is disconnected after `GOSSIP_SILENCE_MAX`, so
/// that a redial starts fresh streams; peers that gossip are kept.
#[test]
fn a_peer_that_gossips_nothing_is_disconnected_and_the_others_are_kept() {
    let mut c = Consortium::generate(NODE);
    start_all_but_commerce(&mut c, 1);
    let target = p2p_address(&c, 0);
    let keypair = commerce_keypair(&c);
    let me = PeerId::from(keypair.public());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // Connected and subscribed, it receives everything and gossips nothing (a strict
    // validator relays none of the nodes' unsigned messages).
    let lasted = runtime.block_on(async {
        let mut silent = swarm(keypair);
        let topic = IdentTopic::new("cbec/consensus/1");
        silent.behaviour_mut().subscribe(&topic).expect("subscribe");
        silent.dial(target).expect("dial");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut since = None;
        loop {
            match tokio::time::timeout_at(deadline, silent.select_next_some()).await {
                Err(_) => return None,
                Ok(SwarmEvent::ConnectionEstablished { .. }) => {
                    since.get_or_insert_with(std::time::Instant::now);
                }
                Ok(SwarmEvent::ConnectionClosed { .. }) => return since.map(|s| s.elapsed()),
                Ok(_) => {}
            }
        }
    });
    let lasted = lasted.expect("the silent peer was not disconnected within 60 s");
    let limit = cbec_node::network::GOSSIP_SILENCE_MAX;
    assert!(
        lasted + Duration::from_millis(500) >= limit,
        "disconnected after {lasted:?}, before {limit:?} of silence"
    );
    let log = c.log(0);
    let warning = "heard no gossip from this peer for too long";
    assert!(
        log.lines()
            .any(|l| l.contains(warning) && l.contains(&me.to_string())),
        "node 0 does not name the silent peer:\n{log}"
    );
    // Nodes 1 and 2 gossip: node 0 never found them silent, and they commit together.
    let silenced = log.lines().filter(|l| l.contains(warning)).count();
    let about_me = log
        .lines()
        .filter(|l| l.contains(warning) && l.contains(&me.to_string()))
        .count();
    assert_eq!(
        silenced, about_me,
        "an honest peer was taken for silent:\n{log}"
    );
    let before = c.height(0).expect("status");
    c.wait_for(
        "more blocks after the silent peer",
        Duration::from_secs(30),
        |c| (0..3).all(|i| c.height(i).is_some_and(|h| h > before)),
    );
}

/// A swarm that speaks only the transaction push protocol.
fn push_swarm(keypair: identity::Keypair) -> libp2p::Swarm<libp2p_stream::Behaviour> {
    swarm_with(keypair, |_| libp2p_stream::Behaviour::new())
}

/// One frame of a push stream: a `u32` length, big endian, then the bytes.
async fn write_push_frame(stream: &mut libp2p::Stream, bytes: &[u8]) {
    use futures::AsyncWriteExt;
    stream
        .write_all(&(bytes.len() as u32).to_be_bytes())
        .await
        .expect("write length");
    stream.write_all(bytes).await.expect("write frame");
    stream.flush().await.expect("flush");
}

async fn read_push_frame(stream: &mut libp2p::Stream) -> TxBatch {
    use futures::AsyncReadExt;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.expect("frame length");
    let mut bytes = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut bytes).await.expect("frame");
    codec::decode(&bytes).expect("a batch of transactions")
}

/// Pushes travel on one long-lived stream each way: a transaction submitted to a node
/// reaches a peer's stream, and one a peer pushes is committed without that peer ever
/// proposing. A frame that is no batch costs its sender the connection, and the node
/// goes on.
#[test]
fn pushes_travel_on_one_stream_each_way_and_a_bad_frame_costs_the_connection() {
    let mut c = Consortium::generate(NODE);
    // Nodes 0-2 run; commerce's network key plays the peer that pushes.
    start_all_but_commerce(&mut c, 1);
    let target = p2p_address(&c, 0);
    let keypair = commerce_keypair(&c);
    let ends = c.endpoints();
    let filing = |nonce: u64, n: u32| {
        let uscc = cbec_chaincode::codes::uscc_with_check(&format!("91140200MA{n:07}"))
            .expect("a USCC body");
        c.sign(
            &c.operator(3),
            nonce,
            "enterprise",
            "approve_filing",
            json!({"uscc": uscc, "name": format!("pushed {n}"), "roles": ["manufacturer"],
                   "keys": [ends.client_key(&[n as u8; 32]).public()],
                   "customs_code": format!("1402{n:06}")}),
        )
    };
    let (submitted, pushed) = (filing(0, 1), filing(1, 2));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut peer = push_swarm(keypair);
    let mut streams = peer.behaviour().new_control();
    let mut incoming = streams
        .accept(cbec_node::network::TX_PUSH_PROTOCOL)
        .expect("accept pushes");
    let customs = runtime.block_on(async {
        peer.dial(target).expect("dial");
        loop {
            if let SwarmEvent::ConnectionEstablished { peer_id, .. } = peer.select_next_some().await
            {
                return peer_id;
            }
        }
    });
    // The swarm is driven in the background from here on.
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    runtime.spawn(async move {
        loop {
            if let SwarmEvent::ConnectionClosed { peer_id, .. } = peer.select_next_some().await {
                let _ = closed_tx.send(peer_id);
            }
        }
    });

    // A transaction submitted to customs reaches this peer's stream.
    let (status, answer) = c.submit(0, &submitted, false);
    assert!(status < 300, "{status} {answer}");
    let want = ends.tx_hash(&submitted);
    let got = runtime.block_on(async {
        let (from, mut stream) = tokio::time::timeout(Duration::from_secs(10), incoming.next())
            .await
            .expect("customs opens its push stream")
            .expect("a stream");
        assert_eq!(from, customs);
        let batch = tokio::time::timeout(Duration::from_secs(10), read_push_frame(&mut stream))
            .await
            .expect("a push");
        batch
            .0
            .iter()
            .map(|tx| ends.tx_hash(tx))
            .collect::<Vec<_>>()
    });
    assert!(got.contains(&want), "pushed {got:?}, not {want}");

    // A transaction pushed to customs on this peer's stream is committed, though this
    // peer never proposes.
    let mut stream = runtime.block_on(async {
        let mut stream = streams
            .open_stream(customs, cbec_node::network::TX_PUSH_PROTOCOL)
            .await
            .expect("open a push stream");
        write_push_frame(&mut stream, &codec::encode(&TxBatch(vec![pushed.clone()]))).await;
        stream
    });
    let path = format!("/v1/tx/{}", ends.tx_hash(&pushed));
    c.wait_for(
        "the pushed transaction committed",
        Duration::from_secs(30),
        |c| c.get(0, &path).is_some_and(|v| v["height"].is_u64()),
    );
    assert!(c.get(1, &path).is_some_and(|v| v["height"].is_u64()));

    // A frame that is no batch of transactions: the connection is closed.
    let dropped = runtime.block_on(async {
        write_push_frame(&mut stream, &[0xff; 16]).await;
        tokio::time::timeout(Duration::from_secs(10), closed_rx.recv()).await
    });
    assert_eq!(
        dropped.ok().flatten(),
        Some(customs),
        "the bad pusher was not disconnected"
    );
    c.wait_for("the bad push in the log", Duration::from_secs(5), |c| {
        c.log(0).contains("the peer that pushed it")
    });
    let before = c.height(0).expect("status");
    c.wait_for(
        "more blocks after the bad push",
        Duration::from_secs(30),
        |c| c.height(0).is_some_and(|h| h > before),
    );
}
