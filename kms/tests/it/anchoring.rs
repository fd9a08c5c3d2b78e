//! Releases are bounded by the log's on-chain anchor: when anchoring fails (here: the
//! node key has no gas money), releases stop once `log.max_unanchored` entries are
//! unanchored or the log was last fully anchored more than `log.max_anchor_age_secs`
//! ago; `/healthz` and `/metrics` say why; once anchoring recovers, releases resume.

use std::time::{Duration, Instant};

use cairn_kms::AnchorLimits;
use cairn_onchain::alloy::primitives::{Address, U256};
use cairn_onchain::alloy::providers::ext::AnvilApi;
use cairn_protocol::api::ErrorBody;
use hyper::StatusCode;

use crate::release::app_key;
use crate::world::{health, metric, pki, Running, World};

const ANCHOR: &str = "unavailable.anchor";

/// A new world and a node on `host_seed` with the anchor limits `max_unanchored` and
/// `max_age`, anchoring every 200 ms, whose key has no gas money: every anchoring round
/// fails until [`fund_until_ready`].
async fn unfunded_node(host_seed: u8, max_unanchored: u64, max_age: Duration) -> (World, Running) {
    let w = World::new().await;
    let (mut opts, dir) = w.prepare(host_seed, &pki()).await;
    opts.anchor_limits = AnchorLimits {
        max_unanchored,
        max_age,
    };
    let kms = w.serve(opts, dir).await;
    set_balance(&w, &kms, 0).await;
    (w, kms)
}

async fn set_balance(w: &World, kms: &Running, wei: u128) {
    w.client
        .connection()
        .provider()
        .anvil_set_balance(Address::from(kms.node.address()), U256::from(wei))
        .await
        .unwrap();
}

/// Poll `/healthz` until `f` accepts its answer (deadline 60 s).
async fn until_health(
    kms: &Running,
    what: &str,
    f: impl Fn(&Result<(), (StatusCode, ErrorBody)>) -> bool,
) -> Result<(), (StatusCode, ErrorBody)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = health(kms).await;
        if f(&h) {
            return h;
        }
        assert!(Instant::now() < deadline, "{what}: last answer {h:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Poll `/healthz` until it answers 503 `unavailable.anchor` with `needle` in the
/// message; that answer's body.
async fn until_unready(kms: &Running, what: &str, needle: &str) -> ErrorBody {
    let (status, body) = until_health(
        kms,
        what,
        |h| matches!(h, Err((_, b)) if b.error.message.contains(needle)),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (status, body.error.code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, ANCHOR),
        "{what}"
    );
    body
}

/// Give the node's key gas money again and poll `/healthz` until the node is ready.
async fn fund_until_ready(w: &World, kms: &Running) {
    set_balance(w, kms, 10u128.pow(20)).await;
    until_health(kms, "ready again", Result::is_ok)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_stop_at_the_unanchored_bound_while_anchoring_fails_and_resume_after() {
    let (w, kms) = unfunded_node(0xF4, 2, Duration::from_secs(3600)).await;
    // A fresh node with an empty log is fully anchored: ready, even without gas money.
    health(&kms).await.unwrap();
    let guest = w.guest(0x74);
    let cert = guest.cert();
    let mut client = kms.client(Some(&cert)).await;
    app_key(&mut client).await.unwrap();
    app_key(&mut client).await.unwrap();

    // The third would leave 3 entries unanchored.
    let err = app_key(&mut client).await.unwrap_err();
    err.assert_code(StatusCode::SERVICE_UNAVAILABLE, ANCHOR);
    assert!(
        err.body.error.message.contains("log.max_unanchored = 2"),
        "{err:?}"
    );
    assert_eq!(kms.node.log().size(), 2, "a refused release was logged");
    assert_eq!(
        kms.node
            .metrics()
            .releases("app_key", "unavailable", ANCHOR),
        1
    );

    // Not ready, with the failing anchoring named once a round has failed.
    let body = until_unready(&kms, "anchoring failure in /healthz", "failed in a row").await;
    assert!(
        body.error.message.contains("2 entries unanchored"),
        "{body:?}"
    );
    assert!(metric(&kms, "cairn_kms_anchor_failures_total").await >= 1.0);
    assert_eq!(
        metric(&kms, "cairn_kms_anchor_unanchored_entries").await,
        2.0
    );

    // Gas money again: the next round anchors both entries, releases resume.
    fund_until_ready(&w, &kms).await;
    assert_eq!(
        metric(&kms, "cairn_kms_anchor_unanchored_entries").await,
        0.0
    );
    let r = app_key(&mut kms.client(Some(&cert)).await).await.unwrap();
    assert_eq!(r.receipt.log_index, 2);
    w.mine(crate::world::CONFIRMATIONS).await;
    let anchor = w.latest_anchor_of(kms.node.address()).await.unwrap();
    assert!(anchor.tree_size >= 2, "{anchor:?}");
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_stop_when_the_log_was_last_fully_anchored_too_long_ago() {
    let (w, kms) = unfunded_node(0xF5, 1000, Duration::from_secs(1)).await;
    let guest = w.guest(0x75);
    let cert = guest.cert();
    app_key(&mut kms.client(Some(&cert)).await).await.unwrap();

    // One unanchored entry, anchoring failing: after a second the age bound refuses.
    until_unready(&kms, "age bound in /healthz", "log.max_anchor_age_secs = 1").await;
    let err = app_key(&mut kms.client(Some(&cert)).await)
        .await
        .unwrap_err();
    err.assert_code(StatusCode::SERVICE_UNAVAILABLE, ANCHOR);
    assert!(
        err.body
            .error
            .message
            .contains("log.max_anchor_age_secs = 1"),
        "{err:?}"
    );
    assert_eq!(kms.node.log().size(), 1);
    assert!(metric(&kms, "cairn_kms_anchor_last_success_age_seconds").await > 1.0);

    fund_until_ready(&w, &kms).await;
    // Everything is anchored now, so the first release is admitted whatever the age.
    let r = app_key(&mut kms.client(Some(&cert)).await).await.unwrap();
    assert_eq!(r.receipt.log_index, 1);
    kms.stop().await;
}
