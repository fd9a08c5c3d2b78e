//! The connection serves the auditing light client as its `LogSource`.

use cairn_attestation::Usage;
use cairn_onchain::LogSource;
use cairn_protocol::api::CheckpointResponse;
use hyper::StatusCode;

use crate::stub::{client, error, kms_cert, ok, Root, StubKms};

#[tokio::test]
async fn the_log_endpoints_serve_the_audit_and_failures_name_the_path() {
    let kms = StubKms::start(
        kms_cert(Usage::KmsRpc, Some(&Root::new())),
        |seen| match seen.path {
            "/v1/log/checkpoint" => ok(&CheckpointResponse {
                checkpoint: "origin\n3\nroot\n".to_owned(),
            }),
            _ => error(StatusCode::BAD_REQUEST, "bad_request", "size out of range"),
        },
    )
    .await;
    let mut source = client().connect(&kms.url, None).await.unwrap();
    assert_eq!(source.checkpoint().await.unwrap(), "origin\n3\nroot\n");
    let err = source.inclusion_proof(5, 3).await.unwrap_err();
    assert!(
        err.0.contains("/v1/log/proof/inclusion?index=5&size=3") && err.0.contains("bad_request"),
        "{}",
        err.0
    );
}
