//! Only genesis peers get in, and a genesis peer that sends garbage is dropped.

use std::time::Duration;

use cbec_tests::Consortium;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::swarm::SwarmEvent;
use libp2p::{identity, noise, tcp, yamux, Multiaddr, PeerId};

const NODE: &str = env!("CARGO_BIN_EXE_cbec-e2e-node");

fn p2p_address(c: &Consortium, i: usize) -> Multiaddr {
    let config = cbec_genesis::NodeConfig::load(&c.config(i)).expect("config");
    config.p2p_listen.parse().expect("multiaddr")
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
    for i in 0..3 {
        c.start(i);
    }
    c.wait_for("first block", Duration::from_secs(60), |c| {
        (0..3).all(|i| c.height(i).is_some_and(|h| h >= 1))
    });
    let target = p2p_address(&c, 0);
    let seed = cbec_genesis::read_key(&c.net().join("commerce/network.key"))
        .expect("key")
        .seed();
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
        let mut bytes = seed;
        let keypair = identity::Keypair::ed25519_from_bytes(&mut bytes).expect("keypair");
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
