//! [`AppAuthClient`]: one app's policy contract (AppAuth): administration and reads.

use std::future::IntoFuture;

use alloy::primitives::{Address, B256};
use alloy::providers::DynProvider;

use crate::bindings::{AppAuth, AppBootInfo};
use crate::client::PolicyBlock;
use crate::connection::Connection;
use crate::error::{Error, Result, Target};
use crate::wrappers::contract_sends;

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

    /// An AppAuth view call (at the block its builder names).
    async fn view<T>(
        &self,
        op: &'static str,
        call: impl IntoFuture<Output = alloy::contract::Result<T>>,
    ) -> Result<T> {
        self.conn
            .view(op, Target::AppAuth, self.app_id(), call)
            .await
    }

    fn contract(&self) -> &AppAuth::AppAuthInstance<DynProvider> {
        &self.app
    }

    contract_sends! { "AppAuth", Target::AppAuth, connection, contract;
        /// Allows `hash` now (`addComposeHash`).
        add_compose_hash(hash: B256) => addComposeHash(hash);
        /// Allows `hash` from unix time `activates_at` on (`scheduleComposeHash`).
        schedule_compose_hash(hash: B256, activates_at: u64)
            => scheduleComposeHash(hash, activates_at);
        /// Removes `hash` (`removeComposeHash`).
        remove_compose_hash(hash: B256) => removeComposeHash(hash);
        /// Allows a device id.
        add_device(device_id: B256) => addDevice(device_id);
        /// Removes a device id.
        remove_device(device_id: B256) => removeDevice(device_id);
        /// Sets allow-any-device.
        set_allow_any_device(allow_any_device: bool) => setAllowAnyDevice(allow_any_device);
        /// Sets require-TCB-up-to-date.
        set_require_tcb_up_to_date(require: bool) => setRequireTcbUpToDate(require);
        /// Disables upgrades of this AppAuth, irreversibly.
        disable_upgrades() => disableUpgrades();
        /// Starts an ownership handover (Ownable2Step); `new_owner` must accept.
        transfer_ownership(new_owner: Address) => transferOwnership(new_owner);
        /// Accepts a pending ownership handover (sent by the new owner).
        accept_ownership() => acceptOwnership();
    }

    /// The owner at `at`.
    pub async fn owner(&self, at: PolicyBlock) -> Result<Address> {
        let call = self.app.owner().block(at.block_id());
        self.view("AppAuth.owner", call.call()).await
    }

    /// The activation of `hash` at `at`, or `None` when it is not listed.
    pub async fn compose_hash_activation(
        &self,
        hash: B256,
        at: PolicyBlock,
    ) -> Result<Option<ComposeHashActivation>> {
        let call = self.app.composeHashActivation(hash).block(at.block_id());
        let r = self
            .view("AppAuth.composeHashActivation", call.call())
            .await?;
        Ok(r.listed.then_some(ComposeHashActivation {
            activates_at: r.activatesAt,
        }))
    }

    /// Whether `device_id` is listed at `at`.
    pub async fn is_device_allowed(&self, device_id: B256, at: PolicyBlock) -> Result<bool> {
        let call = self.app.allowedDeviceIds(device_id).block(at.block_id());
        self.view("AppAuth.allowedDeviceIds", call.call()).await
    }

    /// This AppAuth's own `isAppAllowed` at `at` (without KmsAuth's platform checks).
    /// Denial is [`Error::Denied`]. KMS release decisions use
    /// [`ChainClient::is_app_allowed`](crate::ChainClient::is_app_allowed) instead.
    pub async fn is_app_allowed_here(&self, boot: &AppBootInfo, at: PolicyBlock) -> Result<()> {
        let call = self
            .app
            .isAppAllowed(to_app_boot_info(boot))
            .block(at.block_id());
        let r = self.view("AppAuth.isAppAllowed", call.call()).await?;
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
    // Every field named once; the pattern (no `..`) and the literal are both exhaustive.
    macro_rules! move_fields {
        ($($field:ident),*) => {{
            let AppBootInfo { $($field),* } = b.clone();
            crate::bindings::app_auth::IAppAuth::AppBootInfo { $($field),* }
        }};
    }
    move_fields!(
        appId,
        composeHash,
        instanceId,
        deviceId,
        mrAggregated,
        mrSystem,
        osImageHash,
        tcbStatus,
        advisoryIds
    )
}
