//! What the `cbec` end-to-end tests share: running the binary, and a demo devnet that
//! stops when dropped.
#![allow(dead_code)] // each test file uses its part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn cbec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cbec"))
        .args(args)
        // The proof commands take the node from here when `--node` is absent.
        .env_remove("CBEC_NODE")
        .output()
        .expect("run cbec")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// Stops the devnet whatever happens to the test.
pub struct Devnet(pub PathBuf);

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = cbec(&["devnet", "down", "--dir", self.0.to_str().unwrap_or("")]);
    }
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Starts the demo devnet in `dir` (with `extra` arguments to `devnet up`); the devnet
/// (stopped when dropped), the demo parcel's goods id and the node it used.
pub fn demo(dir: &Path, extra: &[&str]) -> (Devnet, String, String) {
    let devnet = Devnet(dir.to_path_buf());
    let mut args = vec!["devnet", "up", "--dir", path(dir), "--demo", "--json"];
    args.extend_from_slice(extra);
    let up = ok(&cbec(&args));
    let summary = serde_json::Deserializer::from_str(&up)
        .into_iter::<serde_json::Value>()
        .filter_map(Result::ok)
        .find(|v| v.get("goods_id").is_some())
        .expect("the demo's summary");
    let goods_id = summary["goods_id"].as_str().expect("goods id").to_string();
    let node = summary["node"].as_str().expect("node url").to_string();
    (devnet, goods_id, node)
}
