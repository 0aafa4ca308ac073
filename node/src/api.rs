//! The HTTP/JSON API under `/v1/`, server-sent events of committed blocks, and
//! `/metrics` for Prometheus. Bad requests get a 4xx with `{"error": "..."}`.
//!
//! | method | path | what |
//! |---|---|---|
//! | POST | `/v1/tx` | submit one transaction (JSON, or canonical bytes as `application/octet-stream`); `?wait=true` waits for its commit |
//! | POST | `/v1/txs` | submit many in one request (a JSON array, or canonical `Vec<Transaction>`) |
//! | GET | `/v1/tx/{hash}` | status, block, index and result |
//! | GET | `/v1/blocks/{height}`, `/v1/blocks/latest` | block and its commit certificate (binary: `Accept: application/octet-stream`) |
//! | GET | `/v1/state/{key}` | latest value of a state key; `?proof=true` adds its proof at the latest height (as `/v1/proof/state`) |
//! | GET | `/v1/proof/tx/{hash}` | proof of a committed transaction and its result (`cbec verify` checks it offline) |
//! | GET | `/v1/proof/state/{key}` | proof of a key's value or absence; `?height=H` for an earlier block |
//! | GET | `/v1/proof/provenance/{goods id}` | proof of a good's whole event history |
//!
//! Proofs are JSON by default; `Accept: application/octet-stream` gets the canonical
//! binary form.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/v1/nonce/{public key}` | the next nonce to use (committed + pending) |
//! | GET | `/v1/status` | height, round, peers, syncing, validator, mempool |
//! | GET | `/v1/events` | server-sent events: one `block` event per committed block |
//! | GET | `/metrics` | Prometheus text |
//! | GET | `/v1/openapi.json` | this table as OpenAPI 3.1 (generated from [`crate::openapi::ROUTES`], which the router is built from) |
//! | GET | `/01/{gtin}/21/{serial}` | GS1 Digital Link: redirects to the auditor page for that good |
//! | GET | `/audit/` | the auditor page: proofs verified in the browser against a genesis file the auditor loads |

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cbec_genesis::ApiSettings;
use cbec_ledger::{codec, Block, Hash, ProofFile, PublicKey, Transaction};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::access::{scope_of, Denied};
use crate::admission::{Rejection, Remedy};
use crate::driver::{Event, QueueError};
use crate::host::Origin;
use crate::openapi::ROUTES;
use crate::proofs::{ProveError, Prover};
use crate::shared::Shared;

/// Largest request body accepted.
pub const BODY_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Most transactions in one batch request.
pub const BATCH_TXS_MAX: usize = 10_000;
const WAIT_MAX: Duration = Duration::from_secs(30);

/// Seconds a client is told to wait (`Retry-After`) when the node is full or busy.
pub const RETRY_AFTER_S: u64 = 1;

#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = matches!(
            self.0,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        );
        let mut response = (self.0, Json(json!({ "error": self.1 }))).into_response();
        if retry {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(RETRY_AFTER_S),
            );
        }
        response
    }
}

/// The status code a refusal maps to: what a client can do about it.
pub fn status_of(rejection: &Rejection) -> StatusCode {
    match rejection.remedy() {
        Remedy::Malformed => StatusCode::BAD_REQUEST,
        Remedy::Conflict => StatusCode::CONFLICT,
        Remedy::Forbidden => StatusCode::FORBIDDEN,
        Remedy::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        Remedy::SlowDown => StatusCode::TOO_MANY_REQUESTS,
        Remedy::RetryLater => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn stopped() -> ApiError {
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        "node is shutting down".into(),
    )
}

fn busy() -> ApiError {
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        "node is busy; retry later".into(),
    )
}

