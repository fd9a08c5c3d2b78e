//! Replication: a second node onboarded from the first serves the same keys.

use cairn_kms::{Error, NodeOptions, SecretStore};
use cairn_kms::{LOG_DIR, SECRETS_DIR};
use cairn_tlog::{ReleaseKind, ReleaseRecord};

use crate::release::app_key;
use crate::world::{answer, pki, Running, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_onboarded_node_serves_the_same_keys_and_both_log_the_onboarding() {
    let (w, a, opts, dir) = World::with_candidate(0xD1, 0xD2).await;
    w.register_kms(&opts, None).await;
    let report = cairn_kms::onboard(&opts, a.addr).await.unwrap();
    assert_eq!(report.key_generation, 1);
    assert_eq!(report.local_log_index, 0);
    let entry = a.node.log().entry(report.source_receipt.log_index).unwrap();
    let rec = ReleaseRecord::decode(&entry).unwrap();
    assert_eq!(rec.kind, ReleaseKind::KmsOnboard);

    // Register B's address (it anchors with it) and serve.
    w.client
        .add_kms_node(cairn_onchain::alloy::primitives::Address::from(
            report.node_address,
        ))
        .await
        .unwrap();
    w.mine(crate::world::CONFIRMATIONS).await;
    let b = w
        .serve(w.options(dir.path(), 0xD2, &pki()), dir.clone())
        .await;
    assert_eq!(b.node.address(), report.node_address);
    // B's entry 0 is its receipt (kind 3): A's boot info, judged an allowed KMS, and
    // logged by B, which released nothing.
    let rec = ReleaseRecord::decode(&b.node.log().entry(0).unwrap()).unwrap();
    assert_eq!(rec.kind, ReleaseKind::KmsOnboardReceipt);
    assert_eq!(rec.kms_node.into_array(), report.node_address);
    assert_eq!(
        rec.boot,
        cairn_onchain::recorded_boot_info(&a.node.own_evidence().boot)
    );
    assert_eq!(rec.key_generation, 1);
    // A's entry is the release, with B's boot info.
    let sent = ReleaseRecord::decode(&a.node.log().entry(report.source_receipt.log_index).unwrap())
        .unwrap();
    assert_eq!(
        sent.boot,
        cairn_onchain::recorded_boot_info(&b.node.own_evidence().boot)
    );

    let guest = w.guest(0x31);
    let cert = guest.cert();
    let ka = app_key(&mut a.client(Some(&cert)).await).await.unwrap();
    let kb = app_key(&mut b.client(Some(&cert)).await).await.unwrap();
    assert_eq!(*ka.app_key, *kb.app_key);
    assert_eq!(*ka.disk_key, *kb.disk_key);
    assert_eq!(ka.kms_signature, kb.kms_signature);
    a.stop().await;
    b.stop().await;
    let _ = LOG_DIR;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_mr_is_not_allowed_is_refused_and_gets_nothing() {
    let (_w, a, opts, dir) = World::with_candidate(0xD3, 0xD4).await;
    match &refused_onboarding(&a, &opts, dir.path()).await {
        Error::OnboardRefused {
            status: 403, code, ..
        } => assert_eq!(code, "denied.kms_mr"),
        e => panic!("unexpected {e}"),
    }
    a.stop().await;
}

fn not_bootstrapped(dir: &std::path::Path) -> bool {
    let store = SecretStore::open(dir.join(SECRETS_DIR)).unwrap();
    matches!(store.identity(), Err(Error::NotBootstrapped))
}

/// `opts`' onboarding from `a`, which must fail with nothing logged by `a` and nothing
/// stored in `dir`: the error.
async fn refused_onboarding(a: &Running, opts: &NodeOptions, dir: &std::path::Path) -> Error {
    let before = a.node.log().size();
    let err = cairn_kms::onboard(opts, a.addr).await.unwrap_err();
    assert_eq!(a.node.log().size(), before, "{err}");
    assert!(not_bootstrapped(dir), "{err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_a_kms_rpc_certificate_is_refused_even_on_an_allowed_kms_tee() {
    use cairn_protocol::api::{OnboardRequest, OnboardResponse, PATH_ONBOARD};
    let (w, a, opts, _dir) = World::with_candidate(0xD5, 0xD6).await;
    // The TEE is an allowed KMS (isKmsAllowed would pass); only the usage is wrong.
    w.register_kms(&opts, None).await;
    let cert = cairn_attestation::RaTlsCertBuilder::new(cairn_attestation::Usage::AppCustom)
        .event_log(&opts.event_log)
        .build(opts.tee.as_ref())
        .unwrap();
    let before = a.node.log().size();
    let mut client = a.client(Some(&cert)).await;
    let err = client
        .call::<_, OnboardResponse>(
            hyper::Method::POST,
            PATH_ONBOARD,
            Some(&OnboardRequest::default()),
        )
        .await
        .map_err(answer)
        .unwrap_err();
    assert_eq!(
        (err.status.as_u16(), err.body.error.code.as_str()),
        (403, "denied.client_cert"),
        "{err:?}"
    );
    assert!(err.body.error.message.contains("kms:rpc"), "{err:?}");
    assert_eq!(a.node.log().size(), before);
    assert_eq!(a.node.metrics().releases("onboard", "released", "none"), 0);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_refuses_a_source_the_chain_does_not_allow() {
    let (w, a, opts, dir) = World::with_candidate(0xD7, 0xD8).await;
    w.client
        .remove_kms_device(a.node.own_evidence().boot.deviceId)
        .await
        .unwrap();
    w.mine(crate::world::CONFIRMATIONS).await;
    w.register_kms(&opts, None).await;
    match &refused_onboarding(&a, &opts, dir.path()).await {
        Error::Chain(cairn_onchain::Error::Denied { reason, .. }) => {
            assert_eq!(reason, cairn_onchain::reasons::KMS_DEVICE)
        }
        e => panic!("unexpected {e}"),
    }
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_secret_whose_root_keys_are_not_the_chains_is_not_stored() {
    use cairn_onchain::alloy::primitives::Bytes;
    let w = World::new().await;
    let a = w.start(0xD9).await;
    // B trusts another deployment, whose generation-1 root keys are another master's;
    // A and B are both allowed there.
    let other = World::without_root_keys().await;
    let theirs =
        cairn_kms::RootKeys::derive(&cairn_kms::MasterSecret::from_bytes([0x33; 32])).unwrap();
    other
        .client
        .set_kms_root_keys(
            1,
            Bytes::from(theirs.k256_public().to_vec()),
            Bytes::from(theirs.ca().spki_der()),
        )
        .await
        .unwrap();
    let a_dir = tempfile::tempdir().unwrap();
    other
        .register_kms(&other.options(a_dir.path(), 0xD9, &pki()), None)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let opts = other.options(dir.path(), 0xDA, &pki());
    other.register_kms(&opts, None).await;
    w.register_kms(&w.options(dir.path(), 0xDA, &pki()), None)
        .await;
    let before = a.node.log().size();
    let err = cairn_kms::onboard(&opts, a.addr).await.unwrap_err();
    assert!(
        matches!(err, Error::RootKeysMismatch { generation: 1 }),
        "{err}"
    );
    // A released (and logged) the secret; B refused to store it.
    assert_eq!(a.node.log().size(), before + 1);
    assert!(not_bootstrapped(dir.path()));
    a.stop().await;
}
