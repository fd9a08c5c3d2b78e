//! KmsAuth transactions: allowlists, KMS identity and nodes, app registry, anchoring.

use alloy::contract::{CallBuilder, CallDecoder};
use alloy::primitives::{Address, Bytes, B256};
use alloy::providers::DynProvider;
use alloy::rpc::types::TransactionReceipt;
use alloy::sol_types::SolEvent;

use crate::app::AppAuthClient;
use crate::bindings::KmsAuth;
use crate::client::ChainClient;
use crate::error::{Error, Result, Target};

/// Parameters of a new app deployed through the KmsAuth factory (`deployAndRegisterApp`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppParams {
    /// The AppAuth owner (developer EOA, multisig or DAO timelock).
    pub owner: Address,
    /// When true, the AppAuth can never be upgraded.
    pub upgrades_disabled: bool,
    /// When true, any device may run the app.
    pub allow_any_device: bool,
    /// A device to allow at once.
    pub initial_device: Option<B256>,
    /// A compose hash to allow at once.
    pub initial_compose_hash: Option<B256>,
}

impl AppParams {
    /// An upgradeable app owned by `owner`, any device, no compose hash yet.
    pub fn new(owner: Address) -> Self {
        Self {
            owner,
            upgrades_disabled: false,
            allow_any_device: true,
            initial_device: None,
            initial_compose_hash: None,
        }
    }
}

impl ChainClient {
    async fn kms_tx<D: CallDecoder>(
        &self,
        op: &'static str,
        call: CallBuilder<&DynProvider, D>,
    ) -> Result<TransactionReceipt> {
        self.connection().send(op, Target::KmsAuth, call).await
    }

    /// A handle on an app's AppAuth.
    pub fn app(&self, app_id: Address) -> AppAuthClient {
        AppAuthClient::new(self.connection().clone(), app_id)
    }

    /// Deploys an AppAuth proxy through the factory and registers it; returns the app id
    /// read from the `AppDeployedViaFactory` event.
    pub async fn deploy_app(&self, params: &AppParams) -> Result<AppAuthClient> {
        let call = self.tx_kms().deployAndRegisterApp(
            params.owner,
            params.upgrades_disabled,
            params.allow_any_device,
            params.initial_device.unwrap_or_default(),
            params.initial_compose_hash.unwrap_or_default(),
        );
        let receipt = self.kms_tx("KmsAuth.deployAndRegisterApp", call).await?;
        let kms = self.kms_auth();
        let app_id = receipt
            .inner
            .logs()
            .iter()
            .filter(|log| log.address() == kms)
            .find_map(|log| KmsAuth::AppDeployedViaFactory::decode_log_data(log.data()).ok())
            .map(|ev| ev.appId)
            .ok_or(Error::MissingEvent {
                event: "AppDeployedViaFactory",
                tx_hash: receipt.transaction_hash,
            })?;
        Ok(self.app(app_id))
    }

    /// Registers an existing IAppAuth contract as an app (anyone may).
    pub async fn register_app(&self, app_id: Address) -> Result<TransactionReceipt> {
        self.kms_tx("KmsAuth.registerApp", self.tx_kms().registerApp(app_id))
            .await
    }

    /// Deregisters an app (owner).
    pub async fn deregister_app(&self, app_id: Address) -> Result<TransactionReceipt> {
        self.kms_tx("KmsAuth.deregisterApp", self.tx_kms().deregisterApp(app_id))
            .await
    }

    /// Sets the AppAuth implementation the factory deploys (owner).
    pub async fn set_app_auth_implementation(
        &self,
        implementation: Address,
    ) -> Result<TransactionReceipt> {
        self.kms_tx(
            "KmsAuth.setAppAuthImplementation",
            self.tx_kms().setAppAuthImplementation(implementation),
        )
        .await
    }

    /// Registers root keys of a new, strictly greater key generation (owner).
    pub async fn set_kms_root_keys(
        &self,
        generation: u32,
        k256_pubkey: Bytes,
        ca_pubkey: Bytes,
    ) -> Result<TransactionReceipt> {
        self.kms_tx(
            "KmsAuth.setKmsRootKeys",
            self.tx_kms()
                .setKmsRootKeys(generation, k256_pubkey, ca_pubkey),
        )
        .await
    }

    /// Rotates the root keys to a new generation, keeping the replaced one served until
    /// `previous_valid_until` (unix seconds, block time; owner). See
    /// `KmsAuth.rotateKmsRootKeys`.
    pub async fn rotate_kms_root_keys(
        &self,
        generation: u32,
        k256_pubkey: Bytes,
        ca_pubkey: Bytes,
        previous_valid_until: u64,
    ) -> Result<TransactionReceipt> {
        self.kms_tx(
            "KmsAuth.rotateKmsRootKeys",
            self.tx_kms().rotateKmsRootKeys(
                generation,
                k256_pubkey,
                ca_pubkey,
                previous_valid_until,
            ),
        )
        .await
    }

