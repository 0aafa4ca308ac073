//! Builds the verifier (`cbec-audit`) for `wasm32-unknown-unknown` with a cargo of its
//! own (in its own target directory under OUT_DIR, so it never waits on the outer
//! build's lock) and assembles the page: `page/index.html` with `style.css`, `app.js`
//! and the WebAssembly (base64) inlined, and its code hash filled in.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("the workspace").to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    for watched in [
        "audit/src",
        "audit/Cargo.toml",
        "ledger/src",
        "genesis/src",
        "chaincode/src",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    for file in ["index.html", "style.css", "app.js"] {
        println!(
            "cargo:rerun-if-changed={}",
            manifest.join("page").join(file).display()
        );
    }
    let wasm = build_wasm(&root, &out.join("wasm-target"));
    let page = assemble(&manifest.join("page"), &wasm);
    let blank = "0".repeat(64);
    let hash: String = Sha256::digest(page.replace("{{CODE_HASH}}", &blank).as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let page = page.replace("{{CODE_HASH}}", &hash);
    std::fs::write(out.join("index.html"), page).expect("write the page");
    std::fs::write(out.join("code-hash.txt"), &hash).expect("write the hash");
}

fn build_wasm(root: &Path, target_dir: &Path) -> Vec<u8> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args(["build", "--release", "--lib", "-p", "cbec-audit"])
        .args(["--target", "wasm32-unknown-unknown", "--target-dir"])
        .arg(target_dir)
        // Small and fast, without the debug lines the workspace's release profile keeps.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true");
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
    let status = command
        .status()
        .expect("run cargo for the WebAssembly verifier");
    if !status.success() {
        panic!(
            "building the auditor page's verifier for wasm32-unknown-unknown failed (see above); \
             if the target is missing: rustup target add wasm32-unknown-unknown"
        );
    }
    let path = target_dir.join("wasm32-unknown-unknown/release/cbec_audit.wasm");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("page/{file}: {e}"))
}

fn assemble(dir: &Path, wasm: &[u8]) -> String {
    let html = read(dir, "index.html");
    let style = read(dir, "style.css");
    let script = read(dir, "app.js");
    let script = format!("const VERIFIER_WASM = \"{}\";\n{script}", base64(wasm));
    for placeholder in ["/*{{STYLE}}*/", "/*{{SCRIPT}}*/", "{{CODE_HASH}}"] {
        assert!(
            html.contains(placeholder),
            "page/index.html lacks {placeholder}"
        );
    }
    html.replace("/*{{STYLE}}*/", &style)
        .replace("/*{{SCRIPT}}*/", &script)
}

/// RFC 4648 base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
