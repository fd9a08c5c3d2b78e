//! Wire types of the VMM's HTTP API (DESIGN.md §8, `docs/vmm.md`).
//!
//! JSON over HTTP on a unix socket or loopback TCP; byte strings as `0x` hex
//! ([`crate::hex0x`]); errors as [`crate::api::ErrorBody`]. Requests reject unknown fields
//! and every variable-size field has a cap. The compose travels as the exact text of
//! `app-compose.json` (its SHA-256 is the compose hash), the env only as ciphertext: the
//! client encrypts it for the app's KMS env key, the VMM never sees plaintext.
//!
//! With the `openapi` feature every type also derives `utoipa::ToSchema`, from which the
//! VMM generates `/openapi.json`.

use serde::{Deserialize, Serialize};

use crate::bounded;
use crate::env::MAX_ENCRYPTED_ENV_LEN;
use crate::hex0x;

/// `GET` (list) / `POST` (create) CVMs.
pub const PATH_CVMS: &str = "/v1/cvms";
/// `GET` (status) / `DELETE` (remove) one CVM.
pub const PATH_CVM: &str = "/v1/cvms/{id}";
/// `POST`: start a created or stopped CVM (chain pre-flight first).
pub const PATH_CVM_START: &str = "/v1/cvms/{id}/start";
/// `POST`: stop a CVM (its whole process group / VM).
pub const PATH_CVM_STOP: &str = "/v1/cvms/{id}/stop";
/// `POST`: stop, then start (chain pre-flight first).
pub const PATH_CVM_RESTART: &str = "/v1/cvms/{id}/restart";
/// `POST`: replace the compose (and optionally image and env), after a chain pre-flight.
pub const PATH_CVM_UPGRADE: &str = "/v1/cvms/{id}/upgrade";
/// `GET`: the CVM's console log (`?tail=N&follow=true`), `text/plain`.
pub const PATH_CVM_LOGS: &str = "/v1/cvms/{id}/logs";
/// `GET`: the OS images this VMM knows, with their measurements and on-chain status.
pub const PATH_IMAGES: &str = "/v1/images";
/// `GET`: the apps of the managed CVMs and their on-chain status.
pub const PATH_APPS: &str = "/v1/apps";
/// `GET`: one app's pre-flight at the current policy block
/// (`?compose_hash=0x…&image=NAME:VERSION`).
pub const PATH_APP: &str = "/v1/apps/{app_id}";
/// The OpenAPI document.
pub const PATH_OPENAPI: &str = "/openapi.json";

/// Longest CVM name (a DNS label).
pub const MAX_CVM_NAME_LEN: usize = 63;
/// Longest image reference (`NAME:VERSION`).
pub const MAX_IMAGE_REF_LEN: usize = 128;
/// Longest CVM id.
pub const MAX_CVM_ID_LEN: usize = 64;
/// Most port mappings of one CVM.
pub const MAX_PORTS: usize = 32;
/// Most boot-progress events a CVM status keeps (the oldest are dropped).
pub const MAX_GUEST_EVENTS: usize = 64;
/// Longest status text (failure reason, upgrade detail).
pub const MAX_STATUS_TEXT_LEN: usize = 4096;
/// Largest `tail` of `GET /v1/cvms/{id}/logs`, in lines.
pub const MAX_LOG_TAIL_LINES: u32 = 10_000;
/// Longest time `wait_for_approval` may be asked to wait, in seconds (7 days).
pub const MAX_APPROVAL_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

/// Whether `name` is a valid CVM name: 1-63 bytes of `[a-z0-9-]`, not starting or ending
/// with `-` (a DNS label, so it can name a gateway route).
pub fn is_valid_cvm_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CVM_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A port the app listens on and the host port it is reachable at.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortRequest {
    /// The port the app listens on inside the CVM.
    pub guest_port: u16,
    /// The loopback port on the host; omitted: the VMM picks a free one from its range.
    pub host_port: Option<u16>,
}

/// An allocated port mapping (TCP, host side bound to `127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortMapping {
    /// The port the app listens on inside the CVM.
    pub guest_port: u16,
    /// The loopback port on the host.
    pub host_port: u16,
}

