//! The background policy head: it advances on its own, keeps used reads answered at each
//! new block (the release path makes no RPC), turns a revocation into a denial within
//! confirmations plus one poll, and is an error — never the old block — when it is
//! stale, failed or contradicted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_onchain::testing::{head_advances, Behaviour};
use cairn_onchain::{ChainClient, ChainConfig, Check, Error, HeadOptions, PolicyHead, Verdict};

use crate::common::{
    assert_denied_by, boot, devnet, proxies, quorum_config, COMPOSE, HANG_DEADLINE,
};

const POLL: Duration = Duration::from_millis(50);
/// How long a test waits for the head to reach a state before it fails (a deadline on
/// polling, not a speed assertion).
const DEADLINE: Duration = Duration::from_secs(30);

/// A policy head over a fresh client of `config`.
async fn start_head(config: &ChainConfig) -> PolicyHead {
    let client = Arc::new(ChainClient::connect(config, None).await.unwrap());
    PolicyHead::start(client, HeadOptions::new(config))
        .await
        .unwrap()
}

fn settable_clock(now: u64) -> (Arc<AtomicU64>, cairn_onchain::Clock) {
    let t = Arc::new(AtomicU64::new(now));
    let c = Arc::clone(&t);
    (t, Arc::new(move || c.load(Ordering::SeqCst)))
}

#[tokio::test]
async fn a_revocation_takes_effect_within_confirmations_plus_one_poll() {
    const CONFIRMATIONS: u64 = 2;
    let net = devnet(CONFIRMATIONS).await;
    let app = net.app_with_compose().await;
    net.mine(CONFIRMATIONS).await;
    let config = net
        .chain_config(CONFIRMATIONS)
        .with_head_poll_interval(POLL);
    let head = start_head(&config).await;
    let b = boot(app.app_id(), COMPOSE);
    assert_eq!(
        head.view().unwrap().is_app_allowed(&b).await.unwrap(),
        Verdict::Allowed
    );

    app.remove_compose_hash(COMPOSE).await.unwrap();
    head_advances(&head, 2, HANG_DEADLINE).await;
    assert_eq!(
        head.view().unwrap().is_app_allowed(&b).await.unwrap(),
        Verdict::Allowed,
        "not visible before {CONFIRMATIONS} confirmations"
    );

    net.mine(CONFIRMATIONS).await;
    // One advance that started after the blocks were mined.
    head_advances(&head, 2, HANG_DEADLINE).await;
    let view = head.view().unwrap();
    assert!(
        view.is_app_verdict_cached(&b),
        "the background refresh answered the used read at the new block"
    );
    let err = view.is_app_allowed(&b).await.unwrap_err();
    assert_denied_by(&err, Check::ComposeHash);
}

#[tokio::test]
async fn used_reads_are_answered_at_each_new_block_without_an_rpc_on_the_release_path() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    let p = proxies(&net, 2).await;
    // Advances are driven by hand here so that every request the proxies see is
    // accounted for; the background task is tested above.
    let config = quorum_config(&net, &p, 2).with_head_poll_interval(Duration::from_secs(3600));
    let head = start_head(&config).await;
    let b = boot(app.app_id(), COMPOSE);
    let first = head.view().unwrap();
    first.is_app_allowed(&b).await.unwrap();
    first.root_keys().await.unwrap();
    first.gateway_app_id().await.unwrap();

    net.mine(1).await;
    let advanced = head.advance_now().await.unwrap();
    assert_ne!(advanced.pinned, first.block());
    let view = head.view().unwrap();
    assert_eq!(view.block(), advanced.pinned);
    let requests = || -> u64 { p.iter().map(|p| p.requests()).sum() };
    let before = requests();
    for _ in 0..100 {
        assert_eq!(view.is_app_allowed(&b).await.unwrap(), Verdict::Allowed);
        assert_eq!(view.root_keys().await.unwrap(), None);
        assert_eq!(view.gateway_app_id().await.unwrap(), None);
    }
    assert_eq!(requests(), before, "the release path made RPCs");

    // A read never asked before does need one quorum read (and is then tracked).
    let other = boot(
        app.app_id(),
        cairn_onchain::alloy::primitives::B256::repeat_byte(9),
    );
    view.is_app_allowed(&other).await.unwrap_err();
    assert!(requests() > before);
    assert_eq!(head.status().tracked, 4);
}

