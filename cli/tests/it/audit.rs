//! `cairn audit` against a real KMS log and anvil: clean (exit 0, JSON parsed), a node
//! that anchored a root its log does not have (exit 1, the finding named), an unreachable
//! chain and a registered node no URL serves (exit 2).

use cairn_e2e::{Cvm, Devnet, CONFIRMATIONS};
use cairn_onchain::alloy::primitives::{Address, B256};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// Run `cairn audit <args…>` hermetically: (exit code, stdout, stderr).
async fn audit(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("audit")
        .args(args)
        .env_remove("CAIRN_RPC_URL")
        .env_remove("CAIRN_CHAIN_ID")
        .env_remove("CAIRN_KMS_AUTH")
        .env_remove("CAIRN_KMS_URL")
        .env_remove("CAIRN_KMS_TRUST")
        .env_remove("CAIRN_PCCS_URL")
        .env_remove("CAIRN_SIM_PKI_SEED")
        .output()
        .await
        .expect("run cairn");
    (
        out.status.code().expect("cairn exited by a signal"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn chain_args(net: &Devnet) -> Vec<String> {
    vec![
        "--rpc-url".into(),
        net.endpoint().to_string(),
        "--chain-id".into(),
        net.chain_id().to_string(),
        "--kms-auth".into(),
        net.kms_auth().to_string(),
        "--kms-trust".into(),
        "simulator".into(),
    ]
}

async fn audit_json(args: &[String]) -> (i32, Value) {
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.push("--json");
    let (code, stdout, stderr) = audit(&all).await;
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("cairn audit {args:?}: {e}: {stdout}\n{stderr}"));
    (code, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_is_clean_on_a_real_log_and_finds_a_forged_anchor() {
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let app = net.deploy_app(net.owner, None).await;
    let cvms: Vec<Cvm> = (0..2u8)
        .map(|i| Cvm::new(&kms.url(), app.app_id(), 0x60 + i, "v1"))
        .collect();
    for cvm in &cvms {
        app.add_compose_hash(cvm.compose_hash()).await.unwrap();
    }
    net.mine(CONFIRMATIONS).await;
    for cvm in &cvms {
        cvm.boot().await.unwrap();
    }
    let anchored = cairn_kms::anchor_once(&kms.node, 0).await.unwrap();
    assert_eq!(anchored, 2);
    net.mine(CONFIRMATIONS).await;
    let node = Address::from(kms.node.address()).to_string();
    let app_id = app.app_id().to_string();

    // Clean, for one app and for all.
    let mut args = chain_args(&net);
    args.extend([
        "--kms-url".into(),
        kms.url(),
        "--app".into(),
        app_id.clone(),
    ]);
    let (code, report) = audit_json(&args).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["clean"], true);
    assert_eq!(report["nodes"][0]["node"], node.as_str());
    assert_eq!(report["nodes"][0]["registered"], true);
    let a = &report["nodes"][0]["apps"][0];
    assert_eq!(a["app_id"], app_id.as_str());
    assert_eq!(a["anchors"], 1);
    assert_eq!(a["verified_size"], 2);
    let releases = a["releases"].as_array().unwrap();
    assert_eq!(releases.len(), 2);
    assert!(releases
        .iter()
        .all(|r| r["logged"] == true && r["allowed"] == true));
    assert_eq!(a["findings"].as_array().unwrap().len(), 0);

    let mut all = chain_args(&net);
    all.extend(["--kms-url".into(), kms.url(), "--all".into()]);
    let (code, report) = audit_json(&all).await;
    assert_eq!(code, 0, "{report:#}");
    let apps = report["nodes"][0]["apps"].as_array().unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0]["app_id"], app_id.as_str());

    // --from-block past every release: nothing reported, still clean.
    let mut later = args.clone();
    later.extend(["--from-block".into(), "1000000".into()]);
    let (code, report) = audit_json(&later).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        report["nodes"][0]["apps"][0]["releases"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // Human output names the verdict.
    let human: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, _) = audit(&human).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("clean:"), "{stdout}");

    // A monitor: --follow prints the releases, then a finding the moment it appears.
    let mut follow_args: Vec<&str> = vec!["audit"];
    follow_args.extend(args.iter().map(String::as_str));
    follow_args.extend(["--follow", "--interval", "1", "--json"]);
    let mut monitor = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(&follow_args)
        .env_remove("CAIRN_KMS_URL")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(monitor.stdout.take().unwrap()).lines();
    let mut next_event = async || -> Value {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("a --follow event within 60 s")
            .unwrap()
            .expect("--follow ended");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    };
    for _ in 0..2 {
        let e = next_event().await;
        assert_eq!(e["event"], "release", "{e}");
        assert_eq!(e["release"]["allowed"], true, "{e}");
    }

    // The node anchors a root its log does not have (a fork / rollback): exit 1, named.
    kms.node
        .chain()
        .anchor_checkpoint(5, B256::repeat_byte(0xbb))
        .await
        .unwrap();
    net.mine(CONFIRMATIONS).await;
    let (code, report) = audit_json(&args).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["clean"], false);
    let findings = report["nodes"][0]["apps"][0]["findings"]
        .as_array()
        .unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["kind"] == "checkpoint_not_consistent"),
        "{findings:#?}"
    );
    // Both findings of the fork, each printed once (anchors 2 → 5 unprovable, the
    // checkpoint behind the last anchor).
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let e = next_event().await;
        assert_eq!(e["event"], "finding", "{e}");
        kinds.push(e["finding"]["kind"].as_str().unwrap().to_owned());
    }
    kinds.sort();
    assert_eq!(kinds, ["checkpoint_not_consistent", "forked_anchors"]);
    monitor.kill().await.unwrap();

    let (code, stdout, _) = audit(&human).await;
    assert_eq!(code, 1);
    assert!(
        stdout.contains("FINDING checkpoint_not_consistent"),
        "{stdout}"
    );

    // A registered node that no --kms-url serves: could not audit (exit 2).
    let mut unserved = chain_args(&net);
    unserved.extend([
        "--kms-url".into(),
        format!("https://127.0.0.1:{}", cairn_e2e::free_port()),
        "--app".into(),
        app_id,
    ]);
    let (code, report) = audit_json(&unserved).await;
    assert_eq!(code, 2, "{report:#}");
    let errors = report["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e
            .as_str()
            .unwrap()
            .contains(&format!("KMS node {node} is in KmsAuth's node list"))),
        "{errors:#?}"
    );
}

#[tokio::test]
async fn audit_of_an_unreachable_chain_exits_2() {
    let port = cairn_e2e::free_port();
    let (code, stdout, stderr) = audit(&[
        "--rpc-url",
        &format!("http://127.0.0.1:{port}"),
        "--chain-id",
        "31337",
        "--kms-auth",
        "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "--kms-url",
        "https://127.0.0.1:1",
        "--app",
        "0x0000000000000000000000000000000000000001",
        "--kms-trust",
        "simulator",
    ])
    .await;
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stderr.contains("could not audit"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}

#[tokio::test]
async fn audit_without_app_or_all_is_a_usage_error() {
    let (code, _, stderr) = audit(&["--rpc-url", "http://127.0.0.1:1", "--chain-id", "1"]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("--app"), "{stderr}");
}
