//! A node releases only while its address is a registered KMS node (`KmsAuth.isKmsNode`)
//! at the pinned block: removed with `removeKmsNode`, or onboarded and never added, it
//! answers 503 `self_check.not_registered` and logs nothing.

use cairn_onchain::alloy::primitives::Address;
use hyper::StatusCode;

use crate::release::app_key;
use crate::world::{pki, World, CONFIRMATIONS};

const NOT_REGISTERED: &str = "self_check.not_registered";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_removed_from_kms_auth_stops_releasing_until_it_is_added_again() {
    let (w, kms) = World::serving(0xF1).await;
    let me = Address::from(kms.node.address());
    let mut client = w.released_client(&kms, 0x71).await;

    w.client.remove_kms_node(me).await.unwrap();
    // Policy is pinned `CONFIRMATIONS` behind head: the removal is not seen yet.
    app_key(&mut client).await.unwrap();
    w.mine(CONFIRMATIONS).await;
    let size = kms.node.log().size();
    for _ in 0..2 {
        let err = app_key(&mut client).await.unwrap_err();
        err.assert_code(StatusCode::SERVICE_UNAVAILABLE, NOT_REGISTERED);
        assert!(
            err.body.error.message.contains("isKmsNode is false"),
            "{err:?}"
        );
    }
    assert_eq!(kms.node.log().size(), size, "a refused release was logged");
    assert_eq!(
        kms.node
            .metrics()
            .releases("app_key", "unavailable", NOT_REGISTERED),
        2
    );
    assert!(matches!(
        kms.node.self_check_now().await,
        Err(cairn_kms::ApiError::Unavailable {
            dependency: cairn_kms::Dependency::Registration,
            ..
        })
    ));

    w.client.add_kms_node(me).await.unwrap();
    w.mine(CONFIRMATIONS).await;
    let r = app_key(&mut client).await.unwrap();
    assert_eq!(r.receipt.log_index, size);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_onboarded_but_never_registered_releases_nothing() {
    let (w, a, opts, dir) = World::with_candidate(0xF2, 0xF3).await;
    // Its MR and device are allowed (onboarding needs that), its address is not added.
    w.register_kms(&opts, None).await;
    let report = cairn_kms::onboard(&opts, a.addr).await.unwrap();
    let b = w
        .serve(w.options(dir.path(), 0xF3, &pki()), dir.clone())
        .await;
    assert_eq!(b.node.address(), report.node_address);
    assert_eq!(b.node.log().size(), 1, "the onboarding entry");

    let guest = w.guest(0x72);
    let cert = guest.cert();
    let mut client = b.client(Some(&cert)).await;
    let err = app_key(&mut client).await.unwrap_err();
    err.assert_code(StatusCode::SERVICE_UNAVAILABLE, NOT_REGISTERED);
    assert!(
        err.body
            .error
            .message
            .contains(&hex::encode(report.node_address)),
        "{err:?}"
    );
    assert_eq!(b.node.log().size(), 1);
    // The source node, registered, serves the same guest.
    app_key(&mut a.client(Some(&cert)).await).await.unwrap();

    w.client
        .add_kms_node(Address::from(report.node_address))
        .await
        .unwrap();
    w.mine(CONFIRMATIONS).await;
    app_key(&mut client).await.unwrap();
    assert_eq!(b.node.log().size(), 2);
    a.stop().await;
    b.stop().await;
}
