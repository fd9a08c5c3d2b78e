//! The guest asks KmsAuth about its KMS before trusting it: `isKmsAllowed` on the KMS's
//! boot info (its verified quote, the OS image manifest it serves) at a pinned block, on
//! the world's anvil with the Cairn contracts, where the world's KMS is registered.

use cairn_guest::{boot, Error};
use cairn_kms_client::Error as KmsError;
use cairn_onchain::Check;

use crate::hostile::Hostile;
use crate::world::*;

/// A share of `w`'s app that checks `w`'s KMS on chain `chain_id` before trusting it.
fn share_checking_the_kms(w: &World, chain_id: u64) -> Share {
    let s = w.share("");
    s.set_chain(w.chain_section(chain_id));
    s
}

async fn boot_share(s: &Share) -> cairn_guest::Result<cairn_guest::Booted> {
    boot(as_tee(&guest_tee(1)), kms_client(), &s.config()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_that_kms_auth_allows_is_trusted() {
    let w = World::start().await;
    let s = share_checking_the_kms(&w, w.net.chain_id());
    let booted = boot_share(&s).await.unwrap();
    assert_eq!(booted.state.secrets.kms_url, w.url());
    assert_eq!(w.releases(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_whose_measurements_kms_auth_does_not_allow_is_refused() {
    let w = World::start().await;
    // Governance removes the KMS's aggregated MR from KmsAuth.
    let mr = w.kms.node.own_evidence().boot.mrAggregated;
    w.net.client.remove_kms_aggregated_mr(mr).await.unwrap();
    w.net.mine(CONFIRMATIONS).await;
    let s = share_checking_the_kms(&w, w.net.chain_id());
    let err = boot_share(&s).await.unwrap_err();
    assert!(
        matches!(
            err.kms_chain_error(),
            Some(cairn_onchain::Error::Denied { check: Check::KmsMr, reason })
                if reason == "KMS aggregated MR not allowed"
        ),
        "{err}"
    );
    assert_eq!(
        w.releases(),
        0,
        "no key was requested from a KMS the chain does not allow"
    );
    assert!(is_empty_or_missing(&s.keys_dir()));
    assert!(!s.out().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_serving_another_images_manifest_is_refused() {
    let w = World::with_kms(Hostile::WrongImage).await;
    let s = share_checking_the_kms(&w, w.net.chain_id());
    let err = boot_share(&s).await.unwrap_err();
    assert!(
        matches!(&err, Error::AllKmsFailed(v) if matches!(v[0].1, KmsError::KmsImageMismatch { .. })),
        "{err}"
    );
    assert_eq!(w.releases(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_that_is_not_the_configured_one_stops_the_boot() {
    let w = World::start().await;
    let s = share_checking_the_kms(&w, w.net.chain_id() + 1);
    let err = boot_share(&s).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Chain(cairn_onchain::Error::ChainIdMismatch { .. })
        ),
        "{err:?}"
    );
    assert_eq!(w.releases(), 0);
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

    let w = World::start().await;
    let proxy = RpcProxy::start(w.net.endpoint()).await;
    let s = w.share("");
    let mut section = w.chain_section(w.net.chain_id());
    section["rpc_url"] = serde_json::Value::String(proxy.url().to_string());
    s.set_chain(section);
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
        let chain_err = err
            .kms_chain_error()
            .unwrap_or_else(|| panic!("{behaviour:?}: expected a chain failure, got {err:?}"));
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
            w.releases(),
            0,
            "{behaviour:?}: no key was requested while the chain could not be asked"
        );
        assert!(is_empty_or_missing(&s.keys_dir()), "{behaviour:?}");
    }

    proxy.set(Behaviour::Forward);
    let booted = boot(as_tee(&guest_tee(1)), kms_client(), &s.config())
        .await
        .expect("the boot succeeds once the chain RPC is back");
    assert_eq!(booted.state.secrets.kms_url, w.url());
    assert_eq!(w.releases(), 1);
}