/// Sends the host an event that answers on `answer`.
async fn ask<T>(
    shared: &Shared,
    event: Event,
    answer: oneshot::Receiver<T>,
) -> Result<T, ApiError> {
    shared.host.send(event).map_err(|e| match e {
        QueueError::Full => busy(),
        QueueError::Stopped => stopped(),
    })?;
    answer.await.map_err(|_| stopped())
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

type ApiResult = Result<Response, ApiError>;

/// The router with its request limits: every route but the event stream answers within
/// `request_timeout` (408 after) and at most `requests_in_flight_max` are handled at
/// once (503 with `Retry-After` beyond); every route needs its scope (see
/// [`crate::access`]).
pub fn router(shared: Arc<Shared>, settings: &ApiSettings) -> Router<()> {
    let limits = tower::ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many requests in flight; retry later".into(),
            )
        }))
        .load_shed()
        .concurrency_limit(settings.requests_in_flight_max)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(settings.request_timeout_ms),
        ));
    // Every route comes from the one table that /v1/openapi.json describes.
    let mut limited = Router::new();
    let mut unlimited = Router::new();
    for route in ROUTES {
        if route.limited {
            limited = limited.route(route.path, handler(route.path));
        } else {
            // The event stream lives long by design (its own cap, no time limit); the
            // description and the auditor page hold no ledger data and need no scope.
            unlimited = unlimited.route(route.path, handler(route.path));
        }
    }
    let limited = limited.layer(limits);
    Router::new()
        .merge(limited)
        .merge(unlimited)
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "no such endpoint; see README for the API".into(),
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            authorize,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(shared)
}

/// The handler of a path of [`ROUTES`]; the method is the table's too.
fn handler(path: &str) -> axum::routing::MethodRouter<Arc<Shared>> {
    match path {
        "/v1/tx" => post(submit_one),
        "/v1/txs" => post(submit_many),
        "/v1/tx/{hash}" => get(tx_status),
        "/v1/blocks/{height}" => get(block),
        "/v1/state/{*key}" => get(state),
        "/v1/proof/tx/{hash}" => get(proof_tx),
        "/v1/proof/state/{*key}" => get(proof_state),
        "/v1/proof/provenance/{goods_id}" => get(proof_provenance),
        "/v1/nonce/{key}" => get(nonce),
        "/v1/status" => get(status),
        "/metrics" => get(metrics),
        "/v1/events" => get(events),
        "/v1/openapi.json" => get(|| async { Json(crate::openapi::document()) }),
        "/audit/" => get(audit_page),
        "/01/{gtin}/21/{serial}" => get(digital_link),
        "/audit" => get(|| async { axum::response::Redirect::permanent("/audit/") }),
        other => panic!("ROUTES names {other}, which has no handler: a bug caught by any test"),
    }
}

/// A GS1 Digital Link (`/01/{gtin}/21/{serial}`, the serial a goods id) resolved to the
/// auditor page for that good, which fetches and verifies its timeline.
async fn digital_link(Path((gtin, serial)): Path<(String, String)>) -> Response {
    let gtin_ok =
        (gtin.len() == 13 || gtin.len() == 14) && gtin.bytes().all(|b| b.is_ascii_digit());
    let serial_ok = cbec_chaincode::goods::check_goods_id(&serial).is_ok();
    if !gtin_ok || !serial_ok {
        return ApiError(
            StatusCode::BAD_REQUEST,
            format!("/01/{gtin}/21/{serial} is not a GTIN and a goods id"),
        )
        .into_response();
    }
    axum::response::Redirect::temporary(&format!("/audit/?goods={serial}")).into_response()
}

/// The auditor page (`cbec-audit-page`): one self-contained file; the same bytes as
/// `cbec audit page` writes.
async fn audit_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        cbec_audit_page::PAGE,
    )
        .into_response()
}

