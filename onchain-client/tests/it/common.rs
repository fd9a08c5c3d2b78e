//! Shared fixture: `cairn_onchain::testing::AnvilChain` (anvil with a deployed Cairn
//! system) with `OS_IMAGE` allowed, and the boot info the tests ask about.

use std::future::Future;
use std::ops::Deref;
use std::path::Path;
use std::time::Duration;

use cairn_onchain::alloy::primitives::{Address, B256};
use cairn_onchain::alloy::providers::Provider;
use cairn_onchain::testing::AnvilChain;
use cairn_onchain::{AppAuthClient, AppParams, BootInfo, Check, Error, Result, Verdict};

pub const OS_IMAGE: B256 = B256::repeat_byte(0x05);
pub const COMPOSE: B256 = B256::repeat_byte(0xc0);
pub const DEVICE: B256 = B256::repeat_byte(0xde);

/// The deadline the test logic enforces on an operation that must end (answer or fail) by
/// itself within its configured timeout. Far above every configured timeout: this is a
/// hang detector, never a speed assertion.
pub const HANG_DEADLINE: Duration = Duration::from_secs(60);

/// The output of `fut`, an operation that must end by itself; panics naming `what` when
/// it has not ended by [`HANG_DEADLINE`].
pub async fn ends_by_itself<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(HANG_DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} must end by itself, not hang"))
}

/// `err` is how a read fails closed when its endpoint is gone: unreachable or timed out,
/// and retryable.
#[track_caller]
pub fn assert_unreachable(err: &Error) {
    assert!(
        matches!(err, Error::Unreachable { .. } | Error::Timeout { .. }),
        "{err:?}"
    );
    assert!(err.is_retryable(), "{err:?}");
}

/// The fixture chain (fields and methods of [`AnvilChain`] through `Deref`).
pub struct Devnet(pub AnvilChain);

impl Deref for Devnet {
    type Target = AnvilChain;

    fn deref(&self) -> &AnvilChain {
        &self.0
    }
}

/// Anvil + deployed system; OS_IMAGE allowed; reads pinned `confirmations` behind head.
pub async fn devnet(confirmations: u64) -> Devnet {
    let chain = AnvilChain::deploy(Path::new(env!("CARGO_MANIFEST_DIR")), confirmations).await;
    chain.allow_os_image(OS_IMAGE).await;
    Devnet(chain)
}

impl Devnet {
    /// The block `number` as the owner's connection reads it.
    pub async fn block(&self, number: u64) -> cairn_onchain::alloy::rpc::types::Block {
        self.client
            .connection()
            .provider()
            .get_block_by_number(number.into())
            .await
            .unwrap()
            .unwrap()
    }

    /// An app owned by the KmsAuth owner, any device, nothing allowed.
    pub async fn owned_app(&self) -> AppAuthClient {
        self.deploy_app(&AppParams::new(self.owner)).await
    }

    /// An app owned by the KmsAuth owner, any device, `COMPOSE` allowed.
    pub async fn app_with_compose(&self) -> AppAuthClient {
        let params = AppParams {
            initial_compose_hash: Some(COMPOSE),
            ..AppParams::new(self.owner)
        };
        self.deploy_app(&params).await
    }

    /// `isAppAllowed(b)` through the owner's client at its current policy block.
    pub async fn app_verdict(&self, b: &BootInfo) -> Result<Verdict> {
        let at = self.client.policy_block().await.unwrap();
        self.client.is_app_allowed(b, at).await
    }

    /// `isKmsAllowed(b)` through the owner's client at its current policy block.
    pub async fn kms_verdict(&self, b: &BootInfo) -> Result<Verdict> {
        let at = self.client.policy_block().await.unwrap();
        self.client.is_kms_allowed(b, at).await
    }

    /// [`Devnet::app_verdict`] is a denial by `check` with the contract's exact `reason`.
    pub async fn assert_app_denied(&self, b: &BootInfo, check: Check, reason: &str) {
        assert_denied(self.app_verdict(b).await, check, reason);
    }

    /// [`Devnet::kms_verdict`] is a denial by `check` with the contract's exact `reason`.
    pub async fn assert_kms_denied(&self, b: &BootInfo, check: Check, reason: &str) {
        assert_denied(self.kms_verdict(b).await, check, reason);
    }
}

/// `verdict` is a denial by `check` with the contract's exact `reason`.
#[track_caller]
pub fn assert_denied(verdict: Result<Verdict>, check: Check, reason: &str) {
    match verdict {
        Err(Error::Denied {
            check: c,
            reason: r,
        }) if c == check && r == reason => {}
        other => panic!("expected a {check:?} denial ({reason:?}), got {other:?}"),
    }
}

/// `err` is a denial by `check` (whatever the contract's reason).
#[track_caller]
pub fn assert_denied_by(err: &Error, check: Check) {
    assert!(
        matches!(err, Error::Denied { check: c, .. } if *c == check),
        "expected a {check:?} denial, got {err:?}"
    );
}

pub fn boot(app_id: Address, compose_hash: B256) -> BootInfo {
    BootInfo {
        appId: app_id,
        composeHash: compose_hash,
        instanceId: Address::repeat_byte(0x11),
        deviceId: DEVICE,
        mrAggregated: B256::repeat_byte(0xa6),
        mrSystem: B256::repeat_byte(0x55),
        osImageHash: OS_IMAGE,
        tcbStatus: "UpToDate".into(),
        advisoryIds: vec![],
    }
}

/// `n` honest JSON-RPC proxies in front of the fixture's anvil: `n` agreeing endpoints.
pub async fn proxies(net: &Devnet, n: usize) -> Vec<cairn_onchain::testing::RpcProxy> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(cairn_onchain::testing::RpcProxy::start(net.endpoint()).await);
    }
    out
}

/// The config of a reader over `proxies` needing `quorum` of them to agree.
pub fn quorum_config(
    net: &Devnet,
    proxies: &[cairn_onchain::testing::RpcProxy],
    quorum: usize,
) -> cairn_onchain::ChainConfig {
    let urls = proxies.iter().map(|p| p.url()).collect();
    net.chain_config(0).with_rpc_urls(urls, quorum)
}
