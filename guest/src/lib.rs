//! cairn-guest — what runs inside a Cairn CVM (DESIGN.md §7).
//!
//! [`boot()`] takes the host share (`app-compose.json`, `sys-config.json`, `.instance-info`,
//! `.encrypted-env`) to a running app: it measures the boot events into RTMR3 through a
//! [`cairn_attestation::Tee`] (TDX or the simulator), asks each KMS in turn for the app's
//! keys over mutual RA-TLS, pins the KMS root CA when the compose says so, measures the
//! system events, decrypts the allowed env vars, writes the keys to a private directory
//! and starts the app. [`agent`] then serves the dstack-compatible guest-agent API so the
//! public dstack SDKs work unchanged, and, when the compose enables the gateway,
//! [`gateway`] registers the instance with every gateway of sys-config.
//!
//! What it trusts: the TEE (its RTMR3 and quotes), the configured attestation
//! [`cairn_attestation::Verifier`] (to accept a KMS by its evidence), the KMS root CA its
//! measured compose pins (`key_provider_id`, required outside the simulator), and — when
//! sys-config names one — KmsAuth's verdict on the KMS at a pinned block. What it does **not** trust: anything in the host share — every file
//! is size-capped, never followed through a symlink, validated, and whatever identifies the
//! app is *measured* so the KMS and the chain judge it. It does not decide policy; a KMS
//! refusal is a boot failure carrying the KMS's reason.
//!
//! # Layout
//! - `share` — reading the host share.
//! - `boot` — the boot flow, [`boot()`].
//! - `kms_trust` — which KMS the guest trusts: the pin, KmsAuth's verdict.
//! - `keydir` — writing the keys (0700 dir, 0600 files).
//! - `runner` — `process` and `docker-compose` runners.
//! - `host_api` — best-effort boot-progress reports to the host (the VMM).
//! - `state` — [`GuestState`], shared by boot and agent.
//! - `agent` — the guest-agent HTTP server.
//! - `gateway` — registering with every gateway of sys-config, again and again.
//! - `cli` — the `cairn-guest` command line.
//! - `error` — [`Error`].
//! - `testing` (feature `test-utils`, public) — the dstack SDK interop harness shared by
//!   the guest's SDK tests and the cairn-e2e `python_sdk` scenario.
//!
//! The KMS is reached through `cairn-kms-client` (RA-TLS, the KMS's evidence and root
//! CA checked, timeouts); this crate only decides which KMS it trusts.
//!
//! # Feature flags
//! - `test-utils`: adds the public [`testing`] module. It changes no behaviour.

pub mod agent;
pub mod boot;
pub mod cli;
mod error;
pub mod gateway;
pub mod host_api;
pub mod keydir;
mod kms_trust;
pub mod runner;
pub mod share;
mod state;
#[cfg(feature = "test-utils")]
pub mod testing;

pub use boot::{boot, BootConfig, Booted};
pub use error::{Error, Result};
pub use host_api::Reporter;
pub use kms_trust::CHAIN_CALL_TIMEOUT;
pub use share::HostShare;
pub use state::{AppSecrets, GuestState, PreviousSecrets};
