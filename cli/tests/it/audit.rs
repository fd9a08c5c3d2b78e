//! `cairn audit` against a real KMS log and anvil: clean (exit 0, JSON parsed, for one app,
//! for all, from a later block), a node that anchored a root its log does not have (exit 1,
//! the findings named, `--follow` printing each once), an unreachable chain and a
//! registered node no URL serves (exit 2).

use cairn_e2e::{Devnet, CONFIRMATIONS};
use cairn_onchain::alloy::primitives::{Address, B256};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::chain::{field_of_each, hermetic_cairn, run_to_end};

/// Run `cairn audit <args…>` hermetically: (exit code, stdout, stderr).
async fn audit(args: &[&str]) -> (i32, String, String) {
    let (status, stdout, stderr) = run_to_end(hermetic_cairn().arg("audit").args(args)).await;
    (
        status.code().expect("cairn exited by a signal"),
        stdout,
        stderr,
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
    let (app, cvms) = net.allowed_cvms(&kms, 0x60..0x60 + 2, "v1").await;
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
    assert_eq!(report["outcome"], "clean");
    assert_eq!(report["app_id"], app_id.as_str());
    assert_eq!(report["errors"].as_array().unwrap().len(), 0);
    assert_eq!(report["nodes"].as_array().unwrap().len(), 1, "{report:#}");
    let n = &report["nodes"][0];
    assert_eq!(n["node"], node.as_str());
    assert_eq!(n["url"], kms.url().as_str());
    assert_eq!(n["registered"], true);
    assert_eq!(n["anchors"], 1);
    assert_eq!(n["start"], 0);
    assert_eq!(n["entries"], 2);
    assert_eq!(n["verified_size"], 2);
    let releases = n["releases"].as_array().unwrap();
    assert_eq!(releases.len(), 2);
    assert!(releases.iter().all(|r| r["app_id"] == app_id.as_str()
        && r["logged"] == true
        && r["allowed"] == true
        && r["exact"] == true));
    assert_eq!(n["findings"].as_array().unwrap().len(), 0);
    assert_eq!(report["stats"]["releases"], 2);
    let head_block = report["head_block"].as_u64().unwrap();

    let mut all = chain_args(&net);
    all.extend(["--kms-url".into(), kms.url(), "--all".into()]);
    let (code, report) = audit_json(&all).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["app_id"], Value::Null);
    let releases = report["nodes"][0]["releases"].as_array().unwrap();
    assert_eq!(releases.len(), 2, "{report:#}");
    assert!(releases.iter().all(|r| r["app_id"] == app_id.as_str()));

    // --from-block after the anchor: the log is read from the anchored size, so no
    // release is read again, and it is still clean.
    let mut later = args.clone();
    later.extend(["--from-block".into(), (head_block + 1).to_string()]);
    let (code, report) = audit_json(&later).await;
    assert_eq!(code, 0, "{report:#}");
    let n = &report["nodes"][0];
    assert_eq!(n["start"], 2, "{report:#}");
    assert_eq!(n["entries"], 0, "{report:#}");
    assert_eq!(n["releases"].as_array().unwrap().len(), 0);

    // Human output names the verdict.
    let human: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, _) = audit(&human).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("clean:"), "{stdout}");

    // A monitor: --follow prints the releases, then a finding the moment it appears.
    let mut follow_args: Vec<&str> = vec!["audit"];
    follow_args.extend(args.iter().map(String::as_str));
    follow_args.extend(["--follow", "--interval", "1", "--json"]);
    let mut monitor = hermetic_cairn()
        .args(&follow_args)
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
        assert_eq!(e["node"], node.as_str(), "{e}");
        assert_eq!(e["release"]["app_id"], app_id.as_str(), "{e}");
        assert_eq!(e["release"]["logged"], true, "{e}");
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
    assert_eq!(report["outcome"], "findings");
    let findings = report["nodes"][0]["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["code"] == "checkpoint_not_consistent" && f["violation"] == true),
        "{findings:#?}"
    );
    assert!(
        findings
            .iter()
            .any(|f| f["code"] == "entries_unavailable" && f["violation"] == false),
        "{findings:#?}"
    );
    // The fork's findings, each printed once: the served checkpoint (2) is behind the
    // last anchor (5), a violation; entries up to the anchored size 5 are not served, an
    // incomplete read (not a violation).
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let e = next_event().await;
        assert_eq!(e["event"], "finding", "{e}");
        assert_eq!(e["node"], node.as_str(), "{e}");
        kinds.push(e["finding"]["code"].as_str().unwrap().to_owned());
    }
    kinds.sort();
    assert_eq!(kinds, ["checkpoint_not_consistent", "entries_unavailable"]);
    // Not printed again by the next polls (every second).
    if let Ok(line) = tokio::time::timeout(Duration::from_secs(3), lines.next_line()).await {
        panic!("--follow printed more: {line:?}");
    }
    monitor.kill().await.unwrap();

    let (code, stdout, _) = audit(&human).await;
    assert_eq!(code, 1);
    assert!(
        stdout.contains("FINDING checkpoint_not_consistent"),
        "{stdout}"
    );

    // A registered node that no --kms-url serves (the one given is unreachable): could
    // not audit (exit 2), the node named with `no_source`, the URL in the errors. The
    // anchored fork is not read without the node's log, so it is not a finding here.
    let unreachable = format!("https://127.0.0.1:{}", cairn_e2e::free_port());
    let mut unserved = chain_args(&net);
    unserved.extend([
        "--kms-url".into(),
        unreachable.clone(),
        "--app".into(),
        app_id,
    ]);
    let (code, report) = audit_json(&unserved).await;
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(report["outcome"], "could_not_audit");
    let n = &report["nodes"][0];
    assert_eq!(n["node"], node.as_str(), "{report:#}");
    assert_eq!(n["url"], Value::Null);
    let codes = field_of_each(&n["findings"], "code");
    assert!(codes.contains(&"no_source"), "{report:#}");
    let errors = report["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().starts_with(&format!("{unreachable}: "))),
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
