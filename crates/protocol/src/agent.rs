//! Wire types of the guest agent: dstack's guest-agent HTTP/JSON API (FORMATS.md "Guest
//! agent HTTP API"), as the public SDKs (`dstack-sdk` on PyPI, `@phala/dstack-sdk` on
//! npm, `dstack-sdk` on crates.io) send and parse it. `POST /<Method>`; byte fields are
//! hex **without** `0x` (unlike Cairn's own APIs); errors are `{"error":"..."}`.
//!
//! Requests tolerate unknown fields (newer SDKs add options); every byte field is decoded
//! with [`decode_hex`] under a cap. The legacy tappd API (`/prpc/Tappd.<Method>`, still
//! called by the SDKs' deprecated `TappdClient`) has its own request and response types
//! here ([`DeriveKeyRequest`], [`TdxQuoteRequest`], …).

use serde::{Deserialize, Serialize};

/// `POST /GetKey`.
pub const METHOD_GET_KEY: &str = "GetKey";
/// `POST /GetTlsKey`.
pub const METHOD_GET_TLS_KEY: &str = "GetTlsKey";
/// `POST /GetQuote`.
pub const METHOD_GET_QUOTE: &str = "GetQuote";
/// `POST /Attest`.
pub const METHOD_ATTEST: &str = "Attest";
/// `POST /Info` (also `GET`).
pub const METHOD_INFO: &str = "Info";
/// `POST /Sign`.
pub const METHOD_SIGN: &str = "Sign";
/// `POST /Verify`.
pub const METHOD_VERIFY: &str = "Verify";
/// `POST /Version` (also `GET`).
pub const METHOD_VERSION: &str = "Version";
/// `POST /EmitEvent`.
pub const METHOD_EMIT_EVENT: &str = "EmitEvent";

/// Every current method, in the order the docs list them.
pub const METHODS: [&str; 9] = [
    METHOD_GET_KEY,
    METHOD_GET_TLS_KEY,
    METHOD_GET_QUOTE,
    METHOD_ATTEST,
    METHOD_INFO,
    METHOD_SIGN,
    METHOD_VERIFY,
    METHOD_VERSION,
    METHOD_EMIT_EVENT,
];

/// Path prefix of the legacy tappd API (`/prpc/Tappd.<Method>`).
pub const TAPPD_PREFIX: &str = "/prpc/Tappd.";
/// `POST /prpc/Tappd.DeriveKey`: a TLS key derived from the app key for a path (or a
/// random one), with a certificate chain; replaced by `GetKey` / `GetTlsKey`.
pub const TAPPD_DERIVE_KEY: &str = "DeriveKey";
/// `POST /prpc/Tappd.DeriveK256Key`: `GetKey` with the tappd field names.
pub const TAPPD_DERIVE_K256_KEY: &str = "DeriveK256Key";
/// `POST /prpc/Tappd.TdxQuote`: a quote over `hash(prefix ‖ ":" ‖ report_data)`;
/// replaced by `GetQuote`.
pub const TAPPD_TDX_QUOTE: &str = "TdxQuote";
/// `POST /prpc/Tappd.RawQuote`: `TdxQuote` with `hash_algorithm: "raw"`.
pub const TAPPD_RAW_QUOTE: &str = "RawQuote";
/// `POST /prpc/Tappd.Info`: `Info`.
pub const TAPPD_INFO: &str = "Info";
/// `POST /prpc/Tappd.Version`: `Version`.
pub const TAPPD_VERSION: &str = "Version";

/// Every legacy tappd method the agent serves, with the current method replacing it.
pub const TAPPD_METHODS: [(&str, &str); 6] = [
    (TAPPD_DERIVE_KEY, METHOD_GET_TLS_KEY),
    (TAPPD_DERIVE_K256_KEY, METHOD_GET_KEY),
    (TAPPD_TDX_QUOTE, METHOD_GET_QUOTE),
    (TAPPD_RAW_QUOTE, METHOD_GET_QUOTE),
    (TAPPD_INFO, METHOD_INFO),
    (TAPPD_VERSION, METHOD_VERSION),
];

