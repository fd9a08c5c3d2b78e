//! The gateway's ACME identity through real booted CVMs: the account key comes from the
//! guest agent's `GetKey` (so it is the app's, not the node's), and a certificate key is
//! attested by the agent's `GetQuote` in the form monitors check.

use std::time::Instant;

use cairn_acme::{
    cert_key_report_data, verify_quoted_key, AccountKey, AgentClient, AgentEndpoint, MonitorError,
    QuotedPublicKey,
};
use cairn_attestation::ids::AppId;
use cairn_e2e::*;
use cairn_kms::unix_now;
use rcgen::PublicKeyData;

/// The account key through `socket`, polling until the agent listens.
async fn account_key(socket: std::path::PathBuf) -> AccountKey {
    let client = AgentClient::new(AgentEndpoint::Unix(socket));
    let deadline = Instant::now() + DEADLINE;
    loop {
        match client.acme_account_key().await {
            Ok(k) => return k,
            Err(e) if Instant::now() > deadline => panic!("agent: {e}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_nodes_of_one_app_share_the_acme_account_key_and_attest_certificate_keys() {
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let gateway = net.deploy_app(net.owner, None).await;
    let other = net.deploy_app(net.owner, None).await;
    // two gateway nodes on two hosts, and a CVM of another app
    let node1 = Cvm::new(&kms.url(), gateway.app_id(), 0x21, "gw");
    let node2 = Cvm::new(&kms.url(), gateway.app_id(), 0x22, "gw");
    let stranger = Cvm::new(&kms.url(), other.app_id(), 0x23, "gw");
    // (each CVM's compose names its own output file, so each has its own hash)
    gateway
        .add_compose_hash(node1.compose_hash())
        .await
        .unwrap();
    gateway
        .add_compose_hash(node2.compose_hash())
        .await
        .unwrap();
    other
        .add_compose_hash(stranger.compose_hash())
        .await
        .unwrap();
    net.mine(CONFIRMATIONS).await;

    let b1 = node1.boot().await.unwrap();
    let b2 = node2.boot().await.unwrap();
    let b3 = stranger.boot().await.unwrap();
    let a1 = Agent::serve(&node1.agent_socket(), b1.state.clone());
    let a2 = Agent::serve(&node2.agent_socket(), b2.state.clone());
    let a3 = Agent::serve(&stranger.agent_socket(), b3.state.clone());

    let k1 = account_key(node1.agent_socket()).await;
    let k2 = account_key(node2.agent_socket()).await;
    let k3 = account_key(stranger.agent_socket()).await;
    assert_eq!(
        k1.public_key_sec1(),
        k2.public_key_sec1(),
        "one account per app"
    );
    assert_ne!(
        k1.public_key_sec1(),
        k3.public_key_sec1(),
        "another app, another account"
    );

    // a certificate key quoted by node 1's agent verifies as the gateway app's
    let cert_key = rcgen::KeyPair::generate().unwrap();
    let spki = cert_key.subject_public_key_info();
    let client = AgentClient::new(AgentEndpoint::Unix(node1.agent_socket()));
    let quote = client
        .get_quote(&cert_key_report_data(&spki))
        .await
        .unwrap();
    let entry = QuotedPublicKey {
        public_key: hex::encode(&spki),
        quote: serde_json::to_string(&quote).unwrap(),
    };
    let gateway_app = AppId(gateway.app_id().into_array());
    let v = verify_quoted_key(&verifier(), &entry, &gateway_app, unix_now()).unwrap();
    assert_eq!(v.compose_hash().0, node1.compose_hash().0);
    // the same quote does not pass for another app id, nor for another key
    assert!(matches!(
        verify_quoted_key(
            &verifier(),
            &entry,
            &AppId(other.app_id().into_array()),
            unix_now()
        ),
        Err(MonitorError::WrongApp { .. })
    ));
    let other_key = rcgen::KeyPair::generate().unwrap();
    let forged = QuotedPublicKey {
        public_key: hex::encode(other_key.subject_public_key_info()),
        ..entry
    };
    assert!(matches!(
        verify_quoted_key(&verifier(), &forged, &gateway_app, unix_now()),
        Err(MonitorError::Quote(
            cairn_attestation::Error::ReportDataMismatch
        ))
    ));

    a1.stop().await;
    a2.stop().await;
    a3.stop().await;
}
