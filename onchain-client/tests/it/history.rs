//! Typed event history of app policy and KmsAuth.

use cairn_onchain::alloy::primitives::B256;
use cairn_onchain::AppAuth::AppAuthEvents;
use cairn_onchain::KmsAuth::KmsAuthEvents;
use cairn_onchain::{BlockRange, Error};

use crate::common::{devnet, COMPOSE, DEVICE, OS_IMAGE};

#[tokio::test]
async fn app_policy_changes_are_listed_in_chain_order() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    let h2 = B256::repeat_byte(0xc2);
    app.add_compose_hash(h2).await.unwrap();
    app.remove_compose_hash(COMPOSE).await.unwrap();
    app.add_device(DEVICE).await.unwrap();
    app.remove_device(DEVICE).await.unwrap();
    app.set_allow_any_device(false).await.unwrap();

    let head = net.head_number().await;
    let events = app.policy_history(BlockRange::new(0, head)).await.unwrap();
    let policy: Vec<String> = events
        .iter()
        .filter_map(|l| match &l.event {
            AppAuthEvents::ComposeHashAdded(e) => Some(format!("add {}", e.hash)),
            AppAuthEvents::ComposeHashRemoved(e) => Some(format!("remove {}", e.hash)),
            AppAuthEvents::DeviceAdded(e) => Some(format!("device+ {}", e.deviceId)),
            AppAuthEvents::DeviceRemoved(e) => Some(format!("device- {}", e.deviceId)),
            AppAuthEvents::AllowAnyDeviceSet(e) => Some(format!("any {}", e.allowAnyDevice)),
            _ => None,
        })
        .collect();
    assert_eq!(
        policy,
        vec![
            // deployAndRegisterApp: initialize sets allow-any-device and the first hash.
            "any true".to_string(),
            format!("add {COMPOSE}"),
            format!("add {h2}"),
            format!("remove {COMPOSE}"),
            format!("device+ {DEVICE}"),
            format!("device- {DEVICE}"),
            "any false".to_string(),
        ]
    );
    let blocks: Vec<u64> = events.iter().map(|l| l.block_number).collect();
    assert!(blocks.windows(2).all(|w| w[0] <= w[1]), "chain order");
}

#[tokio::test]
async fn kms_history_lists_os_images_and_registrations() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    net.client.remove_os_image(OS_IMAGE).await.unwrap();
    let head = net.head_number().await;
    let events = net
        .client
        .kms_history(BlockRange::new(0, head))
        .await
        .unwrap();
    let added = events.iter().position(
        |l| matches!(&l.event, KmsAuthEvents::OsImageHashAdded(e) if e.osImageHash == OS_IMAGE),
    );
    let registered = events.iter().position(
        |l| matches!(&l.event, KmsAuthEvents::AppRegistered(e) if e.appId == app.app_id()),
    );
    let removed = events.iter().position(
        |l| matches!(&l.event, KmsAuthEvents::OsImageHashRemoved(e) if e.osImageHash == OS_IMAGE),
    );
    assert!(
        added.is_some() && registered.is_some() && removed.is_some(),
        "{events:?}"
    );
    assert!(added < registered && registered < removed);
}

#[tokio::test]
async fn inverted_range_is_rejected() {
    let net = devnet(0).await;
    let err = net
        .client
        .kms_history(BlockRange::new(5, 4))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Misconfigured(_)), "{err:?}");
}