/// Refuses a request whose route needs a scope the request does not have.
async fn authorize(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(scope) = scope_of(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    match shared.access.check(request.headers(), scope) {
        Ok(()) => next.run(request).await,
        Err(denied) => {
            let status = match denied {
                Denied::MissingScope { .. } => StatusCode::FORBIDDEN,
                Denied::NeedsToken(_) | Denied::UnknownToken => StatusCode::UNAUTHORIZED,
            };
            let mut response = ApiError(status, denied.to_string()).into_response();
            if status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            response
        }
    }
}

/// Runs a disk read on the bounded read pool (503 when too many wait).
async fn read<T: Send + 'static>(
    shared: &Shared,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    shared
        .reads
        .run(work)
        .await
        .map_err(|busy| ApiError(StatusCode::SERVICE_UNAVAILABLE, busy.to_string()))
}

fn is_binary(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"))
}

fn decode_txs(headers: &HeaderMap, body: &[u8], many: bool) -> Result<Vec<Transaction>, ApiError> {
    let txs = if is_binary(headers) {
        if many {
            codec::decode::<Vec<Transaction>>(body).map_err(|e| bad(format!("body: {e}")))?
        } else {
            vec![codec::decode::<Transaction>(body).map_err(|e| bad(format!("body: {e}")))?]
        }
    } else if many {
        serde_json::from_slice::<Vec<Transaction>>(body)
            .map_err(|e| bad(format!("body is not a JSON array of transactions: {e}")))?
    } else {
        vec![serde_json::from_slice::<Transaction>(body)
            .map_err(|e| bad(format!("body is not a JSON transaction: {e}")))?]
    };
    if txs.is_empty() || txs.len() > BATCH_TXS_MAX {
        return Err(bad(format!("send 1 to {BATCH_TXS_MAX} transactions")));
    }
    Ok(txs)
}

async fn submit(
    shared: &Shared,
    txs: Vec<Transaction>,
) -> Result<Vec<Result<Hash, Rejection>>, ApiError> {
    let (checked, reserved) = shared.admission.check_async(txs).await;
    let (reply, answer) = oneshot::channel();
    let event = Event::Admit {
        checked,
        reserved,
        origin: Origin::Client,
        reply: Some(reply),
    };
    ask(shared, event, answer).await
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    #[serde(default)]
    wait: bool,
}

async fn submit_one(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let txs = decode_txs(&headers, &body, false)?;
    // Subscribe before submitting, so a fast commit is not missed.
    let mut committed = shared.committed.subscribe();
    let hash = match submit(&shared, txs).await?.remove(0) {
        Ok(hash) => hash,
        Err(rejection) => return Ok(refusal(&rejection)),
    };
    if !q.wait {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "hash": hash, "status": "pending" })),
        )
            .into_response());
    }
    let deadline = tokio::time::Instant::now() + WAIT_MAX;
    loop {
        if let Some(found) = lookup_async(&shared, hash).await? {
            return Ok(Json(found).into_response());
        }
        match tokio::time::timeout_at(deadline, committed.recv()).await {
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(_)) => return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "node is shutting down".into())),
            Err(_) => {
                return Ok((StatusCode::ACCEPTED, Json(json!({ "hash": hash, "status": "pending", "note": "not committed within 30 s" }))).into_response())
            }
        }
    }
}

async fn submit_many(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let txs = decode_txs(&headers, &body, true)?;
    let answers = submit(&shared, txs).await?;
    let accepted = answers.iter().filter(|a| a.is_ok()).count();
    let items: Vec<Value> = answers
        .into_iter()
        .map(|a| match a {
            Ok(hash) => json!({ "hash": hash, "status": "pending" }),
            Err(rejection) => json!({
                "status": "refused",
                "code": rejection.code(),
                "error": rejection.to_string(),
            }),
        })
        .collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "accepted": accepted, "results": items })),
    )
        .into_response())
}

/// A refused transaction: the status its remedy calls for, its code and reason.
fn refusal(rejection: &Rejection) -> Response {
    let status = status_of(rejection);
    let mut response = (
        status,
        Json(json!({
            "error": format!("transaction refused: {rejection}"),
            "code": rejection.code(),
        })),
    )
        .into_response();
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from(RETRY_AFTER_S),
        );
    }
    response
}

