//! `sign-cert` answers are checked as a relying party would: rooted KMS, chain under the
//! root for the caller's app id, leaf for the caller's key.

use std::sync::Arc;

use cairn_attestation::{CertRole, ChainError, RaTlsCert, RootCa, Usage};
use cairn_kms_client::{Error, Result};
use cairn_protocol::api::{SignCertRequest, SignCertResponse};
use rcgen::{CertificateParams, KeyPair};

use crate::stub::{assert_kms_not_rooted, client, guest, kms_cert, ok, Cvm, Root, StubKms};

/// A CSR for `key`.
fn csr(key: &KeyPair) -> Vec<u8> {
    CertificateParams::new(vec!["app.test".to_owned()])
        .unwrap()
        .serialize_request(key)
        .unwrap()
        .der()
        .to_vec()
}

/// A guest, and a KMS under `root` whose app CA signs every CSR for `signs_for`.
struct Setup {
    root: Arc<Root>,
    cvm: Cvm,
    cert: RaTlsCert,
    kms: StubKms,
}

impl Setup {
    async fn new(signs_for: Option<[u8; 20]>) -> Setup {
        let root = Arc::new(Root::new());
        let (cvm, cert) = guest();
        let app_id = signs_for.unwrap_or(cvm.app_id.0);
        let r = root.clone();
        let kms = StubKms::start(kms_cert(Usage::KmsRpc, Some(&root)), move |seen| {
            let req: SignCertRequest = serde_json::from_slice(seen.body).unwrap();
            ok(&SignCertResponse {
                certificate_chain: r.sign_csr(&req.csr, &app_id),
            })
        })
        .await;
        Setup {
            root,
            cvm,
            cert,
            kms,
        }
    }

    /// `sign-cert` for the CSR of `key` (the guest's own when `None`), trusting `root`
    /// (the KMS's own when `None`).
    async fn sign(&self, key: Option<&KeyPair>, root: Option<&RootCa>) -> Result<SignCertResponse> {
        let own_key = self.cert.key_pair().unwrap();
        let own_root = RootCa::from_pem(&self.root.pem).unwrap();
        client()
            .sign_cert(
                &self.kms.url,
                &self.cert,
                SignCertRequest {
                    csr: csr(key.unwrap_or(&own_key)),
                    not_before: None,
                    not_after: None,
                },
                root.unwrap_or(&own_root),
                &self.cvm.app_id.0,
            )
            .await
    }
}

#[tokio::test]
async fn a_chain_for_the_callers_app_and_key_is_accepted() {
    let s = Setup::new(None).await;
    let resp = s.sign(None, None).await.unwrap();
    assert_eq!(resp.certificate_chain.len(), 3);
}

#[tokio::test]
async fn a_chain_for_another_app_is_refused() {
    let s = Setup::new(Some([0x77; 20])).await;
    let err = s.sign(None, None).await.unwrap_err();
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
    let s = Setup::new(None).await;
    let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let err = s.sign(Some(&other), None).await.unwrap_err();
    assert!(matches!(err, Error::LeafKeyMismatch { .. }), "{err:?}");
}

#[tokio::test]
async fn a_kms_outside_the_callers_root_is_refused_before_the_csr_is_sent() {
    let s = Setup::new(None).await;
    let booted = RootCa::from_pem(&Root::new().pem).unwrap();
    let err = s.sign(None, Some(&booted)).await.unwrap_err();
    assert_kms_not_rooted(&err);
    assert_eq!(s.kms.requests(), 0);
}
