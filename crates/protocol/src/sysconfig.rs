//! The host share's other files: `sys-config.json` (where the KMS and gateways are) and
//! `.instance-info` (app id and instance-id seed), dstack-compatible field names.
//!
//! Both come from the untrusted host. Nothing in them is trusted: the KMS is
//! authenticated by its RA-TLS evidence (and the compose's `key_provider_id` pin), the
//! app id and instance id are *measured* into RTMR3 so the KMS and the chain judge them.
//! Hex fields take lowercase or uppercase digits with an optional `0x`.

use serde::{Deserialize, Serialize};

/// Largest `sys-config.json`, in bytes.
pub const MAX_SYS_CONFIG_LEN: usize = 64 * 1024;
/// Largest `.instance-info`, in bytes.
pub const MAX_INSTANCE_INFO_LEN: usize = 4 * 1024;
/// Most URLs in one list.
pub const MAX_URLS: usize = 16;
/// Longest URL.
pub const MAX_URL_LEN: usize = 2048;
/// Most entries of `port_map`.
pub const MAX_PORT_MAP: usize = 32;
/// Longest `host_api_url`.
pub const MAX_HOST_API_URL_LEN: usize = 4096;
/// Longest instance-id seed, in bytes.
pub const MAX_INSTANCE_ID_SEED_LEN: usize = 64;

/// Why a share file other than the compose is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShareFileError {
    /// Larger than its limit.
    #[error("{file} of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Which file.
        file: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON of the documented shape.
    #[error("{file} is malformed: {reason}")]
    Json {
        /// Which file.
        file: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// A URL list is too long, a URL too long or not `https://` / `http://`.
    #[error("{field}: {reason}")]
    BadUrl {
        /// Which list.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A hex field is not hex, or has the wrong length.
    #[error("field {0} is not valid hex of the right length")]
    BadHex(&'static str),
}

/// A port of the app and the host port it is reachable at (`sys-config.json` `port_map`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppPort {
    /// The port the app was written for.
    pub guest_port: u16,
    /// The host port mapped to it.
    pub host_port: u16,
}

impl AppPort {
    /// The variable the guest exports for this mapping: `CAIRN_PORT_<guest_port>`.
    pub fn env_name(&self) -> String {
        format!("CAIRN_PORT_{}", self.guest_port)
    }
}

/// `sys-config.json`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SysConfig {
    /// KMS base URLs, tried in order (`https://host:port`).
    #[serde(default)]
    pub kms_urls: Vec<String>,
    /// Gateway base URLs.
    #[serde(default)]
    pub gateway_urls: Vec<String>,
    /// A PCCS for collateral (dstack field; optional).
    pub pccs_url: Option<String>,
    /// dstack's docker registry mirror (accepted, ignored).
    pub docker_registry: Option<String>,
    /// Where the guest reports boot progress to the host (the VMM's per-CVM host API,
    /// [`crate::hostapi`]): `unix:/path/to/host-api.sock`. Other schemes (dstack's
    /// `vsock://`) are accepted and not used.
    pub host_api_url: Option<String>,
    /// Host ports the VMM mapped to the app's ports (process backend: the app shares the
    /// host's loopback, so it must listen on `host_port`; the guest exports each pair to
    /// the app as `CAIRN_PORT_<guest_port>=<host_port>`, and tells every gateway it
    /// registers with where each app port is reachable). At most [`MAX_PORT_MAP`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_map: Vec<AppPort>,
    /// The VM configuration as a JSON string (returned by the agent as `vm_config`).
    #[serde(default)]
    pub vm_config: String,
    /// Cairn's own: where the guest reads KmsAuth to check its KMS's measurements
    /// (`isKmsAllowed`) before trusting it. Optional; without it the guest relies on its
    /// KMS pin alone (docs/guest.md "Which KMS a guest trusts").
    pub chain: Option<ChainSection>,
}

/// `sys-config.json`'s `chain` section: an RPC endpoint and the KmsAuth contract.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSection {
    /// JSON-RPC endpoint (`https://`, or `http://` for a local development chain).
    pub rpc_url: String,
    /// The chain id the endpoint must report.
    pub chain_id: u64,
    /// The KmsAuth contract address, hex (20 bytes, optional `0x`).
    pub kms_auth: String,
    /// Policy is read this many blocks behind head ([`DEFAULT_CONFIRMATIONS`] if absent).
    pub confirmations: Option<u64>,
    /// Cairn's own: the block the VMM's pre-flight allowed this launch at, sent as
    /// [`AppKeyRequest::min_policy_block`](crate::api::AppKeyRequest::min_policy_block)
    /// (a lagging KMS waits for it; it can only delay the guest's own request).
    pub min_policy_block: Option<u64>,
}

/// Confirmations of a `chain` section that does not say.
pub const DEFAULT_CONFIRMATIONS: u64 = 2;

