//! A 3-node KMS cluster: the first node holds the master, the others onboard from it
//! over mutual RA-TLS; all registered on chain, anchoring their own logs. A guest that
//! lists all three boots with the first one down, and gets the same keys from any node.

use cairn_e2e::*;
use cairn_guest::Error;
use cairn_kms_client::Error as KmsError;
use cairn_onchain::alloy::primitives::Address;
use cairn_tlog::{ReleaseKind, ReleaseRecord};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_boots_on_a_three_node_cluster_with_its_first_node_down() {
    let net = Devnet::new().await;
    let cluster = net.start_cluster(3).await;
    let urls = cluster.urls();

    // All three are registered nodes, each with its own address and an onboarding entry
    // naming it in node 0's log.
    let at = net.client.policy_block().await.unwrap();
    let registered = net.client.kms_nodes(at).await.unwrap();
    for kms in &cluster.nodes {
        assert!(
            registered.contains(&Address::from(kms.node.address())),
            "node {} not registered",
            kms.url()
        );
    }
    let onboarded: Vec<ReleaseRecord> = (0..cluster.nodes[0].node.log().size())
        .map(|i| ReleaseRecord::decode(&cluster.nodes[0].node.log().entry(i).unwrap()).unwrap())
        .collect();
    assert_eq!(onboarded.len(), 2, "node 0 logged two onboardings");
    for (rec, kms) in onboarded.iter().zip(&cluster.nodes[1..]) {
        assert_eq!(rec.kind, ReleaseKind::KmsOnboard);
        assert_eq!(
            rec.device_id,
            kms.node.own_evidence().boot.deviceId,
            "the onboarding entry names the new node's device"
        );
    }

    let app = net.deploy_app(net.owner, None).await;
    let cvm = Cvm::new(&urls[0], app.app_id(), 0x21, "v1");
    cvm.set_kms_urls(&urls);
    app.add_compose_hash(cvm.compose_hash()).await.unwrap();
    net.mine(CONFIRMATIONS).await;

    // Node 0 (the one the others onboarded from) goes down: the guest fails over.
    let mut nodes = cluster.nodes.into_iter();
    let first = nodes.next().unwrap();
    let rest: Vec<Kms> = nodes.collect();
    let first_down = first.stop().await;
    let booted = cvm.boot().await.unwrap();
    assert_eq!(
        booted.state.secrets.kms_url, urls[1],
        "the next node in the list released"
    );
    assert_eq!(
        wait_for_file(&cvm.app_out()).await.as_deref(),
        Some(&b"started:"[..])
    );
    let receipt = &booted.state.secrets.receipt;
    let rec = ReleaseRecord::decode(&rest[0].node.log().entry(receipt.log_index).unwrap()).unwrap();
    assert_eq!(rec.kind, ReleaseKind::AppKey);
    assert_eq!(rec.kms_node.into_array(), rest[0].node.address());

    // Every node derives the same keys: a reboot against node 2 alone gets the same app
    // key and disk key.
    cvm.set_kms_urls(&urls[2..]);
    let again = cvm.boot().await.unwrap();
    assert_eq!(again.state.secrets.kms_url, urls[2]);
    assert_eq!(*again.state.secrets.app_key, *booted.state.secrets.app_key);
    assert_eq!(
        *again.state.secrets.disk_key,
        *booted.state.secrets.disk_key
    );

    // Each node anchors its own log under its own address.
    for kms in &rest {
        cairn_kms::anchor_once(&kms.node, 0).await.unwrap();
        net.mine(CONFIRMATIONS).await;
        let at = net.client.policy_block().await.unwrap();
        let anchor = net
            .client
            .latest_anchor(Address::from(kms.node.address()), at)
            .await
            .unwrap()
            .expect("anchored");
        assert_eq!(anchor.tree_size, kms.node.log().size());
    }

    // With every node down, the boot fails naming each URL.
    cvm.set_kms_urls(&urls);
    let restarted = net.restart_kms(first_down).await;
    assert_eq!(restarted.url(), urls[0], "restarted on the same address");
    let down: Vec<StoppedKms> = {
        let mut v = Vec::new();
        for kms in rest {
            v.push(kms.stop().await);
        }
        v.push(restarted.stop().await);
        v
    };
    match cvm.boot().await.unwrap_err() {
        Error::AllKmsFailed(failures) => {
            let tried: Vec<&str> = failures.iter().map(|(u, _)| u.as_str()).collect();
            assert_eq!(tried, urls.iter().map(String::as_str).collect::<Vec<_>>());
            for (url, e) in &failures {
                assert!(
                    matches!(e, KmsError::Connect { .. } | KmsError::Timeout { .. }),
                    "{url}: {e:?}"
                );
            }
        }
        other => panic!("expected AllKmsFailed, got {other:?}"),
    }
    drop(down);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_cluster_onboards_through_the_binary_and_survives_a_kill_9() {
    let net = Devnet::new().await;
    let mut cluster = net
        .start_process_cluster(3, "[log]\nanchor_interval_secs = 1\n")
        .await;
    let urls = cluster.urls();
    let app = net.deploy_app(net.owner, None).await;
    let cvm = Cvm::new(&urls[0], app.app_id(), 0x22, "v1");
    cvm.set_kms_urls(&urls);
    app.add_compose_hash(cvm.compose_hash()).await.unwrap();
    net.mine(CONFIRMATIONS).await;
    let head = net.head_number().await;
    cluster.wait_policy_block(head - CONFIRMATIONS).await;

    cluster.nodes[0].kill9().await;
    let booted = cvm.boot().await.unwrap();
    assert_eq!(booted.state.secrets.kms_url, urls[1]);

    cluster.nodes[0].restart().await;
    cvm.set_kms_urls(&urls[..1]);
    let again = cvm.boot().await.unwrap();
    assert_eq!(again.state.secrets.kms_url, urls[0]);
    assert_eq!(*again.state.secrets.app_key, *booted.state.secrets.app_key);
}
