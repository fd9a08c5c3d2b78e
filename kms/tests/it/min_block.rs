//! The deploy-then-boot race: a guest booted right after its app was registered carries
//! the block its VMM's pre-flight saw it allowed at (`min_policy_block`). A node whose
//! policy head lags that block waits, bounded, for its own head to reach it, then judges
//! at its head as always; if the head does not get there in time the answer is 503
//! `unavailable.policy_head_behind` — never a denial, nothing logged. The heads here
//! never advance by themselves (a poll of an hour): the test advances them, and that is
//! what ends a wait.

use std::sync::Arc;
use std::time::Duration;

use cairn_attestation::ids::{AppId, ComposeHash};
use cairn_kms::{MAX_HEAD_WAIT, MAX_POLICY_BLOCK_LEAD};
use cairn_kms_client::KmsConnection;
use cairn_onchain::alloy::primitives::B256;
use cairn_onchain::AppParams;
use cairn_protocol::api::{AppKeyRequest, AppKeyResponse, PATH_APP_KEY};
use hyper::{Method, StatusCode};

use crate::world::{
    answer, image, metrics_text, pki, until, ErrorAnswer, Guest, Running, World, CONFIRMATIONS,
};

/// The background poll of a node whose head moves only when a test advances it.
const NEVER: Duration = Duration::from_secs(3600);

/// The compose of the app deployed "just now".
const FRESH: &[u8] = br#"{"manifest_version":2,"name":"fresh","runner":"process"}"#;

/// A registered node on `seed` whose head never advances by itself, waiting at most
/// `head_wait` for a request's `min_policy_block`.
async fn lagging_node(w: &World, seed: u8, head_wait: Duration) -> Running {
    let (mut opts, dir) = w.prepare(seed, &pki()).await;
    opts.chain = opts.chain.with_head_poll_interval(NEVER);
    opts.head_wait = head_wait;
    w.serve(opts, dir).await
}

/// Deploy an app allowing [`FRESH`] and mine past the confirmations on the chain alone
/// (no node's head is told): its id and the policy block a VMM's pre-flight judges at
/// now (the block the VMM writes into the guest's sys-config).
async fn deploy_behind_the_heads(w: &World) -> (AppId, u64) {
    let params = AppParams {
        initial_compose_hash: Some(B256::from(ComposeHash::of_compose(FRESH).0)),
        ..AppParams::new(w.owner)
    };
    let app = w.chain.deploy_app(&params).await;
    w.chain.mine(CONFIRMATIONS).await;
    let at = w.client.policy_block().await.unwrap();
    (AppId(app.app_id().into_array()), at.number)
}

/// A connection of a guest of the fresh app on host `seed`.
async fn fresh_guest(kms: &Running, app_id: AppId, seed: u8) -> KmsConnection {
    let guest = Guest::boot(pki(), seed, image(), app_id, FRESH);
    kms.client(Some(&guest.cert())).await
}

/// `POST /v1/app-key` with `min_policy_block: min`.
async fn app_key_at(
    client: &mut KmsConnection,
    min: Option<u64>,
) -> Result<AppKeyResponse, ErrorAnswer> {
    let req = AppKeyRequest {
        min_policy_block: min,
        ..AppKeyRequest::default()
    };
    client
        .call(Method::POST, PATH_APP_KEY, Some(&req))
        .await
        .map_err(answer)
}

