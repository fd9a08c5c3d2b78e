//! Root-key rotation by vote on a 3-node cluster (docs/rotation.md): the DAO owns
//! KmsAuth; one node generates generation 2, the DAO votes `rotateKmsRootKeys` with a
//! transition window, the other nodes onboard generation 2; a guest booting before,
//! during and after the window gets the right generations; afterwards generation 1 is
//! refused and its master erased from every node.

use cairn_e2e::*;
use cairn_kms::{MasterSecret, RootKeys};
use cairn_onchain::alloy::primitives::Bytes;
use cairn_onchain::{Dao, GovernanceParams, KmsAuth, Proposal, ProposalState, Support};
use cairn_tlog::{ReleaseKind, ReleaseRecord};

/// propose → vote → queue → timelock → execute, then mine past the confirmations.
async fn pass(net: &Devnet, dao: &Dao, params: &GovernanceParams, p: &Proposal) {
    let id = dao.propose(p).await.unwrap();
    net.mine(u64::from(params.voting_delay_blocks) + 1).await;
    dao.cast_vote(id, Support::For).await.unwrap();
    net.mine(u64::from(params.voting_period_blocks) + 1).await;
    assert_eq!(dao.state(id).await.unwrap(), ProposalState::Succeeded);
    dao.queue(p).await.unwrap();
    net.increase_time(params.timelock_delay_secs + 1).await;
    dao.execute(p).await.unwrap();
    assert_eq!(dao.state(id).await.unwrap(), ProposalState::Executed);
    net.mine(CONFIRMATIONS).await;
}

const WINDOW_SECS: u64 = 7 * 24 * 3600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dao_rotation_gives_guests_both_generations_in_the_window_and_retires_the_old_one() {
    let net = Devnet::new().await;
    let cluster = net.start_cluster(3).await;
    let urls = cluster.urls();

    // The DAO's timelock owns KmsAuth (Ownable2Step: the DAO accepts by vote).
    let (params, dao) = net.deploy_dao().await;
    dao.delegate(net.owner).await.unwrap();
    net.mine(1).await;
    net.client.transfer_ownership(dao.timelock()).await.unwrap();
    let accept = Proposal::new("KmsAuth: accept ownership")
        .call(net.client.kms_auth(), &KmsAuth::acceptOwnershipCall {});
    pass(&net, &dao, &params, &accept).await;

    let app = net.deploy_app(net.owner, None).await;
    let cvm = Cvm::new(&urls[0], app.app_id(), 0x51, "v1");
    cvm.set_kms_urls(&urls);
    app.add_compose_hash(cvm.compose_hash()).await.unwrap();
    net.mine(CONFIRMATIONS).await;

    // Before: generation 1 alone.
    let before = cvm.boot().await.unwrap();
    assert_eq!(before.state.secrets.key_generation, 1);
    assert!(before.state.secrets.previous.is_none());
    drop(before.app);

    // Node 0 generates generation 2 (pending: still serving 1).
    let new_master = MasterSecret::random();
    let new_root = RootKeys::derive(&new_master).unwrap();
    cairn_kms::testing::open_live_store(cluster.nodes[0].data_dir())
        .add_generation(new_master, 2)
        .unwrap();

    // The DAO votes the rotation with a one-week window.
    let until = net.head_timestamp().await + params.timelock_delay_secs + 600 + WINDOW_SECS;
    let rotate = Proposal::rotate_kms_root_keys(
        net.client.kms_auth(),
        2,
        Bytes::from(new_root.k256_public().to_vec()),
        Bytes::from(new_root.ca().spki_der().to_vec()),
        until,
        "rotate the KMS root keys to generation 2",
    );
    pass(&net, &dao, &params, &rotate).await;
    let mut nodes = cluster.nodes.into_iter();
    let first = nodes.next().unwrap();
    first.node.sync_generations().await.unwrap();
    assert_eq!(first.node.key_generation(), 2);

    // The other two onboard generation 2 from node 0 (stop, onboard, start).
    let mut rest = Vec::new();
    for kms in nodes {
        let stopped = kms.stop().await;
        let opts = net.kms_options(stopped.dir.path(), stopped.host_seed);
        let report = cairn_kms::onboard_generation(&opts, first.addr, 2)
            .await
            .unwrap();
        assert_eq!(report.key_generation, 2);
        let kms = net.restart_kms(stopped).await;
        assert_eq!(kms.node.key_generation(), 2);
        assert_eq!(
            cairn_kms::testing::held_generations(kms.data_dir()),
            vec![1, 2]
        );
        rest.push(kms);
    }

    // During: generation 2 keys, and generation 1's app key for re-encryption, from any
    // node; each generation logged as its own entry.
    for (i, url) in urls.iter().enumerate() {
        cvm.set_kms_urls(std::slice::from_ref(url));
        let during = cvm.boot().await.unwrap();
        let s = &during.state.secrets;
        assert_eq!(s.key_generation, 2, "node {i}");
        assert_ne!(*s.app_key, *before.state.secrets.app_key);
        let previous = s
            .previous
            .as_ref()
            .expect("previous generation in the window");
        assert_eq!(previous.key_generation, 1);
        assert_eq!(previous.valid_until, until);
        assert_eq!(*previous.app_key, *before.state.secrets.app_key);
        assert_eq!(previous.kms_signature, before.state.secrets.kms_signature);
        let node = if i == 0 { &first } else { &rest[i - 1] };
        let log = node.node.log();
        let generations: Vec<(ReleaseKind, u32)> = [log.size() - 2, log.size() - 1]
            .iter()
            .map(|&k| {
                let r = ReleaseRecord::decode(&log.entry(k).unwrap()).unwrap();
                (r.kind, r.key_generation)
            })
            .collect();
        assert_eq!(
            generations,
            vec![(ReleaseKind::AppKey, 2), (ReleaseKind::AppKey, 1)]
        );
    }

    // After the window: generation 1 is gone — not served, erased from every store.
    net.increase_time(WINDOW_SECS + 600).await;
    net.mine(CONFIRMATIONS).await;
    cvm.set_kms_urls(&urls);
    let after = cvm.boot().await.unwrap();
    assert_eq!(after.state.secrets.key_generation, 2);
    assert!(after.state.secrets.previous.is_none());
    for kms in std::iter::once(&first).chain(&rest) {
        kms.node.sync_generations().await.unwrap();
        assert_eq!(
            cairn_kms::testing::held_generations(kms.data_dir()),
            vec![2]
        );
        assert_eq!(kms.node.previous_generation(), None);
    }
}

