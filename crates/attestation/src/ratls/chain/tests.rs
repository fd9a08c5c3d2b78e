//! Chain checks with rcgen-made roots, app CAs and leaves shaped like the KMS's
//! (kms/src/keys.rs, the sign-cert handler): every refusal matched by its variant.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PublicKeyData,
    PKCS_ECDSA_P256_SHA256,
};

use super::*;
use crate::ratls::{ra_tls_extensions, ExtensionValues};

const APP_A: [u8; 20] = [0xAA; 20];
const APP_B: [u8; 20] = [0xBB; 20];
/// 2030-01-01T00:00:00Z, inside every default validity window below.
const NOW: u64 = 1_893_456_000;

/// `$call` fails with an error matching the pattern (printed when it does not).
macro_rules! refused {
    ($call:expr, $($pat:tt)+) => {{
        let err = $call.unwrap_err();
        assert!(matches!(&err, $($pat)+), "{err:?}");
    }};
}

fn key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2125, 1, 1);
    params
}

/// A self-signed root: its key, its issuer handle, its PEM.
fn make_root(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let key = key();
    let params = ca_params(name);
    let pem = params.self_signed(&key).unwrap().pem();
    (Issuer::new(params, key), pem)
}

/// [`make_root`] named "root", and that root trusted.
fn trusted_root() -> (Issuer<'static, KeyPair>, String, RootCa) {
    let (issuer, pem) = make_root("root");
    let root = RootCa::from_pem(&pem).unwrap();
    (issuer, pem, root)
}

/// An app CA of [`APP_A`] under `root` and a leaf of [`APP_A`] under it (DER).
fn chain_of_a(root: &Issuer<'_, KeyPair>) -> (Vec<u8>, Vec<u8>) {
    let (ca_issuer, ca_der) = app_ca(root, Some(&APP_A), Usage::AppCa);
    let (_, leaf_der) = leaf(&ca_issuer, &APP_A);
    (ca_der, leaf_der)
}

/// An app CA under `issuer` for `app_id` (None: no app-id extension) with `usage`.
fn app_ca(
    issuer: &Issuer<'_, KeyPair>,
    app_id: Option<&[u8; 20]>,
    usage: Usage,
) -> (Issuer<'static, KeyPair>, Vec<u8>) {
    let key = key();
    let mut params = ca_params("app CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.custom_extensions = ra_tls_extensions(ExtensionValues {
        app_id,
        usage: Some(usage),
        ..ExtensionValues::default()
    });
    let der = params.signed_by(&key, issuer).unwrap().der().to_vec();
    (Issuer::new(params, key), der)
}

