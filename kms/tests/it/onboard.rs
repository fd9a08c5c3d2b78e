//! Replication: a second node onboarded from the first serves the same keys.

use cairn_kms::node::{LOG_DIR, SECRETS_DIR};
use cairn_kms::{Error, SecretStore};
use cairn_tlog::{ReleaseKind, ReleaseRecord};

use crate::release::app_key;
use crate::world::{pki, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_onboarded_node_serves_the_same_keys_and_both_log_the_onboarding() {
    let w = World::new().await;
    let a = w.start(0xD1).await;

    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let opts = w.options(dir.path(), 0xD2, &pki());
    w.register_kms(&opts, None).await;
    let report = cairn_kms::onboard(&opts, a.addr).await.unwrap();
    assert_eq!(report.key_generation, 1);
    assert_eq!(report.local_log_index, 0);
    let entry = a.node.log().entry(report.source_receipt.log_index).unwrap();
    let rec = ReleaseRecord::decode(&entry).unwrap();
    assert_eq!(rec.kind, ReleaseKind::KmsOnboard);

    // Register B's address (it anchors with it) and serve.
    w.chain
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
    let rec = ReleaseRecord::decode(&b.node.log().entry(0).unwrap()).unwrap();
    assert_eq!(rec.kind, ReleaseKind::KmsOnboard);
    assert_eq!(rec.kms_node.into_array(), report.node_address);

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
    let w = World::new().await;
    let a = w.start(0xD3).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = w.options(dir.path(), 0xD4, &pki());
    let before = a.node.log().size();
    let err = cairn_kms::onboard(&opts, a.addr).await.unwrap_err();
    match &err {
        Error::OnboardRefused {
            status: 403, code, ..
        } => assert_eq!(code, "denied.kms_mr"),
        e => panic!("unexpected {e}"),
    }
    assert_eq!(a.node.log().size(), before);
    let store = SecretStore::open(dir.path().join(SECRETS_DIR)).unwrap();
    assert!(matches!(store.identity(), Err(Error::NotBootstrapped)));
    a.stop().await;
}
