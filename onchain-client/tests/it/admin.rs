//! Administration round trips: every write is visible through the pinned reads.

use cairn_onchain::alloy::primitives::B256;
use cairn_onchain::{Check, ComposeHashActivation, Verdict};

use crate::common::{assert_denied_by, boot, devnet, COMPOSE, DEVICE, OS_IMAGE};

#[tokio::test]
async fn registry_nodes_and_allowlists_read_back_at_the_policy_block() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    let node = net.client_as(1, 0).await.connection().sender().unwrap();
    net.client.add_kms_node(node).await.unwrap();

    let at = net.client.policy_block().await.unwrap();
    assert!(net
        .client
        .is_app_registered(app.app_id(), at)
        .await
        .unwrap());
    assert!(net.client.is_os_image_allowed(OS_IMAGE, at).await.unwrap());
    assert!(!net
        .client
        .is_os_image_allowed(B256::repeat_byte(1), at)
        .await
        .unwrap());
    assert!(net.client.is_kms_node(node, at).await.unwrap());
    assert_eq!(net.client.kms_nodes(at).await.unwrap(), vec![node]);
    assert_eq!(net.client.latest_anchor(node, at).await.unwrap(), None);
    let activation = app.compose_hash_activation(COMPOSE, at).await.unwrap();
    assert!(matches!(activation, Some(ComposeHashActivation { activates_at }) if activates_at > 0));
    assert_eq!(
        app.compose_hash_activation(B256::repeat_byte(2), at)
            .await
            .unwrap(),
        None
    );
    assert!(!app.is_device_allowed(DEVICE, at).await.unwrap());

    // The app's own contract agrees (no platform checks there).
    app.is_app_allowed_here(&boot(app.app_id(), COMPOSE), at)
        .await
        .unwrap();
    let err = app
        .is_app_allowed_here(&boot(app.app_id(), B256::repeat_byte(3)), at)
        .await
        .unwrap_err();
    assert_denied_by(&err, Check::ComposeHash);

    net.client.remove_kms_node(node).await.unwrap();
    net.client.deregister_app(app.app_id()).await.unwrap();
    let at = net.client.policy_block().await.unwrap();
    assert!(!net.client.is_kms_node(node, at).await.unwrap());
    let err = net
        .client
        .is_app_allowed(&boot(app.app_id(), COMPOSE), at)
        .await
        .unwrap_err();
    assert_denied_by(&err, Check::AppNotRegistered);
}

#[tokio::test]
async fn app_ownership_handover_needs_acceptance() {
    let net = devnet(0).await;
    let app = net.owned_app().await;
    let dev = net.client_as(1, 0).await;
    let dev_addr = dev.connection().sender().unwrap();
    let dev_app = dev.app(app.app_id());

    app.transfer_ownership(dev_addr).await.unwrap();
    // Pending only: the new owner cannot act yet.
    let err = dev_app.add_compose_hash(COMPOSE).await.unwrap_err();
    assert!(
        matches!(
            err.as_app_auth_error(),
            Some(cairn_onchain::AppAuth::AppAuthErrors::OwnableUnauthorizedAccount(e)) if e.account == dev_addr
        ),
        "{err:?}"
    );
    dev_app.accept_ownership().await.unwrap();
    let at = net.client.policy_block().await.unwrap();
    assert_eq!(app.owner(at).await.unwrap(), dev_addr);

    dev_app.add_compose_hash(COMPOSE).await.unwrap();
    let at = net.client.policy_block().await.unwrap();
    assert_eq!(
        net.client
            .is_app_allowed(&boot(app.app_id(), COMPOSE), at)
            .await
            .unwrap(),
        Verdict::Allowed
    );
    // The old owner lost its rights.
    let err = app.remove_compose_hash(COMPOSE).await.unwrap_err();
    assert!(err.as_app_auth_error().is_some(), "{err:?}");
}

#[tokio::test]
async fn disabled_upgrades_are_reported_in_history() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    app.disable_upgrades().await.unwrap();
    let err = app.disable_upgrades().await.unwrap_err();
    assert!(
        matches!(
            err.as_app_auth_error(),
            Some(cairn_onchain::AppAuth::AppAuthErrors::AppAuthUpgradesDisabled(_))
        ),
        "{err:?}"
    );
    let at = net.client.policy_block().await.unwrap();
    let events = app
        .policy_history(cairn_onchain::BlockRange::new(0, at.number))
        .await
        .unwrap();
    assert!(events.iter().any(|l| matches!(
        l.event,
        cairn_onchain::AppAuth::AppAuthEvents::UpgradesDisabled(_)
    )));
}
