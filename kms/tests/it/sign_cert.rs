//! `sign-cert`: the app CA signs a CSR for the attested key only.

use cairn_attestation::ratls_consts::{OID_APP_ID, OID_SPECIAL_USAGE};
use cairn_attestation::RaTlsCert;
use cairn_kms_client::KmsConnection;
use cairn_protocol::api::{SignCertRequest, SignCertResponse, PATH_SIGN_CERT};
use cairn_tlog::{ReleaseKind, ReleaseRecord};
use hyper::{Method, StatusCode};
use p256::ecdsa::signature::Verifier as _;
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use x509_parser::prelude::*;

use crate::world::{answer, pki, verifier_for, Guest, Running, World};

pub fn csr(key: &KeyPair) -> Vec<u8> {
    let mut params = CertificateParams::new(vec!["app.example".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "demo app");
    params.serialize_request(key).unwrap().der().to_vec()
}

pub fn der_of(pem: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    p.contents
}

/// `sign-cert` of a CSR for `cert`'s attested key over `c` (a connection authenticated with
/// `cert`), at the KMS's default validity; it must be issued.
pub async fn sign_own_key(c: &mut KmsConnection, cert: &RaTlsCert) -> SignCertResponse {
    let req = SignCertRequest {
        csr: csr(&cert.key_pair().unwrap()),
        not_before: None,
        not_after: None,
    };
    c.call(Method::POST, PATH_SIGN_CERT, Some(&req))
        .await
        .unwrap()
}

/// The world, a KMS node on host `node_seed`, a guest on host `guest_seed`, its RA-TLS
/// certificate, and the KMS's answer to [`sign_own_key`] over the guest's connection.
async fn issued(
    node_seed: u8,
    guest_seed: u8,
) -> (World, Running, Guest, RaTlsCert, SignCertResponse) {
    let (w, kms, guest, cert, mut c) = World::serving_guest(node_seed, guest_seed).await;
    let resp = sign_own_key(&mut c, &cert).await;
    (w, kms, guest, cert, resp)
}

fn ext<'a>(cert: &'a X509Certificate<'_>, oid: &[u64]) -> &'a [u8] {
    let oid = x509_parser::der_parser::oid::Oid::from(oid).unwrap();
    let e = cert
        .extensions()
        .iter()
        .find(|e| e.oid == oid)
        .expect("extension present");
    &e.value[2..]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csr_for_the_attested_key_is_signed_by_the_app_ca_and_logged() {
    let (_w, kms, guest, cert, resp) = issued(0xE1, 0x41).await;
    assert_eq!(resp.certificate_chain.len(), 3);
    let ders: Vec<Vec<u8>> = resp.certificate_chain.iter().map(|p| der_of(p)).collect();
    let (_, leaf) = X509Certificate::from_der(&ders[0]).unwrap();
    let (_, app_ca) = X509Certificate::from_der(&ders[1]).unwrap();
    assert_eq!(
        resp.certificate_chain[2],
        kms.node.root_keys().ca().cert_pem()
    );
    // leaf signed by the app CA key
    let ca_key =
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&app_ca.public_key().subject_public_key.data)
            .unwrap();
    let sig = p256::ecdsa::Signature::from_der(&leaf.signature_value.data).unwrap();
    ca_key.verify(leaf.tbs_certificate.as_ref(), &sig).unwrap();
    assert_eq!(leaf.issuer(), app_ca.subject());
    assert_eq!(ext(&leaf, OID_APP_ID), &guest.app_id.0);
    assert_eq!(ext(&leaf, OID_SPECIAL_USAGE), b"app:custom");
    // the leaf certifies the attested key
    let (_, client) = X509Certificate::from_der(&cert.cert_der).unwrap();
    assert_eq!(
        leaf.public_key().subject_public_key.data,
        client.public_key().subject_public_key.data
    );
    let rec = ReleaseRecord::decode(&kms.node.log().entry(0).unwrap()).unwrap();
    assert_eq!(rec.kind, ReleaseKind::SignCert);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_leaf_carries_the_callers_evidence_and_is_a_valid_ra_tls_cert() {
    let (_w, kms, guest, cert, resp) = issued(0xE3, 0x43).await;
    let leaf_der = der_of(&resp.certificate_chain[0]);
    let ev = cairn_attestation::parse_ra_tls_extensions(&leaf_der).unwrap();
    let client_ev = cairn_attestation::parse_ra_tls_extensions(&cert.cert_der).unwrap();
    assert_eq!(ev.quote, client_ev.quote);
    assert_eq!(ev.event_log, client_ev.event_log);
    assert_eq!(ev.app_id, Some(guest.app_id.0));
    assert_eq!(ev.usage, Some(cairn_attestation::Usage::AppCustom));
    // The quote binds the leaf's own key: it verifies against the leaf's SPKI.
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    let report_data = cairn_attestation::ra_tls_report_data(leaf.public_key().raw);
    let verified = verifier_for(&pki())
        .verify(
            &ev.quote,
            &ev.event_log,
            &report_data,
            cairn_kms::unix_now(),
        )
        .unwrap();
    assert_eq!(*verified.app_id(), guest.app_id);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csr_for_another_key_or_garbage_is_denied_and_not_logged() {
    let (_w, kms, _guest, _cert, mut c) = World::serving_guest(0xE2, 0x42).await;
    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    for csr in [csr(&other), vec![0x30, 0x00], vec![]] {
        let err = c
            .call::<_, SignCertResponse>(
                Method::POST,
                PATH_SIGN_CERT,
                Some(&SignCertRequest {
                    csr,
                    not_before: None,
                    not_after: None,
                }),
            )
            .await
            .map_err(answer)
            .unwrap_err();
        err.assert_code(StatusCode::FORBIDDEN, "denied.csr");
    }
    assert_eq!(kms.node.log().size(), 0);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relying_party_accepts_an_issued_leaf_for_its_app_only() {
    use cairn_attestation::{verify_app_chain, CertRole, ChainError, RootCa};

    let (w, kms, guest, cert, resp) = issued(0xE3, 0x43).await;
    let chain: Vec<Vec<u8>> = resp.certificate_chain.iter().map(|p| der_of(p)).collect();
    // The root a relying party trusts is the one registered on chain, not the response's.
    let at = w.client.policy_block().await.unwrap();
    let registered = w.client.root_keys(at).await.unwrap().unwrap();
    let root = RootCa::from_der(kms.node.root_keys().ca().cert_der().to_vec()).unwrap();
    assert_eq!(root.spki(), registered.ca_pubkey.as_ref());

    let now = cairn_kms::unix_now();
    let app_id = guest.app_id.0;
    let ok = verify_app_chain(&root, &chain, &app_id, now).unwrap();
    assert_eq!(ok.app_id, app_id);
    assert_eq!(
        ok.leaf_spki,
        cairn_attestation::spki_of(&cert.cert_der, CertRole::Leaf).unwrap()
    );

    // The same chain presented for another app: refused at the app CA's app id.
    let other = [0x99; 20];
    let err = verify_app_chain(&root, &chain, &other, now).unwrap_err();
    assert!(
        matches!(
            err,
            ChainError::AppIdMismatch {
                role: CertRole::AppCa,
                expected,
                found,
            } if expected == other && found == app_id
        ),
        "{err:?}"
    );
    // And after the leaf's validity.
    let later = now + cairn_kms::LEAF_VALIDITY.as_secs() + 3600;
    let err = verify_app_chain(&root, &chain, &app_id, later).unwrap_err();
    assert!(
        matches!(
            err,
            ChainError::NotValidAt {
                role: CertRole::Leaf,
                ..
            }
        ),
        "{err:?}"
    );
    kms.stop().await;
}
