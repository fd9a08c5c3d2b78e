//! `cairn kms status|describe` against a real KMS node (in-process) and anvil: the node's
//! log size, anchor and registration as the chain sees them; an unregistered node is a
//! finding (exit 1, still one JSON object); an unreachable KMS is exit 3.

use cairn_e2e::*;
use cairn_onchain::alloy::primitives::Address;

use crate::chain::Cli;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_status_and_describe_show_log_anchor_and_registration() {
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let (_app, cvm) = net.allowed_cvm(&kms, 0x31, "k").await;
    let _running = cvm.boot().await.unwrap();
    let anchored = cairn_kms::anchor_once(&kms.node, 0).await.unwrap();
    assert_eq!(anchored, 1);
    net.mine(CONFIRMATIONS).await;
    let node = Address::from(kms.client(None).await.meta().await.unwrap().node_address);

    let dir = tempfile::tempdir().unwrap();
    let url = kms.url();
    let env = [
        ("CAIRN_KMS_URL", url.as_str()),
        ("CAIRN_KMS_TRUST", "simulator"),
    ];
    let cli = Cli::new(&net, dir.path());
    let s = cli.run(&env, &["--json", "kms", "status"]).await.ok_json();
    assert_eq!(s["node_address"], node.to_string());
    assert_eq!(s["registered"], true);
    assert_eq!(s["key_generation"], 1);
    assert_eq!(s["chain_key_generation"], 1);
    assert_eq!(s["root_key_matches_chain"], true);
    assert_eq!(s["log_size"], 1);
    assert_eq!(s["anchored_size"], 1);
    assert!(s["anchor_age_secs"].is_u64());
    assert!(s.get("identity").is_none());

    let d = cli
        .run(&env, &["--json", "kms", "describe"])
        .await
        .ok_json();
    assert_eq!(d["identity"]["tcb_status"], "UpToDate");
    assert!(d["identity"]["root_ca_cert"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    let text = cli.run(&env, &["kms", "status"]).await;
    assert_eq!(text.code, 0, "{text:#?}");
    assert!(text.stdout.contains("registered        yes"), "{text:#?}");

    // Removed from KmsAuth: a finding, exit 1, the answer still one JSON object.
    net.client.remove_kms_node(node).await.unwrap();
    net.mine(CONFIRMATIONS).await;
    let r = cli.run(&env, &["--json", "kms", "status"]).await;
    assert_eq!(r.code, 1, "{r:#?}");
    assert_eq!(r.json()["registered"], false);
    assert!(r.stderr.contains("not in good standing"), "{r:#?}");

    // Verified against another (simulated) root, its evidence is refused (exit 1).
    let other_root = "11".repeat(32);
    let r = cli
        .run(
            &[("CAIRN_SIM_PKI_SEED", other_root.as_str()), env[0], env[1]],
            &["kms", "status"],
        )
        .await;
    r.fails(1, "connecting to the KMS");
    kms.stop().await;

    // Nothing listening: could not, exit 2 (was 3), and retrying may help.
    let r = cli.run(&env, &["kms", "status"]).await;
    r.fails(2, "connecting to the KMS");
    assert!(r.stderr.contains("retrying may help"), "{r:#?}");
}
