//! What a booted guest knows: its measured identity, its event log, and (after the KMS
//! released them) its keys. Shared by the boot flow and the guest agent.

use std::sync::{Arc, Mutex, MutexGuard};

use cairn_attestation::ids::{AppId, InstanceId, KeyProvider};
use cairn_attestation::{EventLog, RaTlsCert, RaTlsCertBuilder, Tee, Usage};
use cairn_protocol::api::Receipt;
use cairn_protocol::compose::AppCompose;
use cairn_protocol::sig::RecoverableSignature;
use cairn_protocol::sysconfig::AppPort;
use zeroize::Zeroizing;

use crate::error::Result;
use cairn_kms_client::KmsClient;

/// The app secrets the KMS released. `Debug` redacts the keys.
#[derive(Clone)]
pub struct AppSecrets {
    /// The app's secp256k1 secret.
    pub app_key: Zeroizing<[u8; 32]>,
    /// The KMS root signature over the app key.
    pub kms_signature: RecoverableSignature,
    /// The instance's disk key.
    pub disk_key: Zeroizing<[u8; 32]>,
    /// The KMS root CA certificate (PEM).
    pub root_ca_cert: String,
    /// The measured key provider.
    pub key_provider: KeyProvider,
    /// The OS image hash the KMS verified (measured as `os-image-hash`).
    pub os_image_hash: [u8; 32],
    /// The gateway's app id.
    pub gateway_app_id: [u8; 20],
    /// The key generation.
    pub key_generation: u64,
    /// The log receipt of the release.
    pub receipt: Receipt,
    /// The KMS URL that released the keys (used again for `sign-cert`).
    pub kms_url: String,
    /// The previous key generation's app key, when the CVM booted during a rotation's
    /// transition window (`GetKey` with `key_generation`, docs/rotation.md).
    pub previous: Option<PreviousSecrets>,
}

/// The app key of the key generation a rotation replaced. `Debug` redacts the key.
#[derive(Clone)]
pub struct PreviousSecrets {
    /// Its key generation.
    pub key_generation: u64,
    /// End of its transition window (block timestamp).
    pub valid_until: u64,
    /// The app's secp256k1 secret key of that generation.
    pub app_key: Zeroizing<[u8; 32]>,
    /// That generation's root signature over it.
    pub kms_signature: RecoverableSignature,
}

cairn_protocol::redacted_debug!(PreviousSecrets {
    key_generation,
    valid_until,
    app_key: redacted,
    ..
});

cairn_protocol::redacted_debug!(AppSecrets {
    app_key: redacted,
    disk_key: redacted,
    os_image_hash: bare_hex,
    receipt,
    kms_url,
    ..
});

/// A booted guest.
pub struct GuestState {
    /// The TEE (simulator or TDX).
    pub tee: Arc<dyn Tee>,
    /// The exact `app-compose.json` bytes.
    pub compose_bytes: Vec<u8>,
    /// The parsed compose.
    pub compose: AppCompose,
    /// SHA-256 of the compose bytes.
    pub compose_hash: [u8; 32],
    /// The measured app id.
    pub app_id: AppId,
    /// The measured instance id.
    pub instance_id: InstanceId,
    /// The VM configuration string from sys-config.
    pub vm_config: String,
    /// The gateways to register with (sys-config `gateway_urls`).
    pub gateway_urls: Vec<String>,
    /// Host ports mapped to the app's ports (sys-config `port_map`), told to gateways.
    pub port_map: Vec<AppPort>,
    /// Device id, when the platform tells it (the simulator does).
    pub device_id: Option<[u8; 32]>,
    /// The KMS client (for `sign-cert`).
    pub kms: KmsClient,
    /// Keys released by the KMS.
    pub secrets: AppSecrets,
    event_log: Mutex<EventLog>,
}

cairn_protocol::redacted_debug!(GuestState {
    app_id,
    compose_hash: bare_hex,
    secrets,
    ..
});

impl GuestState {
    /// Assemble the state at the end of a boot.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        tee: Arc<dyn Tee>,
        share: crate::share::HostShare,
        app_id: AppId,
        instance_id: InstanceId,
        device_id: Option<[u8; 32]>,
        kms: KmsClient,
        secrets: AppSecrets,
        event_log: EventLog,
    ) -> Self {
        GuestState {
            tee,
            compose_bytes: share.compose_bytes,
            compose: share.compose,
            compose_hash: share.compose_hash,
            app_id,
            instance_id,
            vm_config: share.sys_config.vm_config,
            gateway_urls: share.sys_config.gateway_urls,
            port_map: share.sys_config.port_map,
            device_id,
            kms,
            secrets,
            event_log: Mutex::new(event_log),
        }
    }

    /// The event log (lock held briefly; never across an await).
    pub fn event_log(&self) -> MutexGuard<'_, EventLog> {
        self.event_log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The event log JSON.
    pub fn event_log_json(&self) -> Vec<u8> {
        self.event_log().to_json()
    }

    /// Quote `report_data` and return the quote with the event log *as of the quote*
    /// (taken under the same lock, so the log replays to the quoted RTMR3).
    pub fn quote_with_log(&self, report_data: &[u8; 64]) -> Result<(Vec<u8>, Vec<u8>)> {
        let log = self.event_log();
        let quote = self.tee.quote(report_data)?;
        Ok((quote, log.to_json()))
    }

    /// Measure an application event (after `system-ready`).
    pub fn emit_event(&self, name: &str, payload: Vec<u8>) -> Result<()> {
        self.event_log().measure(self.tee.as_ref(), name, payload)?;
        Ok(())
    }

    /// A fresh RA-TLS client certificate (usage `app:custom`) carrying the current log.
    pub fn client_cert(&self) -> Result<RaTlsCert> {
        let log = self.event_log();
        Ok(RaTlsCertBuilder::new(Usage::AppCustom)
            .common_name(self.compose.name.clone())
            .event_log(&log.to_json())
            .app_id(self.app_id.0)
            .build(self.tee.as_ref())?)
    }
}
