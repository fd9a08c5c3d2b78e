//! `sign-cert` answers are checked as a relying party would: rooted KMS, chain under the
//! root for the caller's app id, leaf for the caller's key.

use cairn_attestation::{CertRole, ChainError, RootCa, Usage};
use cairn_kms_client::Error;
use cairn_protocol::api::SignCertRequest;
use rcgen::CertificateParams;

use crate::stub::{client, guest, kms_cert, ok, Root, StubKms};

/// A CSR for `key`.
fn csr(key: &rcgen::KeyPair) -> Vec<u8> {
    CertificateParams::new(vec!["app.test".to_owned()])
        .unwrap()
        .serialize_request(key)
        .unwrap()
        .der()
        .to_vec()
}

async fn signing_kms(root: &std::sync::Arc<Root>, app_id: [u8; 20]) -> StubKms {
    let r = root.clone();
    StubKms::start(kms_cert(Usage::KmsRpc, Some(root)), move |seen| {
        let req: SignCertRequest = serde_json::from_slice(seen.body).unwrap();
        ok(&cairn_protocol::api::SignCertResponse {
            certificate_chain: r.sign_csr(&req.csr, &app_id),
        })
    })
    .await
}

#[tokio::test]
async fn a_chain_for_the_callers_app_and_key_is_accepted() {
    let root = std::sync::Arc::new(Root::new());
    let (cvm, cert) = guest();
    let kms = signing_kms(&root, cvm.app_id.0).await;
    let trusted = RootCa::from_pem(&root.pem).unwrap();
    let resp = client()
        .sign_cert(
            &kms.url,
            &cert,
            csr(&cert.key_pair().unwrap()),
            &trusted,
            &cvm.app_id.0,
        )
        .await
        .unwrap();
    assert_eq!(resp.certificate_chain.len(), 3);
}

#[tokio::test]
async fn a_chain_for_another_app_is_refused() {
    let root = std::sync::Arc::new(Root::new());
    let (cvm, cert) = guest();
    let kms = signing_kms(&root, [0x77; 20]).await;
    let trusted = RootCa::from_pem(&root.pem).unwrap();
    let err = client()
        .sign_cert(
            &kms.url,
            &cert,
            csr(&cert.key_pair().unwrap()),
            &trusted,
            &cvm.app_id.0,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::BadChain {
                source: ChainError::AppIdMismatch {
                    role: CertRole::AppCa,
                    found,
                    ..
                },
                ..
            } if *found == [0x77; 20]
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_leaf_for_another_key_is_refused() {
    let root = std::sync::Arc::new(Root::new());
    let (cvm, cert) = guest();
    let kms = signing_kms(&root, cvm.app_id.0).await;
    let trusted = RootCa::from_pem(&root.pem).unwrap();
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let err = client()
        .sign_cert(&kms.url, &cert, csr(&other), &trusted, &cvm.app_id.0)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LeafKeyMismatch { .. }), "{err:?}");
}

#[tokio::test]
async fn a_kms_outside_the_callers_root_is_refused_before_the_csr_is_sent() {
    let root = std::sync::Arc::new(Root::new());
    let (cvm, cert) = guest();
    let kms = signing_kms(&root, cvm.app_id.0).await;
    let booted = RootCa::from_pem(&Root::new().pem).unwrap();
    let err = client()
        .sign_cert(
            &kms.url,
            &cert,
            csr(&cert.key_pair().unwrap()),
            &booted,
            &cvm.app_id.0,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::NotRooted {
                source: ChainError::BadSignature {
                    role: CertRole::KmsServer
                },
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(kms.requests(), 0);
}