/// `secp256k1` (the default; `k256` and the empty string are aliases in `GetKey`).
pub const ALGORITHM_SECP256K1: &str = "secp256k1";
/// `secp256k1_prehashed` (`Sign`/`Verify` only): `data` is a 32-byte digest.
pub const ALGORITHM_SECP256K1_PREHASHED: &str = "secp256k1_prehashed";
/// `ed25519` (dstack ≥ 0.5.7 agents; the SDKs' Solana helpers use it).
pub const ALGORITHM_ED25519: &str = "ed25519";

/// The key algorithm of a `GetKey`, `Sign` or `Verify` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// secp256k1 ECDSA; `Sign`/`Verify` hash the data with SHA-256.
    Secp256k1,
    /// secp256k1 ECDSA over a caller-supplied 32-byte digest (`Sign`/`Verify` only).
    Secp256k1Prehashed,
    /// Ed25519 (RFC 8032, pure: the data itself is signed).
    Ed25519,
}

impl Algorithm {
    /// Parse a request's `algorithm` as dstack's agent does: `k256` is `secp256k1`; the
    /// empty string is `secp256k1` only where `allow_empty` (`GetKey`, not `Sign`).
    /// `None` for anything else.
    pub fn parse(name: &str, allow_empty: bool) -> Option<Self> {
        match name {
            "" if allow_empty => Some(Self::Secp256k1),
            "secp256k1" | "k256" => Some(Self::Secp256k1),
            "secp256k1_prehashed" => Some(Self::Secp256k1Prehashed),
            "ed25519" => Some(Self::Ed25519),
            _ => None,
        }
    }
}

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
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetKeyRequest {
    /// Derivation path (HKDF info).
    #[serde(default)]
    pub path: String,
    /// Purpose signed by the app key.
    #[serde(default)]
    pub purpose: String,
    /// `secp256k1` (or `k256`, or empty) or `ed25519`; others are refused.
    #[serde(default)]
    pub algorithm: String,
    /// Cairn extension (dstack has no rotation): derive from the app key of this key
    /// generation instead of the current one — the previous generation while the CVM
    /// holds it (booted during a rotation's transition window), so the app can decrypt
    /// what it sealed before and re-encrypt it. Absent: the current generation.
    pub key_generation: Option<u64>,
}

/// `GetKey` response.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetKeyResponse {
    /// The derived secret key, hex (32 bytes: a secp256k1 scalar, or an ed25519 seed).
    pub key: String,
    /// `[app signature, KMS signature]`, hex of 65 bytes each.
    pub signature_chain: Vec<String>,
}

redacted_debug!(GetKeyResponse {
    key: redacted,
    signature_chain
});

fn default_true() -> bool {
    true
}

/// `GetTlsKey` request.
#[serde_with::skip_serializing_none]
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
    /// dstack ≥ 0.5.7: the leaf's notBefore, seconds since the Unix epoch (default: the
    /// KMS's, a few minutes before now).
    pub not_before: Option<u64>,
    /// dstack ≥ 0.5.7: the leaf's notAfter, seconds since the Unix epoch (default: the
    /// KMS's leaf validity from now; never later than that).
    pub not_after: Option<u64>,
    /// dstack ≥ 0.5.7: the leaf must carry the app id extension (`…62397.1.3`). Cairn's
    /// KMS puts it in every leaf; `true` makes the agent check it.
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

redacted_debug!(GetTlsKeyResponse {
    key: redacted,
    certificate_chain: len
});

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
    /// `secp256k1` (ECDSA over SHA-256 of `data`), `secp256k1_prehashed` (ECDSA over the
    /// 32-byte `data`) or `ed25519` (`data` itself is signed).
    #[serde(default)]
    pub algorithm: String,
    /// The data, hex.
    #[serde(default)]
    pub data: String,
}

