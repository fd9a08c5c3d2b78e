//! Wire types of the KMS HTTP API (DESIGN.md §5, docs/protocol.md).
//!
//! JSON over HTTPS, versioned paths, byte strings as `0x`-prefixed hex ([`crate::hex0x`]),
//! errors as [`ErrorBody`]. Requests reject unknown fields; every variable-size field has a
//! cap checked while deserializing.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::bounded;
use crate::error::{Error, Result};
use crate::hex0x;
use crate::sig::{self, RecoverableSignature};

/// `POST /v1/app-key`.
pub const PATH_APP_KEY: &str = "/v1/app-key";
/// `POST /v1/sign-cert`.
pub const PATH_SIGN_CERT: &str = "/v1/sign-cert";
/// `GET /v1/env-pubkey/{app_id}` (the app id as `0x` hex).
pub const PATH_ENV_PUBKEY: &str = "/v1/env-pubkey/{app_id}";
/// `GET /v1/meta`.
pub const PATH_META: &str = "/v1/meta";

/// Largest CSR (DER) accepted by `sign-cert`.
pub const MAX_CSR_LEN: usize = 16 * 1024;
/// Largest PEM certificate in a response.
pub const MAX_CERT_PEM_LEN: usize = 64 * 1024;
/// Most certificates in a chain.
pub const MAX_CHAIN_LEN: usize = 8;
/// Largest signed checkpoint text in a receipt (tlog's own parser limit).
pub const MAX_CHECKPOINT_LEN: usize = 16 * 1024;
/// Largest OS image manifest (canonical JSON) in `meta` (cairn-attestation's own limit).
pub const MAX_OS_IMAGE_MANIFEST_LEN: usize = 16 * 1024;
/// Longest error code.
pub const MAX_ERROR_CODE_LEN: usize = 128;
/// Longest error message.
pub const MAX_ERROR_MESSAGE_LEN: usize = 4096;

/// Every error response: `{"error":{"code":"…","message":"…"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Machine-readable code, e.g. `denied.compose_hash`, `bad_request`, `unavailable.chain`.
    #[serde(with = "bounded::Str::<MAX_ERROR_CODE_LEN>")]
    pub code: String,
    /// Human-readable message (for denials, the contract's reason).
    #[serde(with = "bounded::Str::<MAX_ERROR_MESSAGE_LEN>")]
    pub message: String,
}

impl ErrorBody {
    /// An error body with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}

/// `POST /v1/app-key` request. The caller's identity comes from its RA-TLS client
/// certificate, never from the body; the body only says whether the keys of the previous
/// key generation are wanted too (a rotation's transition window, docs/rotation.md).
/// `{}` asks for the current generation alone.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppKeyRequest {
    /// Also release the same app's keys of the generation a rotation replaced.
    pub previous_generation: Option<PreviousGeneration>,
    /// Cairn's own: the policy block at which the caller's deployer (the VMM's
    /// pre-flight) saw this app allowed. A KMS whose policy head is behind it waits,
    /// bounded, for its head to reach it, then judges at its own head as always; if the
    /// head does not get there in time the answer is 503
    /// `unavailable.policy_head_behind`, never a denial. It cannot loosen any check: it
    /// only delays the caller's own request (docs/protocol.md, docs/security.md).
    pub min_policy_block: Option<u64>,
}

/// How an [`AppKeyRequest`] asks for the previous generation's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreviousGeneration {
    /// Include them while the chain serves the previous generation (its transition window
    /// is open); otherwise answer without them (what a booting guest asks).
    IfServed,
    /// Include them, or refuse the whole request with 403 `denied.key_generation` when
    /// the chain serves no previous generation (never rotated, or the window ended).
    Required,
}

