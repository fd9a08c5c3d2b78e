//! Wire types of the guest agent: dstack's guest-agent HTTP/JSON API (FORMATS.md "Guest
//! agent HTTP API"), as the public SDKs (`dstack-sdk` on PyPI, `@phala/dstack-sdk` on
//! npm) send and parse it. `POST /<Method>`; byte fields are hex **without** `0x`
//! (unlike Cairn's own APIs); errors are `{"error":"..."}`.
//!
//! Requests tolerate unknown fields (newer SDKs add options); every byte field is decoded
//! with [`decode_hex`] under a cap.

use serde::{Deserialize, Serialize};

/// `POST /GetKey`.
pub const METHOD_GET_KEY: &str = "GetKey";
/// `POST /GetTlsKey`.
pub const METHOD_GET_TLS_KEY: &str = "GetTlsKey";
/// `POST /GetQuote`.
pub const METHOD_GET_QUOTE: &str = "GetQuote";
/// `POST /Attest`.
pub const METHOD_ATTEST: &str = "Attest";
/// `POST /Info`.
pub const METHOD_INFO: &str = "Info";
/// `POST /Sign`.
pub const METHOD_SIGN: &str = "Sign";
/// `POST /Verify`.
pub const METHOD_VERIFY: &str = "Verify";
/// `POST /Version`.
pub const METHOD_VERSION: &str = "Version";
/// `POST /EmitEvent`.
pub const METHOD_EMIT_EVENT: &str = "EmitEvent";

/// Largest request body the agent reads.
pub const MAX_REQUEST_LEN: usize = 64 * 1024;
/// Longest key path or purpose.
pub const MAX_PATH_LEN: usize = 1024;
/// Largest `Sign`/`Verify` data.
pub const MAX_SIGN_DATA_LEN: usize = 16 * 1024;

/// Decode hex (no `0x` expected, but tolerated) of at most `max` bytes.
pub fn decode_hex(s: &str, max: usize) -> Result<Vec<u8>, crate::hex0x::HexError> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    if digits.len() / 2 > max {
        return Err(crate::hex0x::HexError::TooLong {
            max,
            got: digits.len() / 2,
        });
    }
    hex::decode(digits).map_err(|_| crate::hex0x::HexError::InvalidDigits)
}

/// Every agent error: `{"error":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentError {
    /// What went wrong.
    pub error: String,
}

/// `GetKey` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetKeyRequest {
    /// Derivation path (HKDF info).
    #[serde(default)]
    pub path: String,
    /// Purpose signed by the app key.
    #[serde(default)]
    pub purpose: String,
    /// `secp256k1` (or `k256`, or empty); others are refused.
    #[serde(default)]
    pub algorithm: String,
}

/// `GetKey` response.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetKeyResponse {
    /// The derived secret key, hex (32 bytes).
    pub key: String,
    /// `[app signature, KMS signature]`, hex of 65 bytes each.
    pub signature_chain: Vec<String>,
}

impl std::fmt::Debug for GetKeyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetKeyResponse")
            .field("key", &"<redacted>")
            .field("signature_chain", &self.signature_chain)
            .finish()
    }
}

fn default_true() -> bool {
    true
}

/// `GetTlsKey` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetTlsKeyRequest {
    /// Subject common name (default: the app name).
    #[serde(default)]
    pub subject: String,
    /// Subject alternative names.
    #[serde(default)]
    pub alt_names: Vec<String>,
    /// Embed RA-TLS evidence (quote, event log, app id, usage `app:custom`).
    #[serde(default)]
    pub usage_ra_tls: bool,
    /// Extended key usage serverAuth.
    #[serde(default = "default_true")]
    pub usage_server_auth: bool,
    /// Extended key usage clientAuth.
    #[serde(default)]
    pub usage_client_auth: bool,
    /// dstack ≥ 0.5.7: validity start (seconds since the epoch); not supported by Cairn yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<u64>,
    /// dstack ≥ 0.5.7: validity end; not supported by Cairn yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<u64>,
    /// dstack ≥ 0.5.7: embed app info; not supported by Cairn yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with_app_info: Option<bool>,
}

/// `GetTlsKey` response.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetTlsKeyResponse {
    /// The new private key, PKCS#8 PEM.
    pub key: String,
    /// PEM certificates, leaf first.
    pub certificate_chain: Vec<String>,
}

impl std::fmt::Debug for GetTlsKeyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetTlsKeyResponse")
            .field("key", &"<redacted>")
            .field("certificate_chain", &self.certificate_chain.len())
            .finish()
    }
}

/// `GetQuote` / `Attest` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportDataRequest {
    /// Up to 64 bytes, hex; zero-padded on the right to 64.
    #[serde(default)]
    pub report_data: String,
}

/// `GetQuote` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetQuoteResponse {
    /// The TDX quote, hex.
    pub quote: String,
    /// The event log, a JSON array as a string (FORMATS.md).
    pub event_log: String,
    /// The 64 report-data bytes quoted, hex.
    pub report_data: String,
    /// The VM configuration (JSON string from sys-config).
    pub vm_config: String,
}

/// `Attest` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestResponse {
    /// Hex of the JSON [`Attestation`].
    pub attestation: String,
}

