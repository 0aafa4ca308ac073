//! Starting a validator from its configuration file, and stopping it cleanly.

use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use cbec_chaincode::{catalog, Engine};
use cbec_genesis::{read_key, Genesis, LogFormat, NodeConfig};
use tokio::sync::{broadcast, watch};

use std::sync::atomic::{AtomicBool, Ordering};

use libp2p::PeerId;

use crate::access::Access;
use crate::admission::Admission;
use crate::api::EventFeed;
use crate::driver::{self, Driver};
use crate::host::{Host, HostConfig};
use crate::mempool::{Mempool, MempoolConfig};
use crate::metrics::Metrics;
use crate::network::{self, NetConfig};
use crate::reads::{BlockCache, ReadLimits, Reads};
use crate::seam::{Adversary, Honest};
use crate::server::ServerLimits;
use crate::shared::{Shared, Status};
use crate::store::{Store, StoreOptions};
use cbec_ledger::proof::validator_key_state_key;

/// Store blocks checked at start (hash chain, certificates, state root).
const CHECK_DEPTH: u64 = 1_000;
/// Committed heights queued for slow event-stream readers before they are told they lag.
const COMMITTED_RING: usize = 256;

/// Sets up `tracing` output; `RUST_LOG` adjusts the level (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // gossipsub's own warnings (a full send queue, a repeated publication) come one
        // per message under load; the node counts what it drops in /metrics instead.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libp2p_gossipsub=error"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs the validator configured in `config_path` until SIGINT or SIGTERM.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    run_with(config_path, Arc::new(Honest)).await
}

