//! `/v1/openapi.json` on a running node: a valid OpenAPI 3.1 document (checked by
//! openapi-spec-validator from PyPI, as `.ci/run` installs it), naming every route the
//! node serves and no other, and every status code a probe of each route gets.

mod common;

use std::process::Command;

use common::{demo, text};
use serde_json::Value;

/// A request to `path` (its parameters filled with samples) and what it should meet.
fn sample(path: &str, goods_id: &str, key: &str) -> String {
    path.replace("{hash}", &"ab".repeat(32))
        .replace("{height}", "1")
        .replace("{key}", key)
        .replace("{goods_id}", goods_id)
}

#[test]
fn the_api_description_is_valid_and_matches_the_routes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_devnet, goods_id, node) = demo(&tmp.path().join("devnet"), &[]);
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let doc: Value = http
        .get(format!("{node}/v1/openapi.json"))
        .send()
        .and_then(|r| r.json())
        .expect("the description");
    assert_eq!(doc["openapi"], "3.1.0");

    let file = tmp.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).expect("write");
    let check = Command::new("python3")
        .args([
            "-c",
            "import sys, json; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1]))); print('valid')",
        ])
        .arg(&file)
        .output()
        .expect("python3");
    assert!(
        check.status.success(),
        "{}{}\n(needs `pip install openapi-spec-validator`)",
        text(&check.stdout),
        text(&check.stderr)
    );

    // Every route the node serves is described: the table the router is built from.
    let paths = doc["paths"].as_object().expect("paths");
    let routes: Vec<(String, String)> = cbec_node::openapi::ROUTES
        .iter()
        .map(|r| {
            (
                r.method.as_str().to_lowercase(),
                cbec_node::openapi::openapi_path(r.path),
            )
        })
        .collect();
    let described: usize = paths
        .values()
        .map(|p| p.as_object().map_or(0, |o| o.len()))
        .sum();
    assert_eq!(described, routes.len(), "one operation per route, no more");

    // Each described operation is served (not the fallback), and answers a probe with a
    // status code it lists.
    let key = "ff".repeat(32);
    for (method, path) in &routes {
        let url = format!("{node}{}", sample(path, &goods_id, &key));
        let request = match method.as_str() {
            "get" => http.get(&url),
            "post" => http
                .post(&url)
                .header("content-type", "application/json")
                .body("{}"),
            other => panic!("undescribed method {other}"),
        };
        let response = if path == "/v1/events" {
            // The stream answers 200 at once and never ends: read the status only.
            request.timeout(std::time::Duration::from_secs(5)).send()
        } else {
            request.send()
        }
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        if path != "/v1/events" {
            let body = response.text().unwrap_or_default();
            assert!(
                !body.contains("no such endpoint"),
                "{method} {path} is not served: {body}"
            );
        }
        let listed = paths[path][method]["responses"]
            .as_object()
            .expect("responses");
        assert!(
            listed.contains_key(&status.to_string()),
            "{method} {path} answered {status}, which its description does not list ({:?})",
            listed.keys().collect::<Vec<_>>()
        );
    }
    // And a path the node does not serve gets the fallback, and is not described.
    let none = http
        .get(format!("{node}/v1/nonesuch"))
        .send()
        .expect("send");
    assert_eq!(none.status().as_u16(), 404);
    assert!(!paths.contains_key("/v1/nonesuch"));
}
