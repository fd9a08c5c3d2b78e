//! The node's own standing: its evidence is re-verified once its collateral window has
//! passed, and the chain's key generation must be its own, at startup and per block.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_attestation::{RaTlsCertBuilder, Usage};
use cairn_kms::testing::install_master;
use cairn_kms::{unix_now, ApiError, Clock, Dependency, Error, MasterSecret, Node, RootKeys};
use cairn_onchain::alloy::primitives::Bytes;
use hyper::StatusCode;

use crate::release::app_key;
use crate::world::{pki, refused_app_key, Running, World, CONFIRMATIONS};

/// A node on `host_seed` whose clock the test sets.
async fn clocked(w: &World, host_seed: u8) -> (Running, Arc<AtomicU64>) {
    let (mut opts, dir) = w.prepare(host_seed, &pki()).await;
    let now = Arc::new(AtomicU64::new(unix_now()));
    opts.clock = {
        let now = now.clone();
        Clock::from_fn(move || now.load(Ordering::SeqCst))
    };
    let node = Node::open(opts).await.unwrap();
    (w.serve_node(node, dir).await, now)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_evidence_that_no_longer_verifies_fails_the_self_check_and_releases_nothing() {
    let w = World::new().await;
    let (kms, now) = clocked(&w, 0xE1).await;
    let mut client = w.released_client(&kms, 0x61).await;
    kms.node.self_check_now().await.unwrap();

    // The collateral behind the node's own evidence expires: the self-check re-verifies
    // it, fails, and keeps failing (no stale boot info is sent to isKmsAllowed).
    let expired = kms.node.own_evidence().quote.valid_until() + 1;
    now.store(expired, Ordering::SeqCst);
    for _ in 0..2 {
        match kms.node.self_check_now().await {
            Err(ApiError::Unavailable {
                dependency: Dependency::SelfCheck,
                reason,
            }) => assert!(reason.contains("no longer verifies"), "{reason}"),
            r => panic!("unexpected {r:?}"),
        }
    }

    // At the KMS level the same expiry answers 503 (the caller's evidence hits the
    // expired collateral first) and nothing is logged or released.
    refused_app_key(
        &kms,
        &mut client,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable.collateral",
    )
    .await;
    assert_eq!(
        kms.node.metrics().releases("app_key", "released", "none"),
        1
    );
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_outside_its_validity_window_is_denied() {
    let w = World::new().await;
    let (kms, now) = clocked(&w, 0xE2).await;
    let guest = w.guest(0x62);
    let cert = RaTlsCertBuilder::new(Usage::AppCustom)
        .common_name("guest")
        .event_log(&guest.log.to_json())
        .app_id(guest.app_id.0)
        .validity(Duration::from_secs(60))
        .build(guest.tdx.as_ref())
        .unwrap();
    let mut client = kms.client(Some(&cert)).await;
    app_key(&mut client).await.unwrap();
    now.fetch_add(3600, Ordering::SeqCst);
    let err = refused_app_key(
        &kms,
        &mut client,
        StatusCode::FORBIDDEN,
        "denied.client_cert",
    )
    .await;
    assert!(err.body.error.message.contains("not valid now"), "{err:?}");
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_generation_than_the_chain_does_not_start() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    install_master(dir.path(), 2);
    let err = Node::open(w.options(dir.path(), 0xE3, &pki()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::KeyGenerationMismatch { chain: 1, node: 2 }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("generation is 1") && msg.contains("generation 2"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_does_not_start_before_root_keys_are_registered() {
    let w = World::without_root_keys().await;
    let dir = tempfile::tempdir().unwrap();
    install_master(dir.path(), 1);
    let opts = w.options(dir.path(), 0xE4, &pki());
    w.register_kms(&opts, None).await;
    let err = Node::open(opts).await.unwrap_err();
    assert!(
        matches!(err, Error::NoRootKeysRegistered { node: 1 }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_rotated_out_on_chain_stops_releasing() {
    let (w, kms) = World::serving(0xE5).await;
    let mut client = w.released_client(&kms, 0x65).await;

    let next = RootKeys::derive(&MasterSecret::from_bytes([0x77; 32])).unwrap();
    w.client
        .set_kms_root_keys(
            2,
            Bytes::from(next.k256_public().to_vec()),
            Bytes::from(next.ca().spki_der()),
        )
        .await
        .unwrap();
    w.mine(CONFIRMATIONS).await;
    let err = refused_app_key(
        &kms,
        &mut client,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable.key_generation",
    )
    .await;
    assert!(
        err.body.error.message.contains("generation is 2"),
        "{err:?}"
    );
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_does_not_extend_the_on_chain_anchor_refuses_to_start() {
    let (w, kms) = World::serving(0xE6).await;
    let mut client = w.released_client(&kms, 0x66).await;
    app_key(&mut client).await.unwrap();
    cairn_kms::anchor_once(&kms.node, 0).await.unwrap();
    let dir = kms.stop().await;
    w.mine(CONFIRMATIONS).await;
    let log_dir = dir.path().join(cairn_kms::LOG_DIR);

    // Intact: opens.
    drop(
        Node::open(w.options(dir.path(), 0xE6, &pki()))
            .await
            .unwrap(),
    );

    // Forked: same size, other entries.
    std::fs::rename(&log_dir, dir.path().join("log.orig")).unwrap();
    {
        let forked = cairn_tlog::Log::open(&log_dir).unwrap();
        forked.append(b"forked-0".to_vec()).unwrap();
        forked.append(b"forked-1".to_vec()).unwrap();
    }
    assert_behind_anchor(&w, dir.path(), 2).await;

    // Lost: empty.
    std::fs::remove_dir_all(&log_dir).unwrap();
    assert_behind_anchor(&w, dir.path(), 0).await;
}

/// Opening the node of host 0xE6 on `dir` fails: its log of `local` entries does not
/// extend the 2 entries it anchored.
async fn assert_behind_anchor(w: &World, dir: &std::path::Path, local: u64) {
    let err = Node::open(w.options(dir, 0xE6, &pki())).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::LogBehindAnchor {
                local_size,
                anchored_size: 2,
                ..
            } if local_size == local
        ),
        "a log of {local} entries: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_evidence_is_reverified_with_renewed_collateral_and_keeps_serving() {
    use cairn_attestation::simulator::{SimPccs, SimPki};
    use cairn_attestation::testing::ServedPccs;
    use cairn_attestation::{PccsClient, Verifier};
    use cairn_kms::CollateralSource;

    let w = World::new().await;
    let pccs = SimPccs::new(pki());
    let served = ServedPccs::start(pccs.clone()).await;

    let (mut opts, dir) = w.prepare(0xE7, &pki()).await;
    opts.verifier = Verifier::dangerous_with_simulator_root(pki().root_ca_der()).into();
    opts.collateral = CollateralSource::Pccs(PccsClient::new(served.url()).unwrap().into());
    let now = Arc::new(AtomicU64::new(unix_now()));
    opts.clock = {
        let now = now.clone();
        Clock::from_fn(move || now.load(Ordering::SeqCst))
    };
    let node = Node::open(opts).await.unwrap();
    let kms = w.serve_node(node, dir).await;
    let mut client = w.released_client(&kms, 0x67).await;
    let first = kms.node.own_evidence().quote.valid_until();

    // Past the first collateral window, the PCCS serves renewed collateral (same PKI
    // keys, a later window): the node re-verifies its own evidence and keeps serving.
    let mut renewed = pki().config().clone();
    renewed.now = first - 60;
    pccs.set_pki(Arc::new(SimPki::new(renewed).unwrap()));
    now.store(first + 1, Ordering::SeqCst);
    app_key(&mut client).await.unwrap();
    let second = kms.node.own_evidence().quote.valid_until();
    assert!(
        second > first + 1,
        "own evidence not re-verified: {second} <= {first}"
    );
    assert_eq!(kms.node.log().size(), 2);
    kms.stop().await;
    served.stop().await.unwrap();
}
