//! Wire types of the gateway's APIs (DESIGN.md §8, docs/gateway.md): registration of a
//! booted CVM (`POST /v1/register`, over mutual TLS with KMS-issued certificates) and
//! the operator's status (`GET /v1/status` on the admin endpoint).
//!
//! Same conventions as [`crate::api`]: JSON, byte strings as `0x` hex, errors as
//! [`crate::api::ErrorBody`], unknown fields rejected, every variable-size field capped.

use serde::{Deserialize, Serialize};

use crate::bounded;
use crate::compose::MAX_APP_COMPOSE_LEN;
use crate::hex0x;
use crate::sysconfig::{AppPort, MAX_PORT_MAP};

/// `POST /v1/register` (registration listener, mutual TLS).
pub const PATH_REGISTER: &str = "/v1/register";
/// `GET /v1/status` (admin listener).
pub const PATH_STATUS: &str = "/v1/status";
/// Largest registration body: the compose as a JSON string (escaping can double it) and
/// the port map.
pub const MAX_REGISTER_BODY: usize = 2 * MAX_APP_COMPOSE_LEN + 64 * 1024;
/// Longest address in a status answer.
pub const MAX_ADDRESS_LEN: usize = 256;
/// Longest TCB status string kept.
pub const MAX_TCB_STATUS_LEN: usize = 64;
/// Longest reason or error text in a status answer.
pub const MAX_REASON_LEN: usize = 1024;
/// Longest base domain.
pub const MAX_DOMAIN_LEN: usize = 253;

/// Why a registration body is refused after it decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// More `port_map` entries than [`MAX_PORT_MAP`].
    #[error("port_map has {0} entries, more than {MAX_PORT_MAP}")]
    TooManyPorts(usize),
    /// A `port_map` entry names port 0 or an app port twice.
    #[error("port_map: {0}")]
    BadPort(String),
}

/// `POST /v1/register` request. Who registers comes from the client certificate chain
/// (KMS-issued, with RA-TLS evidence), never from the body; the body only says what the
/// gateway cannot see: the exact compose (its hash must be the measured one) and where
/// the app's ports are reachable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The exact `app-compose.json` text the CVM measured (its SHA-256 must equal the
    /// compose hash in the evidence).
    #[serde(with = "bounded::Str::<MAX_APP_COMPOSE_LEN>")]
    pub app_compose: String,
    /// Host ports mapped to app ports (from `sys-config.json`); an app port without an
    /// entry is reached at the same port number.
    #[serde(default)]
    pub port_map: Vec<AppPort>,
}

impl RegisterRequest {
    /// Check the port map: at most [`MAX_PORT_MAP`] entries, no port 0, each app port
    /// once.
    pub fn validate(&self) -> Result<(), RegisterError> {
        if self.port_map.len() > MAX_PORT_MAP {
            return Err(RegisterError::TooManyPorts(self.port_map.len()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.port_map {
            if p.guest_port == 0 || p.host_port == 0 {
                return Err(RegisterError::BadPort("port 0".to_owned()));
            }
            if !seen.insert(p.guest_port) {
                return Err(RegisterError::BadPort(format!(
                    "app port {} is mapped twice",
                    p.guest_port
                )));
            }
        }
        Ok(())
    }

    /// The port `guest_port` is reachable at.
    pub fn host_port(&self, guest_port: u16) -> u16 {
        self.port_map
            .iter()
            .find(|p| p.guest_port == guest_port)
            .map_or(guest_port, |p| p.host_port)
    }
}

/// A policy block: `head − confirmations`, by number and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRef {
    /// Block number.
    pub number: u64,
    /// Block hash.
    #[serde(with = "hex0x::fixed")]
    pub hash: [u8; 32],
}

/// `POST /v1/register` response: the instance is routable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterResponse {
    /// The app the instance was admitted as (from its verified evidence).
    #[serde(with = "hex0x::fixed")]
    pub app_id: [u8; 20],
    /// Its instance id (20 bytes, or empty with `no_instance_id`).
    #[serde(with = "hex0x::Capped::<20>")]
    pub instance_id: Vec<u8>,
    /// The block whose policy allowed it.
    pub policy_block: BlockRef,
    /// Register again after this many seconds.
    pub reregister_after_secs: u64,
    /// Without a new registration, the gateway forgets the instance after this many
    /// seconds.
    pub expires_in_secs: u64,
}

/// `GET /v1/status` response: what a gateway node routes to, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayStatus {
    /// The gateway's own app id (KmsAuth's `gatewayAppId`).
    #[serde(with = "hex0x::fixed")]
    pub gateway_app_id: [u8; 20],
    /// The base domain it routes under.
    #[serde(with = "bounded::Str::<MAX_DOMAIN_LEN>")]
    pub base_domain: String,
    /// The last policy block every admitted instance was checked at.
    pub policy_block: Option<BlockRef>,
    /// Milliseconds since that check completed (routing stops when it grows past the
    /// configured bound).
    pub policy_age_ms: Option<u64>,
    /// Admitted instances, by app.
    pub apps: Vec<AppStatus>,
    /// The most recent refused registrations and revocations, newest first.
    pub recent_denials: Vec<DenialStatus>,
}

