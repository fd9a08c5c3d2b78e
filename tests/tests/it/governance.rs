//! A DAO-owned app: a new compose hash is refused until `addComposeHash` executes
//! through the governor and the timelock; then the new version boots.

use cairn_e2e::*;
use cairn_onchain::{Proposal, ProposalState, Support};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dao_vote_unlocks_new_compose_hash_only_after_the_timelock_executes() {
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let (params, dao) = net.deploy_dao().await;

    // The app is owned by the DAO's timelock from the start and runs v1.
    let (app, v1, v2) = net.app_v1_v2(&kms, dao.timelock(), 0x11).await;
    assert_ne!(v1.compose_hash(), v2.compose_hash());
    let _v1_running = v1.boot().await.unwrap();
    assert!(wait_for_file(&v1.app_out()).await.is_some());

    // v2 is refused until the DAO's vote executes.
    let err = v2.boot().await.unwrap_err();
    assert_compose_hash_denied(&err);
    dao.delegate(net.owner).await.unwrap();
    net.mine(1).await;

    let proposal = Proposal::add_compose_hash(app.app_id(), v2.compose_hash(), "release v2");
    let id = dao.propose(&proposal).await.unwrap();
    net.mine(u64::from(params.voting_delay_blocks) + 1).await;
    dao.cast_vote(id, Support::For).await.unwrap();
    net.mine(u64::from(params.voting_period_blocks) + 1).await;
    assert_eq!(dao.state(id).await.unwrap(), ProposalState::Succeeded);
    dao.queue(&proposal).await.unwrap();
    net.mine(CONFIRMATIONS).await;

    // Queued is not executed: still refused.
    let err = v2.boot().await.unwrap_err();
    assert_compose_hash_denied(&err);
    assert!(!v2.app_out().exists());

    net.increase_time(params.timelock_delay_secs + 1).await;
    dao.execute(&proposal).await.unwrap();
    assert_eq!(dao.state(id).await.unwrap(), ProposalState::Executed);
    net.mine(CONFIRMATIONS).await;

    let _booted = v2.boot().await.unwrap();
    assert_eq!(
        wait_for_file(&v2.app_out()).await.as_deref(),
        Some(&b"started:"[..])
    );
    kms.stop().await;
}
