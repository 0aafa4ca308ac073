//! Only genesis peers get in; a genesis peer that sends garbage or a forgery is dropped,
//! and never the validator a forgery names as its author.

use std::time::Duration;

use cbec_tests::Consortium;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::swarm::SwarmEvent;
use libp2p::{identity, noise, tcp, yamux, Multiaddr, PeerId};
use serde_json::Value;

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
    libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|key| {
            gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), config)
                .expect("gossipsub")
        })
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
    libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|_| {
            gossipsub::Behaviour::new(MessageAuthenticity::Author(author), config)
                .expect("gossipsub")
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
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