/// A committed transaction and its result, as the API shows it (a disk read: call it
/// through [`read`]).
fn lookup(shared: &Shared, hash: &Hash) -> anyhow::Result<Option<Value>> {
    let Some((height, index)) = shared.store.tx_location(hash)? else {
        return Ok(None);
    };
    let treed = shared
        .blocks
        .get(&shared.store, height)?
        .ok_or_else(|| anyhow::anyhow!("tx index names missing block {height}"))?;
    let i = index as usize;
    let (Some(tx), Some(result)) = (treed.block.txs.get(i), treed.block.results.get(i)) else {
        return Err(anyhow::anyhow!("tx index names a missing transaction"));
    };
    Ok(Some(json!({
        "hash": hash,
        "status": "committed",
        "height": height,
        "index": index,
        "result": result,
        "tx": tx,
        "args": cbec_chaincode::args_to_json(&tx.body.call.chaincode, &tx.body.call.method, &tx.body.call.args).ok(),
    })))
}

async fn lookup_async(shared: &Arc<Shared>, hash: Hash) -> Result<Option<Value>, ApiError> {
    let s = shared.clone();
    read(shared, move || lookup(&s, &hash))
        .await?
        .map_err(internal)
}

async fn tx_status(State(shared): State<Arc<Shared>>, Path(hash): Path<String>) -> ApiResult {
    let hash: Hash = hash
        .parse()
        .map_err(|e| bad(format!("transaction hash: {e}")))?;
    if let Some(found) = lookup_async(&shared, hash).await? {
        return Ok(Json(found).into_response());
    }
    // A block applied but still on its way to the disk is not indexed yet (the index
    // holds durable blocks only), and its transactions have left the mempool: wait for
    // it, then look again, rather than call them unknown.
    let applied = shared.store.height().map_err(internal)?;
    if shared.store.persisted_height() < applied {
        let (durable, on_disk) = oneshot::channel();
        shared.store.when_persisted(applied, move || {
            let _ = durable.send(());
        });
        let _ = tokio::time::timeout(WAIT_MAX, on_disk).await;
        if let Some(found) = lookup_async(&shared, hash).await? {
            return Ok(Json(found).into_response());
        }
    }
    let (reply, answer) = oneshot::channel();
    if ask(&shared, Event::IsPending { hash, reply }, answer).await? {
        return Ok(Json(json!({ "hash": hash, "status": "pending" })).into_response());
    }
    Err(ApiError(
        StatusCode::NOT_FOUND,
        format!("no transaction {hash} is pending or committed"),
    ))
}

/// A block and its certificate: JSON (with the block hash) by default; the canonical
/// [`cbec_ledger::CertifiedBlock`] encoding when the client accepts `application/octet-stream` (what
/// `cbec stats index` reads).
async fn block(
    State(shared): State<Arc<Shared>>,
    Path(which): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let height = if which == "latest" {
        shared.store.height().map_err(internal)?
    } else {
        which
            .parse::<u64>()
            .map_err(|_| bad(format!("`{which}` is not a height or `latest`")))?
    };
    let s = shared.clone();
    let binary = accepts_binary(&headers);
    // Encoded from the cached block where it lies, on the blocking thread: the indexer
    // asks for every block, and a copy of each would be waste.
    let found = read(&shared, move || -> anyhow::Result<Option<Response>> {
        let (Some(treed), Some(certificate)) = (
            s.blocks.get(&s.store, height)?,
            s.store.certificate(height)?,
        ) else {
            return Ok(None);
        };
        let block: &Block = &treed.block;
        Ok(Some(if binary {
            // The canonical `CertifiedBlock` encoding: the block, then its certificate.
            let bytes = codec::encode(&(block, &certificate));
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        } else {
            Json(json!({
                "height": height,
                "hash": block.hash(s.store.suite()),
                "block": block,
                "certificate": certificate,
            }))
            .into_response()
        }))
    })
    .await?
    .map_err(internal)?;
    found.ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no block at height {height}"),
        )
    })
}