#[tokio::test]
async fn a_stale_head_is_an_error_never_the_old_block() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    let max = Duration::from_secs(60);
    let config = net.chain_config(0).with_max_head_age(max);
    let client = Arc::new(ChainClient::connect(&config, None).await.unwrap());
    let ts = net.head_timestamp().await;
    let (now, clock) = settable_clock(ts + 1);
    let head = PolicyHead::start(client, HeadOptions::new(&config).with_clock(clock))
        .await
        .unwrap();
    let b = boot(app.app_id(), COMPOSE);
    head.view().unwrap().is_app_allowed(&b).await.unwrap();

    // Time passes; the chain (anvil, mining only on demand) makes no new block.
    now.store(ts + 61, Ordering::SeqCst);
    match head.view() {
        Err(Error::StaleHead { age, max: m, .. }) => {
            assert!(age > m, "{age:?} vs {m:?}");
            assert_eq!(m, max);
        }
        other => panic!("expected StaleHead, got {other:?}"),
    }
    // The background advance finds the same stale head and publishes the error.
    let err = head.advance_now().await.unwrap_err();
    assert!(matches!(err.cause(), Error::StaleHead { .. }), "{err:?}");
    assert!(err.is_retryable());

    // A fresh block makes the head usable again.
    net.mine(1).await;
    now.store(net.head_timestamp().await + 1, Ordering::SeqCst);
    head.advance_now().await.unwrap();
    head.view().unwrap().is_app_allowed(&b).await.unwrap();
}

#[tokio::test]
async fn an_endpoint_frozen_at_an_old_block_makes_the_head_stale() {
    let net = devnet(0).await;
    let p = proxies(&net, 1).await;
    let config = quorum_config(&net, &p, 1).with_max_head_age(Duration::from_secs(60));
    let client = Arc::new(ChainClient::connect(&config, None).await.unwrap());
    let frozen_at = net.head_number().await;
    p[0].set(Behaviour::FreezeHead(frozen_at));
    // The real chain moves on, an hour later; the endpoint keeps answering the old head.
    net.increase_time(3600).await;
    let (_, clock) = settable_clock(net.head_timestamp().await);
    let err = PolicyHead::start(client, HeadOptions::new(&config).with_clock(clock))
        .await
        .unwrap_err();
    match err.cause() {
        Error::StaleHead { number, age, .. } => {
            assert_eq!(*number, frozen_at);
            assert!(*age >= Duration::from_secs(3600), "{age:?}");
        }
        other => panic!("expected StaleHead, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failed_advance_is_an_error_until_the_endpoints_answer_again() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    let p = proxies(&net, 1).await;
    let config = quorum_config(&net, &p, 1).with_call_timeout(Duration::from_millis(500));
    let head = start_head(&config).await;
    let b = boot(app.app_id(), COMPOSE);
    head.view().unwrap().is_app_allowed(&b).await.unwrap();

    p[0].set(Behaviour::Fail);
    head.advance_now().await.unwrap_err();
    let err = head.view().unwrap_err();
    match &err {
        Error::PolicyHead { source } => {
            assert!(matches!(**source, Error::Unreachable { .. }), "{source:?}")
        }
        other => panic!("expected PolicyHead, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert!(head.status().error.is_some());

    p[0].set(Behaviour::Forward);
    head.advance_now().await.unwrap();
    assert_eq!(
        head.view().unwrap().is_app_allowed(&b).await.unwrap(),
        Verdict::Allowed
    );
}

#[tokio::test]
async fn a_liar_after_startup_makes_the_head_a_disagreement_not_the_old_block() {
    let net = devnet(0).await;
    let p = proxies(&net, 2).await;
    let config = quorum_config(&net, &p, 2).with_head_poll_interval(POLL);
    let head = start_head(&config).await;
    head.view().unwrap();
    p[1].set(Behaviour::ChangeBlockHashes);
    net.mine(1).await;
    head_advances(&head, 2, HANG_DEADLINE).await;
    let err = head.view().unwrap_err();
    assert!(err.is_disagreement(), "{err:?}");
    assert!(err.is_retryable());
    assert!(head.status().disagreements >= 1);
}

#[tokio::test]
async fn a_read_that_failed_to_refresh_is_read_live_and_never_answered_from_an_older_block() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    let p = proxies(&net, 2).await;
    let config = quorum_config(&net, &p, 2).with_head_poll_interval(POLL);
    let head = start_head(&config).await;
    let b = boot(app.app_id(), COMPOSE);
    let first = head.view().unwrap();
    assert_eq!(first.is_app_allowed(&b).await.unwrap(), Verdict::Allowed);

    // One endpoint starts lying about verdicts (block hashes stay honest, so the head
    // still advances); the refresh of the allow at the next block fails.
    p[1].set(Behaviour::FlipVerdicts);
    net.mine(1).await;
    let deadline = Instant::now() + DEADLINE;
    let view = loop {
        let v = head.view().unwrap();
        if v.block() != first.block() {
            break v;
        }
        assert!(Instant::now() < deadline, "the head did not advance");
        head_advances(&head, 1, HANG_DEADLINE).await;
    };
    assert!(
        !view.is_app_verdict_cached(&b),
        "a failed refresh is not cached"
    );
    let err = view.is_app_allowed(&b).await.unwrap_err();
    assert!(err.is_disagreement(), "{err:?}");
}
