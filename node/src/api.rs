//! The HTTP/JSON API under `/v1/`, server-sent events of committed blocks, and
//! `/metrics` for Prometheus. Bad requests get a 4xx with `{"error": "..."}`.
//!
//! | method | path | what |
//! |---|---|---|
//! | POST | `/v1/tx` | submit one transaction (JSON, or canonical bytes as `application/octet-stream`); `?wait=true` waits for its commit |
//! | POST | `/v1/txs` | submit many in one request (a JSON array, or canonical `Vec<Transaction>`) |
//! | GET | `/v1/tx/{hash}` | status, block, index and result |
//! | GET | `/v1/blocks/{height}`, `/v1/blocks/latest` | block and its commit certificate |
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

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cbec_ledger::{codec, Hash, ProofFile, PublicKey, Transaction};
use futures::Stream;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::admission::{Rejection, Remedy};
use crate::driver::{Event, QueueError};
use crate::host::Origin;
use crate::proofs::{ProveError, Prover};
use crate::shared::{committed_result, Shared};

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

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/tx", post(submit_one))
        .route("/v1/txs", post(submit_many))
        .route("/v1/tx/{hash}", get(tx_status))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/state/{*key}", get(state))
        .route("/v1/proof/tx/{hash}", get(proof_tx))
        .route("/v1/proof/state/{*key}", get(proof_state))
        .route("/v1/proof/provenance/{goods_id}", get(proof_provenance))
        .route("/v1/nonce/{key}", get(nonce))
        .route("/v1/status", get(status))
        .route("/v1/events", get(events))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "no such endpoint; see README for the API".into(),
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(shared)
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
    let checked = shared.admission.check_async(txs).await;
    let (reply, answer) = oneshot::channel();
    let event = Event::Admit {
        checked,
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
        if let Some(found) = lookup(&shared, &hash).map_err(internal)? {
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

fn lookup(shared: &Shared, hash: &Hash) -> anyhow::Result<Option<Value>> {
    let Some((height, index, tx, result)) = committed_result(&shared.store, hash)? else {
        return Ok(None);
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

async fn tx_status(State(shared): State<Arc<Shared>>, Path(hash): Path<String>) -> ApiResult {
    let hash: Hash = hash
        .parse()
        .map_err(|e| bad(format!("transaction hash: {e}")))?;
    if let Some(found) = lookup(&shared, &hash).map_err(internal)? {
        return Ok(Json(found).into_response());
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

async fn block(State(shared): State<Arc<Shared>>, Path(which): Path<String>) -> ApiResult {
    let height = if which == "latest" {
        shared.store.height().map_err(internal)?
    } else {
        which
            .parse::<u64>()
            .map_err(|_| bad(format!("`{which}` is not a height or `latest`")))?
    };
    let (Some(block), cert) = (
        shared.store.block(height).map_err(internal)?,
        shared.store.certificate(height).map_err(internal)?,
    ) else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no block at height {height}"),
        ));
    };
    Ok(
        Json(
            json!({ "height": height, "hash": block.hash(), "block": block, "certificate": cert }),
        )
        .into_response(),
    )
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
        let prover = Prover {
            store: &shared.store,
            trust: &shared.trust,
        };
        let file = tokio::task::block_in_place(|| prover.state(key.as_bytes(), Some(height)))
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
    let file = tokio::task::spawn_blocking(move || {
        build(&Prover {
            store: &shared.store,
            trust: &shared.trust,
        })
    })
    .await
    .map_err(internal)?
    .map_err(|e| match e {
        ProveError::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m),
        ProveError::Store(e) => internal(e),
    })?;
    let binary = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/octet-stream"));
    if binary {
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

async fn events(
    State(shared): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let receiver = shared.committed.subscribe();
    let stream = futures::stream::unfold((receiver, shared), |(mut receiver, shared)| async move {
        loop {
            match receiver.recv().await {
                Ok(height) => {
                    let store = shared.store.clone();
                    let read = tokio::task::spawn_blocking(move || store.block(height)).await;
                    let Ok(Ok(Some(block))) = read else {
                        continue; // not readable now: the client fills the gap
                    };
                    let data = json!({
                        "height": block.height(),
                        "hash": block.hash(),
                        "time_ms": block.header.time_ms,
                        "txs": block.txs.iter().map(|t| t.hash()).collect::<Vec<_>>(),
                        "results": block.results,
                    });
                    let event = SseEvent::default().event("block").data(data.to_string());
                    return Some((Ok(event), (receiver, shared)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let memory = shared.store.memory();
    let m = &shared.metrics;
    let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    m.store_memtable_bytes.set(gauge(memory.memtables));
    m.store_block_cache_bytes.set(gauge(memory.block_cache));
    m.store_table_reader_bytes.set(gauge(memory.table_readers));
    m.store_tree_nodes_cached
        .set(gauge(memory.tree_nodes_cached));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}
