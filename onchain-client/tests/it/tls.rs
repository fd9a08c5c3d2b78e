//! RPC over TLS only: plain HTTP to a non-loopback host is refused before anything is
//! sent; HTTPS works with configured roots (rustls, ring) and fails closed without them.

use std::time::Duration;

use cairn_onchain::testing::RpcProxy;
use cairn_onchain::{ChainClient, ChainConfig, Connection, Error, RpcTransport};

use crate::common::{devnet, ends_by_itself, HANG_DEADLINE};

#[tokio::test]
async fn plain_http_rpc_to_a_non_loopback_host_is_refused_naming_the_risk() {
    let net = devnet(0).await;
    for url in ["http://rpc.internal:8545/", "http://192.0.2.7:8545/"] {
        let config = ChainConfig::new(url.parse().unwrap(), net.chain_id(), net.kms_auth());
        // Refused before any lookup or connection: an attempt would be a timeout or an
        // unreachable error instead.
        let err = ends_by_itself("the refusal", ChainClient::connect(&config, None))
            .await
            .unwrap_err();
        match &err {
            Error::InsecureRpc { endpoint } => assert!(url.starts_with(endpoint.as_str())),
            other => panic!("{url}: expected InsecureRpc, got {other:?}"),
        }
        assert!(err.to_string().contains("isAppAllowed"), "{err}");
        assert!(!err.is_retryable());

        let err = Connection::connect(url.parse().unwrap(), net.chain_id(), HANG_DEADLINE, None)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InsecureRpc { .. }), "{err:?}");
    }
    // One insecure endpoint in a list is enough to refuse the whole config.
    let urls = vec![net.endpoint(), "http://rpc.internal:8545/".parse().unwrap()];
    let err = ChainClient::connect(&net.chain_config(0).with_rpc_urls(urls, 1), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InsecureRpc { .. }), "{err:?}");
    // Loopback plain HTTP stays allowed (devnet, tests).
    ChainClient::connect(&net.chain_config(0), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn https_rpc_with_a_configured_root_reads_policy() {
    let net = devnet(0).await;
    let proxy = RpcProxy::start_tls(net.endpoint()).await;
    assert_eq!(proxy.url().scheme(), "https");
    let root = proxy.root_cert().expect("TLS proxy root");
    let config = ChainConfig::new(proxy.url(), net.chain_id(), net.kms_auth())
        .with_extra_root(root)
        .with_confirmations(0)
        .with_max_head_age(cairn_onchain::testing::FIXTURE_MAX_HEAD_AGE);
    let client = ChainClient::connect(&config, None).await.unwrap();
    assert_eq!(
        client.policy_block().await.unwrap(),
        net.client.policy_block().await.unwrap()
    );
    assert!(proxy.requests() > 0);
}

#[tokio::test]
async fn https_rpc_whose_certificate_no_configured_root_issued_is_unreachable() {
    let net = devnet(0).await;
    let proxy = RpcProxy::start_tls(net.endpoint()).await;
    let other = RpcProxy::start_tls(net.endpoint()).await;
    // Trusting another CA (or only the system roots) must not accept the proxy.
    for transport in [
        RpcTransport::new(Duration::from_secs(5)),
        RpcTransport {
            extra_roots: vec![other.root_cert().expect("root")],
            ..RpcTransport::new(Duration::from_secs(5))
        },
    ] {
        let err = Connection::connect_with(proxy.url(), net.chain_id(), &transport, None)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    }
    assert_eq!(
        proxy.requests(),
        0,
        "no request reached the untrusted endpoint"
    );
}