/// Whether the client asked for the canonical binary form.
fn accepts_binary(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/octet-stream"))
}

#[derive(Debug, Deserialize)]
struct ProofQuery {
    #[serde(default)]
    proof: bool,
}

async fn state(
    State(shared): State<Arc<Shared>>,
    Path(key): Path<String>,
    Query(q): Query<ProofQuery>,
) -> ApiResult {
    let value = shared.store.state_value(key.as_bytes()).map_err(internal)?;
    let height = shared.store.height().map_err(internal)?;
    let mut body = json!({
        "key": key,
        "height": height,
        "value_hex": value.as_ref().map(hex::encode),
    });
    if q.proof && height > 0 {
        let s = shared.clone();
        let file = read(&shared, move || {
            Prover {
                store: &s.store,
                trust: &s.trust,
                blocks: &s.blocks,
            }
            .state(key.as_bytes(), Some(height))
        })
        .await?
        .map_err(internal)?;
        body["proof"] = serde_json::to_value(&file).map_err(internal)?;
    }
    Ok(Json(body).into_response())
}

#[derive(Debug, Deserialize)]
struct HeightQuery {
    height: Option<u64>,
}

/// Builds a proof off the async runtime (it reads blocks and tree nodes from disk) and
/// answers in JSON, or in binary when the client accepts `application/octet-stream`.
async fn prove(
    shared: Arc<Shared>,
    headers: HeaderMap,
    build: impl FnOnce(&Prover<'_>) -> Result<ProofFile, ProveError> + Send + 'static,
) -> ApiResult {
    let s = shared.clone();
    let file = read(&shared, move || {
        build(&Prover {
            store: &s.store,
            trust: &s.trust,
            blocks: &s.blocks,
        })
    })
    .await?
    .map_err(|e| match e {
        ProveError::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m),
        ProveError::NotKept(m) => ApiError(StatusCode::GONE, m),
        ProveError::Store(e) => internal(e),
    })?;
    if accepts_binary(&headers) {
        Ok((
            [(header::CONTENT_TYPE, "application/octet-stream")],
            file.to_bytes(),
        )
            .into_response())
    } else {
        Ok(Json(file).into_response())
    }
}

async fn proof_tx(
    State(shared): State<Arc<Shared>>,
    Path(hash): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let hash: Hash = hash
        .parse()
        .map_err(|e| bad(format!("transaction hash: {e}")))?;
    prove(shared, headers, move |p| p.tx(&hash)).await
}

async fn proof_state(
    State(shared): State<Arc<Shared>>,
    Path(key): Path<String>,
    Query(q): Query<HeightQuery>,
    headers: HeaderMap,
) -> ApiResult {
    prove(shared, headers, move |p| p.state(key.as_bytes(), q.height)).await
}