/// The keys of the previous key generation for the same app and instance, released
/// during a rotation's transition window so that the app can re-encrypt what it sealed.
/// The release is logged as its own entry (with this generation). `Debug` redacts every
/// secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousAppKeys {
    /// The previous key generation.
    pub key_generation: u64,
    /// End of its transition window (block timestamp, exclusive; `KmsAuth.transitionWindow`).
    pub valid_until: u64,
    /// The app's secp256k1 secret key of that generation (32 bytes).
    #[serde(with = "hex0x::secret")]
    pub app_key: Zeroizing<[u8; 32]>,
    /// That generation's root signature over it.
    #[serde(with = "hex0x::fixed")]
    pub kms_signature: RecoverableSignature,
    /// The instance's disk key of that generation (32 bytes).
    #[serde(with = "hex0x::secret")]
    pub disk_key: Zeroizing<[u8; 32]>,
    /// The app's env X25519 secret of that generation (32 bytes).
    #[serde(with = "hex0x::secret")]
    pub env_secret: Zeroizing<[u8; 32]>,
    /// That generation's root CA certificate (PEM).
    #[serde(with = "bounded::Str::<MAX_CERT_PEM_LEN>")]
    pub root_ca_cert: String,
    /// The log receipt of this release (its own entry).
    pub receipt: Receipt,
}

redacted_debug!(PreviousAppKeys {
    key_generation,
    valid_until,
    app_key: redacted,
    kms_signature: hex,
    disk_key: redacted,
    env_secret: redacted,
    receipt,
    ..
});

/// Proof that a release was logged and under which policy block it was allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Index of the release entry in the node's log.
    pub log_index: u64,
    /// The node's signed checkpoint (C2SP signed note) covering the entry.
    #[serde(with = "bounded::Str::<MAX_CHECKPOINT_LEN>")]
    pub checkpoint: String,
    /// Block number at which the policy was read.
    pub policy_block_number: u64,
    /// Hash of that block.
    #[serde(with = "hex0x::fixed")]
    pub policy_block_hash: [u8; 32],
}

/// `POST /v1/app-key` response: the app's keys. `Debug` redacts every secret.
#[serde_with::skip_serializing_none]
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppKeyResponse {
    /// The app's secp256k1 secret key (32 bytes).
    #[serde(with = "hex0x::secret")]
    pub app_key: Zeroizing<[u8; 32]>,
    /// KMS root signature over the app key (FORMATS.md, [`crate::sig::kms_app_key_message`]).
    #[serde(with = "hex0x::fixed")]
    pub kms_signature: RecoverableSignature,
    /// The instance's disk encryption key (32 bytes).
    #[serde(with = "hex0x::secret")]
    pub disk_key: Zeroizing<[u8; 32]>,
    /// The app's env X25519 secret (32 bytes), decrypts `.encrypted-env`.
    #[serde(with = "hex0x::secret")]
    pub env_secret: Zeroizing<[u8; 32]>,
    /// The gateway's app id from KmsAuth (all zero when unset).
    #[serde(with = "hex0x::fixed")]
    pub gateway_app_id: [u8; 20],
    /// The KMS root CA certificate (PEM).
    #[serde(with = "bounded::Str::<MAX_CERT_PEM_LEN>")]
    pub root_ca_cert: String,
    /// The OS image hash the KMS verified; the guest measures it as `os-image-hash`.
    #[serde(with = "hex0x::fixed")]
    pub os_image_hash: [u8; 32],
    /// The key generation the keys were derived from.
    pub key_generation: u64,
    /// The log receipt of this release.
    pub receipt: Receipt,
    /// The previous generation's keys, when asked for and served.
    pub previous: Option<PreviousAppKeys>,
}

redacted_debug!(AppKeyResponse {
    app_key: redacted,
    kms_signature: hex,
    disk_key: redacted,
    env_secret: redacted,
    gateway_app_id: hex,
    os_image_hash: hex,
    key_generation,
    receipt,
    previous,
    ..
});

/// `POST /v1/sign-cert` request: a PKCS#10 CSR signed by the attested app's key.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignCertRequest {
    /// The CSR, DER.
    #[serde(with = "hex0x::Capped::<MAX_CSR_LEN>")]
    pub csr: Vec<u8>,
    /// The leaf's notBefore, seconds since the Unix epoch (guest agent `GetTlsKey`
    /// `not_before`); absent: a few minutes before now. Sent only when set, so a KMS
    /// without this field still accepts requests that do not use it.
    pub not_before: Option<u64>,
    /// The leaf's notAfter, seconds since the Unix epoch; absent: the KMS's leaf validity
    /// from now, which is also the latest a KMS issues.
    pub not_after: Option<u64>,
}

