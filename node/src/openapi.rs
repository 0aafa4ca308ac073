//! The API's routes as one table: the router is built from it and `/v1/openapi.json`
//! (OpenAPI 3.1) is generated from it, so the description cannot leave out a route the
//! node serves, nor describe one it does not. The status codes each route can answer
//! are listed with it; those every limited or scoped route shares (401, 403, 408, 503)
//! are added from what the route is.

use axum::http::Method;
use serde_json::{json, Map, Value};

use crate::access::scope_of;

/// One route, as documented.
#[derive(Debug, Clone)]
pub struct RouteDoc {
    pub method: Method,
    /// The axum path (`{name}` a segment, `{*name}` the rest of the path).
    pub path: &'static str,
    pub summary: &'static str,
    /// Query parameters: name and meaning.
    pub query: &'static [(&'static str, &'static str)],
    /// Request body content types (POST routes).
    pub body: &'static [&'static str],
    /// Status codes particular to the route, with their meaning.
    pub responses: &'static [(u16, &'static str)],
    /// Answers within the request time limit and the in-flight cap (408, 503).
    pub limited: bool,
}

const JSON: &str = "application/json";
const BINARY: &str = "application/octet-stream";

/// Every route of the node's HTTP server.
pub const ROUTES: &[RouteDoc] = &[
    RouteDoc {
        method: Method::POST,
        path: "/v1/tx",
        summary: "Submit one transaction (JSON, or canonical bytes as application/octet-stream)",
        query: &[("wait", "true: answer once the transaction is committed (at most 30 s)")],
        body: &[JSON, BINARY],
        responses: &[
            (200, "committed (with ?wait=true): status, block, index and result"),
            (202, "admitted to the mempool (pending)"),
            (400, "malformed: the body does not decode, or a field is out of bounds"),
            (403, "not permitted: the sender is no agency operator and no filed enterprise"),
            (409, "conflict: a nonce already used, or the same transaction already pending"),
            (413, "the body is larger than the limit"),
            (422, "invalid: bad signature, wrong chain, a key of the wrong scheme"),
            (429, "slow down: the sender's or the node's share is full (Retry-After)"),
        ],
        limited: true,
    },
    RouteDoc {
        method: Method::POST,
        path: "/v1/txs",
        summary: "Submit many transactions in one request (a JSON array, or canonical Vec<Transaction>)",
        query: &[],
        body: &[JSON, BINARY],
        responses: &[
            (202, "a result per transaction, in order: pending, or refused with its code"),
            (400, "malformed: the body does not decode, or holds more than 10,000 transactions"),
            (413, "the body is larger than the limit"),
            (429, "slow down (Retry-After)"),
        ],
        limited: true,
    },
    RouteDoc {
        method: Method::GET,
        path: "/v1/tx/{hash}",
        summary: "A transaction's status, block, index and result",
        query: &[],
        body: &[],
        responses: &[
            (200, "committed or pending"),
            (400, "not a transaction hash"),
            (404, "no such transaction pending or committed"),
        ],
        limited: true,
    },
    RouteDoc {
        method: Method::GET,
        path: "/v1/blocks/{height}",
        summary: "A block (or `latest`) and its commit certificate; binary with Accept: application/octet-stream",
        query: &[],
        body: &[],
        responses: &[
            (200, "the block and its certificate"),
            (400, "not a height or `latest`"),
            (404, "no block at that height"),
        ],
        limited: true,
    },
    RouteDoc {
        method: Method::GET,
        path: "/v1/state/{*key}",
        summary: "The latest value of a state key",
        query: &[("proof", "true: add the key's proof at the latest height")],
        body: &[],
        responses: &[(200, "the value, or null when absent"), (400, "bad key or query")],
        limited: true,
    },
    RouteDoc {
        method: Method::GET,
        path: "/v1/proof/tx/{hash}",
        summary: "Proof of a committed transaction and its result (JSON, or binary with Accept: application/octet-stream)",
        query: &[],
        body: &[],
        responses: &[
            (200, "the proof file"),
            (400, "not a transaction hash"),
            (404, "no such committed transaction"),
            (410, "the block is older than this node keeps"),
        ],
        limited: true,
    },
    RouteDoc {
        method: Method::GET,
        path: "/v1/proof/state/{*key}",
        summary: "Proof of a key's value or absence",
        query: &[("height", "prove it after this block (default: the latest)")],
        body: &[],
        responses: &[
            (200, "the proof file"),
            (400, "bad height"),
            (404, "no such height"),
            (410, "the state at that height is older than this node keeps"),
        ],
        limited: true,
    },
    RouteDoc {
        method: Method::GET,
        path: "/v1/proof/provenance/{goods_id}",
        summary: "Proof of a good's whole event history",
        query: &[],
        body: &[],
        responses: &[
            (200, "the proof file"),
            (404, "no such good"),
            (410, "part of the history is older than this node keeps"),
        ],
        limited: true,
    },
    RouteDoc {
        method: Method::GET,
        path: "/v1/nonce/{key}",
        summary: "The next nonce to use for a public key (committed + pending)",
        query: &[],
        body: &[],
        responses: &[(200, "the next nonce"), (400, "not a public key")],
        limited: true,
    },
    RouteDoc {
        method: Method::GET,
        path: "/v1/status",
        summary: "Height, round, peers, syncing, validator, mempool, chain id and crypto suite",
        query: &[],
        body: &[],
        responses: &[(200, "the node's status")],
        limited: true,
    },
    RouteDoc {
        method: Method::GET,
        path: "/metrics",
        summary: "Prometheus metrics (OpenMetrics text)",
        query: &[],
        body: &[],
        responses: &[(200, "the metrics")],
        limited: true,
    },
    RouteDoc {
        method: Method::GET,
        path: "/v1/events",
        summary: "Server-sent events: one `block` event per committed block (a reader that falls behind gets `lagged` and is dropped)",
        query: &[],
        body: &[],
        responses: &[(200, "the event stream (text/event-stream)")],
        limited: false,
    },
    RouteDoc {
        method: Method::GET,
        path: "/v1/openapi.json",
        summary: "This description of the API",
        query: &[],
        body: &[],
        responses: &[(200, "the OpenAPI 3.1 document")],
        limited: false,
    },
    RouteDoc {
        method: Method::GET,
        path: "/audit/",
        summary: "The auditor page: proofs verified in the browser against a genesis file the auditor loads",
        query: &[],
        body: &[],
        responses: &[(200, "the page (text/html)")],
        limited: false,
    },
    RouteDoc {
        method: Method::GET,
        path: "/01/{gtin}/21/{serial}",
        summary: "GS1 Digital Link resolver: a good's link (its GTIN and goods id, as on its label's QR code) to the auditor page showing its verified timeline",
        query: &[],
        body: &[],
        responses: &[(307, "to /audit/?goods={serial}"), (400, "not a GTIN or not a goods id")],
        limited: false,
    },
    RouteDoc {
        method: Method::GET,
        path: "/audit",
        summary: "Redirects to /audit/",
        query: &[],
        body: &[],
        responses: &[(308, "to /audit/")],
        limited: false,
    },
];

