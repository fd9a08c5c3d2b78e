//! The guest asks KmsAuth about its KMS before trusting it: `isKmsAllowed` on the KMS's
//! boot info (its verified quote, the OS image manifest it serves) at a pinned block, on
//! a real anvil with the Cairn contracts.

use std::path::Path;
use std::time::Duration;

use cairn_guest::{boot, Error};
use cairn_kms_client::Error as KmsError;
use cairn_onchain::alloy::node_bindings::AnvilInstance;
use cairn_onchain::alloy::primitives::{Address, B256};
use cairn_onchain::alloy::signers::local::PrivateKeySigner;
use cairn_onchain::testing::spawn_anvil;
use cairn_onchain::{ChainClient, Check, Connection};

use crate::world::*;

/// Anvil with KmsAuth deployed and the guest OS image allowed; the stub KMS's
/// measurements and device allowed when `allow_kms`.
struct Chain {
    anvil: AnvilInstance,
    kms_auth: Address,
    _client: ChainClient,
}

impl Chain {
    async fn new(allow_kms: bool) -> Chain {
        let anvil = spawn_anvil(Path::new(env!("CARGO_MANIFEST_DIR")));
        let signer = PrivateKeySigner::from(anvil.keys()[0].clone());
        let conn = Connection::connect(
            anvil.endpoint_url(),
            anvil.chain_id(),
            Duration::from_secs(20),
            Some(signer),
        )
        .await
        .unwrap();
        let owner = conn.sender().unwrap();
        let deployment = conn.deploy_system(owner).await.unwrap();
        let client = ChainClient::with_connection(conn, deployment.kms_auth, 0, 64)
            .await
            .unwrap();
        client
            .add_os_image(B256::from(guest_os().os_image_hash().0))
            .await
            .unwrap();
        if allow_kms {
            let kms = stub_kms_identity().await;
            client
                .add_kms_aggregated_mr(B256::from(kms.mr_aggregated().0))
                .await
                .unwrap();
            client
                .add_kms_device(B256::from(kms.device_id().0))
                .await
                .unwrap();
        }
        Chain {
            anvil,
            kms_auth: deployment.kms_auth,
            _client: client,
        }
    }

