//! `cairn dao` end to end: a DAO-owned app is upgraded by vote from the command line
//! (propose → vote → queue → execute, waiting with `--mine` on anvil); the guest then
//! boots the new compose and the old one is refused. A voter without votes is refused
//! before anything is sent.

use cairn_e2e::*;
use cairn_onchain::alloy::primitives::B256;

use crate::chain::{field_of_each, key_hex, nonce, Cli};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dao_upgrade_by_vote_from_the_cli_then_the_new_compose_boots_and_the_old_is_refused() {
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let (_, dao) = net.deploy_dao().await;
    dao.delegate(net.owner).await.unwrap();
    let (app, v1, v2) = net.app_v1_v2(&kms, dao.timelock(), 0x21).await;
    let (h1, h2) = (v1.compose_hash().to_string(), v2.compose_hash().to_string());
    let _v1_running = v1.boot().await.unwrap();
    let err = v2.boot().await.unwrap_err();
    assert_compose_hash_denied(&err);

    let dir = tempfile::tempdir().unwrap();
    let key = key_hex(&net, 0);
    let governor = dao.addresses().governor.to_string();
    let app_s = app.app_id().to_string();
    let env = [
        ("CAIRN_PRIVATE_KEY", key.as_str()),
        ("CAIRN_GOVERNOR", governor.as_str()),
        ("CAIRN_APP", app_s.as_str()),
    ];
    let step = |s: &'static str, extra: &'static [&'static str]| {
        let mut args = vec!["--json", "dao", s, "upgrade", h1.as_str(), h2.as_str()];
        args.extend_from_slice(extra);
        args
    };
    // A step as the owner, which must succeed; its JSON.
    let cli = Cli::new(&net, dir.path());
    let run_step = async |s: &'static str, extra: &'static [&'static str]| {
        cli.run(&env, &step(s, extra)).await.ok_json()
    };

    let proposed = run_step("propose", &[]).await;
    assert_eq!(proposed["state"], "Pending");
    let id = proposed["proposal_id"].as_str().unwrap().to_owned();

    // Too early to queue, and no --wait: refused, nothing sent.
    let before = nonce(&net, net.owner).await;
    let r = cli.run(&env, &step("queue", &[])).await;
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(
        r.stderr
            .contains("the proposal is Pending; this step needs it Succeeded"),
        "{r:#?}"
    );
    assert_eq!(nonce(&net, net.owner).await, before);

    // A voter without votes: refused before sending.
    let poor = net.signer(4).address();
    let poor_key = key_hex(&net, 4);
    let poor_env = [
        ("CAIRN_PRIVATE_KEY", poor_key.as_str()),
        ("CAIRN_GOVERNOR", governor.as_str()),
        ("CAIRN_APP", app_s.as_str()),
    ];
    let r = cli
        .run(&poor_env, &step("vote", &["--wait", "--mine"]))
        .await;
    r.fails(1, "has no voting power at the proposal's snapshot");
    assert_eq!(
        nonce(&net, poor).await,
        0,
        "nothing sent by the voter without votes"
    );

    let voted = run_step("vote", &["--wait", "--mine"]).await;
    assert_eq!(voted["proposal_id"], id);
    assert_eq!(voted["state"], "Active");
    assert_ne!(voted["votes_for"], "0");
    assert!(voted["tx_hash"].is_string());

    let queued = run_step("queue", &["--wait", "--mine"]).await;
    assert_eq!(queued["state"], "Queued");
    let eta = queued["eta"].as_u64().unwrap();
    assert!(eta > queued["head_timestamp"].as_u64().unwrap());

    // Queued is not executed: v2 is still refused.
    net.mine(CONFIRMATIONS).await;
    let err = v2.boot().await.unwrap_err();
    assert_compose_hash_denied(&err);

    let executed = run_step("execute", &["--wait", "--mine"]).await;
    assert_eq!(executed["state"], "Executed");
    let status = run_step("status", &[]).await;
    assert_eq!(status["state"], "Executed");
    let text = cli.run(&env, &["dao", "status", "upgrade", &h1, &h2]).await;
    assert_eq!(text.code, 0, "{text:#?}");
    assert!(text.stdout.contains("state      Executed"), "{text:#?}");
    net.mine(CONFIRMATIONS).await;

    let app_status = cli
        .run(&[], &["--json", "app", "status", &app_s])
        .await
        .ok_json();
    let hashes: Vec<B256> = field_of_each(&app_status["compose_hashes"], "compose_hash")
        .into_iter()
        .map(|h| h.parse().unwrap())
        .collect();
    assert_eq!(hashes, vec![v2.compose_hash()]);
    assert_eq!(app_status["owner"], dao.timelock().to_string());

    let _v2_running = v2.boot().await.unwrap();
    assert_eq!(
        wait_for_file(&v2.app_out()).await.as_deref(),
        Some(&b"started:"[..])
    );
    let v1_again = Cvm::with_compose(&kms.url(), app.app_id(), 0x22, v1.compose.clone());
    assert_eq!(v1_again.compose_hash(), v1.compose_hash());
    let err = v1_again.boot().await.unwrap_err();
    assert_compose_hash_denied(&err);
    kms.stop().await;
}
