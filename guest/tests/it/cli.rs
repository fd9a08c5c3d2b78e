//! The `cairn-guest boot` binary on the simulator against the real KMS: it boots, starts
//! the app, serves the agent, and exits when the app exits.

use cairn_attestation::ids::AppId;

use crate::world::*;

/// `cairn-guest boot` of share `s` on the simulator, its PKI anchored at `pki_now` (unix
/// seconds), trusting the simulator's KMS; the caller says how the agent is served.
fn guest_boot(s: &Share, pki_now: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn-guest"));
    cmd.arg("boot")
        .args(["--share", s.share_dir().to_str().unwrap()])
        .args(["--keys", s.keys_dir().to_str().unwrap()])
        .args(["--work", s.dir.path().join("work").to_str().unwrap()])
        .args(["--tee", "simulator", "--kms-trust", "simulator"])
        .args(["--sim-pki-now", pki_now]);
    cmd
}

/// `cairn-guest boot --no-agent` run to completion: whether it succeeded, and its stderr.
async fn guest_boot_without_agent(s: &Share, pki_now: &str) -> (bool, String) {
    let out = guest_boot(s, pki_now)
        .arg("--no-agent")
        .output()
        .await
        .expect("run cairn-guest");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_boots_on_the_simulator_and_runs_the_app() {
    let w = World::start().await;
    let s = w.share("");
    let pki_now = pki().config().now.to_string();
    let out = guest_boot(&s, &pki_now)
        .args([
            "--agent-socket",
            s.dir.path().join("agent.sock").to_str().unwrap(),
        ])
        .args(["--sim-pki-seed", &hex::encode([0x42u8; 32])])
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
    // Refused while reading the share: no KMS is reached (none listens at this URL).
    let s = share(&["https://127.0.0.1:9"], AppId([1; 20]), "");
    s.write(
        "app-compose.json",
        b"{\"manifest_version\":2,\"name\":\"a\",\"runner\":\"podman\"}",
    );
    let pki_now = pki().config().now.to_string();
    let (succeeded, stderr) = guest_boot_without_agent(&s, &pki_now).await;
    assert!(!succeeded);
    assert!(stderr.contains("unknown runner \"podman\""), "{stderr}");
    assert!(is_empty_or_missing(&s.keys_dir()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_and_kms_only_need_the_same_simulator_pki_seed_not_the_same_anchor_time() {
    // The simulator PKI's keys come from the seed alone; its certificates' validity
    // windows come from the anchor time. Trust anchors are matched by subject and key,
    // so a guest whose PKI was anchored 1000 s earlier still verifies the KMS (and the
    // KMS the guest).
    let w = World::start().await;
    let s = w.share("");
    let earlier = (pki().config().now - 1000).to_string();
    let (succeeded, stderr) = guest_boot_without_agent(&s, &earlier).await;
    assert!(succeeded, "{stderr}");
    assert!(s.out().exists());
}

/// The app's process group (here a shell and the `sleep` it started) must not outlive a
/// guest that is stopped with SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_app_and_everything_it_started() {
    let w = World::start().await;
    let mut s = w.share("");
    let pid_file = s.dir.path().join("grandchild.pid");
    let script = format!("sleep 300 & echo $! > {}; wait", pid_file.display());
    s.set_compose(format!(
        r#"{{"manifest_version":2,"name":"demo","runner":"process","process":{{"command":["/bin/sh","-c",{}]}},"kms_enabled":true}}"#,
        serde_json::to_string(&script).unwrap()
    ));
    w.allow(&s).await;
    let pki_now = pki().config().now.to_string();
    let mut guest = guest_boot(&s, &pki_now)
        .arg("--no-agent")
        .args(["--sim-pki-seed", &hex::encode([0x42u8; 32])])
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let grandchild: u32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the app never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(
        is_running(grandchild),
        "the app's sleep should run before the stop"
    );

    let guest_pid = guest.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &guest_pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), guest.wait())
        .await
        .expect("the guest exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    // The stop waited for the group leader; give the kernel a deadline to finish the rest.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while is_running(grandchild) {
        assert!(
            std::time::Instant::now() < deadline,
            "the app's child {grandchild} outlived the guest"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A process exists and is not a zombie.
fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}
