//! Builds the bonded-display rule (`display/`, a `no_std` crate of its own) for
//! `wasm32-unknown-unknown`, once as version 1 and once with `--features v2`, with a
//! cargo of its own (its own target directory under OUT_DIR, so it never waits on the
//! outer build's lock).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let source = manifest.join("display");
    for watched in ["src", "Cargo.toml", ".cargo/config.toml"] {
        println!("cargo:rerun-if-changed={}", source.join(watched).display());
    }
    for (name, features) in [("display-v1", ""), ("display-v2", "v2")] {
        let wasm = build(&source, &out.join(format!("{name}-target")), features);
        std::fs::write(out.join(format!("{name}.wasm")), wasm).expect("write the module");
    }
}

fn build(source: &Path, target_dir: &Path, features: &str) -> Vec<u8> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(source)
        .args(["build", "--release", "--target", "wasm32-unknown-unknown"])
        .args(["--features", features, "--target-dir"])
        .arg(target_dir);
    // What the outer build set for its own target must not reach this one.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(var);
    }
    let status = command.status().expect("run cargo for the display rule");
    if !status.success() {
        panic!(
            "building wasm-rules/display for wasm32-unknown-unknown failed (see above); \
             if the target is missing: rustup target add wasm32-unknown-unknown"
        );
    }
    let path = target_dir.join("wasm32-unknown-unknown/release/cbec_display_rule.wasm");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
