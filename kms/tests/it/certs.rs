//! The derived CA certificates: structure, extensions and signatures.

use cairn_attestation::ratls_consts::{OID_APP_ID, OID_SPECIAL_USAGE, USAGE_APP_CA};
use cairn_kms::{AppKeys, RootKeys};
use p256::ecdsa::signature::Verifier as _;
use x509_parser::prelude::*;

use super::{instance, master, APP_ID};

fn oid(arcs: &[u64]) -> String {
    arcs.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

fn verify_signed_by(cert: &X509Certificate<'_>, key: &p256::ecdsa::VerifyingKey) -> bool {
    let Ok(sig) = p256::ecdsa::Signature::from_der(&cert.signature_value.data) else {
        return false;
    };
    key.verify(cert.tbs_certificate.as_ref(), &sig).is_ok()
}

fn octet_string_content(value: &[u8]) -> &[u8] {
    assert_eq!(value[0], 0x04, "extension value is not an OCTET STRING");
    assert!(value[1] < 0x80);
    &value[2..]
}

#[test]
fn root_ca_is_a_self_signed_ca_with_a_fixed_window() {
    let root = RootKeys::derive(&master()).unwrap();
    let (rest, cert) = X509Certificate::from_der(root.ca().cert_der()).unwrap();
    assert!(rest.is_empty());
    assert_eq!(cert.subject(), cert.issuer());
    assert!(cert.is_ca());
    assert!(verify_signed_by(&cert, root.ca().signer().verifying_key()));
    assert_eq!(cert.validity().not_before.timestamp(), 1_735_689_600); // 2025-01-01
    assert_eq!(cert.validity().not_after.timestamp(), 4_891_363_200); // 2125-01-01
    assert_eq!(cert.public_key().raw, &root.ca().spki_der()[..]);
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    // PEM and DER agree
    let (_, pem) = x509_parser::pem::parse_x509_pem(root.ca().cert_pem().as_bytes()).unwrap();
    assert_eq!(pem.contents, root.ca().cert_der());
}

#[test]
fn app_ca_is_issued_by_the_root_with_app_ca_usage() {
    let master = master();
    let root = RootKeys::derive(&master).unwrap();
    let app = AppKeys::derive(&master, &root, &APP_ID, &instance()).unwrap();
    let (_, root_cert) = X509Certificate::from_der(root.ca().cert_der()).unwrap();
    let (rest, cert) = X509Certificate::from_der(app.ca().cert_der()).unwrap();
    assert!(rest.is_empty());
    assert_eq!(cert.issuer(), root_cert.subject());
    assert!(verify_signed_by(&cert, root.ca().signer().verifying_key()));
    // not signed by its own key
    assert!(!verify_signed_by(&cert, app.ca().signer().verifying_key()));
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));

    let usage = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == oid(OID_SPECIAL_USAGE))
        .expect("usage extension");
    assert!(!usage.critical);
    assert_eq!(octet_string_content(usage.value), USAGE_APP_CA.as_bytes());
    let app_id = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == oid(OID_APP_ID))
        .expect("app id extension");
    assert_eq!(octet_string_content(app_id.value), APP_ID.as_bytes());
    let cn = cert.subject().iter_common_name().next().unwrap();
    assert_eq!(
        cn.as_str().unwrap(),
        format!("Cairn App CA 0x{}", APP_ID.to_hex())
    );
}

#[test]
fn app_ca_issuer_signs_leaf_certificates() {
    let master = master();
    let root = RootKeys::derive(&master).unwrap();
    let app = AppKeys::derive(&master, &root, &APP_ID, &instance()).unwrap();
    let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec!["app.example".to_owned()]).unwrap();
    let leaf = params.signed_by(&leaf_key, &app.ca().issuer()).unwrap();
    let (_, leaf) = X509Certificate::from_der(leaf.der()).unwrap();
    let (_, app_ca) = X509Certificate::from_der(app.ca().cert_der()).unwrap();
    assert_eq!(leaf.issuer(), app_ca.subject());
    assert!(verify_signed_by(&leaf, app.ca().signer().verifying_key()));
}