/// `POST /v1/sign-cert` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignCertResponse {
    /// PEM certificates, leaf first: leaf, app CA, root CA.
    #[serde(with = "bounded::StrList::<MAX_CHAIN_LEN, MAX_CERT_PEM_LEN>")]
    pub certificate_chain: Vec<String>,
}

/// `GET /v1/env-pubkey/{app_id}` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvPubkeyResponse {
    /// The app's env X25519 public key.
    #[serde(with = "hex0x::fixed")]
    pub public_key: [u8; 32],
    /// Seconds since the Unix epoch when the KMS signed.
    pub timestamp: u64,
    /// Root k256 signature over [`crate::sig::env_pubkey_message`].
    #[serde(with = "hex0x::fixed")]
    pub signature: RecoverableSignature,
}

/// How far in the future an env-pubkey timestamp may lie (clock skew), in seconds.
pub const MAX_ENV_PUBKEY_CLOCK_SKEW_SECS: u64 = 300;

impl EnvPubkeyResponse {
    /// Check the KMS signature against `kms_root` (the root k256 key registered on chain)
    /// and the timestamp against `now` (seconds since the epoch): not older than `max_age`
    /// seconds, not more than [`MAX_ENV_PUBKEY_CLOCK_SKEW_SECS`] ahead. Returns the public
    /// key to encrypt to.
    pub fn verify(
        &self,
        app_id: &[u8; 20],
        kms_root: &k256::ecdsa::VerifyingKey,
        now: u64,
        max_age: u64,
    ) -> Result<[u8; 32]> {
        sig::verify_env_pubkey_signature(
            app_id,
            self.timestamp,
            &self.public_key,
            &self.signature,
            kms_root,
        )?;
        if self.timestamp > now.saturating_add(MAX_ENV_PUBKEY_CLOCK_SKEW_SECS) {
            return Err(Error::FutureTimestamp {
                timestamp: self.timestamp,
                now,
            });
        }
        if now.saturating_sub(self.timestamp) > max_age {
            return Err(Error::StaleTimestamp {
                timestamp: self.timestamp,
                now,
                max_age,
            });
        }
        Ok(self.public_key)
    }
}

/// `GET /v1/meta` response: the node's public identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaResponse {
    /// Chain id the node reads policy from.
    pub chain_id: u64,
    /// The KmsAuth contract address.
    #[serde(with = "hex0x::fixed")]
    pub kms_auth: [u8; 20],
    /// Root k256 public key, compressed SEC1 (33 bytes).
    #[serde(with = "hex0x::fixed")]
    pub root_k256_public_key: [u8; 33],
    /// Root CA certificate (PEM).
    #[serde(with = "bounded::Str::<MAX_CERT_PEM_LEN>")]
    pub root_ca_cert: String,
    /// This node's address (its k256 node key; signs checkpoints and anchors).
    #[serde(with = "hex0x::fixed")]
    pub node_address: [u8; 20],
    /// Current key generation.
    pub key_generation: u64,
    /// The manifest of the OS image this node runs, as canonical JSON (its SHA-256 is the
    /// node's `os_image_hash`): what a client needs to build the node's boot info for
    /// `KmsAuth.isKmsAllowed`. Never trusted as such: a client checks it against the
    /// MRTD/RTMR0-2 of the node's verified quote.
    #[serde(with = "bounded::Str::<MAX_OS_IMAGE_MANIFEST_LEN>")]
    pub os_image_manifest: String,
}

/// `POST /v1/onboard` (replication, DESIGN.md §5).
pub const PATH_ONBOARD: &str = "/v1/onboard";
/// `GET /v1/log/checkpoint`: the node's latest signed checkpoint.
pub const PATH_LOG_CHECKPOINT: &str = "/v1/log/checkpoint";
/// `GET /v1/log/entries?start&end`.
pub const PATH_LOG_ENTRIES: &str = "/v1/log/entries";
/// `GET /v1/log/proof/inclusion?index&size`.
pub const PATH_LOG_INCLUSION: &str = "/v1/log/proof/inclusion";
/// `GET /v1/log/proof/consistency?first&second`.
pub const PATH_LOG_CONSISTENCY: &str = "/v1/log/proof/consistency";

