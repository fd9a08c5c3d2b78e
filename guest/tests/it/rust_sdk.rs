//! dstack's public Rust SDK (crates.io `dstack-sdk` 0.1.3) drives the agent over its unix
//! socket with every method it offers (`DstackClient`, `TappdClient`,
//! `ethereum::to_account`). The SDK lives in `guest/tests/rust-sdk/`, a crate outside the
//! workspace with its own `Cargo.lock` (it brings alloy 1 and reqwest 0.12 beside the
//! workspace's alloy 2 and reqwest 0.13); this test builds it with `--locked` (fast once
//! `scripts/setup.sh` built it) and runs it.

use std::path::PathBuf;

use cairn_guest::testing::{client_json, verified_sdk_quote};
use cairn_protocol::sig;

use crate::agent::{world_booted, ServedAgent};
use crate::world::*;

fn interop_binary() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/rust-sdk/Cargo.toml");
    // `<target>/tmp/..` is the workspace target dir; setup.sh builds into the same place.
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../dstack-rust-sdk");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = std::process::Command::new(cargo)
        .args(["build", "--locked", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .output()
        .expect("cargo must run");
    assert!(
        out.status.success(),
        "building {} failed (run scripts/setup.sh): {}",
        manifest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("debug/cairn-dstack-rust-sdk-interop")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_rust_dstack_sdk_works_with_every_method() {
    let bin = interop_binary();
    let (_w, s, state, _tee) = world_booted().await;
    let out = ServedAgent::during(&s, state, |socket| async move {
        tokio::process::Command::new(&bin)
            .arg(&socket)
            .output()
            .await
            .expect("run the Rust SDK client")
    })
    .await;
    let v = client_json("the Rust SDK client", &out);
    for (method, result) in v.as_object().unwrap() {
        assert!(
            result.get("error").is_none(),
            "{method} failed through the Rust SDK: {result}"
        );
    }
    // emit_event: the SDK parses the reply as `()`, so the agent answered JSON null
    assert_eq!(v["emit_event"], "ok");
    // get_key: the chain verifies to the KMS root; to_account is the same key's address
    let key = &v["get_key"];
    let sk = checked_get_key(
        key,
        &s.app_id().0,
        "eth",
        root_keys().k256().verifying_key(),
    );
    assert_eq!(
        v["to_account"].as_str().unwrap().to_lowercase(),
        format!("0x{}", hex::encode(sig::eth_address(sk.verifying_key())))
    );
    // get_quote: verifies, and the SDK's replay equals the quoted RTMR3
    let q = &v["get_quote"];
    let mut rd = [0u8; 64];
    rd[..8].copy_from_slice(b"rust-sdk");
    verified_sdk_quote(q, &rd, &verifier());
    assert_eq!(v["info"]["app_id"], hex::encode(s.app_id().0));
    // sign/verify round trip through the SDK
    assert_eq!(v["verify"]["valid"], true);
    assert_eq!(v["verify"]["tampered"], false);
    assert_eq!(
        v["get_tls_key"]["certificate_chain"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // legacy client: the derived key is stable for a path and its raw scalar is dstack's
    let raw = v["tappd_derive_key"]["raw_key"].as_str().unwrap();
    let scalar = sig::derive_path_key(&s.app_keys().k256_secret(), b"legacy/path")
        .map(|k| hex::encode(k.to_bytes()))
        .unwrap();
    assert_eq!(raw, scalar);
    assert_eq!(v["tappd_get_quote"]["hash_algorithm"], "raw");
    verify_hex_quote(
        v["tappd_get_quote"]["quote"].as_str().unwrap(),
        v["tappd_get_quote"]["event_log"].as_str().unwrap(),
        &[7; 64],
    );
    assert_eq!(v["tappd_info"]["app_id"], hex::encode(s.app_id().0));
}
