//! Answers are bounded and typed: error codes kept, retryability decided by status,
//! oversized and malformed bodies refused.

use cairn_attestation::Usage;
use cairn_kms_client::{Error, MAX_RESPONSE_LEN};
use cairn_protocol::api::MetaResponse;
use hyper::StatusCode;

use crate::stub::{client, error, guest, kms_cert, Reply, Root, StubKms};

async fn stub(
    handler: impl Fn(&crate::stub::Seen<'_>) -> Reply + Send + Sync + 'static,
) -> StubKms {
    StubKms::start(kms_cert(Usage::KmsRpc, Some(&Root::new())), handler).await
}

#[tokio::test]
async fn error_answers_keep_the_api_code_and_say_whether_to_retry() {
    let kms = stub(|seen| match seen.path {
        "/v1/app-key" => error(
            StatusCode::FORBIDDEN,
            "denied.compose_hash",
            "Compose hash not allowed",
        ),
        "/v1/meta" => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable.chain",
            "rpc down",
        ),
        _ => Reply::Body(StatusCode::BAD_GATEWAY, b"<html>proxy</html>".to_vec()),
    })
    .await;
    let (_, cert) = guest();
    let mut conn = client().connect(&kms.url, Some(&cert)).await.unwrap();

    let err = conn.app_key().await.unwrap_err();
    assert!(
        matches!(&err, Error::Status { status: 403, code, message, .. }
            if code == "denied.compose_hash" && message == "Compose hash not allowed"),
        "{err:?}"
    );
    assert!(
        !err.is_retryable(),
        "a denial is policy, not a transient failure"
    );

    let err = conn.meta().await.unwrap_err();
    assert_eq!(err.status(), Some((503, "unavailable.chain")));
    assert!(err.is_retryable());

    let err = conn.get::<MetaResponse>("/v1/other").await.unwrap_err();
    assert!(
        matches!(&err, Error::Status { status: 502, code, message, .. }
            if code == "unparsed" && message == "<html>proxy</html>"),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_oversized_response_is_refused() {
    let kms = stub(|_| Reply::Body(StatusCode::OK, vec![b' '; MAX_RESPONSE_LEN + 1])).await;
    let mut conn = client().connect(&kms.url, None).await.unwrap();
    let err = conn.meta().await.unwrap_err();
    assert!(
        matches!(err, Error::ResponseTooLarge { max, .. } if max == MAX_RESPONSE_LEN),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_malformed_response_is_a_decode_error() {
    let kms = stub(|_| Reply::Body(StatusCode::OK, br#"{"chain_id":"one"}"#.to_vec())).await;
    let mut conn = client().connect(&kms.url, None).await.unwrap();
    let err = conn.meta().await.unwrap_err();
    assert!(
        matches!(&err, Error::Decode { path, .. } if path == "/v1/meta"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn calls_that_release_secrets_need_a_client_certificate() {
    let kms = stub(|_| Reply::Body(StatusCode::OK, b"{}".to_vec())).await;
    let mut conn = client().connect(&kms.url, None).await.unwrap();
    assert!(matches!(conn.app_key().await, Err(Error::NoClientCert)));
    assert!(matches!(conn.onboard().await, Err(Error::NoClientCert)));
    assert_eq!(kms.requests(), 0);
}

#[tokio::test]
async fn a_url_prefix_is_kept_and_several_requests_share_one_connection() {
    let kms =
        stub(|seen| Reply::Body(StatusCode::OK, serde_json::to_vec(seen.path).unwrap())).await;
    let mut conn = client()
        .connect(&format!("{}/kms/", kms.url), None)
        .await
        .unwrap();
    let a: String = conn.get("/v1/log/checkpoint").await.unwrap();
    let b: String = conn.get("/v1/meta").await.unwrap();
    assert_eq!(
        (a.as_str(), b.as_str()),
        ("/kms/v1/log/checkpoint", "/kms/v1/meta")
    );
    assert_eq!(kms.requests(), 2);
}