/// `POST /v1/cvms`: deploy a CVM.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateCvmRequest {
    /// A name for display and lookup (`[a-z0-9-]`, 1-63 bytes, unique on this VMM).
    #[serde(with = "bounded::Str::<MAX_CVM_NAME_LEN>")]
    pub name: String,
    /// The app id (its AppAuth contract address). Omitted: `compose_hash[0..20]`, which no
    /// KmsAuth registers, so the pre-flight refuses it.
    #[serde(default, with = "opt_fixed")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "0x5fbdb2315678afecb367f032d93f642f64180aa3"))]
    pub app_id: Option<[u8; 20]>,
    /// The exact text of `app-compose.json` (its SHA-256 is the compose hash).
    pub compose: String,
    /// The OS image, `NAME:VERSION` (see `GET /v1/images`).
    #[serde(with = "bounded::Str::<MAX_IMAGE_REF_LEN>")]
    pub image: String,
    /// Virtual CPUs (default 1).
    #[serde(default = "default_vcpus")]
    pub vcpus: u32,
    /// Memory in MiB (default 1024).
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u32,
    /// Ports to map (at most [`MAX_PORTS`]).
    #[serde(default)]
    pub ports: Vec<PortRequest>,
    /// `.encrypted-env`: ciphertext for the app's KMS env key (never plaintext).
    #[serde(default, with = "opt_capped_env")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub encrypted_env: Option<Vec<u8>>,
    /// KMS URLs for this CVM; omitted: the VMM's configured ones.
    pub kms_urls: Option<Vec<String>>,
    /// Gateway URLs for this CVM; omitted: the VMM's configured ones.
    pub gateway_urls: Option<Vec<String>>,
    /// Start right after creating (default true).
    #[serde(default = "default_true")]
    pub start: bool,
}

fn default_vcpus() -> u32 {
    1
}
fn default_memory_mb() -> u32 {
    1024
}
fn default_true() -> bool {
    true
}

/// `POST /v1/cvms/{id}/upgrade`: a new compose (a new compose hash) for the same app.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpgradeRequest {
    /// The exact text of the new `app-compose.json`.
    pub compose: String,
    /// A new `.encrypted-env`; omitted: keep the current one.
    #[serde(default, with = "opt_capped_env")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub encrypted_env: Option<Vec<u8>>,
    /// A new OS image `NAME:VERSION`; omitted: keep the current one.
    pub image: Option<String>,
    /// When the chain does not allow the new compose yet: wait (poll the chain) until a
    /// vote or timelock allows it, then apply (answer 202 and report progress in the
    /// CVM's `upgrade` field), instead of refusing with 403.
    #[serde(default)]
    pub wait_for_approval: bool,
    /// How long to wait for approval, in seconds (default 3600, at most 7 days).
    pub approval_timeout_secs: Option<u64>,
}

/// A CVM's lifecycle state (persisted by the VMM).
///
/// `created → booting → running → stopped | failed`; `start` from `created`, `stopped`
/// or `failed`. `running` means the guest reported that its app started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CvmState {
    /// Created, never started.
    Created,
    /// The guest process / VM runs; its app has not reported that it started.
    Booting,
    /// The guest reported that its app started.
    Running,
    /// Stopped by the operator, or the guest exited cleanly.
    Stopped,
    /// The guest failed to boot or exited with an error; see `reason`.
    Failed,
}

impl CvmState {
    /// The lowercase name (`created`, `booting`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            CvmState::Created => "created",
            CvmState::Booting => "booting",
            CvmState::Running => "running",
            CvmState::Stopped => "stopped",
            CvmState::Failed => "failed",
        }
    }

    /// Whether a guest process / VM is (believed to be) alive in this state.
    pub fn is_active(self) -> bool {
        matches!(self, CvmState::Booting | CvmState::Running)
    }
}

impl std::fmt::Display for CvmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One report from the guest over the host API, as the VMM received it. Display only:
/// the guest is on the other side of a trust boundary and the VMM acts on none of it
/// except the `booting → running` display state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GuestEvent {
    /// When the VMM received it (unix seconds, the VMM's clock).
    pub at: u64,
    /// The event name (`boot.progress`, `boot.receipt`, `app.started`, `app.exited`,
    /// `boot.error`).
    pub event: String,
    /// The event's payload, as sent.
    pub payload: String,
}