/// A leaf under `issuer` for `app_id`, valid from `not_before` to `not_after` (years).
fn leaf_valid(
    issuer: &Issuer<'_, KeyPair>,
    app_id: &[u8; 20],
    not_before: i32,
    not_after: i32,
) -> (KeyPair, Vec<u8>) {
    let key = key();
    let mut params = CertificateParams::new(vec!["app.example".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(not_before, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after, 1, 1);
    params.custom_extensions = ra_tls_extensions(ExtensionValues {
        app_id: Some(app_id),
        usage: Some(Usage::AppCustom),
        ..ExtensionValues::default()
    });
    let der = params.signed_by(&key, issuer).unwrap().der().to_vec();
    (key, der)
}

fn leaf(issuer: &Issuer<'_, KeyPair>, app_id: &[u8; 20]) -> (KeyPair, Vec<u8>) {
    leaf_valid(issuer, app_id, 2025, 2035)
}

fn der(pem: &str) -> Vec<u8> {
    pem_to_der(pem, CertRole::Leaf).unwrap()
}

#[test]
fn a_root_issued_cert_verifies_and_a_self_signed_one_does_not() {
    let (root_issuer, _, root) = trusted_root();
    let (_, issued) = leaf(&root_issuer, &APP_A);
    root.verify_issued(&issued, NOW).unwrap();

    // Same subject name as the root, own key: the names match, the signature does not.
    let (other_issuer, _) = make_root("root");
    let (_, forged) = leaf(&other_issuer, &APP_A);
    refused!(
        root.verify_issued(&forged, NOW),
        ChainError::BadSignature {
            role: CertRole::KmsServer
        }
    );

    let (_, other_pem) = make_root("other");
    refused!(
        root.verify_issued(&der(&other_pem), NOW),
        ChainError::IssuerName {
            role: CertRole::KmsServer,
            ..
        }
    );
}

#[test]
fn a_tampered_tbs_fails() {
    let (root_issuer, _, root) = trusted_root();
    let (_, mut issued) = leaf(&root_issuer, &APP_A);
    // Flip a byte of the SAN "app.example" inside the TBS.
    let i = issued.iter().rposition(|&b| b == b'x').unwrap();
    issued[i] = b'y';
    refused!(
        root.verify_issued(&issued, NOW),
        ChainError::BadSignature {
            role: CertRole::KmsServer
        }
    );
}

#[test]
fn a_non_ca_issuer_and_a_non_self_signed_root_are_refused() {
    let (root_issuer, _) = make_root("root");
    let (_, leaf_der) = leaf(&root_issuer, &APP_A);
    refused!(RootCa::from_der(leaf_der), ChainError::RootNotSelfSigned { source } if matches!(**source, ChainError::IssuerNotCa { role: CertRole::Root }));

    // A self-signed non-CA "root" that issued a certificate.
    let nk = key();
    let mut np = CertificateParams::default();
    np.distinguished_name.push(DnType::CommonName, "not a ca");
    let non_ca = np.self_signed(&nk).unwrap();
    refused!(RootCa::from_der(non_ca.der().to_vec()), ChainError::RootNotSelfSigned { source } if matches!(**source, ChainError::IssuerNotCa { .. }));
}

#[test]
fn a_root_or_server_cert_outside_its_validity_is_refused() {
    let (root_issuer, _, root) = trusted_root();
    let (_, issued) = leaf(&root_issuer, &APP_A);
    // Before the root's notBefore (2025): the root is checked first.
    refused!(
        root.verify_issued(&issued, 1_700_000_000),
        ChainError::NotValidAt {
            role: CertRole::Root,
            now: 1_700_000_000,
            ..
        }
    );
    // 2040: the root is valid, the server certificate (to 2035) is not.
    refused!(
        root.verify_issued(&issued, 2_208_988_800),
        ChainError::NotValidAt {
            role: CertRole::KmsServer,
            ..
        }
    );
}

#[test]
fn an_app_chain_verifies_with_and_without_the_trailing_root() {
    let (root_issuer, root_pem, root) = trusted_root();
    let (ca_issuer, ca_der) = app_ca(&root_issuer, Some(&APP_A), Usage::AppCa);
    let (leaf_key, leaf_der) = leaf(&ca_issuer, &APP_A);
    let v = verify_app_chain(&root, &[&leaf_der, &ca_der, &der(&root_pem)], &APP_A, NOW).unwrap();
    assert_eq!(v.app_id, APP_A);
    assert_eq!(v.leaf_spki, leaf_key.subject_public_key_info());
    assert_eq!(v.leaf_not_after, 2_051_222_400); // 2035-01-01
    verify_app_chain(&root, &[&leaf_der, &ca_der], &APP_A, NOW).unwrap();
}

#[test]
fn chains_must_have_the_documented_shape_and_end_at_the_trusted_root() {
    let (root_issuer, _, root) = trusted_root();
    let (ca_der, leaf_der) = chain_of_a(&root_issuer);
    let (_, other_root) = make_root("root");
    refused!(
        verify_app_chain(&root, &[&leaf_der, &ca_der, &der(&other_root)], &APP_A, NOW),
        ChainError::ForeignRoot
    );
    refused!(
        verify_app_chain(&root, &[&leaf_der], &APP_A, NOW),
        ChainError::ChainLength { len: 1 }
    );
}

#[test]
fn a_chain_under_a_wrong_root_is_refused() {
    let (root_issuer, _) = make_root("root");
    let (ca_der, leaf_der) = chain_of_a(&root_issuer);
    // Another root with the same name: names match, the app CA's signature does not.
    let (_, other_pem) = make_root("root");
    let other = RootCa::from_pem(&other_pem).unwrap();
    refused!(
        verify_app_chain(&other, &[&leaf_der, &ca_der], &APP_A, NOW),
        ChainError::BadSignature {
            role: CertRole::AppCa
        }
    );
}

#[test]
fn a_leaf_of_app_a_presented_for_app_b_is_refused() {
    let (root_issuer, _, root) = trusted_root();
    let (ca_der, leaf_der) = chain_of_a(&root_issuer);
    refused!(
        verify_app_chain(&root, &[&leaf_der, &ca_der], &APP_B, NOW),
        ChainError::AppIdMismatch {
            role: CertRole::AppCa,
            expected: APP_B,
            found: APP_A
        }
    );

    // App B's genuine CA, but a leaf that says app A (a CA that signed for another app).
    let (b_issuer, b_der) = app_ca(&root_issuer, Some(&APP_B), Usage::AppCa);
    let (_, a_leaf) = leaf(&b_issuer, &APP_A);
    refused!(
        verify_app_chain(&root, &[&a_leaf, &b_der], &APP_B, NOW),
        ChainError::AppIdMismatch {
            role: CertRole::Leaf,
            expected: APP_B,
            found: APP_A
        }
    );
}

#[test]
fn a_ca_without_app_id_or_with_another_usage_is_refused() {
    let (root_issuer, _, root) = trusted_root();
    let (ca_issuer, ca_der) = app_ca(&root_issuer, None, Usage::AppCa);
    let (_, leaf_der) = leaf(&ca_issuer, &APP_A);
    refused!(
        verify_app_chain(&root, &[&leaf_der, &ca_der], &APP_A, NOW),
        ChainError::MissingAppId {
            role: CertRole::AppCa
        }
    );

    let (ca_issuer, ca_der) = app_ca(&root_issuer, Some(&APP_A), Usage::KmsRpc);
    let (_, leaf_der) = leaf(&ca_issuer, &APP_A);
    refused!(
        verify_app_chain(&root, &[&leaf_der, &ca_der], &APP_A, NOW),
        ChainError::WrongUsage {
            role: CertRole::AppCa,
            expected: Usage::AppCa,
            found: Some(Usage::KmsRpc)
        }
    );
}

#[test]
fn an_expired_or_not_yet_valid_leaf_is_refused() {
    let (root_issuer, _, root) = trusted_root();
    let (ca_issuer, ca_der) = app_ca(&root_issuer, Some(&APP_A), Usage::AppCa);
    let (_, expired) = leaf_valid(&ca_issuer, &APP_A, 2025, 2026);
    refused!(
        verify_app_chain(&root, &[&expired, &ca_der], &APP_A, NOW),
        ChainError::NotValidAt {
            role: CertRole::Leaf,
            now: NOW,
            ..
        }
    );
    let (_, future) = leaf_valid(&ca_issuer, &APP_A, 2031, 2032);
    refused!(
        verify_app_chain(&root, &[&future, &ca_der], &APP_A, NOW),
        ChainError::NotValidAt {
            role: CertRole::Leaf,
            ..
        }
    );
}

#[test]
fn a_leaf_signed_by_another_app_ca_or_claiming_to_be_a_ca_is_refused() {
    let (root_issuer, _, root) = trusted_root();
    let (_, ca_der) = app_ca(&root_issuer, Some(&APP_A), Usage::AppCa);
    let (other_ca, _) = app_ca(&root_issuer, Some(&APP_A), Usage::AppCa);
    let (_, leaf_der) = leaf(&other_ca, &APP_A);
    refused!(
        verify_app_chain(&root, &[&leaf_der, &ca_der], &APP_A, NOW),
        ChainError::BadSignature {
            role: CertRole::Leaf
        }
    );

    let (ca_issuer, ca_der) = app_ca(&root_issuer, Some(&APP_A), Usage::AppCa);
    // A "leaf" with the leaf's extensions that is itself a CA.
    let sub_ca_der = {
        let key = key();
        let mut params = ca_params("sub");
        params.custom_extensions = ra_tls_extensions(ExtensionValues {
            app_id: Some(&APP_A),
            usage: Some(Usage::AppCustom),
            ..ExtensionValues::default()
        });
        params.signed_by(&key, &ca_issuer).unwrap().der().to_vec()
    };
    refused!(
        verify_app_chain(&root, &[&sub_ca_der, &ca_der], &APP_A, NOW),
        ChainError::LeafIsCa
    );
}

#[test]
fn pem_and_der_inputs_are_bounded_and_typed() {
    refused!(
        pem_to_der(&"A".repeat(MAX_CERT_PEM_LEN + 1), CertRole::Root),
        ChainError::PemTooLarge {
            role: CertRole::Root,
            ..
        }
    );
    refused!(
        pem_to_der("not pem", CertRole::Leaf),
        ChainError::Pem {
            role: CertRole::Leaf,
            ..
        }
    );
    let key_pem = key().serialize_pem();
    refused!(pem_to_der(&key_pem, CertRole::Leaf), ChainError::PemLabel { label, .. } if label == "PRIVATE KEY");
    refused!(
        RootCa::from_der(vec![0x30; MAX_RA_TLS_CERT_LEN + 1]),
        ChainError::TooLarge { .. }
    );
    refused!(
        RootCa::from_der(vec![0x30, 0x03, 0x02, 0x01, 0x00]),
        ChainError::Malformed { .. }
    );
    let (_, root_pem) = make_root("root");
    let mut trailing = der(&root_pem);
    trailing.push(0);
    let err = RootCa::from_der(trailing).unwrap_err();
    assert!(
        matches!(err, ChainError::TrailingBytes { len: 1, .. }),
        "{err:?}"
    );
}
