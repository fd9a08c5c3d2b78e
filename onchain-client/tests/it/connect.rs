//! Connecting: chain-id check, misconfiguration, and fail-closed behaviour when the RPC
//! is down or silent (an error within the timeout, never a hang, never an allow).

use std::path::Path;
use std::time::Duration;

use cairn_onchain::alloy::primitives::Address;
use cairn_onchain::testing::spawn_anvil;
use cairn_onchain::{ChainClient, ChainConfig, Connection, Error};

use crate::common::{assert_unreachable, boot, devnet, ends_by_itself, COMPOSE};

const SHORT_TIMEOUT: Duration = Duration::from_millis(500);

#[tokio::test]
async fn wrong_chain_id_is_rejected_on_connect() {
    let anvil = spawn_anvil(Path::new(env!("CARGO_MANIFEST_DIR")));
    let expected = anvil.chain_id() + 1;
    let err = Connection::connect(anvil.endpoint_url(), expected, SHORT_TIMEOUT, None)
        .await
        .unwrap_err();
    match err {
        Error::ChainIdMismatch {
            expected: e,
            actual,
        } => {
            assert_eq!(e, expected);
            assert_eq!(actual, anvil.chain_id());
        }
        other => panic!("expected ChainIdMismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn kms_auth_address_without_code_is_misconfigured() {
    let anvil = spawn_anvil(Path::new(env!("CARGO_MANIFEST_DIR")));
    let config = ChainConfig::new(
        anvil.endpoint_url(),
        anvil.chain_id(),
        Address::repeat_byte(0x42),
    );
    let err = ChainClient::connect(&config, None).await.unwrap_err();
    assert!(matches!(err, Error::Misconfigured(_)), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn transaction_without_signer_is_misconfigured() {
    let net = devnet(0).await;
    let config = ChainConfig::new(
        net.anvil.endpoint_url(),
        net.anvil.chain_id(),
        net.deployment.kms_auth,
    );
    let reader = ChainClient::connect(&config, None).await.unwrap();
    let err = reader
        .add_kms_node(Address::repeat_byte(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Misconfigured(_)), "{err:?}");
}

#[tokio::test]
async fn closed_port_is_unreachable_not_a_hang() {
    // Bind a free port, then close it: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/").parse().unwrap();
    let connect = Connection::connect(url, 31337, SHORT_TIMEOUT, None);
    let err = ends_by_itself("connect", connect).await.unwrap_err();
    assert_unreachable(&err);
}

#[tokio::test]
async fn silent_rpc_times_out_within_the_configured_timeout() {
    // A listener that accepts connections but never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        loop {
            match listener.accept().await {
                Ok((sock, _)) => conns.push(sock),
                Err(_) => return,
            }
        }
    });
    let url = format!("http://127.0.0.1:{port}/").parse().unwrap();
    let connect = Connection::connect(url, 31337, SHORT_TIMEOUT, None);
    match ends_by_itself("connect", connect).await.unwrap_err() {
        Error::Timeout { op, after } => {
            assert_eq!(op, "eth_chainId");
            assert_eq!(after, SHORT_TIMEOUT);
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    hold.abort();
}

#[tokio::test]
async fn policy_read_fails_closed_when_anvil_dies() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    let b = boot(app.app_id(), COMPOSE);
    let at = net.client.policy_block().await.unwrap();
    // Warm nothing: use a client without cache so the read must reach the chain.
    let config = ChainConfig::new(
        net.anvil.endpoint_url(),
        net.anvil.chain_id(),
        net.deployment.kms_auth,
    )
    .with_call_timeout(SHORT_TIMEOUT)
    .with_verdict_cache_entries(0);
    let reader = ChainClient::connect(&config, None).await.unwrap();
    reader
        .is_app_allowed(&b, at)
        .await
        .expect("allowed while anvil runs");

    let crate::common::Devnet(cairn_onchain::testing::AnvilChain {
        anvil,
        client: _client,
        ..
    }) = net;
    drop(anvil); // kills the process

    let err = ends_by_itself("a policy read", reader.is_app_allowed(&b, at))
        .await
        .unwrap_err();
    assert_unreachable(&err);
    let err = ends_by_itself("policy_block", reader.policy_block())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}