/// `Sign` response (dstack's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignResponse {
    /// The signature, hex: 64 bytes `r ‖ s` (secp256k1, low `s`) or 64 bytes (ed25519).
    pub signature: String,
    /// `[signature, app signature over the signing key, KMS signature]`, hex.
    pub signature_chain: Vec<String>,
    /// The signing key, hex: compressed SEC1 (33 bytes) or ed25519 (32 bytes).
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
    /// The signature, hex: 64 bytes (a 65-byte recoverable secp256k1 signature is also
    /// accepted; its recovery byte is ignored).
    #[serde(default)]
    pub signature: String,
    /// The public key, hex: SEC1 secp256k1 or 32-byte ed25519.
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

/// `POST /prpc/Tappd.DeriveKey` request (legacy).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeriveKeyRequest {
    /// Derivation path of the P-256 key (HKDF info), unless `random_seed`.
    #[serde(default)]
    pub path: String,
    /// Subject common name (default: the app name).
    #[serde(default)]
    pub subject: String,
    /// Subject alternative names.
    #[serde(default)]
    pub alt_names: Vec<String>,
    /// Embed RA-TLS evidence.
    #[serde(default)]
    pub usage_ra_tls: bool,
    /// Extended key usage serverAuth.
    #[serde(default)]
    pub usage_server_auth: bool,
    /// Extended key usage clientAuth.
    #[serde(default)]
    pub usage_client_auth: bool,
    /// A fresh random key instead of the one derived for `path`.
    #[serde(default)]
    pub random_seed: bool,
}

/// `POST /prpc/Tappd.DeriveK256Key` response (legacy `GetKey`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeriveK256KeyResponse {
    /// The derived secret key, hex.
    pub k256_key: String,
    /// `[app signature, KMS signature]`, hex.
    pub k256_signature_chain: Vec<String>,
}

redacted_debug!(DeriveK256KeyResponse {
    k256_key: redacted,
    k256_signature_chain
});

/// `POST /prpc/Tappd.TdxQuote` / `RawQuote` request (legacy).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdxQuoteRequest {
    /// The content, hex: hashed (see `hash_algorithm`) unless `raw`, where it is at most
    /// 64 bytes, zero-padded on the right.
    #[serde(default)]
    pub report_data: String,
    /// `sha512` (default), `sha256`, `sha384`, `keccak256` or `raw`.
    #[serde(default)]
    pub hash_algorithm: String,
    /// Tag hashed before the content (default `app-data`; ignored for `raw`).
    #[serde(default)]
    pub prefix: String,
}

/// `POST /prpc/Tappd.TdxQuote` / `RawQuote` response (legacy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdxQuoteResponse {
    /// The TDX quote, hex.
    pub quote: String,
    /// The event log, a JSON array as a string.
    pub event_log: String,
    /// The hash algorithm applied.
    pub hash_algorithm: String,
    /// The tag hashed before the content (empty for `raw`).
    pub prefix: String,
}

/// Default tag of `Tappd.TdxQuote` report data.
pub const TAPPD_DEFAULT_PREFIX: &str = "app-data";
/// Default hash of `Tappd.TdxQuote` report data.
pub const TAPPD_DEFAULT_HASH: &str = "sha512";
/// `Tappd.TdxQuote` `hash_algorithm` that passes the content through unhashed.
pub const TAPPD_RAW: &str = "raw";

/// Why `Tappd.TdxQuote` report data could not be formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportDataError {
    /// `raw` content longer than the 64 report-data bytes.
    #[error("raw report data is {len} bytes, at most 64 fit")]
    RawTooLong {
        /// The content length.
        len: usize,
    },
    /// A hash the agent does not implement.
    #[error("hash_algorithm {0:?} is not supported (sha256, sha384, sha512, keccak256, raw)")]
    UnsupportedHash(String),
}