/// Where a waiting upgrade stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum UpgradeState {
    /// The chain does not allow the new compose hash yet; the VMM polls it.
    WaitingForApproval,
    /// Allowed; the VMM is stopping the old and starting the new compose.
    Applying,
    /// Applied.
    Done,
    /// The chain refused for a reason a vote cannot change (e.g. app not registered), or
    /// applying failed; see `detail`.
    Failed,
    /// Not allowed before the deadline; the CVM is unchanged.
    TimedOut,
}

impl UpgradeState {
    /// Whether the upgrade is still in progress.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            UpgradeState::WaitingForApproval | UpgradeState::Applying
        )
    }
}

/// The progress of an upgrade (`wait_for_approval`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpgradeStatus {
    /// The compose hash being waited for.
    #[serde(with = "hex0x::fixed")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub compose_hash: [u8; 32],
    /// Where it stands.
    pub state: UpgradeState,
    /// The latest pre-flight result in words, e.g. the contract's reason and when a
    /// scheduled hash activates.
    pub detail: String,
    /// When the scheduled compose hash activates (unix seconds, chain time), if known.
    pub activates_at: Option<u64>,
    /// When waiting began (unix seconds).
    pub started_at: u64,
    /// When waiting gives up (unix seconds).
    pub deadline: u64,
    /// The policy block of the latest check.
    pub checked_at_block: Option<u64>,
}

/// A CVM in a list.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CvmSummary {
    /// The CVM id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The app id.
    #[serde(with = "hex0x::fixed")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub app_id: [u8; 20],
    /// SHA-256 of its `app-compose.json`.
    #[serde(with = "hex0x::fixed")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub compose_hash: [u8; 32],
    /// The OS image, `NAME:VERSION`.
    pub image: String,
    /// Lifecycle state.
    pub state: CvmState,
    /// Why it failed (state `failed`).
    pub reason: Option<String>,
    /// Port mappings.
    pub ports: Vec<PortMapping>,
    /// The latest guest report.
    pub last_event: Option<GuestEvent>,
    /// A pending or finished upgrade's state.
    pub upgrade: Option<UpgradeState>,
}

/// One CVM in full (`GET /v1/cvms/{id}`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CvmInfo {
    /// The CVM id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The app id.
    #[serde(with = "hex0x::fixed")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub app_id: [u8; 20],
    /// SHA-256 of its `app-compose.json`.
    #[serde(with = "hex0x::fixed")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub compose_hash: [u8; 32],
    /// The OS image, `NAME:VERSION`.
    pub image: String,
    /// The OS image's hash.
    #[serde(with = "hex0x::fixed")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub os_image_hash: [u8; 32],
    /// The backend running it (`process` or `qemu`).
    pub backend: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mb: u32,
    /// Port mappings.
    pub ports: Vec<PortMapping>,
    /// The KMS URLs in its `sys-config.json`.
    pub kms_urls: Vec<String>,
    /// The gateway URLs in its `sys-config.json`.
    pub gateway_urls: Vec<String>,
    /// Whether it has an `.encrypted-env`.
    pub has_encrypted_env: bool,
    /// Lifecycle state.
    pub state: CvmState,
    /// Why it failed (state `failed`).
    pub reason: Option<String>,
    /// The guest process (process backend) or QEMU pid, while active.
    pub pid: Option<u32>,
    /// When it was created (unix seconds).
    pub created_at: u64,
    /// When its state last changed (unix seconds).
    pub state_changed_at: u64,
    /// The guest's boot-progress reports of the current (or last) boot, oldest first
    /// (display only; at most [`MAX_GUEST_EVENTS`]).
    pub events: Vec<GuestEvent>,
    /// A pending or finished upgrade.
    pub upgrade: Option<UpgradeStatus>,
}

/// `GET /v1/cvms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CvmList {
    /// Every CVM, by name.
    pub cvms: Vec<CvmSummary>,
}

