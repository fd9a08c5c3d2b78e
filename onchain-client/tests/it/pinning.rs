//! Reads pinned to head − confirmations, and the verdict cache keyed by block.

use cairn_onchain::{reasons, Check, Error, Verdict};

use crate::common::{assert_denied, boot, devnet, COMPOSE};

#[tokio::test]
async fn policy_block_is_head_minus_confirmations_saturating() {
    let net = devnet(3).await;
    let head = net.head_number().await;
    let at = net.client.policy_block().await.unwrap();
    assert_eq!(at.number, head - 3);
    let block = net.block(at.number).await;
    assert_eq!(block.header.hash, at.hash);

    // Deep confirmations saturate at genesis instead of underflowing.
    let deep = net.client_as(0, 1_000_000).await;
    assert_eq!(deep.policy_block().await.unwrap().number, 0);
}

#[tokio::test]
async fn block_timestamp_is_the_policy_blocks_chain_time_not_the_heads() {
    let net = devnet(2).await;
    let at = net.client.policy_block().await.unwrap();
    let t = net.client.block_timestamp(at).await.unwrap();
    let block = net.block(at.number).await;
    assert_eq!(t, block.header.timestamp);
    // Time moves at head; the pinned block's time does not.
    net.increase_time(3600).await;
    assert_eq!(net.client.block_timestamp(at).await.unwrap(), t);
    assert!(net.head_timestamp().await >= t + 3600);
}

#[tokio::test]
async fn removal_at_head_is_invisible_until_confirmations_pass() {
    const CONFIRMATIONS: u64 = 2;
    let net = devnet(CONFIRMATIONS).await;
    let app = net.app_with_compose().await;
    net.mine(CONFIRMATIONS).await; // the allow is now confirmed
    let b = boot(app.app_id(), COMPOSE);
    let before = net.client.policy_block().await.unwrap();
    assert_eq!(
        net.client.is_app_allowed(&b, before).await.unwrap(),
        Verdict::Allowed
    );

    app.remove_compose_hash(COMPOSE).await.unwrap(); // mined at the new head
    let at = net.client.policy_block().await.unwrap();
    assert_eq!(at.number, before.number + 1);
    assert_eq!(
        net.client.is_app_allowed(&b, at).await.unwrap(),
        Verdict::Allowed,
        "a change at head must not be visible with {CONFIRMATIONS} confirmations"
    );

    net.mine(CONFIRMATIONS - 1).await;
    assert_eq!(net.app_verdict(&b).await.unwrap(), Verdict::Allowed);

    net.mine(1).await;
    net.assert_app_denied(&b, Check::ComposeHash, reasons::COMPOSE_HASH)
        .await;

    // The earlier block still answers as it did: reads are by block, not by "latest".
    assert_eq!(
        net.client.is_app_allowed(&b, before).await.unwrap(),
        Verdict::Allowed
    );
}

#[tokio::test]
async fn cached_allow_is_not_reused_at_a_later_block() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    let b = boot(app.app_id(), COMPOSE);
    let at = net.client.policy_block().await.unwrap();
    net.client.is_app_allowed(&b, at).await.unwrap();
    let cached = net.client.cached_verdicts();
    assert_eq!(
        net.client.is_app_allowed(&b, at).await.unwrap(),
        Verdict::Allowed
    );
    assert_eq!(
        net.client.cached_verdicts(),
        cached,
        "same (input, block) is a cache hit"
    );

    app.remove_compose_hash(COMPOSE).await.unwrap();
    let later = net.client.policy_block().await.unwrap();
    assert_ne!(later.hash, at.hash);
    assert_denied(
        net.client.is_app_allowed(&b, later).await,
        Check::ComposeHash,
        reasons::COMPOSE_HASH,
    );
    // Denials are cached per block too, and still answered as denials.
    assert_denied(
        net.client.is_app_allowed(&b, later).await,
        Check::ComposeHash,
        reasons::COMPOSE_HASH,
    );
}

#[tokio::test]
async fn read_at_a_reorged_out_block_fails_retryably_instead_of_answering() {
    use cairn_onchain::alloy::providers::ext::AnvilApi;

    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    let b = boot(app.app_id(), COMPOSE);
    // A reader without cache: the read must go to the chain.
    let config = cairn_onchain::ChainConfig::new(
        net.anvil.endpoint_url(),
        net.anvil.chain_id(),
        net.deployment.kms_auth,
    )
    .with_confirmations(0)
    .with_verdict_cache_entries(0);
    let reader = cairn_onchain::ChainClient::connect(&config, None)
        .await
        .unwrap();

    net.mine(1).await;
    let at = reader.policy_block().await.unwrap();
    // Replace the head block by a different one at the same height.
    let p = net.client.connection().provider();
    p.anvil_rollback(Some(1)).await.unwrap();
    app.remove_compose_hash(COMPOSE).await.unwrap();
    let now = reader.policy_block().await.unwrap();
    assert_eq!(now.number, at.number);
    assert_ne!(now.hash, at.hash, "the block at that height was replaced");

    let err = reader.is_app_allowed(&b, at).await.unwrap_err();
    assert!(matches!(err, Error::Rpc { .. }), "{err:?}");
    assert!(err.is_retryable(), "{err:?}");
    assert!(!err.is_denied());
    assert_denied(
        reader.is_app_allowed(&b, now).await,
        Check::ComposeHash,
        reasons::COMPOSE_HASH,
    );
}
