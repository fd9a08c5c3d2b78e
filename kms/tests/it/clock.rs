//! The injected clock: a node opened with a fixed clock stamps everything time-dependent
//! with it (release records, `sign-cert` leaf validity, the env-pubkey timestamp), not
//! with the system clock.

use cairn_kms::{unix_now, Clock, LEAF_VALIDITY};
use cairn_protocol::api::{SignCertRequest, SignCertResponse, PATH_SIGN_CERT};
use cairn_tlog::{ReleaseKind, ReleaseRecord};
use hyper::Method;
use x509_parser::prelude::*;

use crate::release::app_key;
use crate::sign_cert::{csr, der_of, sign_own_key};
use crate::world::{answer, pki, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_fixed_clock_stamps_records_leaves_and_env_keys_with_it() {
    let w = World::new().await;
    // A day ahead of the system clock: inside every validity window (collateral, the
    // guest's certificate) yet far from any timestamp the system clock could give.
    let fixed = unix_now() + 24 * 3600;
    let (mut opts, dir) = w.prepare(0xD1, &pki()).await;
    opts.clock = Clock::fixed(fixed);
    let node = cairn_kms::Node::open(opts).await.unwrap();
    let kms = w.serve_node(node, dir).await;
    assert_eq!(kms.node.clock().now(), fixed);

    let guest = w.guest(0x71);
    let cert = guest.cert();
    let mut client = kms.client_at(Some(&cert), fixed).await;
    let keys = app_key(&mut client).await.unwrap();
    let resp = sign_own_key(&mut client, &cert).await;

    // Release records carry the node's clock.
    let app_rec =
        ReleaseRecord::decode(&kms.node.log().entry(keys.receipt.log_index).unwrap()).unwrap();
    assert_eq!(app_rec.kind, ReleaseKind::AppKey);
    assert_eq!(app_rec.timestamp, fixed);
    let cert_rec = ReleaseRecord::decode(&kms.node.log().entry(1).unwrap()).unwrap();
    assert_eq!(cert_rec.kind, ReleaseKind::SignCert);
    assert_eq!(cert_rec.timestamp, fixed);

    // The leaf is valid from the node's "now" minus five minutes for LEAF_VALIDITY.
    let leaf_der = der_of(&resp.certificate_chain[0]);
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    let fixed_i = i64::try_from(fixed).unwrap();
    assert_eq!(leaf.validity().not_before.timestamp(), fixed_i - 300);
    assert_eq!(
        leaf.validity().not_after.timestamp(),
        fixed_i + i64::try_from(LEAF_VALIDITY.as_secs()).unwrap()
    );

    // The env public key is signed with the node's "now" as its timestamp.
    let env = kms.node.env_pubkey(&w.app_id).unwrap();
    assert_eq!(env.timestamp, fixed);
    let root = *kms.node.root_keys().k256().verifying_key();
    env.verify(&w.app_id.0, &root, fixed, 300).unwrap();
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_leaf_window_is_issued_exactly_and_one_beyond_the_validity_is_denied() {
    let w = World::new().await;
    let fixed = unix_now() + 3600;
    let (mut opts, dir) = w.prepare(0xD2, &pki()).await;
    opts.clock = Clock::fixed(fixed);
    let node = cairn_kms::Node::open(opts).await.unwrap();
    let kms = w.serve_node(node, dir).await;
    let guest = w.guest(0x72);
    let cert = guest.cert();
    let mut client = kms.client_at(Some(&cert), fixed).await;
    let sign = |not_before, not_after| SignCertRequest {
        csr: csr(&cert.key_pair().unwrap()),
        not_before,
        not_after,
    };

    // Inside the KMS's window: issued exactly as asked (guest agent GetTlsKey options).
    let (nb, na) = (fixed - 60, fixed + 7 * 24 * 3600);
    let resp: SignCertResponse = client
        .call(
            Method::POST,
            PATH_SIGN_CERT,
            Some(&sign(Some(nb), Some(na))),
        )
        .await
        .unwrap();
    let leaf_der = der_of(&resp.certificate_chain[0]);
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    assert_eq!(
        leaf.validity().not_before.timestamp(),
        i64::try_from(nb).unwrap()
    );
    assert_eq!(
        leaf.validity().not_after.timestamp(),
        i64::try_from(na).unwrap()
    );
    let logged = kms.node.log().size();

    // Past the KMS's longest validity, or an inverted window: denied.csr, nothing logged.
    let too_late = fixed + LEAF_VALIDITY.as_secs() + 1;
    for (nb, na) in [(None, Some(too_late)), (Some(fixed), Some(fixed - 1))] {
        let err = client
            .call::<_, SignCertResponse>(Method::POST, PATH_SIGN_CERT, Some(&sign(nb, na)))
            .await
            .map_err(answer)
            .unwrap_err();
        err.assert_code(hyper::StatusCode::FORBIDDEN, "denied.csr");
    }
    assert_eq!(kms.node.log().size(), logged);
    kms.stop().await;
}
