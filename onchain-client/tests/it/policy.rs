//! isAppAllowed through KmsAuth: allows, and each denial with its typed check and reason.

use cairn_onchain::alloy::primitives::{Address, B256};
use cairn_onchain::AppAuth::AppAuthErrors;
use cairn_onchain::KmsAuth::KmsAuthErrors;
use cairn_onchain::{reasons, AppParams, Check, Verdict};

use crate::common::{boot, devnet, COMPOSE, DEVICE};

#[tokio::test]
async fn allowed_hash_is_allowed_and_removed_hash_is_denied_with_contract_reason() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    let b = boot(app.app_id(), COMPOSE);

    assert_eq!(net.app_verdict(&b).await.unwrap(), Verdict::Allowed);

    app.remove_compose_hash(COMPOSE).await.unwrap();
    net.assert_app_denied(&b, Check::ComposeHash, reasons::COMPOSE_HASH)
        .await;
}

#[tokio::test]
async fn hash_added_later_is_allowed() {
    let net = devnet(0).await;
    let app = net.owned_app().await;
    let b = boot(app.app_id(), COMPOSE);
    net.assert_app_denied(&b, Check::ComposeHash, reasons::COMPOSE_HASH)
        .await;

    app.add_compose_hash(COMPOSE).await.unwrap();
    assert_eq!(net.app_verdict(&b).await.unwrap(), Verdict::Allowed);
}

#[tokio::test]
async fn release_is_denied_before_compose_hash_activation() {
    let net = devnet(0).await;
    let app = net.owned_app().await;
    let activates_at = net.head_timestamp().await + 3600;
    app.schedule_compose_hash(COMPOSE, activates_at)
        .await
        .unwrap();
    let b = boot(app.app_id(), COMPOSE);

    net.assert_app_denied(
        &b,
        Check::ComposeHashNotActive,
        reasons::COMPOSE_HASH_NOT_ACTIVE,
    )
    .await;

    net.increase_time(3601).await;
    assert_eq!(net.app_verdict(&b).await.unwrap(), Verdict::Allowed);
}

#[tokio::test]
async fn unlisted_os_image_is_denied() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    let mut b = boot(app.app_id(), COMPOSE);
    b.osImageHash = B256::repeat_byte(0x66);
    net.assert_app_denied(&b, Check::OsImage, reasons::OS_IMAGE)
        .await;
}

#[tokio::test]
async fn unregistered_app_is_denied() {
    let net = devnet(0).await;
    let b = boot(Address::repeat_byte(0x77), COMPOSE);
    net.assert_app_denied(&b, Check::AppNotRegistered, reasons::APP_NOT_REGISTERED)
        .await;
}

#[tokio::test]
async fn unlisted_device_is_denied_unless_any_device_is_allowed() {
    let net = devnet(0).await;
    let params = AppParams {
        allow_any_device: false,
        initial_compose_hash: Some(COMPOSE),
        ..AppParams::new(net.owner)
    };
    let app = net.client.deploy_app(&params).await.unwrap();
    let b = boot(app.app_id(), COMPOSE);
    net.assert_app_denied(&b, Check::Device, reasons::DEVICE)
        .await;

    app.add_device(DEVICE).await.unwrap();
    assert_eq!(net.app_verdict(&b).await.unwrap(), Verdict::Allowed);
}

#[tokio::test]
async fn unacceptable_tcb_status_and_untolerated_advisory_are_denied() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    let mut b = boot(app.app_id(), COMPOSE);
    b.tcbStatus = "OutOfDate".into();
    net.assert_app_denied(&b, Check::TcbStatus, reasons::TCB_STATUS)
        .await;

    b.tcbStatus = "UpToDate".into();
    b.advisoryIds = vec!["INTEL-SA-00837".into()];
    net.assert_app_denied(&b, Check::Advisory, reasons::ADVISORY)
        .await;

    net.client
        .set_advisory_tolerated("INTEL-SA-00837", true)
        .await
        .unwrap();
    assert_eq!(net.app_verdict(&b).await.unwrap(), Verdict::Allowed);
}

#[tokio::test]
async fn kms_node_policy_checks_mr_and_device() {
    let net = devnet(0).await;
    let b = boot(Address::ZERO, B256::ZERO);
    net.assert_kms_denied(&b, Check::KmsMr, reasons::KMS_MR)
        .await;

    net.client
        .add_kms_aggregated_mr(b.mrAggregated)
        .await
        .unwrap();
    net.assert_kms_denied(&b, Check::KmsDevice, reasons::KMS_DEVICE)
        .await;

    net.client.add_kms_device(b.deviceId).await.unwrap();
    assert_eq!(net.kms_verdict(&b).await.unwrap(), Verdict::Allowed);
}

#[tokio::test]
async fn root_keys_and_gateway_app_id_are_read_at_the_policy_block() {
    let net = devnet(0).await;
    let at = net.client.policy_block().await.unwrap();
    assert_eq!(net.client.root_keys(at).await.unwrap(), None);
    assert_eq!(net.client.gateway_app_id(at).await.unwrap(), None);

    let mut k256 = vec![0x02];
    k256.extend_from_slice(&[0x42; 32]);
    // Minimal DER SubjectPublicKeyInfo shape for a P-256 key (the contract checks shape only).
    let ca = hex_spki();
    net.client
        .set_kms_root_keys(1, k256.clone().into(), ca.clone().into())
        .await
        .unwrap();
    let gateway = net.app_with_compose().await.app_id();
    net.client.set_gateway_app_id(gateway).await.unwrap();

    let at = net.client.policy_block().await.unwrap();
    let keys = net.client.root_keys(at).await.unwrap().expect("keys set");
    assert_eq!(keys.generation, 1);
    assert_eq!(keys.k256_pubkey.as_ref(), k256.as_slice());
    assert_eq!(keys.ca_pubkey.as_ref(), ca.as_slice());
    assert_eq!(net.client.gateway_app_id(at).await.unwrap(), Some(gateway));
    assert_eq!(net.client.key_generation(at).await.unwrap(), 1);
    assert_eq!(
        net.client.root_keys_of_generation(1, at).await.unwrap(),
        Some(keys.clone())
    );
    assert_eq!(
        net.client.root_keys_of_generation(2, at).await.unwrap(),
        None
    );

    // Generations only grow: the decoded custom error names both values.
    let err = net
        .client
        .set_kms_root_keys(1, k256.into(), ca.into())
        .await
        .unwrap_err();
    match err.as_kms_auth_error() {
        Some(KmsAuthErrors::KmsAuthGenerationNotIncreasing(e)) => {
            assert_eq!((e.current, e.given), (1, 1))
        }
        _ => panic!("expected KmsAuthGenerationNotIncreasing, got {err:?}"),
    }
}