impl ChainSection {
    /// The KmsAuth address.
    pub fn kms_auth(&self) -> Result<[u8; 20], ShareFileError> {
        let bytes = decode_hex(&self.kms_auth, "chain.kms_auth", 20)?;
        <[u8; 20]>::try_from(bytes.as_slice()).map_err(|_| ShareFileError::BadHex("chain.kms_auth"))
    }

    /// The confirmations to read policy at.
    pub fn confirmations(&self) -> u64 {
        self.confirmations.unwrap_or(DEFAULT_CONFIRMATIONS)
    }
}

/// The shared-disk file `file` parsed, size first.
fn share_file<T: serde::de::DeserializeOwned>(
    file: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<T, ShareFileError> {
    crate::bounded::json(
        bytes,
        max,
        |len, max| ShareFileError::TooLarge { file, len, max },
        |reason| ShareFileError::Json { file, reason },
    )
}

impl SysConfig {
    /// Parse and validate (size first).
    pub fn parse(bytes: &[u8]) -> Result<Self, ShareFileError> {
        const FILE: &str = "sys-config.json";
        let c: SysConfig = share_file(FILE, bytes, MAX_SYS_CONFIG_LEN)?;
        check_urls(&c.kms_urls, "kms_urls")?;
        check_urls(&c.gateway_urls, "gateway_urls")?;
        if let Some(p) = &c.pccs_url {
            check_urls(std::slice::from_ref(p), "pccs_url")?;
        }
        if c.port_map.len() > MAX_PORT_MAP {
            return Err(ShareFileError::Json {
                file: FILE,
                reason: format!(
                    "port_map has {} entries, more than {MAX_PORT_MAP}",
                    c.port_map.len()
                ),
            });
        }
        if c.host_api_url
            .as_ref()
            .is_some_and(|u| u.len() > MAX_HOST_API_URL_LEN)
        {
            return Err(ShareFileError::BadUrl {
                field: "host_api_url",
                reason: format!("longer than {MAX_HOST_API_URL_LEN} bytes"),
            });
        }
        if let Some(chain) = &c.chain {
            check_urls(std::slice::from_ref(&chain.rpc_url), "chain.rpc_url")?;
            chain.kms_auth()?;
        }
        Ok(c)
    }
}

/// Check a URL list: at most [`MAX_URLS`] entries of at most [`MAX_URL_LEN`] bytes, each
/// `https://` or `http://`. `field` names the list in the error.
pub fn check_urls(urls: &[String], field: &'static str) -> Result<(), ShareFileError> {
    if urls.len() > MAX_URLS {
        return Err(ShareFileError::BadUrl {
            field,
            reason: format!("{} entries, more than {MAX_URLS}", urls.len()),
        });
    }
    for u in urls {
        if u.len() > MAX_URL_LEN {
            return Err(ShareFileError::BadUrl {
                field,
                reason: format!("URL of {} bytes, more than {MAX_URL_LEN}", u.len()),
            });
        }
        if !(u.starts_with("https://") || u.starts_with("http://")) {
            return Err(ShareFileError::BadUrl {
                field,
                reason: format!(
                    "{:?} is not an http(s) URL",
                    u.chars().take(64).collect::<String>()
                ),
            });
        }
    }
    Ok(())
}

/// `.instance-info`: `{"instance_id_seed":"<hex>","app_id":"<hex 20 B>"}` (both optional).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// Seed of the instance id (SHA-256(seed ‖ app_id)[0..20]); hex.
    #[serde(default)]
    pub instance_id_seed: String,
    /// The app id (the AppAuth contract address); hex of 20 bytes, or empty for
    /// `compose_hash[0..20]`.
    #[serde(default)]
    pub app_id: String,
    /// dstack writes the derived instance id back here (accepted, not trusted).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance_id: String,
}

redacted_debug!(InstanceInfo {
    app_id,
    instance_id,
    ..
});

fn decode_hex(s: &str, field: &'static str, max: usize) -> Result<Vec<u8>, ShareFileError> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    if digits.len() / 2 > max {
        return Err(ShareFileError::BadHex(field));
    }
    hex::decode(digits).map_err(|_| ShareFileError::BadHex(field))
}

impl InstanceInfo {
    /// Parse (size first); hex fields are checked by the accessors.
    pub fn parse(bytes: &[u8]) -> Result<Self, ShareFileError> {
        let info: InstanceInfo = share_file(".instance-info", bytes, MAX_INSTANCE_INFO_LEN)?;
        info.seed()?;
        info.app_id()?;
        Ok(info)
    }

    /// The seed bytes (empty when absent).
    pub fn seed(&self) -> Result<Vec<u8>, ShareFileError> {
        decode_hex(
            &self.instance_id_seed,
            "instance_id_seed",
            MAX_INSTANCE_ID_SEED_LEN,
        )
    }

