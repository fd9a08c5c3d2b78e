//! [`AppAuthClient`]: one app's policy contract (AppAuth): administration and reads.

use alloy::primitives::{Address, B256};
use alloy::providers::DynProvider;
use alloy::rpc::types::TransactionReceipt;

use crate::bindings::{AppAuth, AppBootInfo};
use crate::client::PolicyBlock;
use crate::connection::Connection;
use crate::error::{Error, Result, Target};

/// A handle on one app's AppAuth (the app id is the AppAuth proxy address).
///
/// Transactions need a signer that owns the AppAuth (or a DAO does them through
/// [`Dao`](crate::Dao)). Reads take the [`PolicyBlock`] to read at.
#[derive(Clone, Debug)]
pub struct AppAuthClient {
    conn: Connection,
    app: AppAuth::AppAuthInstance<DynProvider>,
}

/// When a listed compose hash becomes allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ComposeHashActivation {
    /// Unix time (seconds) from which the hash is allowed.
    pub activates_at: u64,
}

impl AppAuthClient {
    /// A handle on the AppAuth at `app_id`.
    pub fn new(conn: Connection, app_id: Address) -> Self {
        let app = AppAuth::new(app_id, conn.provider().clone());
        Self { conn, app }
    }

    /// The app id (the AppAuth proxy address).
    pub fn app_id(&self) -> Address {
        *self.app.address()
    }

    async fn tx<D: alloy::contract::CallDecoder>(
        &self,
        op: &'static str,
        call: alloy::contract::CallBuilder<&DynProvider, D>,
    ) -> Result<TransactionReceipt> {
        self.conn.send(op, Target::AppAuth, call).await
    }

    /// Allows `hash` now (`addComposeHash`).
    pub async fn add_compose_hash(&self, hash: B256) -> Result<TransactionReceipt> {
        self.tx("AppAuth.addComposeHash", self.app.addComposeHash(hash))
            .await
    }

    /// Allows `hash` from unix time `activates_at` on (`scheduleComposeHash`).
    pub async fn schedule_compose_hash(
        &self,
        hash: B256,
        activates_at: u64,
    ) -> Result<TransactionReceipt> {
        self.tx(
            "AppAuth.scheduleComposeHash",
            self.app.scheduleComposeHash(hash, activates_at),
        )
        .await
    }

    /// Removes `hash` (`removeComposeHash`).
    pub async fn remove_compose_hash(&self, hash: B256) -> Result<TransactionReceipt> {
        self.tx(
            "AppAuth.removeComposeHash",
            self.app.removeComposeHash(hash),
        )
        .await
    }

    /// Allows a device id.
    pub async fn add_device(&self, device_id: B256) -> Result<TransactionReceipt> {
        self.tx("AppAuth.addDevice", self.app.addDevice(device_id))
            .await
    }

    /// Removes a device id.
    pub async fn remove_device(&self, device_id: B256) -> Result<TransactionReceipt> {
        self.tx("AppAuth.removeDevice", self.app.removeDevice(device_id))
            .await
    }

    /// Sets allow-any-device.
    pub async fn set_allow_any_device(&self, allow_any_device: bool) -> Result<TransactionReceipt> {
        self.tx(
            "AppAuth.setAllowAnyDevice",
            self.app.setAllowAnyDevice(allow_any_device),
        )
        .await
    }

    /// Sets require-TCB-up-to-date.
    pub async fn set_require_tcb_up_to_date(&self, require: bool) -> Result<TransactionReceipt> {
        self.tx(
            "AppAuth.setRequireTcbUpToDate",
            self.app.setRequireTcbUpToDate(require),
        )
        .await
    }

    /// Disables upgrades of this AppAuth, irreversibly.
    pub async fn disable_upgrades(&self) -> Result<TransactionReceipt> {
        self.tx("AppAuth.disableUpgrades", self.app.disableUpgrades())
            .await
    }

    /// Starts an ownership handover (Ownable2Step); `new_owner` must accept.
    pub async fn transfer_ownership(&self, new_owner: Address) -> Result<TransactionReceipt> {
        self.tx(
            "AppAuth.transferOwnership",
            self.app.transferOwnership(new_owner),
        )
        .await
    }

    /// Accepts a pending ownership handover (sent by the new owner).
    pub async fn accept_ownership(&self) -> Result<TransactionReceipt> {
        self.tx("AppAuth.acceptOwnership", self.app.acceptOwnership())
            .await
    }

    /// The owner at `at`.
    pub async fn owner(&self, at: PolicyBlock) -> Result<Address> {
        let call = self.app.owner().block(at.block_id());
        self.conn
            .view("AppAuth.owner", Target::AppAuth, self.app_id(), call.call())
            .await
    }

    /// The activation of `hash` at `at`, or `None` when it is not listed.
    pub async fn compose_hash_activation(
        &self,
        hash: B256,
        at: PolicyBlock,
    ) -> Result<Option<ComposeHashActivation>> {
        let call = self.app.composeHashActivation(hash).block(at.block_id());
        let r = self
            .conn
            .view(
                "AppAuth.composeHashActivation",
                Target::AppAuth,
                self.app_id(),
                call.call(),
            )
            .await?;
        Ok(r.listed.then_some(ComposeHashActivation {
            activates_at: r.activatesAt,
        }))
    }

    /// Whether `device_id` is listed at `at`.
    pub async fn is_device_allowed(&self, device_id: B256, at: PolicyBlock) -> Result<bool> {
        let call = self.app.allowedDeviceIds(device_id).block(at.block_id());
        self.conn
            .view(
                "AppAuth.allowedDeviceIds",
                Target::AppAuth,
                self.app_id(),
                call.call(),
            )
            .await
    }

    /// This AppAuth's own `isAppAllowed` at `at` (without KmsAuth's platform checks).
    /// Denial is [`Error::Denied`]. KMS release decisions use
    /// [`ChainClient::is_app_allowed`](crate::ChainClient::is_app_allowed) instead.
    pub async fn is_app_allowed_here(&self, boot: &AppBootInfo, at: PolicyBlock) -> Result<()> {
        let call = self
            .app
            .isAppAllowed(to_app_boot_info(boot))
            .block(at.block_id());
        let r = self
            .conn
            .view(
                "AppAuth.isAppAllowed",
                Target::AppAuth,
                self.app_id(),
                call.call(),
            )
            .await?;
        if r.isAllowed {
            Ok(())
        } else {
            Err(Error::denied(r.reason))
        }
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// The AppAuth ABI's copy of `IAppAuth.AppBootInfo` is a distinct Rust type generated
/// from the same Solidity struct; this moves the fields across (a field added to the
/// struct breaks the build here rather than drifting).
fn to_app_boot_info(b: &AppBootInfo) -> crate::bindings::app_auth::IAppAuth::AppBootInfo {
    let AppBootInfo {
        appId,
        composeHash,
        instanceId,
        deviceId,
        mrAggregated,
        mrSystem,
        osImageHash,
        tcbStatus,
        advisoryIds,
    } = b.clone();
    crate::bindings::app_auth::IAppAuth::AppBootInfo {
        appId,
        composeHash,
        instanceId,
        deviceId,
        mrAggregated,
        mrSystem,
        osImageHash,
        tcbStatus,
        advisoryIds,
    }
}
