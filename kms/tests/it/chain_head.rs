//! The chain is not an oracle: the node reads it through a quorum of RPC endpoints and a
//! background policy head. A lying endpoint is a 503 `unavailable.chain_disagreement`, a
//! stale head a 503 `unavailable.chain_stale`, a stalled endpoint does not stall
//! releases beyond the RPC timeout, plain HTTP to a remote RPC refuses to start, and a
//! revocation takes effect within the confirmations plus one poll — without any help
//! from the test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_kms::{unix_now, Clock, Node};
use cairn_onchain::testing::{head_advances, Behaviour, RpcProxy};
use hyper::StatusCode;

use crate::release::app_key;
use crate::world::{metrics_text, pki, refused_app_key, Running, World, CONFIRMATIONS};

/// A hang detector far above every configured timeout, never a speed assertion.
const HANG_DEADLINE: Duration = Duration::from_secs(60);

/// A registered node on `host_seed` reading the chain through `n` proxies in front of
/// anvil, needing `quorum` of them to agree; `timeout` per RPC.
async fn behind_proxies(
    w: &World,
    host_seed: u8,
    n: usize,
    quorum: usize,
    timeout: Duration,
) -> (Running, Vec<RpcProxy>) {
    let mut proxies = Vec::new();
    for _ in 0..n {
        proxies.push(RpcProxy::start(w.endpoint()).await);
    }
    let (mut opts, dir) = w.prepare(host_seed, &pki()).await;
    opts.chain = w
        .chain_config()
        .with_rpc_urls(proxies.iter().map(|p| p.url()).collect(), quorum)
        .with_call_timeout(timeout);
    (w.serve(opts, dir).await, proxies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_endpoint_under_quorum_2_is_503_chain_disagreement_and_releases_nothing() {
    let w = World::new().await;
    let (kms, p) = behind_proxies(&w, 0xC1, 2, 2, Duration::from_secs(2)).await;
    let seen = w.guest(0x71);
    let mut seen_client = kms.client(Some(&seen.cert())).await;
    app_key(&mut seen_client).await.unwrap();
    let size = kms.node.log().size();

    // One endpoint starts flipping verdicts (the host answering `isAppAllowed`).
    p[1].set(Behaviour::FlipVerdicts);
    let fresh = w.guest(0x72);
    let mut client = kms.client(Some(&fresh.cert())).await;
    let err = app_key(&mut client).await.unwrap_err();
    err.assert_code(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable.chain_disagreement",
    );
    for proxy in &p {
        let label = cairn_onchain::endpoint_label(&proxy.url());
        assert!(err.body.error.message.contains(&label), "{err:?}");
    }
    // At the next block the already-seen guest's verdict cannot be refreshed either:
    // it is read live and refused, never answered from the older block.
    w.mine(1).await;
    let err = app_key(&mut seen_client).await.unwrap_err();
    assert_eq!(
        err.body.error.code, "unavailable.chain_disagreement",
        "{err:?}"
    );
    assert_eq!(kms.node.log().size(), size, "nothing released under a lie");
    assert_eq!(
        kms.node
            .metrics()
            .releases("app_key", "unavailable", "unavailable.chain_disagreement"),
        2
    );
    let text = metrics_text(&kms).await;
    let line = text
        .lines()
        .find(|l| l.starts_with("cairn_kms_chain_disagreements_total "))
        .expect("disagreement metric");
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 2, "{line}");

    // Honest again: releases resume.
    p[1].set(Behaviour::Forward);
    w.mine(1).await;
    app_key(&mut client).await.unwrap();
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_block_hash_under_quorum_2_fails_the_head_with_503_chain_disagreement() {
    let w = World::new().await;
    let (kms, p) = behind_proxies(&w, 0xC2, 2, 2, Duration::from_secs(2)).await;
    let mut client = w.released_client(&kms, 0x73).await;
    p[0].set(Behaviour::ChangeBlockHashes);
    w.mine(1).await;
    refused_app_key(
        &kms,
        &mut client,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable.chain_disagreement",
    )
    .await;
    assert!(metrics_text(&kms)
        .await
        .contains("cairn_kms_chain_head_up 0\n"));
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_head_answers_503_chain_stale_and_releases_nothing() {
    let w = World::new().await;
    let (mut opts, dir) = w.prepare(0xC3, &pki()).await;
    let max = Duration::from_secs(120);
    opts.chain = opts.chain.with_max_head_age(max);
    let now = Arc::new(AtomicU64::new(unix_now()));
    opts.clock = {
        let now = now.clone();
        Clock::from_fn(move || now.load(Ordering::SeqCst))
    };
    let kms = w.serve_node(Node::open(opts).await.unwrap(), dir).await;
    let mut client = w.released_client(&kms, 0x74).await;
    let size = kms.node.log().size();

    // The chain makes no block for longer than the bound (a stuck or lagging RPC looks
    // the same): the cached verdict at the old block is not used.
    let head_ts = w.head_timestamp().await;
    now.store(head_ts + max.as_secs() + 1, Ordering::SeqCst);
    let err = app_key(&mut client).await.unwrap_err();
    err.assert_code(StatusCode::SERVICE_UNAVAILABLE, "unavailable.chain_stale");
    assert_eq!(kms.node.log().size(), size);

    // A new block makes the node serve again.
    w.mine(1).await;
    now.store(w.head_timestamp().await + 1, Ordering::SeqCst);
    w.sync_heads().await;
    app_key(&mut client).await.unwrap();
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_endpoint_does_not_stall_releases_while_the_quorum_answers() {
    let w = World::new().await;
    // The RPC timeout is far above the hang detector: a release that waited for the
    // stalled endpoint would trip it.
    let (kms, p) = behind_proxies(&w, 0xC4, 3, 2, HANG_DEADLINE * 2).await;
    p[2].set(Behaviour::Stall);
    w.mine(1).await;
    for host in [0x75, 0x76] {
        let guest = w.guest(host);
        let mut client = kms.client(Some(&guest.cert())).await;
        tokio::time::timeout(HANG_DEADLINE, app_key(&mut client))
            .await
            .expect("the release must not wait for the stalled endpoint")
            .unwrap();
    }
    assert_eq!(kms.node.log().size(), 2);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_endpoint_under_quorum_2_of_2_fails_releases_within_the_rpc_timeout() {
    let w = World::new().await;
    let (kms, p) = behind_proxies(&w, 0xC5, 2, 2, Duration::from_millis(500)).await;
    p[0].set(Behaviour::Stall);
    let mut client = w.guest_client(&kms, 0x77).await;
    let err = tokio::time::timeout(HANG_DEADLINE, app_key(&mut client))
        .await
        .expect("the release must fail by itself, not hang")
        .unwrap_err();
    err.assert_code(StatusCode::SERVICE_UNAVAILABLE, "unavailable.chain");
    assert_eq!(kms.node.log().size(), 0);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_takes_effect_within_confirmations_plus_one_poll() {
    let (w, kms) = World::serving(0xC6).await;
    let mut client = w.released_client(&kms, 0x78).await;

    w.app
        .remove_compose_hash(cairn_onchain::alloy::primitives::B256::from(
            cairn_attestation::ids::ComposeHash::of_compose(crate::world::COMPOSE).0,
        ))
        .await
        .unwrap();
    // Mined on the chain only: nothing tells the node; its head advances by itself.
    w.chain.mine(CONFIRMATIONS).await;
    let t = Instant::now();
    head_advances(kms.node.policy_head(), 2, HANG_DEADLINE).await;
    let err = app_key(&mut client).await.unwrap_err();
    assert_eq!(
        (err.status, err.body.error.code.as_str()),
        (StatusCode::FORBIDDEN, "denied.compose_hash"),
        "{err:?} ({:?} after the confirmations)",
        t.elapsed()
    );
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_to_start_on_plain_http_to_a_remote_rpc() {
    let w = World::new().await;
    let (mut opts, _dir) = w.prepare(0xC7, &pki()).await;
    opts.chain = w
        .chain_config()
        .with_rpc_urls(vec!["http://rpc.internal:8545/".parse().unwrap()], 1);
    let err = Node::open(opts).await.unwrap_err();
    assert!(
        matches!(
            err,
            cairn_kms::Error::Chain(cairn_onchain::Error::InsecureRpc { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("isAppAllowed"), "{err}");
}