/// A pre-flight check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PreflightCheck {
    /// The app id is registered in KmsAuth.
    AppRegistered,
    /// KmsAuth allows the OS image hash.
    OsImage,
    /// The app's policy allows the compose hash (`KmsAuth.isAppAllowed` with what the VMM
    /// knows of the boot).
    ComposeHash,
    /// Checks that depend on the machine's evidence the VMM does not hold (TCB status,
    /// advisories, and the device unless configured): left to the KMS.
    Evidence,
}

/// A pre-flight check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CheckStatus {
    /// Allowed at the policy block.
    Pass,
    /// Refused at the policy block.
    Fail,
    /// The compose hash is listed with an activation time in the future.
    Scheduled,
    /// Not decided by the VMM (see [`PreflightCheck::Evidence`]), or not reached because
    /// an earlier check failed.
    Deferred,
}

/// One check of a pre-flight.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckOutcome {
    /// Which check.
    pub check: PreflightCheck,
    /// Its outcome.
    pub status: CheckStatus,
    /// The denial code when it failed (`denied.compose_hash`, …).
    pub code: Option<String>,
    /// The contract's reason string when it failed or is scheduled, unchanged.
    pub reason: Option<String>,
    /// When a scheduled compose hash activates (unix seconds, chain time).
    pub activates_at: Option<u64>,
}

/// The chain pre-flight of one (app, compose, image) at one policy block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreflightReport {
    /// The policy block (`head − confirmations`) every read used.
    pub block_number: u64,
    /// Its hash.
    #[serde(with = "hex0x::fixed")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub block_hash: [u8; 32],
    /// Its timestamp (unix seconds).
    pub block_timestamp: u64,
    /// The app id checked.
    #[serde(with = "hex0x::fixed")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub app_id: [u8; 20],
    /// The compose hash checked.
    #[serde(with = "hex0x::fixed")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub compose_hash: [u8; 32],
    /// The OS image hash checked.
    #[serde(with = "hex0x::fixed")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub os_image_hash: [u8; 32],
    /// Whether every check the VMM can decide passed.
    pub allowed: bool,
    /// Each check, in order.
    pub checks: Vec<CheckOutcome>,
}

/// One CVM of an app, with its own pre-flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppCvm {
    /// The CVM id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: CvmState,
    /// Its compose, image and app checked at the current policy block.
    pub preflight: PreflightReport,
}

/// An app's on-chain status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppStatus {
    /// The app id.
    #[serde(with = "hex0x::fixed")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub app_id: [u8; 20],
    /// Whether KmsAuth registers it (at the first CVM's policy block).
    pub registered: bool,
    /// Its CVMs on this VMM.
    pub cvms: Vec<AppCvm>,
}

/// `GET /v1/apps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppList {
    /// The apps of the managed CVMs.
    pub apps: Vec<AppStatus>,
}

/// Where an OS image runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ImageKind {
    /// The TDX simulator's image of this name and version (process backend).
    Simulator,
    /// A real image: firmware, kernel, initrd and command line (qemu backend).
    Tdx,
}

/// An OS image the VMM knows.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageInfo {
    /// `NAME:VERSION`, as CVMs reference it.
    pub image: String,
    /// Simulator or real.
    pub kind: ImageKind,
    /// SHA-256 of its measurement manifest (what KmsAuth allows).
    #[serde(with = "hex0x::fixed")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub os_image_hash: [u8; 32],
    /// Expected MRTD.
    #[serde(with = "hex0x::fixed")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub mrtd: [u8; 48],
    /// Expected RTMR0.
    #[serde(with = "hex0x::fixed")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub rtmr0: [u8; 48],
    /// Expected RTMR1.
    #[serde(with = "hex0x::fixed")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub rtmr1: [u8; 48],
    /// Expected RTMR2.
    #[serde(with = "hex0x::fixed")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub rtmr2: [u8; 48],
    /// Whether KmsAuth allows it at `block_number`; absent when the chain could not be read.
    pub allowed: Option<bool>,
}

/// `GET /v1/images`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageList {
    /// The images, by reference.
    pub images: Vec<ImageInfo>,
    /// The policy block the `allowed` flags were read at.
    pub block_number: Option<u64>,
    /// Why the chain could not be read, when it could not.
    pub chain_error: Option<String>,
}

