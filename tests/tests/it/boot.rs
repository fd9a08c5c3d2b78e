//! Deploy → register app → allow compose hash → boot: keys, env, app, agent, receipt.
//! And the refusals: a compose hash that was never allowed, and one that was removed.

use std::os::unix::fs::PermissionsExt;

use cairn_e2e::*;
use cairn_guest::Error;
use cairn_kms_client::Error as KmsError;
use cairn_protocol::env::{encrypt_env_for_app, EnvEncryption, EnvVar, EnvVars};
use hyper::StatusCode;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `cvm`'s boot is refused by the chain's compose-hash check, and its app does not start.
async fn boot_is_denied_by_the_compose_hash(cvm: &Cvm) {
    let err = cvm.boot().await.unwrap_err();
    assert_denied(&err, "denied.compose_hash", "Compose hash not allowed");
    assert!(!cvm.app_out().exists(), "the app must not start");
}

/// The boot failed because the KMS said 403 with `code` and the contract's `reason`.
fn assert_denied(err: &Error, code: &str, reason: &str) {
    match err {
        Error::AllKmsFailed(v) => {
            assert_eq!(v.len(), 1, "{err}");
            match &v[0].1 {
                KmsError::Status {
                    status,
                    code: c,
                    message,
                    ..
                } => {
                    assert_eq!((*status, c.as_str()), (403, code), "{err}");
                    assert_eq!(message, reason, "{err}");
                }
                other => panic!("expected a 403 from the KMS, got {other:?}"),
            }
        }
        other => panic!("expected AllKmsFailed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_app_boots_with_keys_env_and_an_agent_whose_keys_chain_to_the_onchain_root() {
    let (net, kms, app) = Devnet::with_kms_and_app(None).await;
    let app_id = app.app_id();
    let cvm = Cvm::new(&kms.url(), app_id, 0x01, "v1");
    app.add_compose_hash(cvm.compose_hash()).await.unwrap();
    net.mine(CONFIRMATIONS).await;

    // Deploy-time env encryption, checked against the KMS root key on chain.
    let mut public = kms.client(None).await;
    let vars = EnvVars::new(vec![
        EnvVar {
            key: "API_KEY".into(),
            value: "s3cret-api-key".into(),
        },
        EnvVar {
            key: "NOT_ALLOWED".into(),
            value: "dropped".into(),
        },
    ])
    .unwrap();
    let blob = encrypt_env_for_app(
        &public.env_pubkey(&app_id.into_array()).await.unwrap(),
        &chain_root_k256(&net.client).await,
        &app_id.into_array(),
        &vars,
        EnvEncryption::new(cairn_kms::unix_now()),
    )
    .unwrap();
    cvm.set_encrypted_env(&blob);

    let booted = cvm.boot().await.unwrap();

    // Keys on disk, private.
    assert_eq!(mode(&cvm.keys_dir()), 0o700);
    for f in ["app.key", "disk.key", "root-ca.pem", "receipt.json"] {
        assert_eq!(mode(&cvm.keys_dir().join(f)), 0o600, "{f}");
    }
    // The app ran with the decrypted, allowed env var.
    assert_eq!(
        wait_for_file(&cvm.app_out()).await.as_deref(),
        Some(&b"started:s3cret-api-key"[..])
    );

    // The app calls its guest agent over the unix socket.
    let agent = Agent::serve(&cvm.agent_socket(), booted.state.clone());
    let (st, v) = agent
        .call(
            "GetKey",
            serde_json::json!({"path": "wallet/0", "purpose": "eth", "algorithm": "secp256k1"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The root the chain holds, not the KMS's word for it.
    let root = net.chain_k256_root().await;
    checked_get_key(&v, &app_id.into_array(), "eth", &root);
    agent.stop().await;

    // The release receipt, checked as an auditor would: signed by a registered node,
    // included in the log, this release, allowed at its policy block.
    let record = cairn_onchain::verify_receipt(
        &net.client,
        &mut public,
        &booted.state.secrets.receipt,
        app_id,
        cairn_tlog::ReleaseKind::AppKey,
    )
    .await
    .unwrap();
    assert_eq!(record.boot.compose_hash, cvm.compose_hash());
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_of_a_compose_hash_never_allowed_fails_with_the_contracts_reason_and_starts_nothing() {
    let (_net, kms, app) = Devnet::with_kms_and_app(None).await;
    let cvm = Cvm::new(&kms.url(), app.app_id(), 0x02, "v1");

    boot_is_denied_by_the_compose_hash(&cvm).await;
    let no_keys = std::fs::read_dir(cvm.keys_dir())
        .map(|mut d| d.next().is_none())
        .unwrap_or(true);
    assert!(no_keys, "no key may reach the disk");
    assert_eq!(kms.node.log().size(), 0, "a denial is never logged");
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_after_remove_compose_hash_is_refused() {
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let (app, cvm) = net.allowed_cvm(&kms, 0x03, "v1").await;
    let first = cvm.boot().await.unwrap();
    assert!(wait_for_file(&cvm.app_out()).await.is_some());
    drop(first);
    std::fs::remove_file(cvm.app_out()).unwrap();

    app.remove_compose_hash(cvm.compose_hash()).await.unwrap();
    net.mine(CONFIRMATIONS).await;
    boot_is_denied_by_the_compose_hash(&cvm).await;
    assert_eq!(kms.node.log().size(), 1, "only the first release is logged");
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_checking_its_kms_on_chain_boots_and_refuses_the_kms_once_kms_auth_revokes_it() {
    let (net, kms, app) = Devnet::with_kms_and_app(None).await;
    let cvm = Cvm::new(&kms.url(), app.app_id(), 0x04, "v1");
    cvm.check_kms_on_chain(&net);
    app.add_compose_hash(cvm.compose_hash()).await.unwrap();
    net.mine(CONFIRMATIONS).await;
    // The real KMS's meta serves its OS image manifest; its boot info is allowed.
    let first = cvm.boot().await.unwrap();
    assert!(wait_for_file(&cvm.app_out()).await.is_some());
    drop(first);
    std::fs::remove_file(cvm.app_out()).unwrap();

    // Governance removes the KMS's measurements: the guest no longer trusts it, and asks
    // it for nothing.
    let mr = kms.node.own_evidence().boot.mrAggregated;
    net.client.remove_kms_aggregated_mr(mr).await.unwrap();
    net.mine(CONFIRMATIONS).await;
    let err = cvm.boot().await.unwrap_err();
    assert!(
        matches!(
            err.kms_chain_error(),
            Some(cairn_onchain::Error::Denied {
                check: cairn_onchain::Check::KmsMr,
                ..
            })
        ),
        "{err}"
    );
    assert!(!cvm.app_out().exists(), "the app must not start again");
    assert_eq!(kms.node.log().size(), 1, "only the first release is logged");
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_key_not_signed_by_the_root_registered_on_chain_is_refused_at_deploy_time() {
    let (net, kms, app) = Devnet::with_kms_and_app(None).await;
    // The chain now names another root (generation 2): the running KMS's signature over
    // the env key no longer verifies against what the chain says.
    net.register_other_root().await;
    let vars = vmm::api_key_env("never-encrypted");
    let mut public = kms.client(None).await;
    let app_id = app.app_id().into_array();
    let err = encrypt_env_for_app(
        &public.env_pubkey(&app_id).await.unwrap(),
        &chain_root_k256(&net.client).await,
        &app_id,
        &vars,
        EnvEncryption::new(cairn_kms::unix_now()),
    )
    .unwrap_err();
    assert_eq!(err, cairn_protocol::Error::WrongSigner);
    kms.stop().await;
}
