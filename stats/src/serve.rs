//! The indexer's own small HTTP server: the reports as JSON or CSV.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/v1/stats` | the reports, and the height indexed |
//! | GET | `/v1/stats/{report}` | one report; `?by=month` (default `day`), `?format=csv` (default JSON) |

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::db::Db;
use crate::report::{self, Period, REPORTS};

#[derive(Debug)]
struct Served {
    db: PathBuf,
}

#[derive(Debug, Deserialize)]
struct Options {
    by: Option<String>,
    format: Option<String>,
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

pub fn router(db: PathBuf) -> Router {
    Router::new()
        .route("/v1/stats", get(index))
        .route("/v1/stats/{report}", get(one))
        .with_state(Arc::new(Served { db }))
}

async fn index(State(s): State<Arc<Served>>) -> Response {
    let path = s.db.clone();
    let height = tokio::task::spawn_blocking(move || Db::open_read_only(&path)?.height()).await;
    match height {
        Ok(Ok(height)) => Json(json!({
            "height": height,
            "reports": REPORTS.iter().map(|(name, about)| json!({
                "name": name, "about": about, "path": format!("/v1/stats/{name}"),
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn one(
    State(s): State<Arc<Served>>,
    Path(name): Path<String>,
    Query(options): Query<Options>,
) -> Response {
    if !REPORTS.iter().any(|(n, _)| *n == name) {
        let names: Vec<&str> = REPORTS.iter().map(|(n, _)| *n).collect();
        return error(
            StatusCode::NOT_FOUND,
            format!("no report `{name}`: the reports are {}", names.join(", ")),
        );
    }
    let by: Period = match options.by.as_deref().unwrap_or("day").parse() {
        Ok(by) => by,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("by: {e}")),
    };
    let csv = match options.format.as_deref().unwrap_or("json") {
        "json" => false,
        "csv" => true,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("format: `{other}` is not json or csv"),
            )
        }
    };
    let path = s.db.clone();
    let table = tokio::task::spawn_blocking(move || {
        report::run(Db::open_read_only(&path)?.conn(), &name, by)
    })
    .await;
    match table {
        Ok(Ok(table)) if csv => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            table.to_csv(),
        )
            .into_response(),
        Ok(Ok(table)) => Json(table.to_json()).into_response(),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Serves the reports of the file at `db` on `listen` until the process ends. Returns
/// the address bound (port 0 picks one) once listening.
pub fn spawn(db: PathBuf, listen: SocketAddr) -> anyhow::Result<SocketAddr> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind(listen))?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("stats-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                if let Err(e) = axum::serve(listener, router(db)).await {
                    eprintln!("stats server: {e}");
                }
            })
        })?;
    Ok(bound)
}