#[tokio::test]
async fn key_generations_follow_a_rotation_and_its_window_at_the_policy_block() {
    let net = devnet(0).await;
    let at = net.client.policy_block().await.unwrap();
    assert_eq!(net.client.key_generations(at).await.unwrap(), None);

    let k1 = [&[0x02u8][..], &[0x11; 32]].concat();
    let k2 = [&[0x03u8][..], &[0x22; 32]].concat();
    let ca = hex_spki();
    // A rotation needs a generation to rotate from: the decoded custom error says so.
    let err = net
        .client
        .rotate_kms_root_keys(1, k1.clone().into(), ca.clone().into(), u64::MAX)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.as_kms_auth_error(),
            Some(KmsAuthErrors::KmsAuthNoGenerationToRotate(_))
        ),
        "{err:?}"
    );
    net.client
        .set_kms_root_keys(1, k1.clone().into(), ca.clone().into())
        .await
        .unwrap();
    let at = net.client.policy_block().await.unwrap();
    let g = net.client.key_generations(at).await.unwrap().expect("set");
    assert_eq!(g.current.generation, 1);
    assert_eq!(g.previous, None);

    let now = net.head_timestamp().await;
    let until = now + 3600;
    net.client
        .rotate_kms_root_keys(2, k2.clone().into(), ca.clone().into(), until)
        .await
        .unwrap();
    let at = net.client.policy_block().await.unwrap();
    let g = net.client.key_generations(at).await.unwrap().expect("set");
    assert_eq!(g.current.generation, 2);
    assert_eq!(g.current.k256_pubkey.as_ref(), k2.as_slice());
    let previous = g.active_previous().expect("window open");
    assert_eq!(previous.keys.generation, 1);
    assert_eq!(previous.keys.k256_pubkey.as_ref(), k1.as_slice());
    assert_eq!(previous.valid_until, until);

    // The read is pinned: the block before the rotation still says generation 1 alone.
    let before = net.client.block_at(at.number - 1).await.unwrap();
    let g = net
        .client
        .key_generations(before)
        .await
        .unwrap()
        .expect("set");
    assert_eq!((g.current.generation, g.previous), (1, None));

    // After the window the chain itself says the previous generation is over.
    net.increase_time(3600).await;
    let at = net.client.policy_block().await.unwrap();
    let g = net.client.key_generations(at).await.unwrap().expect("set");
    assert_eq!(g.current.generation, 2);
    let previous = g.previous.as_ref().expect("still named");
    assert!(!previous.active, "window over at the block read");
    assert!(g.active_previous().is_none());

    // An ended window cannot be moved again.
    let err = net
        .client
        .set_transition_window_end(until + 3600)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.as_kms_auth_error(),
            Some(KmsAuthErrors::KmsAuthNoTransitionWindow(_))
        ),
        "{err:?}"
    );
}

fn hex_spki() -> Vec<u8> {
    // SEQUENCE { SEQUENCE { ecPublicKey, prime256v1 }, BIT STRING (0x04 || X || Y) }
    let mut der = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
    ];
    der.extend_from_slice(&[0x11; 64]);
    der
}

#[tokio::test]
async fn non_owner_admin_call_reverts_with_decoded_ownable_error() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    let stranger = net.client_as(3, 0).await;
    let stranger_addr = stranger.connection().sender().unwrap();
    let err = stranger
        .app(app.app_id())
        .add_compose_hash(B256::repeat_byte(9))
        .await
        .unwrap_err();
    match err.as_app_auth_error() {
        Some(AppAuthErrors::OwnableUnauthorizedAccount(e)) => assert_eq!(e.account, stranger_addr),
        _ => panic!("expected OwnableUnauthorizedAccount, got {err:?}"),
    }

    // A no-op setter is rejected with the contract's own error.
    let err = app.add_compose_hash(COMPOSE).await.unwrap_err();
    assert!(
        matches!(
            err.as_app_auth_error(),
            Some(AppAuthErrors::AppAuthComposeHashAlreadyAllowed(e)) if e.hash == COMPOSE
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn app_requiring_up_to_date_tcb_denies_other_acceptable_statuses() {
    let net = devnet(0).await;
    net.client
        .set_tcb_status_acceptable("SWHardeningNeeded", true)
        .await
        .unwrap();
    let app = net.app_with_compose().await;
    let mut b = boot(app.app_id(), COMPOSE);
    b.tcbStatus = "SWHardeningNeeded".into();
    assert_eq!(net.app_verdict(&b).await.unwrap(), Verdict::Allowed);

    app.set_require_tcb_up_to_date(true).await.unwrap();
    net.assert_app_denied(&b, Check::TcbNotUpToDate, reasons::TCB_NOT_UP_TO_DATE)
        .await;
}
