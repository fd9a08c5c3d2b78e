//! Clock skew between a guest and a KMS node, and between either and the collateral
//! (simulated clocks: the node's injected [`Clock`], the guest's certificate issue time
//! and its client's clock, the simulator PKI's anchor). The rules (docs/reliability.md,
//! "Clock skew"):
//!
//! - an RA-TLS certificate is valid from five minutes before its issuer's "now"
//!   (`CLOCK_SKEW`) for a year, so a guest up to five minutes ahead of the KMS, or any
//!   amount behind it (within the year), is served; more than five minutes ahead is
//!   `403 denied.client_cert` ("not valid now") and nothing is logged — and the same
//!   certificate is served once the KMS's clock reaches its `notBefore`;
//! - the KMS's own certificate is issued at the KMS's "now": a guest more than five
//!   minutes behind the KMS refuses the KMS (`KmsEvidence`, `NotValidAt`) before it sends
//!   anything; a guest less than that behind accepts it;
//! - a KMS whose clock lies outside the collateral window (before its issue date or
//!   after its next update) answers `503 unavailable.collateral`, logs nothing, and
//!   serves again as soon as its clock is back inside; a node whose clock is outside it
//!   when it starts refuses to start (its own evidence does not verify).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cairn_attestation::RaTlsError;
use cairn_kms::{unix_now, ApiError, Clock, Error, Node};
use cairn_kms_client::KmsClient;
use hyper::StatusCode;

use crate::release::app_key;
use crate::world::{pki, verifier_for, Running, World};

const MIN: u64 = 60;

/// A node on `host_seed` whose clock reads the returned cell (set to `start`).
async fn clocked(w: &World, host_seed: u8, start: u64) -> (Running, Arc<AtomicU64>) {
    let (mut opts, dir) = w.prepare(host_seed, &pki()).await;
    let now = Arc::new(AtomicU64::new(start));
    opts.clock = {
        let now = Arc::clone(&now);
        Clock::from_fn(move || now.load(Ordering::SeqCst))
    };
    let node = Node::open(opts).await.expect("the node opens");
    (w.serve_node(node, dir).await, now)
}

