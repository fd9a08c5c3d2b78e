//! The RPC quorum: k endpoints must agree on the block hash and on each verdict; a lying
//! endpoint is a disagreement (never an answer), a stalled one costs nothing while enough
//! others answer, and transactions go to the first healthy endpoint.

use std::path::Path;
use std::time::Duration;

use cairn_onchain::testing::{spawn_anvil_with, Behaviour, RpcProxy};
use cairn_onchain::{reasons, ChainClient, Check, Error, Verdict};

use crate::common::{
    assert_denied, assert_denied_by, boot, devnet, ends_by_itself, proxies, quorum_config, COMPOSE,
    HANG_DEADLINE, OS_IMAGE,
};

fn assert_disagreement(err: &Error, proxies: &[&RpcProxy]) {
    match err.cause() {
        Error::ChainDisagreement { endpoints, what } => {
            for p in proxies {
                let label = cairn_onchain::endpoint_label(&p.url());
                assert!(endpoints.contains(&label), "{label} not named in {err}");
            }
            assert!(!what.is_empty());
        }
        other => panic!("expected ChainDisagreement, got {other:?}"),
    }
    assert!(err.is_retryable(), "{err:?}");
    assert!(!err.is_denied());
}

#[tokio::test]
async fn two_agreeing_endpoints_answer_as_one_does() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    let p = proxies(&net, 2).await;
    let client = ChainClient::connect(&quorum_config(&net, &p, 2), None)
        .await
        .unwrap();
    assert_eq!(client.quorum(), 2);
    let at = client.policy_block().await.unwrap();
    assert_eq!(at, net.client.policy_block().await.unwrap());
    let b = boot(app.app_id(), COMPOSE);
    assert_eq!(
        client.is_app_allowed(&b, at).await.unwrap(),
        Verdict::Allowed
    );
    let other = boot(app.app_id(), OS_IMAGE);
    let err = client.is_app_allowed(&other, at).await.unwrap_err();
    assert_denied_by(&err, Check::ComposeHash);
    assert_eq!(client.disagreements(), 0);
    assert!(
        p.iter().all(|p| p.requests() > 0),
        "both endpoints were asked"
    );
}

#[tokio::test]
async fn a_lying_endpoint_that_flips_a_denial_is_a_disagreement_under_quorum_2() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    app.remove_compose_hash(COMPOSE).await.unwrap();
    let p = proxies(&net, 2).await;
    let b = boot(app.app_id(), COMPOSE);

    // The liar alone would be believed: this is the attack the quorum must stop.
    p[1].set(Behaviour::FlipVerdicts);
    let alone = ChainClient::connect(&quorum_config(&net, &p[1..], 1), None)
        .await
        .unwrap();
    let at = alone.policy_block().await.unwrap();
    assert_eq!(
        alone.is_app_allowed(&b, at).await.unwrap(),
        Verdict::Allowed
    );

    let client = ChainClient::connect(&quorum_config(&net, &p, 2), None)
        .await
        .unwrap();
    let err = client.is_app_allowed(&b, at).await.unwrap_err();
    assert_disagreement(&err, &[&p[0], &p[1]]);
    assert_eq!(client.disagreements(), 1);
    // Not cached: once the liar is gone, the honest answer comes back.
    p[1].set(Behaviour::Forward);
    assert_denied(
        client.is_app_allowed(&b, at).await,
        Check::ComposeHash,
        reasons::COMPOSE_HASH,
    );
}

#[tokio::test]
async fn a_lying_endpoint_that_flips_an_allow_is_a_disagreement_under_quorum_2() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    let p = proxies(&net, 2).await;
    p[0].set(Behaviour::FlipVerdicts);
    let client = ChainClient::connect(&quorum_config(&net, &p, 2), None)
        .await
        .unwrap();
    let at = client.policy_block().await.unwrap();
    let err = client
        .is_app_allowed(&boot(app.app_id(), COMPOSE), at)
        .await
        .unwrap_err();
    assert_disagreement(&err, &[&p[0], &p[1]]);
}

#[tokio::test]
async fn a_lying_block_hash_is_a_disagreement_under_quorum_2() {
    let net = devnet(0).await;
    let p = proxies(&net, 2).await;
    let client = ChainClient::connect(&quorum_config(&net, &p, 2), None)
        .await
        .unwrap();
    client.policy_block().await.unwrap();
    p[1].set(Behaviour::ChangeBlockHashes);
    let err = client.policy_block().await.unwrap_err();
    assert_disagreement(&err, &[&p[0], &p[1]]);
}