    /// Moves the end of the open transition window (owner); a time not after the block's
    /// ends it at once.
    pub async fn set_transition_window_end(&self, valid_until: u64) -> Result<TransactionReceipt> {
        self.kms_tx(
            "KmsAuth.setTransitionWindowEnd",
            self.tx_kms().setTransitionWindowEnd(valid_until),
        )
        .await
    }

    /// Allows an OS image hash (owner).
    pub async fn add_os_image(&self, os_image_hash: B256) -> Result<TransactionReceipt> {
        self.kms_tx(
            "KmsAuth.addOsImageHash",
            self.tx_kms().addOsImageHash(os_image_hash),
        )
        .await
    }

    /// Removes an OS image hash (owner).
    pub async fn remove_os_image(&self, os_image_hash: B256) -> Result<TransactionReceipt> {
        self.kms_tx(
            "KmsAuth.removeOsImageHash",
            self.tx_kms().removeOsImageHash(os_image_hash),
        )
        .await
    }

    /// Allows a KMS aggregated MR (owner).
    pub async fn add_kms_aggregated_mr(&self, mr: B256) -> Result<TransactionReceipt> {
        self.kms_tx(
            "KmsAuth.addKmsAggregatedMr",
            self.tx_kms().addKmsAggregatedMr(mr),
        )
        .await
    }

    /// Removes a KMS aggregated MR (owner).
    pub async fn remove_kms_aggregated_mr(&self, mr: B256) -> Result<TransactionReceipt> {
        self.kms_tx(
            "KmsAuth.removeKmsAggregatedMr",
            self.tx_kms().removeKmsAggregatedMr(mr),
        )
        .await
    }

    /// Allows a KMS device id (owner).
    pub async fn add_kms_device(&self, device_id: B256) -> Result<TransactionReceipt> {
        self.kms_tx(
            "KmsAuth.addKmsDevice",
            self.tx_kms().addKmsDevice(device_id),
        )
        .await
    }

    /// Removes a KMS device id (owner).
    pub async fn remove_kms_device(&self, device_id: B256) -> Result<TransactionReceipt> {
        self.kms_tx(
            "KmsAuth.removeKmsDevice",
            self.tx_kms().removeKmsDevice(device_id),
        )
        .await
    }

    /// Registers a KMS node address (owner).
    pub async fn add_kms_node(&self, node: Address) -> Result<TransactionReceipt> {
        self.kms_tx("KmsAuth.addKmsNode", self.tx_kms().addKmsNode(node))
            .await
    }

    /// Removes a KMS node address (owner).
    pub async fn remove_kms_node(&self, node: Address) -> Result<TransactionReceipt> {
        self.kms_tx("KmsAuth.removeKmsNode", self.tx_kms().removeKmsNode(node))
            .await
    }

    /// Sets the gateway app id (owner).
    pub async fn set_gateway_app_id(&self, app_id: Address) -> Result<TransactionReceipt> {
        self.kms_tx(
            "KmsAuth.setGatewayAppId",
            self.tx_kms().setGatewayAppId(app_id),
        )
        .await
    }

    /// Marks a TCB status string acceptable or not (owner).
    pub async fn set_tcb_status_acceptable(
        &self,
        status: &str,
        acceptable: bool,
    ) -> Result<TransactionReceipt> {
        self.kms_tx(
            "KmsAuth.setTcbStatusAcceptable",
            self.tx_kms()
                .setTcbStatusAcceptable(status.to_owned(), acceptable),
        )
        .await
    }

    /// Marks an advisory id tolerated or not (owner).
    pub async fn set_advisory_tolerated(
        &self,
        advisory_id: &str,
        tolerated: bool,
    ) -> Result<TransactionReceipt> {
        self.kms_tx(
            "KmsAuth.setAdvisoryTolerated",
            self.tx_kms()
                .setAdvisoryTolerated(advisory_id.to_owned(), tolerated),
        )
        .await
    }

    /// Anchors this node's log checkpoint (the signer must be a registered KMS node).
    /// Reverts decode into [`KmsAuth::KmsAuthErrors`], e.g. `KmsAuthCheckpointShrinks`.
    pub async fn anchor_checkpoint(
        &self,
        tree_size: u64,
        root_hash: B256,
    ) -> Result<TransactionReceipt> {
        self.kms_tx(
            "KmsAuth.anchorCheckpoint",
            self.tx_kms().anchorCheckpoint(tree_size, root_hash),
        )
        .await
    }

    /// Starts a KmsAuth ownership handover (Ownable2Step), e.g. to a DAO timelock.
    pub async fn transfer_ownership(&self, new_owner: Address) -> Result<TransactionReceipt> {
        self.kms_tx(
            "KmsAuth.transferOwnership",
            self.tx_kms().transferOwnership(new_owner),
        )
        .await
    }

    /// Accepts a pending KmsAuth ownership handover (sent by the new owner).
    pub async fn accept_ownership(&self) -> Result<TransactionReceipt> {
        self.kms_tx("KmsAuth.acceptOwnership", self.tx_kms().acceptOwnership())
            .await
    }
}