async fn proof_provenance(
    State(shared): State<Arc<Shared>>,
    Path(goods_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    cbec_chaincode::goods::check_goods_id(&goods_id).map_err(|e| bad(e.message))?;
    prove(shared, headers, move |p| p.provenance(&goods_id)).await
}

async fn nonce(State(shared): State<Arc<Shared>>, Path(key): Path<String>) -> ApiResult {
    let key: PublicKey = key.parse().map_err(|e| bad(format!("public key: {e}")))?;
    let (reply, answer) = oneshot::channel();
    let next = ask(&shared, Event::NextNonce { key, reply }, answer).await?;
    Ok(Json(json!({ "key": key, "next_nonce": next })).into_response())
}

async fn status(State(shared): State<Arc<Shared>>) -> ApiResult {
    let s = shared.status();
    Ok(Json(json!({
        "chain_id": shared.chain_id,
        "crypto": shared.store.suite(),
        "agency": shared.agency,
        "validator": shared.validator,
        "height": s.height,
        "round": s.round,
        "peers": s.peers,
        "syncing": s.syncing,
        "mempool_txs": s.mempool_txs,
        "mempool_bytes": s.mempool_bytes,
        "last_block_hash": s.last_block_hash,
        "last_block_time_ms": s.last_block_time_ms,
    }))
    .into_response())
}

/// The event stream: one `block` event per committed block, serialised once for every
/// subscriber by the feed (see [`EventFeed`]). At most `event_subscribers_max` at once;
/// a subscriber that falls behind the feed's ring is told (`lagged`) and dropped (it
/// resumes from `/v1/blocks`).
async fn events(State(shared): State<Arc<Shared>>) -> Result<Response, ApiError> {
    let Ok(slot) = shared.events.slots.clone().try_acquire_owned() else {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many event-stream subscribers; retry later".into(),
        ));
    };
    let receiver = shared.events.sender.subscribe();
    shared.metrics.event_subscribers.inc();
    let guard = Subscriber {
        _slot: slot,
        shared: shared.clone(),
    };
    let stream = block_events(receiver, guard, |guard| {
        guard.shared.metrics.dropped_subscribers.inc();
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// A subscriber's stream of the feed's events; `guard` lives as long as the stream.
/// One that falls behind the ring gets a last `lagged` event and the stream ends
/// (`on_lag` is told).
fn block_events<G: Send + 'static>(
    receiver: tokio::sync::broadcast::Receiver<Arc<str>>,
    guard: G,
    on_lag: fn(&G),
) -> impl futures::Stream<Item = Result<SseEvent, Infallible>> {
    futures::stream::unfold(Some((receiver, guard)), move |state| async move {
        let (mut receiver, guard) = state?;
        match receiver.recv().await {
            Ok(data) => {
                let event = SseEvent::default().event("block").data(data.as_ref());
                Some((Ok(event), Some((receiver, guard))))
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                on_lag(&guard);
                let event = SseEvent::default()
                    .event("lagged")
                    .data(format!("{{\"missed\": {missed}}}"));
                // The last event: the stream ends after it, and the guard goes.
                Some((Ok(event), None))
            }
            Err(_) => None,
        }
    })
}

/// An event-stream subscriber's place, freed when its stream ends.
struct Subscriber {
    _slot: tokio::sync::OwnedSemaphorePermit,
    shared: Arc<Shared>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.shared.metrics.event_subscribers.dec();
    }
}

/// Committed blocks as server-sent events, serialised once whatever the number of
/// subscribers. The ring is short: a subscriber that does not read is dropped, not
/// buffered for.
#[derive(Debug)]
pub struct EventFeed {
    pub sender: tokio::sync::broadcast::Sender<Arc<str>>,
    pub slots: Arc<tokio::sync::Semaphore>,
}

/// Events the feed keeps for slow subscribers before they are dropped.
pub const EVENT_RING: usize = 8;

impl EventFeed {
    pub fn new(subscribers_max: usize) -> EventFeed {
        EventFeed {
            sender: tokio::sync::broadcast::channel(EVENT_RING).0,
            slots: Arc::new(tokio::sync::Semaphore::new(subscribers_max)),
        }
    }
}

/// One committed block on the event stream (fields in this order: the order the
/// stream has always had).
#[derive(serde::Serialize)]
struct BlockEvent<'a> {
    hash: cbec_ledger::Hash,
    height: u64,
    results: &'a [cbec_ledger::TxResult],
    time_ms: u64,
    txs: Vec<cbec_ledger::Hash>,
}

