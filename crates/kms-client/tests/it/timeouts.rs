//! Every network wait is bounded: a silent server or a KMS that never answers is a
//! `Timeout` naming the stage, never a hang. The tests wait on the client only, under an
//! outer deadline that fails the test instead of hanging it.

use std::time::Duration;

use cairn_attestation::Usage;
use cairn_kms_client::{Error, KmsClient, Stage, Timeouts};

use crate::stub::{guest, kms_cert, verifier, Reply, Root, SilentServer, StubKms, DEADLINE};

fn short() -> KmsClient {
    KmsClient::new(verifier()).with_timeouts(Timeouts {
        request: Duration::from_millis(300),
        handshake: Duration::from_millis(300),
        ..Timeouts::default()
    })
}

/// The client's own failure, awaited under an outer deadline that fails the test instead
/// of hanging it.
async fn failure<T: std::fmt::Debug>(
    call: impl std::future::Future<Output = cairn_kms_client::Result<T>>,
) -> Error {
    tokio::time::timeout(DEADLINE, call)
        .await
        .expect("the client gave up on its own")
        .unwrap_err()
}

#[tokio::test]
async fn a_silent_server_times_out_in_the_handshake() {
    let silent = SilentServer::start().await;
    let err = failure(short().connect(&silent.url, None)).await;
    assert!(
        matches!(
            err,
            Error::Timeout {
                stage: Stage::Handshake,
                after,
                ..
            } if after == Duration::from_millis(300)
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_kms_that_never_answers_times_out_per_request() {
    let root = Root::new();
    let kms = StubKms::start(kms_cert(Usage::KmsRpc, Some(&root)), |_| Reply::Hang).await;
    let (_, cert) = guest();
    let err = failure(short().app_key(&kms.url, &cert)).await;
    assert!(
        matches!(
            err,
            Error::Timeout {
                stage: Stage::Request,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(kms.requests(), 1);
}