/// The report data of a legacy `Tappd.TdxQuote`, as dstack's tappd forms it:
/// `hash(prefix ‖ ":" ‖ content)` zero-padded to 64 bytes (`prefix` defaults to
/// `app-data`, the hash to `sha512`), or with `raw` the content itself, zero-padded.
/// Returns the report data and the hash and prefix applied.
pub fn tappd_report_data(
    content: &[u8],
    hash_algorithm: &str,
    prefix: &str,
) -> Result<([u8; 64], String, String), ReportDataError> {
    use sha2::Digest;
    let hash = if hash_algorithm.is_empty() {
        TAPPD_DEFAULT_HASH
    } else {
        hash_algorithm
    };
    let mut out = [0u8; 64];
    if hash == TAPPD_RAW {
        out.get_mut(..content.len())
            .ok_or(ReportDataError::RawTooLong { len: content.len() })?
            .copy_from_slice(content);
        return Ok((out, hash.to_owned(), String::new()));
    }
    let tag = if prefix.is_empty() {
        TAPPD_DEFAULT_PREFIX
    } else {
        prefix
    };
    let mut msg = Vec::with_capacity(tag.len() + 1 + content.len());
    msg.extend_from_slice(tag.as_bytes());
    msg.push(b':');
    msg.extend_from_slice(content);
    let digest: Vec<u8> = match hash {
        "sha256" => sha2::Sha256::digest(&msg).to_vec(),
        "sha384" => sha2::Sha384::digest(&msg).to_vec(),
        "sha512" => sha2::Sha512::digest(&msg).to_vec(),
        "keccak256" => alloy_primitives::keccak256(&msg).to_vec(),
        other => {
            return Err(ReportDataError::UnsupportedHash(
                other.chars().take(32).collect(),
            ))
        }
    };
    out[..digest.len()].copy_from_slice(&digest);
    Ok((out, hash.to_owned(), tag.to_owned()))
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
    fn tappd_report_data_is_dstacks() {
        // FORMATS.md: SHA-512("app-data:test content") begins 7ea0b744
        let (rd, hash, prefix) = tappd_report_data(b"test content", "", "").unwrap();
        assert_eq!(hex::encode(&rd[..4]), "7ea0b744");
        assert_eq!((hash.as_str(), prefix.as_str()), ("sha512", "app-data"));
        let (rd, _, _) = tappd_report_data(b"test content", "sha256", "").unwrap();
        assert_eq!(rd[32..], [0u8; 32]);
        assert_ne!(rd[..32], [0u8; 32]);
        let (rd, hash, prefix) = tappd_report_data(&[7; 64], "raw", "ignored").unwrap();
        assert_eq!((rd, hash.as_str(), prefix.as_str()), ([7; 64], "raw", ""));
        assert_eq!(
            tappd_report_data(&[7; 65], "raw", ""),
            Err(ReportDataError::RawTooLong { len: 65 })
        );
        assert!(matches!(
            tappd_report_data(b"x", "sha3-256", ""),
            Err(ReportDataError::UnsupportedHash(h)) if h == "sha3-256"
        ));
        // a custom prefix changes the digest
        let (a, _, _) = tappd_report_data(b"x", "sha512", "").unwrap();
        let (b, _, p) = tappd_report_data(b"x", "sha512", "mine").unwrap();
        assert_ne!(a, b);
        assert_eq!(p, "mine");
    }

    #[test]
    fn algorithms_parse_as_dstack_normalizes_them() {
        assert_eq!(Algorithm::parse("k256", false), Some(Algorithm::Secp256k1));
        assert_eq!(Algorithm::parse("", true), Some(Algorithm::Secp256k1));
        assert_eq!(Algorithm::parse("", false), None);
        assert_eq!(Algorithm::parse("ed25519", false), Some(Algorithm::Ed25519));
        assert_eq!(Algorithm::parse("rsa", true), None);
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