/// [`run`] with an [`Adversary`] in the host's path: the seam tests use to make a real
/// node process Byzantine. Production passes [`Honest`].
pub async fn run_with(
    config_path: &Path,
    adversary: Arc<dyn Adversary<PeerId>>,
) -> anyhow::Result<()> {
    let config = NodeConfig::load(config_path)?;
    let genesis = Genesis::load(&config.genesis, catalog::check_config)?;
    let chain_id = genesis.chain_id();
    let agency = genesis
        .agency(&config.agency)
        .with_context(|| {
            format!(
                "{}: agency `{}` is not in the genesis",
                config_path.display(),
                config.agency
            )
        })?
        .clone();
    let validator_key = read_key(&config.validator_key)?;
    if let Err(e) = genesis.crypto.check_key(&validator_key.public()) {
        anyhow::bail!("{}: {e}", config.validator_key.display());
    }
    if validator_key.public() != agency.validator_key {
        anyhow::bail!(
            "{}: its public key is not {}'s validator key in the genesis",
            config.validator_key.display(),
            config.agency
        );
    }
    let network_key = read_key(&config.network_key)?;
    if network_key.scheme() != cbec_ledger::Scheme::Ed25519 {
        anyhow::bail!(
            "{}: a network key is an ed25519 key (libp2p's peer identity), not {}",
            config.network_key.display(),
            network_key.scheme()
        );
    }
    let keypair = network::keypair_from_seed(network_key.secret())?;
    let me = keypair.public().to_peer_id();
    if me.to_string() != agency.peer_id {
        anyhow::bail!(
            "{}: its peer id {me} is not {}'s peer id in the genesis",
            config.network_key.display(),
            config.agency
        );
    }
    if let Some(unknown) = config
        .peer_addresses
        .keys()
        .find(|name| genesis.agency(name).is_none() || **name == config.agency)
    {
        anyhow::bail!(
            "{}: peer_addresses: `{unknown}` is not another agency in the genesis",
            config_path.display()
        );
    }
    let peers = genesis
        .agencies
        .iter()
        .filter(|a| a.name != config.agency)
        .map(|a| {
            let address = config.peer_addresses.get(&a.name).unwrap_or(&a.address);
            Ok((a.peer_id.parse()?, address.parse()?))
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .context("genesis peer ids and addresses")?;

    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let store_options = StoreOptions {
        versions_kept: config.store.versions_kept,
        watched: genesis
            .agencies
            .iter()
            .map(|a| validator_key_state_key(&a.name).into_bytes())
            .collect(),
        background: true,
        archive: config.store.archive,
        suite: genesis.crypto,
        signing_file: Some(config.data_dir.join("signing-state")),
        tree_resident_keys: config
            .store
            .tree_resident_keys
            .map(|keys| usize::try_from(keys).unwrap_or(usize::MAX)),
    };
    let opening = std::time::Instant::now();
    let store = Arc::new(
        Store::open_with(&config.data_dir.join("db"), &chain_id, store_options)
            .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?,
    );
    let tree = store.memory().tree;
    tracing::info!(
        keys = tree.leaves,
        ms = opening.elapsed().as_millis() as u64,
        "opened the store and rebuilt the state tree"
    );
    let engine = Engine::from_configs(&genesis.chaincodes)
        .map_err(|e| anyhow::anyhow!("genesis chaincodes: {e}"))?;
    if !store.is_initialized()? {
        let agencies: Vec<_> = genesis
            .agencies
            .iter()
            .map(|a| (a.name.clone(), a.operator_keys.clone()))
            .collect();
        let writes = Engine::genesis_writes(&agencies);
        let root = match genesis.synthetic_state {
            None => store.init_genesis(&writes)?,
            Some(synthetic) => {
                tracing::info!(
                    keys = synthetic.keys,
                    seed = synthetic.seed,
                    "writing the synthetic state the genesis asks for"
                );
                store.init_genesis_with(
                    &writes,
                    &mut cbec_genesis::synthetic::entries(genesis.crypto, synthetic),
                )?
            }
        };
        tracing::info!(%root, "wrote the genesis state");
    }
    let started = std::time::Instant::now();
    let verified = store.verify_files().with_context(|| {
        format!(
            "refusing to run on the store in {}",
            config.data_dir.display()
        )
    })?;
    tracing::info!(
        entries = verified.entries,
        bytes = verified.bytes,
        ms = started.elapsed().as_millis() as u64,
        "read the whole store back, every checksum good"
    );
    store.check(CHECK_DEPTH).with_context(|| {
        format!(
            "refusing to run on the store in {}",
            config.data_dir.display()
        )
    })?;
    let height = store.height()?;
    tracing::info!(agency = %config.agency, %chain_id, height, peer_id = %me, "starting validator");

    let mempool = Mempool::new(MempoolConfig {
        tx_bytes_max: genesis.consensus.tx_bytes_max as usize,
        ..MempoolConfig::default()
    });
    let admission = Admission::new(
        chain_id,
        genesis.crypto,
        genesis.consensus.tx_bytes_max as usize,
        mempool.room(),
        store.clone(),
    );
    let (host_handle, host_queues) = driver::queues();
    // The feed carries heights, not blocks: a ring of blocks kept its last `capacity`
    // blocks alive whether or not anyone read them (gigabytes with big blocks). A
    // subscriber that lags is told so (the SSE stream skips; clients fill gaps from
    // /v1/blocks).
    let (committed_tx, _) = broadcast::channel(COMMITTED_RING);
    let trust = genesis.trust_root();
    let api_listen: std::net::SocketAddr = config
        .api_listen
        .parse()
        .with_context(|| format!("api_listen `{}`", config.api_listen))?;
    let access = Access::new(&config.api, &api_listen);
    let shared = Arc::new(Shared {
        store: store.clone(),
        chain_id,
        trust: trust.clone(),
        agency: config.agency.clone(),
        validator: validator_key.public(),
        host: host_handle,
        admission,
        access,
        reads: Reads::new(ReadLimits {
            concurrency: config.api.reads_concurrency,
            queue: config.api.reads_queue_max,
        }),
        blocks: BlockCache::default(),
        events: EventFeed::new(config.api.event_subscribers_max),
        committed: committed_tx,
        status: RwLock::new(Status {
            height,
            ..Status::default()
        }),
        metrics: Metrics::with_disk(&store.disk_timings()),
    });
    shared.metrics.height.set(height as i64);

    let message_bytes_max = genesis.consensus.block_bytes_max as usize + 64 * 1024;
    let (net, network) = network::start(
        NetConfig {
            keypair,
            listen: config.p2p_listen.parse()?,
            peers,
            message_bytes_max,
            suite: genesis.crypto,
            keep_unchecked: config.network.compact_proposals,
        },
        shared.clone(),
        adversary.clone(),
    )?;

    let listener = tokio::net::TcpListener::bind(api_listen)
        .await
        .with_context(|| format!("cannot listen for the API on {}", config.api_listen))?;
    tracing::info!(
        anonymous = ?shared.access.anonymous(),
        tokens = config.api.tokens.len(),
        "API on http://{}",
        listener.local_addr()?
    );
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let server = crate::server::serve(
        listener,
        crate::api::router(shared.clone(), &config.api),
        ServerLimits {
            connections_max: config.api.connections_max,
            header_timeout: std::time::Duration::from_millis(config.api.header_timeout_ms),
        },
        shared.clone(),
        shutdown_rx.clone(),
    );
    let mut api = tokio::spawn(server);
    let feed = tokio::spawn(crate::api::run_event_feed(shared.clone()));

    let host = Host::new(
        HostConfig {
            trust,
            consensus: genesis.consensus.clone(),
            genesis_time_ms: genesis.genesis_time_ms,
            compact_txs_min: if config.network.compact_proposals {
                crate::host::COMPACT_TXS_MIN
            } else {
                usize::MAX
            },
        },
        store.clone(),
        engine,
        validator_key.clone(),
        mempool,
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let driver = Driver {
        host,
        shared: shared.clone(),
        net,
        adversary,
        key: validator_key,
    };
    let (host_done_tx, host_done) = tokio::sync::oneshot::channel();
    let host_stop = stop.clone();
    let host_thread = std::thread::Builder::new()
        .name("host".into())
        .spawn(move || {
            let mut driver = driver;
            let result = driver.run(host_queues, host_stop);
            // The result first: dropping the driver closes the other stages' channels.
            let _ = host_done_tx.send(result);
            drop(driver);
        })
        .context("cannot start the host thread")?;

    // Supervision: the node runs while all of its stages do. If one ends, the node
    // stops and says which and why, with a non-zero exit.
    let mut network = network;
    let mut host_done = host_done;
    let mut host_ended = false;
    let failure: Option<anyhow::Error> = tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            None
        }
        result = &mut host_done => {
            host_ended = true;
            Some(host_failure(result))
        }
        result = &mut network => Some(match result {
            Ok(()) => anyhow::anyhow!("the network task ended"),
            Err(e) => anyhow::anyhow!("the network task failed: {e}"),
        }),
        result = &mut api => Some(match result {
            Ok(Ok(())) => anyhow::anyhow!("the API server ended"),
            Ok(Err(e)) => anyhow::anyhow!("the API server failed: {e}"),
            Err(e) => anyhow::anyhow!("the API task failed: {e}"),
        }),
    };
    // A stage may end because the host did (its channels close as the host's thread
    // unwinds, a moment before the host's own result arrives): give the host's reason,
    // which names the cause, if it comes.
    let failure = match failure {
        Some(other) if !host_ended => {
            let wait = std::time::Duration::from_secs(2);
            match tokio::time::timeout(wait, &mut host_done).await {
                Ok(result) => Some(anyhow::anyhow!("{}; {other}", host_failure(result))),
                Err(_) => Some(other),
            }
        }
        failure => failure,
    };
    feed.abort();
    if let Some(e) = &failure {
        tracing::error!("stopping: {e}");
    }
    stop.store(true, Ordering::Relaxed);
    let _ = shutdown_tx.send(true);
    network.abort();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), api).await;
    let _ = tokio::task::spawn_blocking(move || host_thread.join()).await;
    // Applied blocks still waiting for the disk are written before the node exits.
    if let Err(e) = store.close() {
        tracing::error!("{e}");
    }
    drop(shared);
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn host_failure(
    result: Result<Result<(), crate::host::Fatal>, tokio::sync::oneshot::error::RecvError>,
) -> anyhow::Error {
    match result {
        Ok(Ok(())) => anyhow::anyhow!("the host stopped"),
        Ok(Err(fatal)) => anyhow::anyhow!("the host stopped: {fatal}"),
        Err(_) => anyhow::anyhow!("the host thread panicked"),
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The `cbec-node` (and `cbec node run`) entry: logging, runtime, one-line errors.
pub fn main_with(config: &Path, log_format: Option<LogFormat>) -> std::process::ExitCode {
    main_with_adversary(config, log_format, Arc::new(Honest))
}

/// [`main_with`] for a test binary that makes the node Byzantine through the seam.
pub fn main_with_adversary(
    config: &Path,
    log_format: Option<LogFormat>,
    adversary: Arc<dyn Adversary<PeerId>>,
) -> std::process::ExitCode {
    let format = log_format
        .or_else(|| NodeConfig::load(config).ok().map(|c| c.log_format))
        .unwrap_or_default();
    init_logging(format);
    crate::no_transparent_huge_pages();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_with(config, adversary)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
