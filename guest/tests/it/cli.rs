//! The `cairn-guest boot` binary on the simulator against the stub KMS: it boots, starts
//! the app, serves the agent, and exits when the app exits.

use crate::world::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_boots_on_the_simulator_and_runs_the_app() {
    let kms = StubKms::start(Mode::Honest).await;
    let s = share(&[&kms.url], "");
    let pki_now = pki().config().now.to_string();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn-guest"))
        .arg("boot")
        .args(["--share", s.share_dir().to_str().unwrap()])
        .args(["--keys", s.keys_dir().to_str().unwrap()])
        .args(["--work", s.dir.path().join("work").to_str().unwrap()])
        .args([
            "--agent-socket",
            s.dir.path().join("agent.sock").to_str().unwrap(),
        ])
        .args(["--tee", "simulator", "--kms-trust", "simulator"])
        .args([
            "--sim-pki-seed",
            &hex::encode([0x42u8; 32]),
            "--sim-pki-now",
            &pki_now,
        ])
        .env("RUST_LOG", "info")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("boot complete"), "{stderr}");
    assert!(stderr.contains("app exited"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(s.out()).unwrap(),
        format!("|dev||{}", s.keys_dir().display())
    );
}

#[tokio::test]
async fn the_binary_refuses_a_bad_share_with_a_clear_error_and_nonzero_exit() {
    let kms = StubKms::start(Mode::Honest).await;
    let s = share(&[&kms.url], "");
    s.write(
        "app-compose.json",
        b"{\"manifest_version\":2,\"name\":\"a\",\"runner\":\"podman\"}",
    );
    let pki_now = pki().config().now.to_string();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn-guest"))
        .arg("boot")
        .args(["--share", s.share_dir().to_str().unwrap()])
        .args(["--keys", s.keys_dir().to_str().unwrap()])
        .args([
            "--no-agent",
            "--tee",
            "simulator",
            "--kms-trust",
            "simulator",
        ])
        .args(["--sim-pki-now", &pki_now])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unknown runner \"podman\""), "{stderr}");
    assert!(is_empty_or_missing(&s.keys_dir()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_and_kms_only_need_the_same_simulator_pki_seed_not_the_same_anchor_time() {
    // The simulator PKI's keys come from the seed alone; its certificates' validity
    // windows come from the anchor time. Trust anchors are matched by subject and key,
    // so a guest whose PKI was anchored 1000 s earlier still verifies the KMS (and the
    // KMS the guest).
    let kms = StubKms::start(Mode::Honest).await;
    let s = share(&[&kms.url], "");
    let earlier = (pki().config().now - 1000).to_string();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn-guest"))
        .arg("boot")
        .args(["--share", s.share_dir().to_str().unwrap()])
        .args(["--keys", s.keys_dir().to_str().unwrap()])
        .args(["--work", s.dir.path().join("work").to_str().unwrap()])
        .args([
            "--no-agent",
            "--tee",
            "simulator",
            "--kms-trust",
            "simulator",
        ])
        .args(["--sim-pki-now", &earlier])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(s.out().exists());
}
