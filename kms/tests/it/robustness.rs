//! Bad input gets a 4xx in the API's error shape, and the server keeps serving.

use std::sync::Arc;

use cairn_attestation::ratls_consts::{OID_EVENT_LOG, OID_QUOTE};
use cairn_attestation::testing::{possession_client, Presents};
use cairn_attestation::{RaTlsCert, Tee};
use cairn_kms_client::KmsConnection;
use cairn_protocol::api::{EnvPubkeyResponse, ErrorBody, MetaResponse, PATH_APP_KEY, PATH_META};
use hyper::{Method, StatusCode};
use rcgen::{CertificateParams, CustomExtension, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::CertificateDer;

use crate::release::app_key;
use crate::world::World;

/// A self-signed certificate with the given RA-TLS extensions (or none).
fn hand_made(ext: &[(&[u64], Vec<u8>)]) -> RaTlsCert {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(vec!["guest".to_owned()]).unwrap();
    for (oid, v) in ext {
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                oid,
                cairn_attestation::der_octet_string(v),
            ));
    }
    let cert = params.self_signed(&key).unwrap();
    RaTlsCert::from_parts(cert.der().clone(), key.serialize_der())
}

async fn error_of(
    client: &mut KmsConnection,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> (StatusCode, ErrorBody) {
    let (status, bytes) = client.request(method, path, body).await.unwrap();
    let body: ErrorBody =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}: {bytes:?}"));
    (status, body)
}

/// A TLS connection to `addr` presenting 5 bytes of junk as the client certificate (with
/// a real P-256 key), then `GET /healthz`: the response bytes, or the failure.
async fn junk_certificate_exchange(addr: std::net::SocketAddr) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let junk = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
    // Presents the junk with the key, without rustls' own consistency check.
    let config = possession_client()
        .with_client_cert_resolver(Arc::new(Presents::new(vec![junk], key.serialize_der())));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("cairn-kms").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: cairn-kms\r\nconnection: close\r\n\r\n")
        .await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_4xx_and_the_server_keeps_serving() {
    let (_w, kms, _guest, cert, mut c) = World::serving_guest(0xC1, 0x21).await;

    let (s, b) = error_of(
        &mut c,
        Method::POST,
        PATH_APP_KEY,
        Some(vec![b' '; 70 * 1024]),
    )
    .await;
    assert_eq!(
        (s, b.error.code.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "bad_request.too_large")
    );
    let mut c = kms.client(Some(&cert)).await;
    let cases = [
        (
            "malformed JSON",
            Method::POST,
            PATH_APP_KEY,
            Some(b"{not json".as_slice()),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "short app id",
            Method::POST,
            PATH_APP_KEY,
            Some(br#"{"app_id":"0x00"}"#.as_slice()),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "start after end",
            Method::GET,
            "/v1/log/entries?start=5&end=1",
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "non-numeric index",
            Method::GET,
            "/v1/log/proof/inclusion?index=x",
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "short env-pubkey app id",
            Method::GET,
            "/v1/env-pubkey/0x1234",
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "unknown path",
            Method::GET,
            "/v2/nothing",
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (name, method, path, body, status, code) in cases {
        let (s, b) = error_of(&mut c, method, path, body.map(<[u8]>::to_vec)).await;
        assert_eq!((s, b.error.code.as_str()), (status, code), "{name}: {b:?}");
    }

    // The connection still works for a real release afterwards.
    app_key(&mut c).await.unwrap();
    assert_eq!(kms.node.log().size(), 1);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_endpoints_need_no_certificate_but_releases_do() {
    let (w, kms) = World::serving(0xC2).await;
    let mut c = kms.client(None).await;
    let meta: MetaResponse = c.call(Method::GET, PATH_META, None::<&()>).await.unwrap();
    assert_eq!(meta.node_address, kms.node.address());
    assert_eq!(meta.chain_id, w.chain_id());
    // The node's own image, as a client needs it for isKmsAllowed.
    assert_eq!(
        cairn_attestation::OsImageManifest::parse(meta.os_image_manifest.as_bytes()).unwrap(),
        crate::world::image().manifest()
    );
    let env: EnvPubkeyResponse = c
        .call(
            Method::GET,
            &format!("/v1/env-pubkey/0x{}", w.app_id.to_hex()),
            None::<&()>,
        )
        .await
        .unwrap();
    let root = k256::ecdsa::VerifyingKey::from_sec1_bytes(&meta.root_k256_public_key).unwrap();
    env.verify(&w.app_id.0, &root, cairn_kms::unix_now(), 300)
        .unwrap();
    let (status, text) = c.request(Method::GET, "/metrics", None).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(std::str::from_utf8(&text)
        .unwrap()
        .contains("cairn_kms_stage_duration_seconds"));

    let err = app_key(&mut c).await.unwrap_err();
    assert_eq!(
        (err.status, err.body.error.code.as_str()),
        (StatusCode::FORBIDDEN, "denied.client_cert")
    );
    assert_eq!(kms.node.log().size(), 0);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_certificates_and_truncated_quotes_are_denied() {
    let (w, kms) = World::serving(0xC3).await;
    let guest = w.guest(0x23);

    // A plain certificate: no evidence at all.
    let mut c = kms.client(Some(&hand_made(&[]))).await;
    let err = app_key(&mut c).await.unwrap_err();
    assert_eq!(
        (err.status, err.body.error.code.as_str()),
        (StatusCode::FORBIDDEN, "denied.client_cert")
    );

    // A truncated quote.
    let quote = guest.tdx.quote(&[0u8; 64]).unwrap();
    let cert = hand_made(&[
        (OID_QUOTE, quote[..quote.len() / 2].to_vec()),
        (OID_EVENT_LOG, guest.log.to_json()),
    ]);
    let mut c = kms.client(Some(&cert)).await;
    let err = app_key(&mut c).await.unwrap_err();
    err.assert_code(StatusCode::FORBIDDEN, "denied.quote");

    // Random bytes instead of a quote.
    let cert = hand_made(&[
        (OID_QUOTE, vec![0xab; 700]),
        (OID_EVENT_LOG, b"[]".to_vec()),
    ]);
    let mut c = kms.client(Some(&cert)).await;
    let err = app_key(&mut c).await.unwrap_err();
    assert_eq!(err.status, StatusCode::FORBIDDEN);

    // Bytes that are not a certificate at all, presented with a real key: the handshake
    // fails (the server cannot check a signature by a key it cannot parse), nothing else.
    let err = junk_certificate_exchange(kms.addr).await.unwrap_err();
    let tls = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("not a TLS failure: {err:?}"));
    assert!(
        matches!(
            tls,
            rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate)
        ),
        "{err:?}"
    );
    crate::world::health(&kms).await.unwrap();
    assert_eq!(kms.node.log().size(), 0);
    kms.stop().await;
}
