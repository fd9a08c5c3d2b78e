//! dstack's public JavaScript SDK (`@phala/dstack-sdk` on npm, pinned in
//! `tests/it/node/package.json`, installed by `scripts/setup.sh`) drives the guest agent
//! over its unix socket, as an app in the CVM would.
//!
//! Its unix-socket client writes the request line, each header and the body in separate
//! writes and half-closes after reading the response; the agent must answer every call
//! of a long sequential run and of a concurrent burst without a reset connection.
//!
//! Needs `node` (20+) and `tests/it/node/node_modules` (`scripts/setup.sh` runs `npm ci`
//! there); fails loudly when they are missing.

use std::path::PathBuf;

use cairn_guest::testing::client_json;

use crate::agent::{world_booted, ServedAgent};

/// The SDK version `tests/it/node/package.json` pins.
const JS_SDK_VERSION: &str = "0.5.8";

fn node_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/node");
    let sdk = dir.join("node_modules/@phala/dstack-sdk/package.json");
    assert!(
        sdk.exists(),
        "{} is missing: run scripts/setup.sh (it runs `npm ci` in {})",
        sdk.display(),
        dir.display()
    );
    let installed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sdk).unwrap()).unwrap();
    assert_eq!(installed["version"], JS_SDK_VERSION, "run scripts/setup.sh");
    dir
}

async fn node(script: &str, args: &[&str]) -> serde_json::Value {
    let dir = node_dir();
    let out = tokio::process::Command::new("node")
        .current_dir(&dir)
        .arg(dir.join(script))
        .args(args)
        .output()
        .await
        .expect("node (20+) must be on PATH");
    client_json(&format!("node {script}"), &out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_js_sdk_makes_hundreds_of_calls_without_a_reset_connection() {
    let (_w, s, state, _tee) = world_booted().await;
    let v = ServedAgent::during(&s, state, |socket| async move {
        node("stress.js", &[socket.to_str().unwrap(), "600", "300"]).await
    })
    .await;
    for phase in ["sequential", "concurrent"] {
        assert!(v[phase]["calls"].as_u64().unwrap() >= 300, "{v}");
        assert_eq!(v[phase]["failures"], 0, "{phase} calls failed: {v}");
    }
}