/// Cairn's attestation document inside [`AttestResponse`] (dstack's is SCALE-encoded and
/// versioned; Cairn's is JSON, tagged with its version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    /// Format tag, [`ATTESTATION_VERSION`].
    pub version: String,
    /// The TDX quote, hex.
    pub quote: String,
    /// The event log JSON (as a string).
    pub event_log: String,
    /// The VM configuration.
    pub vm_config: String,
}

/// The version tag of [`Attestation`].
pub const ATTESTATION_VERSION: &str = "cairn-attestation/v1";

/// `Info` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoResponse {
    /// App id, hex (20 bytes).
    pub app_id: String,
    /// Instance id, hex (20 bytes or empty).
    pub instance_id: String,
    /// The app's RA-TLS certificate (PEM), or empty.
    pub app_cert: String,
    /// JSON string of [`TcbInfo`].
    pub tcb_info: String,
    /// App name from the compose.
    pub app_name: String,
    /// Device id, hex (32 bytes).
    pub device_id: String,
    /// mr_aggregated, hex.
    pub mr_aggregated: String,
    /// OS image hash, hex.
    pub os_image_hash: String,
    /// The measured key-provider JSON.
    pub key_provider_info: String,
    /// Compose hash, hex.
    pub compose_hash: String,
    /// The VM configuration.
    pub vm_config: String,
}

/// The TCB info inside [`InfoResponse`] (dstack 0.5 shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcbInfo {
    /// MRTD, hex.
    pub mrtd: String,
    /// RTMR0, hex.
    pub rtmr0: String,
    /// RTMR1, hex.
    pub rtmr1: String,
    /// RTMR2, hex.
    pub rtmr2: String,
    /// RTMR3, hex.
    pub rtmr3: String,
    /// mr_aggregated, hex.
    pub mr_aggregated: String,
    /// OS image hash, hex.
    pub os_image_hash: String,
    /// Compose hash, hex.
    pub compose_hash: String,
    /// Device id, hex.
    pub device_id: String,
    /// The exact `app-compose.json` text.
    pub app_compose: String,
    /// The event log (array of FORMATS.md event objects).
    pub event_log: serde_json::Value,
}

/// `Sign` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignRequest {
    /// `secp256k1` (SHA-256 of data is signed) or `secp256k1_prehashed` (32-byte digest).
    #[serde(default)]
    pub algorithm: String,
    /// The data, hex.
    #[serde(default)]
    pub data: String,
}

/// `Sign` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignResponse {
    /// 65-byte recoverable signature `r ‖ s ‖ v`, hex.
    pub signature: String,
    /// `[app signature over the signing key, KMS signature]`, hex.
    pub signature_chain: Vec<String>,
    /// The signing key, compressed SEC1, hex.
    pub public_key: String,
}

/// `Verify` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRequest {
    /// As in [`SignRequest`].
    #[serde(default)]
    pub algorithm: String,
    /// The data, hex.
    #[serde(default)]
    pub data: String,
    /// 64- or 65-byte signature, hex.
    #[serde(default)]
    pub signature: String,
    /// SEC1 public key, hex.
    #[serde(default)]
    pub public_key: String,
}

/// `Verify` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyResponse {
    /// Whether the signature is valid.
    pub valid: bool,
}

/// `Version` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionResponse {
    /// Agent version (dstack-compatible numbering; the SDK gates features on ≥ 0.5.7).
    pub version: String,
    /// Source revision.
    pub rev: String,
}

/// `EmitEvent` request: an application event extended into RTMR3 after `system-ready`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmitEventRequest {
    /// Event name.
    #[serde(default)]
    pub event: String,
    /// Payload, hex.
    #[serde(default)]
    pub payload: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_request_shapes_parse() {
        // exactly what dstack-sdk 0.5.4 sends
        let r: GetKeyRequest =
            serde_json::from_str(r#"{"path":"p","purpose":"x","algorithm":"secp256k1"}"#).unwrap();
        assert_eq!(r.path, "p");
        let r: GetTlsKeyRequest = serde_json::from_str(
            r#"{"subject":"s","usage_ra_tls":true,"usage_server_auth":true,"usage_client_auth":false,"alt_names":["a"]}"#,
        )
        .unwrap();
        assert!(r.usage_ra_tls && r.usage_server_auth && !r.usage_client_auth);
        let r: GetTlsKeyRequest = serde_json::from_str("{}").unwrap();
        assert!(r.usage_server_auth);
        let r: ReportDataRequest = serde_json::from_str(r#"{"report_data":"0a0b"}"#).unwrap();
        assert_eq!(decode_hex(&r.report_data, 64).unwrap(), vec![10, 11]);
    }

    #[test]
    fn hex_is_capped_before_decoding() {
        assert!(matches!(
            decode_hex(&"00".repeat(65), 64),
            Err(crate::hex0x::HexError::TooLong { max: 64, got: 65 })
        ));
        assert!(matches!(
            decode_hex("zz", 64),
            Err(crate::hex0x::HexError::InvalidDigits)
        ));
    }

    #[test]
    fn key_responses_redact_debug() {
        let r = GetKeyResponse {
            key: "ab".repeat(32),
            signature_chain: vec![],
        };
        assert!(!format!("{r:?}").contains(&"ab".repeat(32)));
    }
}