/// The OpenAPI form of an axum path: `{*key}` becomes `{key}`.
pub fn openapi_path(path: &str) -> String {
    path.replace("{*", "{")
}

/// The path parameters of an axum path.
fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(|s| s.trim_start_matches('*'))
        .collect()
}

fn operation(route: &RouteDoc) -> Value {
    let scope = scope_of(&route.method, route.path);
    let mut responses = Map::new();
    let mut add = |code: u16, description: &str| {
        responses
            .entry(code.to_string())
            .or_insert_with(|| json!({ "description": description }));
    };
    for (code, description) in route.responses {
        add(*code, description);
    }
    if let Some(scope) = scope {
        add(
            401,
            &format!(
                "no token, or an unknown one, where anonymous requests lack the `{}` scope",
                scope.name()
            ),
        );
        add(
            403,
            &format!("the token lacks the `{}` scope", scope.name()),
        );
    }
    if route.limited {
        add(408, "not answered within the node's request time limit");
        add(
            503,
            "too many requests in flight, or the node is busy or stopping (Retry-After)",
        );
    } else if route.path == "/v1/events" {
        add(503, "too many event-stream subscribers (Retry-After)");
    }
    let mut parameters: Vec<Value> = path_params(route.path)
        .into_iter()
        .map(|name| {
            json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
        })
        .collect();
    parameters.extend(route.query.iter().map(|(name, description)| {
        json!({ "name": name, "in": "query", "required": false, "description": description,
                "schema": { "type": "string" } })
    }));
    let mut op = json!({
        "summary": route.summary,
        "operationId": format!("{} {}", route.method, route.path),
        "responses": responses,
    });
    if !parameters.is_empty() {
        op["parameters"] = Value::Array(parameters);
    }
    if !route.body.is_empty() {
        let content: Map<String, Value> = route
            .body
            .iter()
            .map(|t| (t.to_string(), json!({})))
            .collect();
        op["requestBody"] = json!({ "required": true, "content": content });
    }
    if let Some(scope) = scope {
        op["description"] = json!(format!(
            "Needs the `{}` scope: granted to anonymous requests by the node's [api] config, or to a bearer token.",
            scope.name()
        ));
        op["security"] = json!([{}, { "bearer": [] }]);
    }
    op
}

/// The OpenAPI 3.1 document of [`ROUTES`].
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let item = paths
            .entry(openapi_path(route.path))
            .or_insert_with(|| json!({}));
        item[route.method.as_str().to_lowercase()] = operation(route);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "CBEC Ledger node API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The HTTP API of a CBEC Ledger validator. Errors are JSON: {\"error\": \"...\"}. Proofs and blocks come as JSON, or in the canonical binary form with Accept: application/octet-stream.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer",
                            "description": "a token from `cbec api token`, granted scopes in node.toml" }
            }
        },
    })
}