/// `Option<[u8; N]>` as `0x` hex or absent.
mod opt_fixed {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(
        v: &Option<[u8; N]>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&crate::hex0x::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<Option<[u8; N]>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => crate::hex0x::decode_fixed::<N>(&s)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// `Option<Vec<u8>>` of at most [`MAX_ENCRYPTED_ENV_LEN`] bytes as `0x` hex or absent.
mod opt_capped_env {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::MAX_ENCRYPTED_ENV_LEN;

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&crate::hex0x::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        // The body limit bounds the string; the cap is checked before decoding.
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => crate::hex0x::decode_capped(&s, MAX_ENCRYPTED_ENV_LEN)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvm_names_are_dns_labels() {
        assert!(is_valid_cvm_name("demo-1"));
        assert!(!is_valid_cvm_name(""));
        assert!(!is_valid_cvm_name("-demo"));
        assert!(!is_valid_cvm_name("demo-"));
        assert!(!is_valid_cvm_name("Demo"));
        assert!(!is_valid_cvm_name("de mo"));
        assert!(!is_valid_cvm_name(&"a".repeat(MAX_CVM_NAME_LEN + 1)));
    }

    #[test]
    fn create_request_defaults_and_rejects_unknown_fields() {
        let r: CreateCvmRequest = serde_json::from_str(
            r#"{"name":"demo","compose":"{}","image":"cairn-os:1.0","app_id":"0x1111111111111111111111111111111111111111"}"#,
        )
        .unwrap();
        assert_eq!(r.vcpus, 1);
        assert_eq!(r.memory_mb, 1024);
        assert!(r.start);
        assert_eq!(r.app_id, Some([0x11; 20]));
        let e = serde_json::from_str::<CreateCvmRequest>(
            r#"{"name":"demo","compose":"{}","image":"x","colour":"red"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = serde_json::from_str::<CreateCvmRequest>(
            r#"{"name":"demo","compose":"{}","image":"x","app_id":"0x11"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("expected 20 bytes"), "{e}");
    }

    #[test]
    fn absent_optional_fields_read_as_none_and_stay_absent() {
        fn round_trip<T: serde::de::DeserializeOwned + Serialize>(json: &str) -> String {
            serde_json::to_string(&serde_json::from_str::<T>(json).unwrap()).unwrap()
        }
        type RoundTrip = fn(&str) -> String;
        let cases: [(&str, &str, RoundTrip); 5] = [
            (
                "PortRequest",
                r#"{"guest_port":80}"#,
                round_trip::<PortRequest>,
            ),
            (
                "CreateCvmRequest",
                r#"{"name":"d","compose":"{}","image":"x","vcpus":1,"memory_mb":1024,"ports":[],"start":true}"#,
                round_trip::<CreateCvmRequest>,
            ),
            (
                "UpgradeRequest",
                r#"{"compose":"{}","wait_for_approval":false}"#,
                round_trip::<UpgradeRequest>,
            ),
            (
                "CheckOutcome",
                r#"{"check":"os_image","status":"pass"}"#,
                round_trip::<CheckOutcome>,
            ),
            ("ImageList", r#"{"images":[]}"#, round_trip::<ImageList>),
        ];
        for (name, json, round_trip) in cases {
            assert_eq!(round_trip(json), json, "{name}");
        }
    }

    #[test]
    fn encrypted_env_is_capped_before_decoding() {
        let big = format!("0x{}", "00".repeat(MAX_ENCRYPTED_ENV_LEN + 1));
        let body = serde_json::json!({"compose":"{}","encrypted_env": big}).to_string();
        let e = serde_json::from_str::<UpgradeRequest>(&body).unwrap_err();
        assert!(e.to_string().contains("exceed the limit"), "{e}");
        let ok = serde_json::json!({"compose":"{}","encrypted_env":"0x0102"}).to_string();
        let r: UpgradeRequest = serde_json::from_str(&ok).unwrap();
        assert_eq!(r.encrypted_env, Some(vec![1, 2]));
        let back = serde_json::to_string(&r).unwrap();
        assert!(back.contains("\"encrypted_env\":\"0x0102\""), "{back}");
    }
}
