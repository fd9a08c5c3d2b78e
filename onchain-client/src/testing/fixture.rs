//! [`AnvilChain`]: anvil with the Cairn system deployed, and the chain-side steps every
//! test world needs.

use std::path::Path;
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::node_bindings::AnvilInstance;
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::ext::AnvilApi;
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use url::Url;

use super::anvil::spawn_anvil;
use crate::{
    AppAuthClient, AppParams, ChainClient, ChainConfig, Connection, Dao, Deployment,
    GovernanceParams,
};

/// RPC timeout of fixture clients: generous, for anvil on a loaded CI machine. Tests of
/// timeouts set their own short one.
pub const FIXTURE_TIMEOUT: Duration = Duration::from_secs(20);

/// Head age bound of fixture clients. anvil mines only when asked, so a quiet test
/// chain's head ages in wall-clock time while a test runs; an hour keeps the fixture out
/// of the way. Tests of head freshness set their own bound (or clock).
pub const FIXTURE_MAX_HEAD_AGE: Duration = Duration::from_secs(3600);

/// Gas money for a KMS node's anchoring transactions (100 ether).
const NODE_FUNDS: u128 = 100_000_000_000_000_000_000;

/// A KMS node's identity as KmsAuth allowlists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KmsNodeRegistration {
    /// The node's aggregated MR (allowed with `addKmsAggregatedMr`).
    pub mr_aggregated: B256,
    /// The node's device id (allowed with `addKmsDevice`).
    pub device_id: B256,
    /// The node's address (registered with `addKmsNode` and funded), if it is to be a
    /// registered node.
    pub node: Option<Address>,
}

/// Anvil (own process, free port) with KmsAuth and the AppAuth implementation deployed
/// by anvil's account 0, which owns KmsAuth. Dropping it kills anvil.
pub struct AnvilChain {
    /// The anvil process.
    pub anvil: AnvilInstance,
    /// A client sending as the owner (quorum 1, [`FIXTURE_TIMEOUT`],
    /// [`FIXTURE_MAX_HEAD_AGE`]).
    pub client: ChainClient,
    /// The deployer and KmsAuth owner (anvil account 0).
    pub owner: Address,
    /// What was deployed.
    pub deployment: Deployment,
}

impl std::fmt::Debug for AnvilChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnvilChain")
            .field("endpoint", &self.anvil.endpoint())
            .field("deployment", &self.deployment)
            .finish_non_exhaustive()
    }
}

impl AnvilChain {
    /// Spawns anvil (found from `start`, see [`spawn_anvil`](super::spawn_anvil)) and
    /// deploys the system; the owner's client reads `confirmations` behind the head.
    ///
    /// # Panics
    ///
    /// When anvil cannot be spawned or the deployment fails.
    pub async fn deploy(start: &Path, confirmations: u64) -> AnvilChain {
        let anvil = spawn_anvil(start);
        let conn = connect_as(&anvil, 0).await;
        let owner = conn
            .sender()
            .unwrap_or_else(|| panic!("fixture connection has no sender"));
        let deployment = conn
            .deploy_system(owner)
            .await
            .unwrap_or_else(|e| panic!("deploy the Cairn system: {e}"));
        let client = client_over(conn, deployment.kms_auth, confirmations).await;
        AnvilChain {
            anvil,
            client,
            owner,
            deployment,
        }
    }

    /// The JSON-RPC endpoint.
    pub fn endpoint(&self) -> Url {
        self.anvil.endpoint_url()
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.anvil.chain_id()
    }

    /// The KmsAuth proxy.
    pub fn kms_auth(&self) -> Address {
        self.deployment.kms_auth
    }

    /// Anvil's well-known account `idx` as a signer.
    pub fn signer(&self, idx: usize) -> PrivateKeySigner {
        signer_of(&self.anvil, idx)
    }

    /// A connection sending as account `idx`.
    pub async fn connect(&self, idx: usize) -> Connection {
        connect_as(&self.anvil, idx).await
    }

    /// A client of this KmsAuth sending as account `idx`.
    pub async fn client_as(&self, idx: usize, confirmations: u64) -> ChainClient {
        client_over(self.connect(idx).await, self.kms_auth(), confirmations).await
    }

    /// A reader's config of this chain (one endpoint; [`FIXTURE_MAX_HEAD_AGE`]).
    pub fn chain_config(&self, confirmations: u64) -> ChainConfig {
        ChainConfig::new(self.endpoint(), self.chain_id(), self.kms_auth())
            .with_confirmations(confirmations)
            .with_max_head_age(FIXTURE_MAX_HEAD_AGE)
    }

    /// Mines `blocks` blocks.
    pub async fn mine(&self, blocks: u64) {
        self.provider()
            .anvil_mine(Some(blocks), None)
            .await
            .unwrap_or_else(|e| panic!("anvil_mine: {e}"));
    }

    /// Moves the chain clock `secs` forward and mines a block.
    pub async fn increase_time(&self, secs: u64) {
        self.provider()
            .anvil_increase_time(secs)
            .await
            .unwrap_or_else(|e| panic!("anvil_increaseTime: {e}"));
        self.mine(1).await;
    }