/// The feed's task: for each committed height, reads the block once (through the block
/// cache, on a blocking thread) and sends its event to every subscriber.
pub async fn run_event_feed(shared: Arc<Shared>) {
    let mut heights = shared.committed.subscribe();
    loop {
        let height = match heights.recv().await {
            Ok(height) => height,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return,
        };
        if shared.events.sender.receiver_count() == 0 {
            continue; // nobody listens: no read, no serialising
        }
        let s = shared.clone();
        let event = tokio::task::spawn_blocking(move || {
            // The block alone (shared while in memory): the feed needs none of the
            // proof trees the API's block cache builds.
            let block = s.store.block_shared(height).ok().flatten()?;
            // Serialised straight from the block (no `serde_json::Value` tree in
            // between), and each transaction's hash taken from its result, which a valid
            // block holds equal to it (hashing every transaction again cost a SHA-256
            // and an encoding each, per block, on every node with a subscriber).
            let data = BlockEvent {
                hash: block.hash(s.store.suite()),
                height: block.height(),
                results: &block.results,
                time_ms: block.header.time_ms,
                txs: block.results.iter().map(|r| r.tx_hash).collect(),
            };
            serde_json::to_string(&data).ok().map(Arc::<str>::from)
        })
        .await;
        if let Ok(Some(event)) = event {
            let _ = shared.events.sender.send(event);
        }
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let memory = shared.store.memory();
    let m = &shared.metrics;
    let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    m.store_memtable_bytes.set(gauge(memory.memtables));
    m.store_block_cache_bytes.set(gauge(memory.block_cache));
    m.store_table_reader_bytes.set(gauge(memory.table_readers));
    m.store_compaction_pending_bytes
        .set(gauge(memory.backlog.pending_compaction_bytes));
    m.store_l0_files.set(gauge(memory.backlog.l0_files));
    m.store_tree_nodes.set(gauge(memory.tree.nodes as u64));
    m.store_tree_leaves.set(gauge(memory.tree.leaves as u64));
    m.store_tree_evicted.set(gauge(memory.tree.evicted as u64));
    m.store_read_cache_bytes.set(gauge(memory.read_cache.bytes));
    // Counters move by what the store counted since the last scrape.
    let hits = &m.store_read_cache_hits;
    hits.inc_by(memory.read_cache.hits.saturating_sub(hits.get()));
    let misses = &m.store_read_cache_misses;
    misses.inc_by(memory.read_cache.misses.saturating_sub(misses.get()));
    let absent = &m.store_read_absent;
    absent.inc_by(memory.read_cache.absent.saturating_sub(absent.get()));
    let counts = shared.admission.counts();
    for (counter, count) in [
        (&m.admission_signatures_checked, &counts.signatures_checked),
        (&m.admission_stale_unchecked, &counts.stale_unchecked),
        (&m.admission_gap_unchecked, &counts.gap_unchecked),
    ] {
        let count = count.load(std::sync::atomic::Ordering::Relaxed);
        counter.inc_by(count.saturating_sub(counter.get()));
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    static LAGS: AtomicUsize = AtomicUsize::new(0);

    /// Issue 13, item 4: a subscriber that does not read holds no more than the ring;
    /// once it falls behind it gets one `lagged` event and is dropped.
    #[tokio::test]
    async fn a_subscriber_that_does_not_read_is_dropped() {
        let feed = EventFeed::new(4);
        let receiver = feed.sender.subscribe();
        let dropped = Arc::new(AtomicBool::new(false));
        let stream = block_events(receiver, Flag(dropped.clone()), |_| {
            LAGS.fetch_add(1, Ordering::Relaxed);
        });
        for i in 0..(EVENT_RING * 3) {
            let _ = feed.sender.send(Arc::from(format!("{{\"height\": {i}}}")));
        }
        let events: Vec<_> = stream.collect().await;
        assert_eq!(events.len(), 1, "one last event, then the end");
        assert!(dropped.load(Ordering::Relaxed), "its place is freed");
        assert_eq!(LAGS.load(Ordering::Relaxed), 1);
        // A subscriber that reads gets every event, in order.
        let receiver = feed.sender.subscribe();
        let stream = block_events(receiver, (), |_| {});
        for i in 0..3 {
            let _ = feed.sender.send(Arc::from(format!("{i}")));
        }
        drop(feed);
        assert_eq!(stream.collect::<Vec<_>>().await.len(), 3);
    }
}
