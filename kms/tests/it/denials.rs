//! Every denial names its check, answers 403 (503 for an unavailable chain) and leaves
//! no log entry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_attestation::ids::{AppId, ComposeHash};
use cairn_attestation::simulator::SimTdx;
use cairn_attestation::{Tee, TeeError};
use cairn_onchain::alloy::primitives::B256;
use cairn_onchain::AppParams;
use hyper::StatusCode;

use crate::release::app_key;
use crate::world::{self, pki, refused_app_key, ErrorAnswer, Guest, Running, World, COMPOSE};

/// The request is denied (403) with `code` and the log did not grow.
async fn assert_denied(
    kms: &Running,
    guest_cert: &cairn_attestation::RaTlsCert,
    code: &str,
) -> ErrorAnswer {
    let before = kms.node.log().size();
    let mut client = kms.client(Some(guest_cert)).await;
    let err = app_key(&mut client).await.unwrap_err();
    err.assert_code(StatusCode::FORBIDDEN, code);
    assert_eq!(
        kms.node.log().size(),
        before,
        "{code}: a denied request must not be logged"
    );
    assert_eq!(
        kms.node.metrics().releases("app_key", "released", "none"),
        0,
        "{code}"
    );
    err
}

/// A TEE that quotes report data of another key than the one it is asked about.
struct OtherKeyTee(Arc<SimTdx>);

impl Tee for OtherKeyTee {
    fn extend_rtmr3(&self, digest: &[u8; 48]) -> Result<(), TeeError> {
        self.0.extend_rtmr3(digest)
    }
    fn quote(&self, _report_data: &[u8; 64]) -> Result<Vec<u8>, TeeError> {
        self.0
            .quote(&cairn_attestation::ra_tls_report_data(b"some other key"))
    }
}