    /// The latest block's timestamp.
    pub async fn head_timestamp(&self) -> u64 {
        self.provider()
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
            .unwrap_or_else(|e| panic!("latest block: {e}"))
            .unwrap_or_else(|| panic!("anvil has no latest block"))
            .header
            .timestamp
    }

    /// The latest block number.
    pub async fn head_number(&self) -> u64 {
        self.provider()
            .get_block_number()
            .await
            .unwrap_or_else(|e| panic!("eth_blockNumber: {e}"))
    }

    /// Deploys and registers an app through the KmsAuth factory (nothing mined after).
    pub async fn deploy_app(&self, params: &AppParams) -> AppAuthClient {
        self.client
            .deploy_app(params)
            .await
            .unwrap_or_else(|e| panic!("deploy app: {e}"))
    }

    /// Deploys a DAO with [`GovernanceParams::devnet`] (the owner holds every vote, not yet
    /// delegated; nothing mined after) and returns its parameters with it.
    pub async fn deploy_dao(&self) -> (GovernanceParams, Dao) {
        let params = GovernanceParams::devnet(self.owner);
        let dao = self
            .client
            .connection()
            .deploy_governance(&params)
            .await
            .unwrap_or_else(|e| panic!("deploy governance: {e}"));
        (params, dao)
    }

    /// Allows an OS image hash.
    pub async fn allow_os_image(&self, os_image_hash: B256) {
        self.client
            .add_os_image(os_image_hash)
            .await
            .unwrap_or_else(|e| panic!("allow OS image: {e}"));
    }

    /// Registers root keys of `generation`.
    pub async fn set_root_keys(&self, generation: u32, k256_pubkey: &[u8], ca_spki: &[u8]) {
        self.client
            .set_kms_root_keys(
                generation,
                Bytes::copy_from_slice(k256_pubkey),
                Bytes::copy_from_slice(ca_spki),
            )
            .await
            .unwrap_or_else(|e| panic!("register root keys: {e}"));
    }

    /// Rotates the root keys to `generation` with the replaced one served until
    /// `previous_valid_until` (unix seconds).
    pub async fn rotate_root_keys(
        &self,
        generation: u32,
        k256_pubkey: &[u8],
        ca_spki: &[u8],
        previous_valid_until: u64,
    ) {
        self.client
            .rotate_kms_root_keys(
                generation,
                Bytes::copy_from_slice(k256_pubkey),
                Bytes::copy_from_slice(ca_spki),
                previous_valid_until,
            )
            .await
            .unwrap_or_else(|e| panic!("rotate root keys: {e}"));
    }

    /// Allows a KMS node's MR and device and, with an address, registers and funds it.
    /// Nothing mined after.
    pub async fn register_kms_node(&self, node: &KmsNodeRegistration) {
        self.client
            .add_kms_aggregated_mr(node.mr_aggregated)
            .await
            .unwrap_or_else(|e| panic!("allow KMS MR: {e}"));
        self.client
            .add_kms_device(node.device_id)
            .await
            .unwrap_or_else(|e| panic!("allow KMS device: {e}"));
        if let Some(address) = node.node {
            self.client
                .add_kms_node(address)
                .await
                .unwrap_or_else(|e| panic!("register KMS node: {e}"));
            self.fund(address).await;
        }
    }

    /// Gives `address` gas money.
    pub async fn fund(&self, address: Address) {
        self.provider()
            .anvil_set_balance(address, U256::from(NODE_FUNDS))
            .await
            .unwrap_or_else(|e| panic!("fund {address}: {e}"));
    }

    /// Kills anvil now (tests of a chain that stops answering); every later call to it
    /// fails as unreachable. Dropping the fixture afterwards is fine.
    pub fn kill_anvil(&mut self) {
        let child = self.anvil.child_mut();
        let _ = child.kill();
        let _ = child.wait();
    }

    fn provider(&self) -> &alloy::providers::DynProvider {
        self.client.connection().provider()
    }
}

fn signer_of(anvil: &AnvilInstance, idx: usize) -> PrivateKeySigner {
    match anvil.keys().get(idx) {
        Some(key) => PrivateKeySigner::from(key.clone()),
        None => panic!("anvil has no account {idx}"),
    }
}

async fn connect_as(anvil: &AnvilInstance, idx: usize) -> Connection {
    Connection::connect(
        anvil.endpoint_url(),
        anvil.chain_id(),
        FIXTURE_TIMEOUT,
        Some(signer_of(anvil, idx)),
    )
    .await
    .unwrap_or_else(|e| panic!("connect to anvil: {e}"))
}

async fn client_over(conn: Connection, kms_auth: Address, confirmations: u64) -> ChainClient {
    ChainClient::with_connection(conn, kms_auth, confirmations, 64)
        .await
        .unwrap_or_else(|e| panic!("KmsAuth client: {e}"))
        .with_max_head_age(FIXTURE_MAX_HEAD_AGE)
}
