//! `cairn vm` against a real VMM (in-process, `cairn_e2e::vmm`), real guests, KMS and
//! anvil: every subcommand once with `--json` (parsed), refusals, and human output.

use std::path::Path;

use cairn_e2e::vmm::{app_answer, sleeper_compose, vmm_world, web_compose, VmmNode};
use cairn_e2e::{compose_hash, CONFIRMATIONS};

use crate::chain::{hermetic_cairn, run_to_end};
use cairn_protocol::api::ErrorBody;
use cairn_protocol::vmm::{CvmInfo, CvmList, CvmState, UpgradeState};

/// Run `cairn vm --vmm unix:<socket> <args…>`: (success, stdout, stderr).
async fn cairn(vmm: &VmmNode, args: &[&str]) -> (bool, String, String) {
    let (status, stdout, stderr) = run_to_end(
        hermetic_cairn()
            .arg("vm")
            .arg("--vmm")
            .arg(format!("unix:{}", vmm.socket.display()))
            .args(args),
    )
    .await;
    (status.success(), stdout, stderr)
}

async fn cairn_json<T: serde::de::DeserializeOwned>(vmm: &VmmNode, args: &[&str]) -> T {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = cairn(vmm, &all).await;
    assert!(ok, "cairn {args:?} failed: {stdout}\n{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("cairn {args:?}: {e}: {stdout}"))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_vm_subcommand_answers_in_json_and_refusals_carry_the_contract_reason() {
    let v1 = sleeper_compose("v1");
    let v2 = sleeper_compose("v2");
    let (net, kms, app, vmm) = vmm_world(&v1).await;
    let files = tempfile::tempdir().unwrap();
    let v1_file = write(files.path(), "v1.json", &v1);
    let v2_file = write(files.path(), "v2.json", &v2);
    let app_id = format!("{}", app.app_id());

    // deploy
    let info: CvmInfo = cairn_json(
        &vmm,
        &[
            "deploy",
            "--name",
            "web",
            "--compose",
            &v1_file,
            "--app-id",
            &app_id,
            "--port",
            "8080",
        ],
    )
    .await;
    assert_eq!(info.name, "web");
    assert_eq!(info.compose_hash, compose_hash(v1.as_bytes()).0);
    assert_eq!(info.ports[0].guest_port, 8080);
    vmm.wait_state(&info.id, CvmState::Running).await;

    // list, status, logs
    let list: CvmList = cairn_json(&vmm, &["list"]).await;
    assert_eq!(list.cvms.len(), 1);
    assert_eq!(list.cvms[0].state, CvmState::Running);
    let status: CvmInfo = cairn_json(&vmm, &["status", "web"]).await;
    assert_eq!(status.id, info.id);
    assert!(status.events.iter().any(|e| e.event == "app.started"));
    let logs: serde_json::Value = cairn_json(&vmm, &["logs", "web", "--tail", "20"]).await;
    assert!(
        logs["log"].as_str().unwrap().contains("sleeper up"),
        "{logs}"
    );

    // stop, start
    let stopped: CvmInfo = cairn_json(&vmm, &["stop", "web"]).await;
    assert_eq!(stopped.state, CvmState::Stopped);
    let started: CvmInfo = cairn_json(&vmm, &["start", &info.id]).await;
    assert!(started.state.is_active());
    vmm.wait_state(&info.id, CvmState::Running).await;

    // upgrade: refused until the owner allows v2; then --wait sees it applied
    let (ok, stdout, _) = cairn(&vmm, &["--json", "upgrade", "web", "--compose", &v2_file]).await;
    assert!(!ok);
    let err: ErrorBody = serde_json::from_str(&stdout).unwrap();
    assert_eq!(err.error.code, "denied.compose_hash");
    assert_eq!(err.error.message, "Compose hash not allowed");
    app.add_compose_hash(compose_hash(v2.as_bytes()))
        .await
        .unwrap();
    net.mine(CONFIRMATIONS).await;
    let upgraded: CvmInfo = cairn_json(
        &vmm,
        &[
            "upgrade",
            "web",
            "--compose",
            &v2_file,
            "--wait",
            "--timeout",
            "60",
        ],
    )
    .await;
    assert_eq!(upgraded.compose_hash, compose_hash(v2.as_bytes()).0);
    assert!(upgraded.upgrade.is_none() || upgraded.upgrade.unwrap().state == UpgradeState::Done);

    // rm
    let removed: serde_json::Value = cairn_json(&vmm, &["rm", "web"]).await;
    assert_eq!(removed["removed"], info.id.as_str());
    let list: CvmList = cairn_json(&vmm, &["list"]).await;
    assert!(list.cvms.is_empty());

    // A refused deploy: non-zero exit, the API's error on stdout, nothing created.
    let stranger = format!("0x{}", "5a".repeat(20));
    let (ok, stdout, _) = cairn(
        &vmm,
        &[
            "--json",
            "deploy",
            "--name",
            "x",
            "--compose",
            &v1_file,
            "--app-id",
            &stranger,
        ],
    )
    .await;
    assert!(!ok);
    let err: ErrorBody = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (err.error.code.as_str(), err.error.message.as_str()),
        ("denied.app_not_registered", "App not registered")
    );
    let list: CvmList = cairn_json(&vmm, &["list"]).await;
    assert!(list.cvms.is_empty());
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_output_shows_state_progress_and_why_an_upgrade_did_not_happen() {
    let v1 = sleeper_compose("v1");
    let (_net, kms, app, vmm) = vmm_world(&v1).await;
    let files = tempfile::tempdir().unwrap();
    let v1_file = write(files.path(), "v1.json", &v1);
    let never = write(files.path(), "never.json", &sleeper_compose("never"));
    let app_id = format!("{}", app.app_id());

    let (ok, out, err) = cairn(
        &vmm,
        &[
            "deploy",
            "--name",
            "sleeper",
            "--compose",
            &v1_file,
            "--app-id",
            &app_id,
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("deployed sleeper ("), "{out}");
    let id = vmm.client().list().await.unwrap().cvms[0].id.clone();
    vmm.wait_state(&id, CvmState::Running).await;
    let (ok, out, _) = cairn(&vmm, &["list"]).await;
    assert!(ok);
    assert!(
        out.lines()
            .any(|l| l.starts_with("sleeper") && l.contains("running")),
        "{out}"
    );
    let (ok, out, _) = cairn(&vmm, &["status", "sleeper"]).await;
    assert!(ok);
    assert!(
        out.contains("state     running") && out.contains("measured compose-hash"),
        "{out}"
    );

    // An upgrade nobody approves: progress lines, then a non-zero exit saying why.
    let (ok, out, err) = cairn(
        &vmm,
        &[
            "upgrade",
            "sleeper",
            "--compose",
            &never,
            "--wait",
            "--timeout",
            "1",
        ],
    )
    .await;
    assert!(!ok);
    assert!(
        out.contains("waiting for approval: at block") && out.contains("Compose hash not allowed"),
        "{out}"
    );
    assert!(err.contains("timed out"), "{err}");
    let (ok, out, _) = cairn(&vmm, &["logs", "sleeper"]).await;
    assert!(ok);
    assert!(out.contains("sleeper up"), "{out}");
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_with_env_encrypts_it_here_for_the_key_the_chain_vouches_for() {
    let compose = web_compose("v1");
    let (net, kms, app, vmm) = vmm_world(&compose).await;
    let files = tempfile::tempdir().unwrap();
    let compose_file = write(files.path(), "web.json", &compose);
    let env_file = write(
        files.path(),
        "app.env",
        "# the app's secret\nAPI_KEY=from-the-cli\n",
    );
    let app_id = format!("{}", app.app_id());
    let rpc = net.anvil.endpoint_url().to_string();
    let chain_id = net.anvil.chain_id().to_string();
    let kms_auth = format!("{}", net.kms_auth());
    let kms_url = kms.url();
    let chain = [
        "--rpc-url",
        rpc.as_str(),
        "--chain-id",
        chain_id.as_str(),
        "--kms-auth",
        kms_auth.as_str(),
        "--kms-trust",
        "simulator",
        "--env-kms-url",
        kms_url.as_str(),
    ];

    // Without the chain the CLI refuses to encrypt (and sends nothing).
    let (ok, _, err) = cairn(
        &vmm,
        &[
            "deploy",
            "--name",
            "web",
            "--compose",
            &compose_file,
            "--app-id",
            &app_id,
            "--env",
            "API_KEY=x",
        ],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("--env needs the chain"), "{err}");
    assert!(vmm.client().list().await.unwrap().cvms.is_empty());

    let mut args = vec![
        "deploy",
        "--name",
        "web",
        "--compose",
        &compose_file,
        "--app-id",
        &app_id,
        "--port",
        "8080",
        "--env-file",
        &env_file,
    ];
    args.extend_from_slice(&chain);
    let info: CvmInfo = cairn_json(&vmm, &args).await;
    assert!(info.has_encrypted_env);
    let running = vmm.wait_state(&info.id, CvmState::Running).await;
    let body = app_answer(running.ports[0].host_port).await;
    assert!(body.starts_with("API_KEY=from-the-cli;"), "{body}");
    // The VMM holds only ciphertext.
    let manifest = std::fs::read_to_string(
        vmm.state_dir()
            .join("cvms")
            .join(&info.id)
            .join("manifest.json"),
    )
    .unwrap();
    assert!(!manifest.contains("from-the-cli"));
    kms.stop().await;
}