/// Most entries one `log/entries` response carries.
pub const MAX_LOG_ENTRIES_PER_RESPONSE: u64 = 256;
/// Largest log entry in a response (the tlog record cap is far below).
pub const MAX_LOG_ENTRY_LEN: usize = 64 * 1024;
/// Most hashes in a proof (a tree of 2^64 leaves needs at most 64 per side, 128 total).
pub const MAX_PROOF_HASHES: usize = 128;

/// A 32-byte hash as `0x` hex (log roots and proof nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Hash32(#[serde(with = "hex0x::fixed")] pub [u8; 32]);

/// One log entry (an ABI-encoded release record) as `0x` hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LogEntry(#[serde(with = "hex0x::Capped::<MAX_LOG_ENTRY_LEN>")] pub Vec<u8>);

/// `GET /v1/log/checkpoint` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointResponse {
    /// The signed checkpoint (C2SP signed note text).
    #[serde(with = "bounded::Str::<MAX_CHECKPOINT_LEN>")]
    pub checkpoint: String,
}

/// `GET /v1/log/entries?start&end` response: entries `start..start + entries.len()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntriesResponse {
    /// Index of the first entry.
    pub start: u64,
    /// The entries, in order (at most [`MAX_LOG_ENTRIES_PER_RESPONSE`]).
    pub entries: Vec<LogEntry>,
}

/// `GET /v1/log/proof/inclusion?index&size` response (RFC 9162 §2.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProofResponse {
    /// Leaf index.
    pub index: u64,
    /// Tree size the proof is for.
    pub size: u64,
    /// Audit path, leaf to root (at most [`MAX_PROOF_HASHES`]).
    pub hashes: Vec<Hash32>,
}

/// `GET /v1/log/proof/consistency?first&second` response (RFC 9162 §2.1.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProofResponse {
    /// Older tree size.
    pub first: u64,
    /// Newer tree size.
    pub second: u64,
    /// The proof (at most [`MAX_PROOF_HASHES`]).
    pub hashes: Vec<Hash32>,
}

/// `POST /v1/onboard` request. The new node is identified by its RA-TLS client
/// certificate (usage `kms:rpc`); `{}` asks for the current key generation.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardRequest {
    /// Ask for this key generation instead (a rotation: the new generation, once it is
    /// current on chain; or the previous one during its window). Refused with 404
    /// `not_found` when the source node does not hold it.
    pub key_generation: Option<u64>,
}

/// `POST /v1/onboard` response: the master secret of the current key generation.
/// `Debug` redacts the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardResponse {
    /// The master secret (32 bytes).
    #[serde(with = "hex0x::secret")]
    pub master_secret: Zeroizing<[u8; 32]>,
    /// Its key generation.
    pub key_generation: u64,
    /// The sender's log receipt of the onboarding (kind `kms-onboard`).
    pub receipt: Receipt,
}

redacted_debug!(OnboardResponse {
    master_secret: redacted,
    key_generation,
    receipt
});

#[cfg(test)]
mod tests {
    use super::*;

    fn app_key_response() -> AppKeyResponse {
        AppKeyResponse {
            app_key: Zeroizing::new([1; 32]),
            kms_signature: [2; 65],
            disk_key: Zeroizing::new([3; 32]),
            env_secret: Zeroizing::new([4; 32]),
            gateway_app_id: [5; 20],
            root_ca_cert: "-----BEGIN CERTIFICATE-----\n".into(),
            os_image_hash: [6; 32],
            key_generation: 1,
            receipt: Receipt {
                log_index: 7,
                checkpoint: "origin\n1\nroot\n".into(),
                policy_block_number: 8,
                policy_block_hash: [9; 32],
            },
            previous: None,
        }
    }