/// `cairn-kms --config <config> <args…>` to completion; its stdout parsed as JSON.
fn kms_command(config: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(kms_binary())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run cairn-kms");
    let stdout = stdout_of_success(&format!("cairn-kms {args:?}"), out);
    serde_json::from_slice(&stdout).expect("cairn-kms prints JSON")
}

fn hex_field(v: &serde_json::Value, field: &str) -> Vec<u8> {
    hex::decode(v[field].as_str().unwrap().trim_start_matches("0x")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_rotates_a_running_process_cluster_and_onboards_the_new_generation() {
    let net = Devnet::new().await;
    let mut cluster = net
        .start_process_cluster(2, "[log]\nanchor_interval_secs = 1\n")
        .await;
    let urls = cluster.urls();

    // `cairn-kms rotate` beside the running node 0: a pending generation 2.
    let pending = kms_command(&cluster.nodes[0].config_path(), &["rotate"]);
    assert_eq!(pending["key_generation"], 2);
    assert_eq!(pending["held_generations"], serde_json::json!([1, 2]));
    let until = net.head_timestamp().await + WINDOW_SECS;
    net.rotate_root_keys(
        2,
        &hex_field(&pending, "root_k256_public_key"),
        &hex_field(&pending, "root_ca_spki"),
        until,
    )
    .await;
    net.mine(CONFIRMATIONS).await;

    // Node 0 switches by itself (its background sync): /v1/meta says generation 2.
    let meta_generation = |body: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(body).unwrap()["key_generation"].as_u64()
    };
    poll_until("node 0 serving generation 2", || async {
        match cluster.nodes[0].public_get("/v1/meta").await {
            Some((200, body)) if meta_generation(&body) == Some(2) => Some(()),
            _ => None,
        }
    })
    .await;

    // Node 1: stop, `onboard --generation 2` from node 0, start.
    cluster.nodes[1].terminate().await;
    let source = cluster.nodes[0].addr.to_string();
    let report = kms_command(
        &cluster.nodes[1].config_path(),
        &["onboard", "--generation", "2", &source],
    );
    assert_eq!(report["key_generation"], 2);
    cluster.nodes[1].restart().await;
    let (_, body) = cluster.nodes[1].public_get("/v1/meta").await.unwrap();
    assert_eq!(meta_generation(&body), Some(2));

    // A guest listing node 1 alone gets generation 2 and generation 1's app key.
    let app = net.deploy_app(net.owner, None).await;
    let cvm = Cvm::new(&urls[1], app.app_id(), 0x52, "v1");
    cvm.set_kms_urls(&urls[1..]);
    app.add_compose_hash(cvm.compose_hash()).await.unwrap();
    net.mine(CONFIRMATIONS).await;
    let head = net.head_number().await;
    cluster.wait_policy_block(head - CONFIRMATIONS).await;
    let booted = cvm.boot().await.unwrap();
    assert_eq!(booted.state.secrets.key_generation, 2);
    assert_eq!(
        booted
            .state
            .secrets
            .previous
            .as_ref()
            .map(|p| p.key_generation),
        Some(1)
    );
}