/// Guests that each fail one check of the same node: every one is denied with its own
/// code (the code names the case in every assertion message), and a chain denial carries
/// the contract's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_failing_one_check_is_denied_naming_the_check() {
    let (w, kms) = World::serving(0xB1).await;
    let homebrew = cairn_attestation::simulator::OsImage::example("homebrew", "6.6");
    let other_key = w.guest(0x18);
    let cases = [
        (
            Guest::boot(pki(), 0x11, world::image(), w.app_id, br#"{"name":"evil"}"#).cert(),
            "denied.compose_hash",
            Some(cairn_onchain::reasons::COMPOSE_HASH),
        ),
        (
            Guest::boot(pki(), 0x12, world::unlisted_image(), w.app_id, COMPOSE).cert(),
            "denied.os_image",
            None,
        ),
        (
            Guest::boot(pki(), 0x13, homebrew, w.app_id, COMPOSE).cert(),
            "denied.os_image_measurements",
            None,
        ),
        (
            Guest::boot(pki(), 0x16, world::image(), AppId([0x77; 20]), COMPOSE).cert(),
            "denied.app_not_registered",
            None,
        ),
        (
            Guest::boot(world::rogue_pki(), 0x17, world::image(), w.app_id, COMPOSE).cert(),
            "denied.quote",
            None,
        ),
        (
            other_key.cert_from(&OtherKeyTee(other_key.tdx.clone())),
            "denied.report_data",
            None,
        ),
    ];
    for (cert, code, reason) in cases {
        let err = assert_denied(&kms, &cert, code).await;
        if let Some(reason) = reason {
            assert_eq!(err.body.error.message, reason, "{code}");
        }
    }
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_not_allowed_is_denied() {
    let w = World::new().await;
    let params = AppParams {
        allow_any_device: false,
        initial_device: Some(B256::repeat_byte(0xde)),
        initial_compose_hash: Some(B256::from(ComposeHash::of_compose(COMPOSE).0)),
        ..AppParams::new(w.owner)
    };
    let app = w.client.deploy_app(&params).await.unwrap();
    w.mine(world::CONFIRMATIONS).await;
    let kms = w.start(0xB4).await;
    let guest = Guest::boot(
        pki(),
        0x14,
        world::image(),
        AppId(app.app_id().into_array()),
        COMPOSE,
    );
    assert_denied(&kms, &guest.cert(), "denied.device").await;
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_date_tcb_is_denied() {
    let w = World::new().await;
    let kms = w.start_with(0xB5, &world::out_of_date_pki()).await;
    let guest = w.guest(0x15);
    let err = assert_denied(&kms, &guest.cert(), "denied.tcb_status").await;
    assert_eq!(err.body.error.message, cairn_onchain::reasons::TCB_STATUS);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_compose_hash_denies_after_the_confirmations() {
    let (w, kms) = World::serving(0xB9).await;
    let mut client = w.released_client(&kms, 0x19).await;
    w.app
        .remove_compose_hash(B256::from(ComposeHash::of_compose(COMPOSE).0))
        .await
        .unwrap();
    // Pinned reads: the removal is not final until it is CONFIRMATIONS deep.
    app_key(&mut client).await.unwrap();
    w.mine(world::CONFIRMATIONS).await;
    refused_app_key(
        &kms,
        &mut client,
        StatusCode::FORBIDDEN,
        "denied.compose_hash",
    )
    .await;
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_chain_answers_503_fast_and_logs_nothing() {
    let mut w = World::new().await;
    let kms = w.start(0xBA).await;
    let mut client = w.guest_client(&kms, 0x1A).await;
    w.net.chain.kill_anvil();
    let t = Instant::now();
    refused_app_key(
        &kms,
        &mut client,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable.chain",
    )
    .await;
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    // Still serving.
    let (status, _) = client
        .request(hyper::Method::GET, "/healthz", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_chain_id_is_a_startup_error() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    cairn_kms::testing::install_master(dir.path(), 1);
    let mut opts = w.options(dir.path(), 0xBB, &pki());
    opts.chain = cairn_onchain::ChainConfig::new(w.endpoint(), 1, w.kms_auth());
    let err = cairn_kms::Node::open(opts).await.unwrap_err();
    assert!(
        matches!(
            err,
            cairn_kms::Error::Chain(cairn_onchain::Error::ChainIdMismatch { expected: 1, .. })
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_no_longer_allowed_on_chain_releases_nothing() {
    let (w, kms) = World::serving(0xBC).await;
    let mut client = w.released_client(&kms, 0x1C).await;
    let mr = kms.node.own_evidence().boot.mrAggregated;
    w.client.remove_kms_aggregated_mr(mr).await.unwrap();
    w.mine(world::CONFIRMATIONS).await;
    let err = refused_app_key(
        &kms,
        &mut client,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable.self_check",
    )
    .await;
    assert!(err
        .body
        .error
        .message
        .contains(cairn_onchain::reasons::KMS_MR));
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_keys_other_than_the_registered_ones_are_a_startup_error() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    cairn_kms::SecretStore::open(dir.path().join(cairn_kms::SECRETS_DIR))
        .unwrap()
        .bootstrap(1)
        .unwrap();
    let err = cairn_kms::Node::open(w.options(dir.path(), 0xBD, &pki()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, cairn_kms::Error::RootKeysMismatch { generation: 1 }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_os_image_hash_event_naming_another_image_is_denied() {
    let (w, kms) = World::serving(0xBE).await;
    let mut guest = w.guest(0x1E);
    // MRTD/RTMR0-2 are image 1.0's, the measured os-image-hash claims 0.9.
    guest
        .log
        .measure(
            guest.tdx.as_ref(),
            cairn_attestation::consts::EVENT_OS_IMAGE_HASH,
            world::unlisted_image().os_image_hash().0.to_vec(),
        )
        .unwrap();
    let err = assert_denied(&kms, &guest.cert(), "denied.os_image_measurements").await;
    assert!(
        err.body.error.message.contains("measured os-image-hash"),
        "{err:?}"
    );
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_id_extension_other_than_the_measured_app_id_is_denied() {
    let (w, kms) = World::serving(0xBF).await;
    let guest = w.guest(0x1F);
    let cert = cairn_attestation::RaTlsCertBuilder::new(cairn_attestation::Usage::AppCustom)
        .common_name("guest")
        .event_log(&guest.log.to_json())
        .app_id([0x99; 20])
        .build(guest.tdx.as_ref())
        .unwrap();
    let err = assert_denied(&kms, &cert, "denied.event_log").await;
    assert!(
        err.body.error.message.contains("app id extension"),
        "{err:?}"
    );
    kms.stop().await;
}
