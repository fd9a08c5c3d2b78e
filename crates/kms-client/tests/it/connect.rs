//! Which KMS the client accepts: evidence, usage, root CA — checked before any request
//! body is trusted.

use cairn_attestation::{CertRole, ChainError, RaTlsError, Usage};
use cairn_kms_client::{Error, KmsClient};

use crate::stub::{
    app_key_response, assert_kms_not_rooted, client, guest, kms_cert, ok, pki, plain_cert,
    verifier, Root, StubKms,
};

/// `app-key` from a KMS presenting `tls_cert` and returning `root_pem` as its root CA.
async fn app_key_from(
    tls_cert: cairn_attestation::RaTlsCert,
    root_pem: String,
) -> (
    StubKms,
    cairn_kms_client::Result<cairn_kms_client::AppKeyRelease>,
) {
    let kms = StubKms::start(tls_cert, move |_| ok(&app_key_response(&root_pem))).await;
    let (_, cert) = guest();
    let release = client().app_key(&kms.url, &cert).await;
    (kms, release)
}

#[tokio::test]
async fn app_key_from_a_rooted_kms_returns_keys_identity_and_root() {
    let root = Root::new();
    let (kms, release) = app_key_from(kms_cert(Usage::KmsRpc, Some(&root)), root.pem.clone()).await;
    let release = release.unwrap();
    assert_eq!(*release.keys.app_key, [1; 32]);
    assert_eq!(
        release.root.der(),
        cairn_attestation::pem_to_der(&root.pem, CertRole::Root).unwrap()
    );
    // The identity is the KMS CVM's verified evidence, not anything it said.
    let kms_cvm = crate::stub::Cvm::boot(0x0B, r#"{"name":"kms"}"#);
    assert_eq!(release.kms.app_id(), &kms_cvm.app_id);
    assert_eq!(kms.requests(), 1);
}

#[tokio::test]
async fn a_kms_whose_tls_cert_is_not_issued_by_the_returned_root_is_refused() {
    // A TDX VM with a genuine kms:rpc quote but its own self-signed certificate, echoing
    // the genuine (public) root CA.
    let root = Root::new();
    let (_kms, release) = app_key_from(kms_cert(Usage::KmsRpc, None), root.pem.clone()).await;
    let err = release.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::NotRooted {
                source: ChainError::IssuerName {
                    role: CertRole::KmsServer,
                    ..
                },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_kms_returning_another_root_than_its_issuer_is_refused() {
    // Issued by one root, returns another with the very same name.
    let issuer = Root::new();
    let other = Root::new();
    let (_kms, release) =
        app_key_from(kms_cert(Usage::KmsRpc, Some(&issuer)), other.pem.clone()).await;
    let err = release.unwrap_err();
    assert_kms_not_rooted(&err);
}

#[tokio::test]
async fn a_plain_certificate_is_refused_before_any_request() {
    let kms = StubKms::start(plain_cert(), |_| ok(&())).await;
    let (_, cert) = guest();
    let err = client().connect(&kms.url, Some(&cert)).await.unwrap_err();
    assert!(
        matches!(
            err.ratls_error(),
            Some(RaTlsError::MissingExtension("quote"))
        ),
        "{err:?}"
    );
    assert_eq!(kms.requests(), 0, "nothing was sent to an unverified KMS");
}

#[tokio::test]
async fn a_kms_certificate_without_kms_rpc_usage_is_refused() {
    let root = Root::new();
    let kms = StubKms::start(kms_cert(Usage::AppCustom, Some(&root)), |_| ok(&())).await;
    let err = client().connect(&kms.url, None).await.unwrap_err();
    assert!(
        matches!(
            err.ratls_error(),
            Some(RaTlsError::WrongUsage {
                required: Usage::KmsRpc,
                presented: Some(Usage::AppCustom)
            })
        ),
        "{err:?}"
    );
    assert_eq!(kms.requests(), 0);
}

#[tokio::test]
async fn a_kms_quote_under_another_root_of_trust_is_refused() {
    // The KMS's quote is a simulator quote; a client trusting Intel's root refuses it.
    let root = Root::new();
    let kms = StubKms::start(kms_cert(Usage::KmsRpc, Some(&root)), |_| ok(&())).await;
    let intel = cairn_attestation::Verifier::intel()
        .with_collateral(cairn_attestation::Collateral::new(pki().collateral()).unwrap());
    let err = KmsClient::new(intel)
        .connect(&kms.url, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::KmsEvidence {
                source: RaTlsError::Evidence(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn collateral_for_the_kms_quote_can_come_from_a_pccs() {
    let pccs = cairn_attestation::simulator::SimPccs::new(pki());
    let served = cairn_attestation::testing::ServedPccs::start(pccs.clone()).await;
    let pccs_url = served.url().to_owned();
    // A client fetching the collateral of the KMS's quote from the PCCS (a fresh cache).
    let pccs_client = || {
        KmsClient::with_pccs(
            cairn_attestation::Verifier::dangerous_with_simulator_root(pki().root_ca_der()),
            cairn_attestation::PccsClient::new(&pccs_url).unwrap(),
        )
    };
    let root = Root::new();
    let kms = StubKms::start(kms_cert(Usage::KmsRpc, Some(&root)), |_| ok(&())).await;
    let conn = pccs_client().connect(&kms.url, None).await.unwrap();
    assert_eq!(conn.peer().identity().tcb_status(), "UpToDate");
    assert!(pccs.requests() > 0, "collateral was fetched");

    // An unreachable PCCS: a collateral error, retryable.
    served.stop().await.unwrap();
    let err = pccs_client().connect(&kms.url, None).await.unwrap_err();
    assert!(matches!(&err, Error::Collateral { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn urls_that_are_not_https_are_refused_without_connecting() {
    for (url, want_parse_error) in [
        ("http://127.0.0.1:1", false),
        ("https://127.0.0.1:1/?x=1", false),
        ("not a url", true),
    ] {
        let err = client().connect(url, None).await.unwrap_err();
        if want_parse_error {
            assert!(matches!(err, Error::UrlParse { .. }), "{url}: {err:?}");
        } else {
            assert!(matches!(err, Error::BadUrl { .. }), "{url}: {err:?}");
        }
    }
}

#[tokio::test]
async fn a_refused_connection_is_a_retryable_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = KmsClient::new(verifier())
        .connect(&url, None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
}