    /// sys-config's `chain` section for this chain (`chain_id` as given).
    fn section(&self, chain_id: u64) -> serde_json::Value {
        serde_json::json!({
            "rpc_url": self.anvil.endpoint(),
            "chain_id": chain_id,
            "kms_auth": format!("{:#x}", self.kms_auth),
            "confirmations": 0,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_that_kms_auth_allows_is_trusted() {
    let chain = Chain::new(true).await;
    let kms = StubKms::start(Mode::Honest).await;
    let s = share(&[&kms.url], "");
    s.set_chain(&[&kms.url], chain.section(chain.anvil.chain_id()));
    let booted = boot(as_tee(&guest_tee(1)), kms_client(), &s.config())
        .await
        .unwrap();
    assert_eq!(booted.state.secrets.kms_url, kms.url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_whose_measurements_kms_auth_does_not_allow_is_refused() {
    let chain = Chain::new(false).await;
    let kms = StubKms::start(Mode::Honest).await;
    let s = share(&[&kms.url], "");
    s.set_chain(&[&kms.url], chain.section(chain.anvil.chain_id()));
    let err = boot(as_tee(&guest_tee(1)), kms_client(), &s.config())
        .await
        .unwrap_err();
    match &err {
        Error::AllKmsFailed(v) => assert!(
            matches!(
                &v[0].1,
                KmsError::KmsPolicy { source, .. } if matches!(
                    &**source,
                    cairn_onchain::Error::Denied { check: Check::KmsMr, reason }
                        if reason == "KMS aggregated MR not allowed"
                )
            ),
            "{err}"
        ),
        other => panic!("{other}"),
    }
    assert_eq!(
        kms.releases.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no key was requested from a KMS the chain does not allow"
    );
    assert!(is_empty_or_missing(&s.keys_dir()));
    assert!(!s.out().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_serving_another_images_manifest_is_refused() {
    let chain = Chain::new(true).await;
    let kms = StubKms::start(Mode::WrongImage).await;
    let s = share(&[&kms.url], "");
    s.set_chain(&[&kms.url], chain.section(chain.anvil.chain_id()));
    let err = boot(as_tee(&guest_tee(1)), kms_client(), &s.config())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::AllKmsFailed(v) if matches!(v[0].1, KmsError::KmsImageMismatch { .. })),
        "{err}"
    );
    assert_eq!(kms.releases.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_that_is_not_the_configured_one_stops_the_boot() {
    let chain = Chain::new(true).await;
    let kms = StubKms::start(Mode::Honest).await;
    let s = share(&[&kms.url], "");
    s.set_chain(&[&kms.url], chain.section(chain.anvil.chain_id() + 1));
    let err = boot(as_tee(&guest_tee(1)), kms_client(), &s.config())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Chain(cairn_onchain::Error::ChainIdMismatch { .. })
        ),
        "{err:?}"
    );
    assert_eq!(kms.releases.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// Issue 14, "Fail closed, recover by itself", for the guest: its chain RPC down, then
/// stalled (accepts, never answers), then back. While it is lost the boot fails closed
/// (no KMS is asked for keys, nothing reaches the key directory) with the chain error,
/// the stall within the guest's chain call timeout; once it is back the same share
/// boots with no other change (the guest is one-shot: whatever restarts it, retries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guests_chain_rpc_lost_fails_the_boot_closed_and_the_next_boot_succeeds_when_it_returns(
) {
    use cairn_onchain::testing::{Behaviour, RpcProxy};

    let chain = Chain::new(true).await;
    let proxy = RpcProxy::start(chain.anvil.endpoint_url()).await;
    let kms = StubKms::start(Mode::Honest).await;
    let s = share(&[&kms.url], "");
    let mut section = chain.section(chain.anvil.chain_id());
    section["rpc_url"] = serde_json::Value::String(proxy.url().to_string());
    s.set_chain(&[&kms.url], section);
    // A hang detector only: a stalled RPC must end the boot within the chain call
    // timeout (several calls may each take up to it).
    let bound = 6 * cairn_guest::CHAIN_CALL_TIMEOUT;

    for behaviour in [Behaviour::Down, Behaviour::Stall] {
        proxy.set(behaviour);
        let err = tokio::time::timeout(
            bound,
            boot(as_tee(&guest_tee(1)), kms_client(), &s.config()),
        )
        .await
        .unwrap_or_else(|_| panic!("the boot hung with the chain RPC {behaviour:?}"))
        .unwrap_err();
        let chain_err = match &err {
            Error::Chain(e) => e,
            Error::AllKmsFailed(v) => match &v[0].1 {
                KmsError::KmsPolicy { source, .. } => &**source,
                other => panic!("{behaviour:?}: expected a chain failure, got {other:?}"),
            },
            other => panic!("{behaviour:?}: expected a chain failure, got {other:?}"),
        };
        match behaviour {
            Behaviour::Stall => assert!(
                matches!(chain_err, cairn_onchain::Error::Timeout { .. }),
                "{behaviour:?}: {chain_err:?}"
            ),
            _ => assert!(
                chain_err.is_retryable(),
                "{behaviour:?}: a lost RPC is retryable: {chain_err:?}"
            ),
        }
        assert_eq!(
            kms.releases.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "{behaviour:?}: no key was requested while the chain could not be asked"
        );
        assert!(is_empty_or_missing(&s.keys_dir()), "{behaviour:?}");
    }

    proxy.set(Behaviour::Forward);
    let booted = boot(as_tee(&guest_tee(1)), kms_client(), &s.config())
        .await
        .expect("the boot succeeds once the chain RPC is back");
    assert_eq!(booted.state.secrets.kms_url, kms.url);
    assert_eq!(kms.releases.load(std::sync::atomic::Ordering::SeqCst), 1);
}