    /// The app id, if set.
    pub fn app_id(&self) -> Result<Option<[u8; 20]>, ShareFileError> {
        let bytes = decode_hex(&self.app_id, "app_id", 20)?;
        if bytes.is_empty() {
            return Ok(None);
        }
        <[u8; 20]>::try_from(bytes.as_slice())
            .map(Some)
            .map_err(|_| ShareFileError::BadHex("app_id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_config_parses_and_rejects_non_http_urls() {
        let c = SysConfig::parse(
            br#"{"kms_urls":["https://kms:8000"],"gateway_urls":[],"vm_config":"{}"}"#,
        )
        .unwrap();
        assert_eq!(c.kms_urls, vec!["https://kms:8000"]);
        let e = SysConfig::parse(br#"{"kms_urls":["file:///etc/passwd"]}"#).unwrap_err();
        assert!(
            matches!(
                e,
                ShareFileError::BadUrl {
                    field: "kms_urls",
                    ..
                }
            ),
            "{e}"
        );
        let e = SysConfig::parse(br#"{"kms_url":[]}"#).unwrap_err();
        assert!(matches!(e, ShareFileError::Json { .. }), "{e}");
        let big = vec![b' '; MAX_SYS_CONFIG_LEN + 1];
        assert!(matches!(
            SysConfig::parse(&big).unwrap_err(),
            ShareFileError::TooLarge { .. }
        ));
    }

    #[test]
    fn port_map_is_bounded_and_named_for_the_app() {
        let c = SysConfig::parse(
            br#"{"kms_urls":[],"port_map":[{"guest_port":8080,"host_port":20001}]}"#,
        )
        .unwrap();
        assert_eq!(c.port_map[0].env_name(), "CAIRN_PORT_8080");
        let many = serde_json::to_vec(&serde_json::json!({
            "port_map": vec![serde_json::json!({"guest_port": 1, "host_port": 2}); MAX_PORT_MAP + 1]
        }))
        .unwrap();
        assert!(matches!(
            SysConfig::parse(&many).unwrap_err(),
            ShareFileError::Json { .. }
        ));
    }

    #[test]
    fn the_chain_section_is_optional_and_checked() {
        assert_eq!(SysConfig::parse(b"{}").unwrap().chain, None);
        let c = SysConfig::parse(
            format!(
                r#"{{"chain":{{"rpc_url":"https://rpc.example","chain_id":1,"kms_auth":"0x{}"}}}}"#,
                "ab".repeat(20)
            )
            .as_bytes(),
        )
        .unwrap();
        let chain = c.chain.unwrap();
        assert_eq!(chain.kms_auth().unwrap(), [0xab; 20]);
        assert_eq!(chain.confirmations(), DEFAULT_CONFIRMATIONS);
        assert_eq!(chain.min_policy_block, None);
        // absent, it is not written (a dstack-shaped file stays as it was)
        assert!(!serde_json::to_string(&chain)
            .unwrap()
            .contains("min_policy_block"));
        let with_block = SysConfig::parse(
            format!(
                r#"{{"chain":{{"rpc_url":"https://r","chain_id":1,"kms_auth":"0x{}","min_policy_block":77}}}}"#,
                "ab".repeat(20)
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(with_block.chain.unwrap().min_policy_block, Some(77));
        let e = SysConfig::parse(
            br#"{"chain":{"rpc_url":"https://rpc.example","chain_id":1,"kms_auth":"0x12"}}"#,
        )
        .unwrap_err();
        assert_eq!(e, ShareFileError::BadHex("chain.kms_auth"));
        let e =
            SysConfig::parse(br#"{"chain":{"rpc_url":"ws://rpc","chain_id":1,"kms_auth":"0x12"}}"#)
                .unwrap_err();
        assert!(
            matches!(
                e,
                ShareFileError::BadUrl {
                    field: "chain.rpc_url",
                    ..
                }
            ),
            "{e}"
        );
        let e = SysConfig::parse(
            br#"{"chain":{"rpc_url":"https://r","chain_id":1,"kms_auth":"","extra":1}}"#,
        )
        .unwrap_err();
        assert!(matches!(e, ShareFileError::Json { .. }), "{e}");
    }

    #[test]
    fn instance_info_decodes_hex_and_rejects_bad_lengths() {
        let i = InstanceInfo::parse(
            format!(
                r#"{{"instance_id_seed":"0102","app_id":"0x{}"}}"#,
                "11".repeat(20)
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(i.seed().unwrap(), vec![1, 2]);
        assert_eq!(i.app_id().unwrap(), Some([0x11; 20]));
        assert!(!format!("{i:?}").contains("0102"));
        let e = InstanceInfo::parse(br#"{"app_id":"1111"}"#).unwrap_err();
        assert_eq!(e, ShareFileError::BadHex("app_id"));
        let e = InstanceInfo::parse(br#"{"instance_id_seed":"xx"}"#).unwrap_err();
        assert_eq!(e, ShareFileError::BadHex("instance_id_seed"));
        assert_eq!(InstanceInfo::parse(b"{}").unwrap().app_id().unwrap(), None);
    }
}
