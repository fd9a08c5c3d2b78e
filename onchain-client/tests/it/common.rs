//! Shared fixture: an anvil with a deployed Cairn system.

use std::path::Path;
use std::time::Duration;

use cairn_onchain::alloy::node_bindings::AnvilInstance;
use cairn_onchain::alloy::primitives::{Address, B256};
use cairn_onchain::alloy::providers::ext::AnvilApi;
use cairn_onchain::alloy::signers::local::PrivateKeySigner;
use cairn_onchain::testing::spawn_anvil;
use cairn_onchain::{AppAuthClient, AppParams, BootInfo, ChainClient, Connection, Deployment};

pub const OS_IMAGE: B256 = B256::repeat_byte(0x05);
pub const COMPOSE: B256 = B256::repeat_byte(0xc0);
pub const DEVICE: B256 = B256::repeat_byte(0xde);
/// Generous: anvil under a loaded CI machine; the timeout tests use their own short one.
pub const TIMEOUT: Duration = Duration::from_secs(20);

pub struct Devnet {
    /// Kept alive for the test's duration (dropping it kills anvil).
    pub anvil: AnvilInstance,
    pub deployment: Deployment,
    /// Client signing as the KmsAuth owner (anvil account 0).
    pub client: ChainClient,
    pub owner: Address,
}

pub fn signer(anvil: &AnvilInstance, idx: usize) -> PrivateKeySigner {
    PrivateKeySigner::from(anvil.keys()[idx].clone())
}

pub async fn connect(anvil: &AnvilInstance, idx: usize) -> Connection {
    Connection::connect(
        anvil.endpoint_url(),
        anvil.chain_id(),
        TIMEOUT,
        Some(signer(anvil, idx)),
    )
    .await
    .expect("connect to anvil")
}

/// Anvil + deployed system; OS_IMAGE allowed; reads pinned `confirmations` behind head.
pub async fn devnet(confirmations: u64) -> Devnet {
    let anvil = spawn_anvil(Path::new(env!("CARGO_MANIFEST_DIR")));
    let conn = connect(&anvil, 0).await;
    let owner = conn.sender().expect("signer");
    let deployment = conn.deploy_system(owner).await.expect("deploy system");
    let client = ChainClient::with_connection(conn, deployment.kms_auth, confirmations, 64)
        .await
        .expect("client");
    client.add_os_image(OS_IMAGE).await.expect("add os image");
    Devnet {
        anvil,
        deployment,
        client,
        owner,
    }
}

impl Devnet {
    /// A client for another anvil account against the same KmsAuth.
    pub async fn client_as(&self, idx: usize, confirmations: u64) -> ChainClient {
        let conn = connect(&self.anvil, idx).await;
        ChainClient::with_connection(conn, self.deployment.kms_auth, confirmations, 64)
            .await
            .expect("client")
    }

    /// An app owned by the KmsAuth owner, any device, `COMPOSE` allowed.
    pub async fn app_with_compose(&self) -> AppAuthClient {
        let params = AppParams {
            initial_compose_hash: Some(COMPOSE),
            ..AppParams::new(self.owner)
        };
        self.client.deploy_app(&params).await.expect("deploy app")
    }

    pub async fn mine(&self, blocks: u64) {
        self.client
            .connection()
            .provider()
            .anvil_mine(Some(blocks), None)
            .await
            .expect("anvil_mine");
    }

    pub async fn increase_time(&self, secs: u64) {
        let p = self.client.connection().provider();
        p.anvil_increase_time(secs).await.expect("increase time");
        p.anvil_mine(Some(1), None).await.expect("anvil_mine");
    }

    pub async fn head_timestamp(&self) -> u64 {
        use cairn_onchain::alloy::providers::Provider;
        let p = self.client.connection().provider();
        let block = p
            .get_block_by_number(cairn_onchain::alloy::eips::BlockNumberOrTag::Latest)
            .await
            .expect("get block")
            .expect("latest block");
        block.header.timestamp
    }
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