fn pinned(kms: &Running) -> u64 {
    kms.node.policy_head().view().unwrap().block().number
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_deploy_is_refused_without_the_hint_and_released_once_the_head_reaches_it() {
    let w = World::new().await;
    let kms = lagging_node(&w, 0xD1, MAX_HEAD_WAIT).await;
    let (app_id, allowed_at) = deploy_behind_the_heads(&w).await;
    assert!(pinned(&kms) < allowed_at, "the head must lag the deploy");
    let mut client = fresh_guest(&kms, app_id, 0x81).await;
    let size = kms.node.log().size();

    // The race, shown: the head has not read the registration yet.
    app_key_at(&mut client, None)
        .await
        .unwrap_err()
        .assert_code(StatusCode::FORBIDDEN, "denied.app_not_registered");

    // With the pre-flight's block the release waits for the head instead …
    let waiting = tokio::spawn(async move { app_key_at(&mut client, Some(allowed_at)).await });
    let node = Arc::clone(&kms.node);
    until("the release waits for the policy head", || {
        node.metrics().head_waiting() == 1
    })
    .await;
    drop(node);
    assert_eq!(
        kms.node.log().size(),
        size,
        "nothing released while waiting"
    );
    // … and the head advancing (what its poll does) ends the wait with a release.
    kms.node.policy_head().advance_now().await.unwrap();
    let keys = waiting.await.unwrap().unwrap();
    assert_eq!(keys.receipt.log_index, size);
    assert_eq!(kms.node.log().size(), size + 1);
    assert!(pinned(&kms) >= allowed_at);
    let m = kms.node.metrics();
    assert_eq!((m.head_waits_reached(), m.head_waits_behind()), (1, 0));
    assert_eq!(m.head_waiting(), 0);
    let text = metrics_text(&kms).await;
    assert!(
        text.contains("cairn_kms_policy_head_waits_total{outcome=\"reached\"} 1\n"),
        "{text}"
    );
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hint_the_head_does_not_reach_in_time_is_503_policy_head_behind_and_nothing_is_logged() {
    let w = World::new().await;
    let kms = lagging_node(&w, 0xD2, Duration::from_millis(200)).await;
    let (app_id, allowed_at) = deploy_behind_the_heads(&w).await;
    let before = pinned(&kms);
    let mut client = fresh_guest(&kms, app_id, 0x82).await;
    let size = kms.node.log().size();

    let err = app_key_at(&mut client, Some(allowed_at)).await.unwrap_err();
    err.assert_code(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable.policy_head_behind",
    );
    // Both blocks named; a retryable answer, not a denial, and nothing in the log.
    let message = &err.body.error.message;
    assert!(
        message.contains(&format!("policy block is {before}")),
        "{message}"
    );
    assert!(
        message.contains(&format!("min_policy_block {allowed_at}")),
        "{message}"
    );
    assert_eq!(kms.node.log().size(), size);
    let m = kms.node.metrics();
    assert_eq!((m.head_waits_reached(), m.head_waits_behind()), (0, 1));
    assert_eq!(
        m.releases("app_key", "unavailable", "unavailable.policy_head_behind"),
        1
    );
    assert_eq!(
        m.releases("app_key", "denied", "denied.app_not_registered"),
        0
    );

    // The same request once the head is there: released (retrying was right).
    kms.node.policy_head().advance_now().await.unwrap();
    app_key_at(&mut client, Some(allowed_at)).await.unwrap();
    assert_eq!(kms.node.log().size(), size + 1);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hint_far_past_the_chain_head_is_refused_at_once_and_one_at_the_head_waits_for_nothing() {
    let w = World::new().await;
    // The longest wait allowed: a far hint must not get to use it.
    let kms = lagging_node(&w, 0xD3, MAX_HEAD_WAIT).await;
    let guest = w.guest(0x83);
    let mut client = kms.client(Some(&guest.cert())).await;
    let size = kms.node.log().size();
    let head = kms.node.policy_head().view().unwrap().head().number;

    for far in [head + MAX_POLICY_BLOCK_LEAD + 1, u64::MAX] {
        let err = app_key_at(&mut client, Some(far)).await.unwrap_err();
        err.assert_code(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable.policy_head_behind",
        );
        assert!(err.body.error.message.contains("allowed lead"), "{err:?}");
    }
    assert_eq!(kms.node.log().size(), size);
    assert_eq!(kms.node.metrics().head_waits_behind(), 2);

    // A hint the head has passed (the world's app, registered long ago) changes nothing:
    // released at once, and no wait counted.
    app_key_at(&mut client, Some(pinned(&kms))).await.unwrap();
    app_key_at(&mut client, Some(0)).await.unwrap();
    let m = kms.node.metrics();
    assert_eq!((m.head_waits_reached(), m.head_waits_behind()), (0, 2));
    kms.stop().await;
}
