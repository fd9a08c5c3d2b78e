//! Client configuration.

use std::time::Duration;

use alloy::primitives::Address;
use serde::{Deserialize, Serialize};
use url::Url;

/// Default number of blocks policy reads stay behind the head.
pub const DEFAULT_CONFIRMATIONS: u64 = 2;
/// Default timeout of one RPC call (and of each phase of a transaction).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of verdicts the cache keeps.
pub const DEFAULT_VERDICT_CACHE_ENTRIES: usize = 4096;

/// Where and how to read Cairn's on-chain policy.
///
/// Holds no secret: the optional transaction signer is passed separately to
/// [`ChainClient::connect`](crate::ChainClient::connect).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// JSON-RPC endpoint (http only for now).
    pub rpc_url: Url,
    /// The chain id the endpoint must report; anything else is
    /// [`Error::ChainIdMismatch`](crate::Error::ChainIdMismatch).
    pub chain_id: u64,
    /// The KmsAuth proxy address.
    pub kms_auth: Address,
    /// Policy reads happen at `head − confirmations` (saturating at genesis).
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
    /// Timeout of every RPC call, in milliseconds in serialized form.
    #[serde(
        rename = "call_timeout_ms",
        with = "duration_ms",
        default = "default_call_timeout"
    )]
    pub call_timeout: Duration,
    /// Capacity of the verdict cache (0 disables caching).
    #[serde(default = "default_cache_entries")]
    pub verdict_cache_entries: usize,
}

impl ChainConfig {
    /// A config with the default confirmations, timeout and cache size.
    pub fn new(rpc_url: Url, chain_id: u64, kms_auth: Address) -> Self {
        Self {
            rpc_url,
            chain_id,
            kms_auth,
            confirmations: DEFAULT_CONFIRMATIONS,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            verdict_cache_entries: DEFAULT_VERDICT_CACHE_ENTRIES,
        }
    }

    /// Sets the number of confirmations.
    pub fn with_confirmations(mut self, confirmations: u64) -> Self {
        self.confirmations = confirmations;
        self
    }

    /// Sets the per-call timeout.
    pub fn with_call_timeout(mut self, call_timeout: Duration) -> Self {
        self.call_timeout = call_timeout;
        self
    }

    /// Sets the verdict cache capacity.
    pub fn with_verdict_cache_entries(mut self, entries: usize) -> Self {
        self.verdict_cache_entries = entries;
        self
    }
}

fn default_confirmations() -> u64 {
    DEFAULT_CONFIRMATIONS
}

fn default_call_timeout() -> Duration {
    DEFAULT_CALL_TIMEOUT
}

fn default_cache_entries() -> usize {
    DEFAULT_VERDICT_CACHE_ENTRIES
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = u64::deserialize(d)?;
        if ms == 0 {
            return Err(serde::de::Error::custom("call_timeout_ms must be positive"));
        }
        Ok(Duration::from_millis(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_rejects_unknown_fields() {
        let json = r#"{"rpc_url":"http://127.0.0.1:8545/","chain_id":31337,
            "kms_auth":"0x5fbdb2315678afecb367f032d93f642f64180aa3","call_timeout_ms":1500}"#;
        let cfg: ChainConfig = serde_json::from_str(json).unwrap();
        assert_eq!(cfg.call_timeout, Duration::from_millis(1500));
        assert_eq!(cfg.confirmations, DEFAULT_CONFIRMATIONS);
        let back: ChainConfig =
            serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);

        let bad = json.replace("\"chain_id\"", "\"chainid\"");
        let err = serde_json::from_str::<ChainConfig>(&bad).unwrap_err();
        assert!(err.to_string().contains("chainid"), "{err}");
    }

    #[test]
    fn zero_timeout_is_rejected() {
        let json = r#"{"rpc_url":"http://127.0.0.1:8545/","chain_id":1,
            "kms_auth":"0x5fbdb2315678afecb367f032d93f642f64180aa3","call_timeout_ms":0}"#;
        let err = serde_json::from_str::<ChainConfig>(json).unwrap_err();
        assert!(err.to_string().contains("positive"), "{err}");
    }
}