/// A guest's KMS client whose clock reads `at`.
fn guest_client(at: u64) -> KmsClient {
    KmsClient::new(verifier_for(&pki())).with_clock(move || at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_up_to_five_minutes_ahead_is_served_and_further_ahead_is_denied_until_the_kms_catches_up(
) {
    let w = World::new().await;
    let k = unix_now();
    let (kms, now) = clocked(&w, 0xC1, k).await;
    let guest = w.guest(0xC2);

    // Behind by an hour, exactly at, and four minutes ahead of the KMS: served.
    for skew in [-3600i64, 0, 4 * MIN as i64] {
        let cert = guest.cert_at(k.saturating_add_signed(skew));
        let mut client = kms.client(Some(&cert)).await;
        app_key(&mut client)
            .await
            .unwrap_or_else(|e| panic!("guest skewed by {skew}s: {e:?}"));
    }
    let served = kms.node.log().size();

    // Six minutes ahead: its certificate is not valid yet at the KMS; nothing logged.
    let ahead = guest.cert_at(k + 6 * MIN);
    let mut client = kms.client(Some(&ahead)).await;
    let err = app_key(&mut client).await.unwrap_err();
    err.assert_code(StatusCode::FORBIDDEN, "denied.client_cert");
    assert!(err.body.error.message.contains("not valid now"), "{err:?}");
    assert_eq!(kms.node.log().size(), served);

    // The KMS's clock reaches the certificate's notBefore (k + 1 min): served, no restart.
    now.store(k + MIN, Ordering::SeqCst);
    app_key(&mut client)
        .await
        .expect("served once the clocks agree");
    assert_eq!(kms.node.log().size(), served + 1);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_more_than_five_minutes_behind_the_kms_refuses_its_certificate_before_sending_anything(
) {
    let w = World::new().await;
    // The KMS runs ten minutes ahead of the guest's (system) clock; its certificate is
    // issued at its own "now", so valid from five minutes ahead of the guest.
    let g = unix_now();
    let (kms, _) = clocked(&w, 0xC3, g + 10 * MIN).await;
    let guest = w.guest(0xC4);
    let cert = guest.cert_at(g);

    let err = guest_client(g)
        .app_key(&kms.url(), &cert)
        .await
        .expect_err("the guest refuses a KMS certificate from its future");
    match err.ratls_error() {
        Some(RaTlsError::NotValidAt {
            now, not_before, ..
        }) => {
            assert_eq!(*now, g);
            assert_eq!(*not_before, i64::try_from(g + 5 * MIN).unwrap());
        }
        other => panic!("expected KmsEvidence NotValidAt, got {other:?} ({err:?})"),
    }
    assert_eq!(
        kms.node.log().size(),
        0,
        "nothing was asked, nothing logged"
    );

    // Six minutes behind is still refused; four minutes behind the KMS is accepted.
    assert!(matches!(
        guest_client(g + 4 * MIN)
            .app_key(&kms.url(), &cert)
            .await
            .unwrap_err()
            .ratls_error(),
        Some(RaTlsError::NotValidAt { .. })
    ));
    let keys = guest_client(g + 6 * MIN)
        .app_key(&kms.url(), &cert)
        .await
        .expect("a guest four minutes behind the KMS is served");
    assert_eq!(keys.keys.receipt.log_index, 0);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_clock_outside_the_collateral_window_answers_503_and_serves_again_when_it_returns() {
    let w = World::new().await;
    let anchor = pki().config().now;
    // The simulator's collateral is issued an hour before its anchor and valid 30 days.
    let issued = anchor - 3600;
    let k = unix_now();
    let (kms, now) = clocked(&w, 0xC5, k).await;
    let valid_until = kms.node.own_evidence().quote.valid_until();
    let guest = w.guest(0xC6);
    // Guest and KMS agree on the time (the guest's certificate issued at the KMS's
    // "now"); only the collateral is out of the window. The guest's own client reads the
    // system clock, where the KMS's certificate is valid.
    let mut served = 0;
    for (at, inside) in [
        (issued - 3600, false),
        (issued - 1, false),
        (issued, true),
        (valid_until - 1, true),
        (valid_until, false),
        (valid_until + 86_400, false),
        (k, true),
    ] {
        now.store(at, Ordering::SeqCst);
        let cert = guest.cert_at(at);
        let mut client = kms.client(Some(&cert)).await;
        let size = kms.node.log().size();
        match app_key(&mut client).await {
            Ok(_) if inside => served += 1,
            Err(err) if !inside => {
                assert_eq!(
                    (err.status, err.body.error.code.as_str()),
                    (StatusCode::SERVICE_UNAVAILABLE, "unavailable.collateral"),
                    "at {at}: {err:?}"
                );
                assert!(
                    err.body.error.message.contains("not yet valid"),
                    "at {at}: {err:?}"
                );
                assert_eq!(kms.node.log().size(), size, "nothing logged at {at}");
            }
            other => panic!("at {at} (inside the window: {inside}): {other:?}"),
        }
    }
    assert_eq!(served, 3);
    assert_eq!(kms.node.log().size(), 3);
    kms.stop().await;

    // A node whose clock is outside the window when it starts does not start.
    let (mut opts, _dir) = w.prepare(0xC7, &pki()).await;
    opts.clock = Clock::fixed(issued - 1);
    match Node::open(opts).await {
        Err(Error::SelfAttestation(ApiError::Unavailable { reason, .. })) => {
            assert!(reason.contains("collateral"), "{reason}")
        }
        Err(e) => panic!("expected SelfAttestation(Unavailable), got {e:?}"),
        Ok(_) => panic!("a node whose clock precedes the collateral started"),
    }
}
