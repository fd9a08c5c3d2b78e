//! The DAO flow driven from Rust: propose addComposeHash → vote → queue → execute after
//! the timelock; the KMS policy denies until execution and allows after.

use cairn_onchain::alloy::primitives::B256;
use cairn_onchain::CairnGovernor::CairnGovernorErrors;
use cairn_onchain::TimelockController::TimelockControllerErrors;
use cairn_onchain::{reasons, AppParams, Check, Proposal, ProposalState, Support, Verdict};

use crate::common::{boot, devnet};

#[tokio::test]
async fn dao_vote_unlocks_new_compose_hash() {
    let net = devnet(0).await;
    let (params, dao) = net.deploy_dao().await;

    // The app is owned by the DAO's timelock from the start.
    let app = net.deploy_app(&AppParams::new(dao.timelock())).await;
    let at = net.client.policy_block().await.unwrap();
    assert_eq!(app.owner(at).await.unwrap(), dao.timelock());

    dao.delegate(net.owner).await.unwrap();
    net.mine(1).await; // voting power is checkpointed before the proposal's snapshot

    let new_hash = B256::repeat_byte(0x2a);
    let b = boot(app.app_id(), new_hash);
    let proposal = Proposal::add_compose_hash(
        app.app_id(),
        new_hash,
        "Release v2: allow compose hash 0x2a..",
    );
    let id = dao.propose(&proposal).await.unwrap();
    assert_eq!(dao.state(id).await.unwrap(), ProposalState::Pending);

    net.mine(u64::from(params.voting_delay_blocks) + 1).await;
    assert_eq!(dao.state(id).await.unwrap(), ProposalState::Active);
    dao.cast_vote(id, Support::For).await.unwrap();

    net.mine(u64::from(params.voting_period_blocks) + 1).await;
    assert_eq!(dao.state(id).await.unwrap(), ProposalState::Succeeded);

    dao.queue(&proposal).await.unwrap();
    assert_eq!(dao.state(id).await.unwrap(), ProposalState::Queued);

    // Queued is not executed: the KMS still refuses the new code.
    net.assert_app_denied(&b, Check::ComposeHash, reasons::COMPOSE_HASH)
        .await;

    // Executing before the timelock delay reverts with the timelock's decoded error.
    let err = dao.execute(&proposal).await.unwrap_err();
    assert!(
        matches!(
            err.as_timelock_error(),
            Some(TimelockControllerErrors::TimelockUnexpectedOperationState(
                _
            ))
        ),
        "{err:?}"
    );

    net.increase_time(params.timelock_delay_secs + 1).await;
    dao.execute(&proposal).await.unwrap();
    assert_eq!(dao.state(id).await.unwrap(), ProposalState::Executed);

    assert_eq!(net.app_verdict(&b).await.unwrap(), Verdict::Allowed);
}

#[tokio::test]
async fn proposal_without_votes_is_defeated_and_cannot_queue() {
    let net = devnet(0).await;
    let (params, dao) = net.deploy_dao().await;
    let app = net.deploy_app(&AppParams::new(dao.timelock())).await;
    dao.delegate(net.owner).await.unwrap();
    net.mine(1).await;

    let proposal = Proposal::add_compose_hash(app.app_id(), B256::repeat_byte(0x3b), "no quorum");
    let id = dao.propose(&proposal).await.unwrap();
    net.mine(u64::from(params.voting_delay_blocks + params.voting_period_blocks) + 2)
        .await;
    assert_eq!(dao.state(id).await.unwrap(), ProposalState::Defeated);

    let err = dao.queue(&proposal).await.unwrap_err();
    match err.as_governor_error() {
        Some(CairnGovernorErrors::GovernorUnexpectedProposalState(e)) => {
            assert_eq!(e.proposalId, id)
        }
        _ => panic!("expected GovernorUnexpectedProposalState, got {err:?}"),
    }
}