    #[test]
    fn previous_generation_keys_round_trip_and_debug_redacts() {
        let mut r = app_key_response();
        r.key_generation = 2;
        r.previous = Some(PreviousAppKeys {
            key_generation: 1,
            valid_until: 1_900_000_000,
            app_key: Zeroizing::new([0xa1; 32]),
            kms_signature: [0xa2; 65],
            disk_key: Zeroizing::new([0xa3; 32]),
            env_secret: Zeroizing::new([0xa4; 32]),
            root_ca_cert: "-----BEGIN CERTIFICATE-----\n".into(),
            receipt: r.receipt.clone(),
        });
        let json = serde_json::to_string(&r).unwrap();
        let back: AppKeyResponse = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        let dbg = format!("{r:?}");
        for secret in ["a1", "a3", "a4"] {
            assert!(!dbg.contains(&secret.repeat(32)), "{dbg}");
        }
        // Without previous keys the field is absent (older clients parse the answer).
        r.previous = None;
        assert!(!serde_json::to_string(&r).unwrap().contains("previous"));
    }

    #[test]
    fn the_previous_generation_request_field_is_optional_and_closed() {
        assert_eq!(
            serde_json::to_string(&AppKeyRequest::default()).unwrap(),
            "{}"
        );
        let r: AppKeyRequest =
            serde_json::from_str(r#"{"previous_generation":"required"}"#).unwrap();
        assert_eq!(r.previous_generation, Some(PreviousGeneration::Required));
        let r: AppKeyRequest =
            serde_json::from_str(r#"{"previous_generation":"if_served"}"#).unwrap();
        assert_eq!(r.previous_generation, Some(PreviousGeneration::IfServed));
        let e =
            serde_json::from_str::<AppKeyRequest>(r#"{"previous_generation":"all"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown variant"), "{e}");
        let r: AppKeyRequest = serde_json::from_str(r#"{"min_policy_block":42}"#).unwrap();
        assert_eq!(r.min_policy_block, Some(42));
        assert_eq!(r.previous_generation, None);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"min_policy_block":42}"#
        );
        let e = serde_json::from_str::<AppKeyRequest>(r#"{"min_policy_block":-1}"#).unwrap_err();
        assert!(e.to_string().contains("invalid value"), "{e}");
        let r: OnboardRequest = serde_json::from_str(r#"{"key_generation":2}"#).unwrap();
        assert_eq!(r.key_generation, Some(2));
        assert_eq!(
            serde_json::to_string(&OnboardRequest::default()).unwrap(),
            "{}"
        );
    }

    #[test]
    fn app_key_response_round_trips_and_debug_redacts() {
        let r = app_key_response();
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(&format!("\"app_key\":\"0x{}\"", "01".repeat(32))));
        let back: AppKeyResponse = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        let dbg = format!("{r:?}");
        assert!(!dbg.contains(&"01".repeat(32)), "{dbg}");
        assert!(!dbg.contains(&"03".repeat(32)), "{dbg}");
        assert!(!dbg.contains(&"04".repeat(32)), "{dbg}");
    }

    #[test]
    fn requests_reject_unknown_fields() {
        assert!(serde_json::from_str::<AppKeyRequest>("{}").is_ok());
        let e = serde_json::from_str::<AppKeyRequest>(r#"{"app_id":"0x00"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = serde_json::from_str::<SignCertRequest>(r#"{"csr":"0x00","x":1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        // the validity fields are optional and only serialized when set
        let r: SignCertRequest =
            serde_json::from_str(r#"{"csr":"0x00","not_after":1700000000}"#).unwrap();
        assert_eq!((r.not_before, r.not_after), (None, Some(1_700_000_000)));
        let plain = SignCertRequest {
            csr: vec![0],
            not_before: None,
            not_after: None,
        };
        assert_eq!(serde_json::to_string(&plain).unwrap(), r#"{"csr":"0x00"}"#);
    }

    #[test]
    fn oversized_csr_is_rejected_while_parsing() {
        let body = format!(r#"{{"csr":"0x{}"}}"#, "00".repeat(MAX_CSR_LEN + 1));
        let e = serde_json::from_str::<SignCertRequest>(&body).unwrap_err();
        assert!(e.to_string().contains("exceed the limit"), "{e}");
        let body = format!(r#"{{"csr":"0x{}"}}"#, "00".repeat(MAX_CSR_LEN));
        assert_eq!(
            serde_json::from_str::<SignCertRequest>(&body)
                .unwrap()
                .csr
                .len(),
            MAX_CSR_LEN
        );
    }

    #[test]
    fn chain_length_and_error_sizes_are_capped() {
        let nine = ["\"x\""; MAX_CHAIN_LEN + 1].join(",");
        let e = serde_json::from_str::<SignCertResponse>(&format!(
            r#"{{"certificate_chain":[{nine}]}}"#
        ))
        .unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
        let long = "a".repeat(MAX_ERROR_MESSAGE_LEN + 1);
        let e = serde_json::from_str::<ErrorBody>(&format!(
            r#"{{"error":{{"code":"x","message":"{long}"}}}}"#
        ))
        .unwrap_err();
        assert!(e.to_string().contains("exceeds the limit"), "{e}");
    }

    #[test]
    fn error_body_has_the_documented_shape() {
        let e = ErrorBody::new("denied.compose_hash", "compose hash not allowed");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"error":{"code":"denied.compose_hash","message":"compose hash not allowed"}}"#
        );
    }

    #[test]
    fn env_pubkey_response_verifies_signature_and_freshness() {
        let root = k256::ecdsa::SigningKey::from_bytes((&[7u8; 32]).into()).unwrap();
        let app_id = [0x11; 20];
        let public_key = [0x22; 32];
        let timestamp = 1_700_000_000;
        let signature = sig::sign_recoverable(
            &root,
            &sig::env_pubkey_message(&app_id, timestamp, &public_key),
        )
        .unwrap();
        let r = EnvPubkeyResponse {
            public_key,
            timestamp,
            signature,
        };
        let vk = root.verifying_key();
        assert_eq!(r.verify(&app_id, vk, timestamp + 60, 3600), Ok(public_key));
        assert_eq!(
            r.verify(&app_id, vk, timestamp + 3601, 3600),
            Err(Error::StaleTimestamp {
                timestamp,
                now: timestamp + 3601,
                max_age: 3600
            })
        );
        assert_eq!(
            r.verify(&app_id, vk, timestamp - 301, 3600),
            Err(Error::FutureTimestamp {
                timestamp,
                now: timestamp - 301
            })
        );
        // for another app, or under another root, the signature does not hold
        assert_eq!(
            r.verify(&[0x12; 20], vk, timestamp, 3600),
            Err(Error::WrongSigner)
        );
        let other = k256::ecdsa::SigningKey::from_bytes((&[8u8; 32]).into()).unwrap();
        assert_eq!(
            r.verify(&app_id, other.verifying_key(), timestamp, 3600),
            Err(Error::WrongSigner)
        );
        // a substituted public key (attacker's) is caught
        let swapped = EnvPubkeyResponse {
            public_key: [0x33; 32],
            ..r
        };
        assert_eq!(
            swapped.verify(&app_id, vk, timestamp, 3600),
            Err(Error::WrongSigner)
        );
    }

    proptest::proptest! {
        #[test]
        fn random_json_never_panics_the_parsers(s in "\\PC{0,256}") {
            let _ = serde_json::from_str::<AppKeyResponse>(&s);
            let _ = serde_json::from_str::<SignCertRequest>(&s);
            let _ = serde_json::from_str::<MetaResponse>(&s);
            let _ = serde_json::from_str::<ErrorBody>(&s);
        }

        #[test]
        fn random_hex_fields_never_panic(s in "(0x)?[0-9a-fA-Fg-z]{0,80}") {
            let body = format!(r#"{{"public_key":"{s}","timestamp":1,"signature":"{s}"}}"#);
            let _ = serde_json::from_str::<EnvPubkeyResponse>(&body);
            let _ = crate::hex0x::decode_capped(&s, 16);
            let _ = crate::hex0x::decode_fixed::<20>(&s);
        }
    }

    #[test]
    fn env_pubkey_and_meta_round_trip() {
        let r = EnvPubkeyResponse {
            public_key: [1; 32],
            timestamp: 1_700_000_000,
            signature: [2; 65],
        };
        let back: EnvPubkeyResponse =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let m = MetaResponse {
            chain_id: 31337,
            kms_auth: [1; 20],
            root_k256_public_key: [2; 33],
            root_ca_cert: "pem".into(),
            node_address: [3; 20],
            key_generation: 0,
            os_image_manifest: "{}".into(),
        };
        let back: MetaResponse = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}
