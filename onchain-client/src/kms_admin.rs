//! KmsAuth transactions: allowlists, KMS identity and nodes, app registry, anchoring.

use alloy::primitives::{Address, Bytes, B256};
use alloy::sol_types::SolEvent;

use crate::app::AppAuthClient;
use crate::bindings::KmsAuth;
use crate::client::ChainClient;
use crate::error::{Error, Result, Target};
use crate::wrappers::contract_sends;

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
        let receipt = self
            .connection()
            .send("KmsAuth.deployAndRegisterApp", Target::KmsAuth, call)
            .await?;
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

    contract_sends! { "KmsAuth", Target::KmsAuth, connection, tx_kms;
        /// Registers an existing IAppAuth contract as an app (anyone may).
        register_app(app_id: Address) => registerApp(app_id);
        /// Deregisters an app (owner).
        deregister_app(app_id: Address) => deregisterApp(app_id);
        /// Sets the AppAuth implementation the factory deploys (owner).
        set_app_auth_implementation(implementation: Address)
            => setAppAuthImplementation(implementation);
        /// Registers root keys of a new, strictly greater key generation (owner).
        set_kms_root_keys(generation: u32, k256_pubkey: Bytes, ca_pubkey: Bytes)
            => setKmsRootKeys(generation, k256_pubkey, ca_pubkey);
        /// Rotates the root keys to a new generation, keeping the replaced one served until
        /// `previous_valid_until` (unix seconds, block time; owner). See
        /// `KmsAuth.rotateKmsRootKeys`.
        rotate_kms_root_keys(
            generation: u32,
            k256_pubkey: Bytes,
            ca_pubkey: Bytes,
            previous_valid_until: u64,
        ) => rotateKmsRootKeys(generation, k256_pubkey, ca_pubkey, previous_valid_until);
        /// Moves the end of the open transition window (owner); a time not after the block's
        /// ends it at once.
        set_transition_window_end(valid_until: u64) => setTransitionWindowEnd(valid_until);
        /// Allows an OS image hash (owner).
        add_os_image(os_image_hash: B256) => addOsImageHash(os_image_hash);
        /// Removes an OS image hash (owner).
        remove_os_image(os_image_hash: B256) => removeOsImageHash(os_image_hash);
        /// Allows a KMS aggregated MR (owner).
        add_kms_aggregated_mr(mr: B256) => addKmsAggregatedMr(mr);
        /// Removes a KMS aggregated MR (owner).
        remove_kms_aggregated_mr(mr: B256) => removeKmsAggregatedMr(mr);
        /// Allows a KMS device id (owner).
        add_kms_device(device_id: B256) => addKmsDevice(device_id);
        /// Removes a KMS device id (owner).
        remove_kms_device(device_id: B256) => removeKmsDevice(device_id);
        /// Registers a KMS node address (owner).
        add_kms_node(node: Address) => addKmsNode(node);
        /// Removes a KMS node address (owner).
        remove_kms_node(node: Address) => removeKmsNode(node);
        /// Sets the gateway app id (owner).
        set_gateway_app_id(app_id: Address) => setGatewayAppId(app_id);
        /// Marks a TCB status string acceptable or not (owner).
        set_tcb_status_acceptable(status: &str, acceptable: bool)
            => setTcbStatusAcceptable(status.to_owned(), acceptable);
        /// Marks an advisory id tolerated or not (owner).
        set_advisory_tolerated(advisory_id: &str, tolerated: bool)
            => setAdvisoryTolerated(advisory_id.to_owned(), tolerated);
        /// Anchors this node's log checkpoint (the signer must be a registered KMS node).
        /// Reverts decode into [`KmsAuth::KmsAuthErrors`], e.g. `KmsAuthCheckpointShrinks`.
        anchor_checkpoint(tree_size: u64, root_hash: B256)
            => anchorCheckpoint(tree_size, root_hash);
        /// Starts a KmsAuth ownership handover (Ownable2Step), e.g. to a DAO timelock.
        transfer_ownership(new_owner: Address) => transferOwnership(new_owner);
        /// Accepts a pending KmsAuth ownership handover (sent by the new owner).
        accept_ownership() => acceptOwnership();
    }
}