/// One app's admitted instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppStatus {
    /// The app id.
    #[serde(with = "hex0x::fixed")]
    pub app_id: [u8; 20],
    /// Connections open to the app through this node.
    pub open_connections: u64,
    /// Its instances.
    pub instances: Vec<InstanceStatus>,
}

/// One admitted instance and the chain's verdict on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceStatus {
    /// Instance id (20 bytes, or empty).
    #[serde(with = "hex0x::Capped::<20>")]
    pub instance_id: Vec<u8>,
    /// The address the gateway dials.
    #[serde(with = "bounded::Str::<MAX_ADDRESS_LEN>")]
    pub address: String,
    /// The port map it registered.
    pub port_map: Vec<AppPort>,
    /// The measured compose hash.
    #[serde(with = "hex0x::fixed")]
    pub compose_hash: [u8; 32],
    /// The OS image hash its measurements match.
    #[serde(with = "hex0x::fixed")]
    pub os_image_hash: [u8; 32],
    /// Its device id.
    #[serde(with = "hex0x::fixed")]
    pub device_id: [u8; 32],
    /// Its TCB status.
    #[serde(with = "bounded::Str::<MAX_TCB_STATUS_LEN>")]
    pub tcb_status: String,
    /// `KmsAuth.isAppAllowed` answered true at this block.
    pub allowed_at: BlockRef,
    /// Seconds since it last registered.
    pub registered_secs_ago: u64,
    /// Seconds until it is forgotten unless it registers again.
    pub expires_in_secs: u64,
    /// Whether recent connects to it succeeded (or none failed).
    pub healthy: bool,
    /// Connections open to it.
    pub open_connections: u64,
}

/// A refused registration or a revoked instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenialStatus {
    /// The app id, when the evidence got far enough to tell it.
    #[serde(with = "hex0x::Capped::<20>")]
    pub app_id: Vec<u8>,
    /// The instance id, when known.
    #[serde(with = "hex0x::Capped::<20>")]
    pub instance_id: Vec<u8>,
    /// The error code (`denied.compose_hash`, `revoked.compose_hash`, …).
    #[serde(with = "bounded::Str::<MAX_REASON_LEN>")]
    pub code: String,
    /// Why (for chain denials, the contract's reason).
    #[serde(with = "bounded::Str::<MAX_REASON_LEN>")]
    pub reason: String,
    /// The policy block, for chain verdicts.
    pub block: Option<BlockRef>,
    /// Seconds ago.
    pub secs_ago: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_request_round_trips_and_checks_its_port_map() {
        let req = RegisterRequest {
            app_compose: r#"{"manifest_version":2}"#.into(),
            port_map: vec![AppPort {
                guest_port: 8080,
                host_port: 20001,
            }],
        };
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(serde_json::from_str::<RegisterRequest>(&json).unwrap(), req);
        assert_eq!(req.validate(), Ok(()));
        assert_eq!(req.host_port(8080), 20001);
        assert_eq!(req.host_port(443), 443);
        let twice = RegisterRequest {
            port_map: vec![req.port_map[0], req.port_map[0]],
            ..req.clone()
        };
        assert_eq!(
            twice.validate(),
            Err(RegisterError::BadPort(
                "app port 8080 is mapped twice".into()
            ))
        );
        let many = RegisterRequest {
            port_map: (1..=MAX_PORT_MAP as u16 + 1)
                .map(|p| AppPort {
                    guest_port: p,
                    host_port: p,
                })
                .collect(),
            ..req.clone()
        };
        assert_eq!(
            many.validate(),
            Err(RegisterError::TooManyPorts(MAX_PORT_MAP + 1))
        );
        assert!(serde_json::from_str::<RegisterRequest>(
            r#"{"app_compose":"{}","port_map":[],"extra":1}"#
        )
        .is_err_and(|e| e.to_string().contains("unknown field")));
    }

    #[test]
    fn an_oversized_compose_is_refused_while_decoding() {
        let big = "x".repeat(MAX_APP_COMPOSE_LEN + 1);
        let json = serde_json::json!({ "app_compose": big }).to_string();
        let e = serde_json::from_str::<RegisterRequest>(&json).unwrap_err();
        assert!(e.to_string().contains("exceeds the limit"), "{e}");
    }
}