#[tokio::test]
async fn one_liar_among_three_under_quorum_2_is_outvoted_or_refused_never_believed() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    app.remove_compose_hash(COMPOSE).await.unwrap();
    let p = proxies(&net, 3).await;
    p[2].set(Behaviour::FlipVerdicts);
    let client = ChainClient::connect(&quorum_config(&net, &p, 2), None)
        .await
        .unwrap();
    let at = client.policy_block().await.unwrap();
    // Whichever two answer first decide; the lie is either outvoted (the denial) or
    // seen (a disagreement). It is never an allow.
    for _ in 0..10 {
        match client
            .is_app_allowed(&boot(app.app_id(), COMPOSE), at)
            .await
        {
            Err(Error::Denied {
                check: Check::ComposeHash,
                ..
            }) => {}
            Err(e) if e.is_disagreement() => {}
            other => panic!("a single liar decided the read: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_stalled_endpoint_does_not_stall_reads_while_the_others_reach_the_quorum() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    let p = proxies(&net, 3).await;
    // The call timeout is far longer than the hang detector below: a read that waited
    // for the stalled endpoint would trip the detector.
    let config = quorum_config(&net, &p, 2).with_call_timeout(HANG_DEADLINE * 2);
    let client = ChainClient::connect(&config, None).await.unwrap();
    p[1].set(Behaviour::Stall);
    let b = boot(app.app_id(), COMPOSE);
    let read = async {
        let at = client.policy_block().await?;
        client.is_app_allowed(&b, at).await
    };
    // A read that waited for the stalled endpoint would not end by itself.
    let verdict = ends_by_itself("the read", read).await.unwrap();
    assert_eq!(verdict, Verdict::Allowed);
}

#[tokio::test]
async fn a_stalled_endpoint_under_quorum_2_of_2_fails_the_read_within_the_call_timeout() {
    let net = devnet(0).await;
    let p = proxies(&net, 2).await;
    let timeout = Duration::from_millis(500);
    let config = quorum_config(&net, &p, 2).with_call_timeout(timeout);
    let client = ChainClient::connect(&config, None).await.unwrap();
    p[0].set(Behaviour::Stall);
    let err = ends_by_itself("the read", client.policy_block())
        .await
        .unwrap_err();
    match &err {
        Error::NoQuorum {
            needed: 2,
            agreeing: 1,
            source,
            ..
        } => assert!(
            matches!(**source, Error::Timeout { after, .. } if after == timeout),
            "{source:?}"
        ),
        other => panic!("expected NoQuorum, got {other:?}"),
    }
    assert!(err.is_retryable());
}

#[tokio::test]
async fn an_endpoint_of_another_chain_is_refused_on_connect() {
    let net = devnet(0).await;
    let other = spawn_anvil_with(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        cairn_onchain::alloy::node_bindings::Anvil::new().chain_id(net.chain_id() + 1),
    );
    let urls = vec![net.endpoint(), other.endpoint_url()];
    let config = net.chain_config(0).with_rpc_urls(urls, 2);
    let err = ChainClient::connect(&config, None).await.unwrap_err();
    assert!(
        matches!(err, Error::ChainIdMismatch { expected, actual }
            if expected == net.chain_id() && actual == net.chain_id() + 1),
        "{err:?}"
    );
}

#[tokio::test]
async fn transactions_go_to_the_first_healthy_endpoint() {
    let net = devnet(0).await;
    let p = proxies(&net, 2).await;
    let client = ChainClient::connect(&quorum_config(&net, &p, 2), Some(net.signer(0)))
        .await
        .unwrap();
    assert_eq!(
        client.connection().label(),
        cairn_onchain::endpoint_label(&p[0].url())
    );
    p[0].set(Behaviour::Fail);
    let err = client.policy_block().await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(
        client.connection().label(),
        cairn_onchain::endpoint_label(&p[1].url()),
        "the failed endpoint is no longer primary"
    );
    let before = p[0].requests();
    client
        .add_os_image(cairn_onchain::alloy::primitives::B256::repeat_byte(0x77))
        .await
        .unwrap();
    assert_eq!(
        p[0].requests(),
        before,
        "nothing was sent to the failed endpoint"
    );
}
