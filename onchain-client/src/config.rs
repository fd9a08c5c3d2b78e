//! Client configuration: the RPC endpoints, their quorum, and the bounds every read obeys.

use std::time::Duration;

use alloy::primitives::Address;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};

/// Default number of blocks policy reads stay behind the head.
pub const DEFAULT_CONFIRMATIONS: u64 = 2;
/// Default timeout of one RPC call (and of each phase of a transaction).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of cached reads (verdicts, root keys, node registrations, …).
pub const DEFAULT_VERDICT_CACHE_ENTRIES: usize = 4096;
/// Default quorum: every read must be answered the same by this many endpoints.
pub const DEFAULT_QUORUM: usize = 1;
/// Default bound on the age of the chain head (by its block timestamp). A head older
/// than this is [`Error::StaleHead`]: a stuck or lagging RPC cannot freeze policy at an
/// old block. Two minutes are ten Ethereum mainnet slots; chains with slower blocks, or
/// a devnet that only mines on demand, must raise it (docs/onchain-client.md).
pub const DEFAULT_MAX_HEAD_AGE: Duration = Duration::from_secs(120);
/// Default interval at which a [`PolicyHead`](crate::PolicyHead) advances the pinned block.
pub const DEFAULT_HEAD_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Most RPC endpoints one client accepts (each read fans out to all of them).
pub const MAX_RPC_URLS: usize = 16;

/// Where and how to read Cairn's on-chain policy.
///
/// Holds no secret: the optional transaction signer is passed separately to
/// [`ChainClient::connect`](crate::ChainClient::connect). RPC URLs can carry API keys in
/// their path; they are never logged whole ([`endpoint_label`]).
///
/// Serialized form (serde, unknown fields rejected): `rpc_urls` (or one `rpc_url`),
/// `quorum`, `allow_insecure_rpc`, `chain_id`, `kms_auth`, `confirmations`,
/// `call_timeout_ms`, `verdict_cache_entries`, `max_head_age_secs`,
/// `head_poll_interval_ms`. Extra TLS roots are set in code ([`ChainConfig::with_extra_root`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Repr", into = "Repr")]
pub struct ChainConfig {
    /// JSON-RPC endpoints, in order of preference for transactions. Non-loopback URLs
    /// must be `https://` unless [`ChainConfig::allow_insecure_rpc`].
    pub rpc_urls: Vec<Url>,
    /// How many endpoints must give the same answer (block hash, verdict, key, …) before
    /// it is used; `1 ≤ quorum ≤ rpc_urls.len()`.
    pub quorum: usize,
    /// Accept plain-HTTP RPC to non-loopback hosts. Dangerous: whoever is on the network
    /// path answers `isAppAllowed`.
    pub allow_insecure_rpc: bool,
    /// TLS roots trusted for `https://` endpoints in addition to the system's.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// The chain id every endpoint must report; anything else is
    /// [`Error::ChainIdMismatch`](crate::Error::ChainIdMismatch).
    pub chain_id: u64,
    /// The KmsAuth proxy address.
    pub kms_auth: Address,
    /// Policy reads happen at `head − confirmations` (saturating at genesis).
    pub confirmations: u64,
    /// Timeout of every RPC call.
    pub call_timeout: Duration,
    /// Capacity of the read cache (0 disables caching).
    pub verdict_cache_entries: usize,
    /// A head whose block timestamp is older than this is refused ([`Error::StaleHead`]).
    pub max_head_age: Duration,
    /// How often a [`PolicyHead`](crate::PolicyHead) advances the pinned block.
    pub head_poll_interval: Duration,
}

impl ChainConfig {
    /// A config with one endpoint (quorum 1) and the default confirmations, timeout,
    /// cache size, head age bound and poll interval.
    pub fn new(rpc_url: Url, chain_id: u64, kms_auth: Address) -> Self {
        Self {
            rpc_urls: vec![rpc_url],
            quorum: DEFAULT_QUORUM,
            allow_insecure_rpc: false,
            extra_roots: Vec::new(),
            chain_id,
            kms_auth,
            confirmations: DEFAULT_CONFIRMATIONS,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            verdict_cache_entries: DEFAULT_VERDICT_CACHE_ENTRIES,
            max_head_age: DEFAULT_MAX_HEAD_AGE,
            head_poll_interval: DEFAULT_HEAD_POLL_INTERVAL,
        }
    }

    /// Sets the endpoints and the quorum (checked on connect, [`ChainConfig::validate`]).
    pub fn with_rpc_urls(mut self, rpc_urls: Vec<Url>, quorum: usize) -> Self {
        self.rpc_urls = rpc_urls;
        self.quorum = quorum;
        self
    }

    setters! {
        /// Allows plain-HTTP RPC to non-loopback hosts (see
        /// [`ChainConfig::allow_insecure_rpc`]).
        fn with_allow_insecure_rpc(allow_insecure_rpc: bool);
        /// Sets the number of confirmations.
        fn with_confirmations(confirmations: u64);
        /// Sets the per-call timeout.
        fn with_call_timeout(call_timeout: Duration);
        /// Sets the read cache capacity.
        fn with_verdict_cache_entries(verdict_cache_entries: usize);
        /// Sets the bound on the head's age.
        fn with_max_head_age(max_head_age: Duration);
        /// Sets how often a [`PolicyHead`](crate::PolicyHead) advances.
        fn with_head_poll_interval(head_poll_interval: Duration);
    }

    /// Trusts `root` (DER) for `https://` endpoints, in addition to the system roots.
    pub fn with_extra_root(mut self, root: CertificateDer<'static>) -> Self {
        self.extra_roots.push(root);
        self
    }

    /// The RPC options every endpoint connection uses.
    pub fn transport(&self) -> RpcTransport {
        RpcTransport {
            call_timeout: self.call_timeout,
            allow_insecure_rpc: self.allow_insecure_rpc,
            extra_roots: self.extra_roots.clone(),
        }
    }

    /// Checks everything that can be checked without the network: at least one and at
    /// most [`MAX_RPC_URLS`] distinct endpoints, `1 ≤ quorum ≤ endpoints`, every URL
    /// allowed by [`check_rpc_url`], positive timeout, head age bound and poll interval.
    pub fn validate(&self) -> Result<()> {
        let n = self.rpc_urls.len();
        if n == 0 || n > MAX_RPC_URLS {
            return Err(Error::misconfigured(format!(
                "rpc_urls must list 1 to {MAX_RPC_URLS} endpoints, not {n}"
            )));
        }
        if self.quorum == 0 || self.quorum > n {
            return Err(Error::misconfigured(format!(
                "quorum {} must be between 1 and the number of rpc_urls ({n})",
                self.quorum
            )));
        }
        for (i, url) in self.rpc_urls.iter().enumerate() {
            if self.rpc_urls[..i].contains(url) {
                return Err(Error::misconfigured(format!(
                    "rpc_urls lists {} twice: a quorum needs distinct endpoints",
                    endpoint_label(url)
                )));
            }
            check_rpc_url(url, self.allow_insecure_rpc)?;
        }
        if self.call_timeout.is_zero() {
            return Err(Error::misconfigured("call timeout must be positive"));
        }
        if self.max_head_age.is_zero() {
            return Err(Error::misconfigured("max_head_age must be positive"));
        }
        if self.head_poll_interval.is_zero() {
            return Err(Error::misconfigured("head_poll_interval must be positive"));
        }
        Ok(())
    }
}

/// How one endpoint connection is made: the per-call timeout, whether plain HTTP to a
/// non-loopback host is accepted, and extra TLS roots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcTransport {
    /// Timeout of every RPC call.
    pub call_timeout: Duration,
    /// Accept `http://` to non-loopback hosts (see [`check_rpc_url`]).
    pub allow_insecure_rpc: bool,
    /// TLS roots trusted in addition to the system's.
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl RpcTransport {
    /// TLS required off loopback, system roots only, `call_timeout` per call.
    pub fn new(call_timeout: Duration) -> Self {
        Self {
            call_timeout,
            allow_insecure_rpc: false,
            extra_roots: Vec::new(),
        }
    }
}

/// Whether `url`'s host is a loopback address (`127.0.0.0/8`, `::1`) or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// An RPC URL is acceptable: `https://`, or `http://` to a loopback host, or `http://`
/// anywhere when `allow_insecure` is set. Otherwise [`Error::InsecureRpc`] (a plain-HTTP
/// endpoint is answered by whoever controls the network path, e.g. the CVM's host) or
/// [`Error::Misconfigured`] for another scheme.
pub fn check_rpc_url(url: &Url, allow_insecure: bool) -> Result<()> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure || is_loopback(url) => Ok(()),
        "http" => Err(Error::InsecureRpc {
            endpoint: endpoint_label(url),
        }),
        other => Err(Error::misconfigured(format!(
            "unsupported RPC URL scheme {other:?} (expected https, or http on loopback)"
        ))),
    }
}

/// How an endpoint is named in errors, logs and metrics: `scheme://host:port` only. The
/// path, query and user info are dropped because providers put API keys there.
pub fn endpoint_label(url: &Url) -> String {
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
        Some(h) => h.to_string(),
        None => String::new(),
    };
    match url.port_or_known_default() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// The serialized form: `rpc_url` (one endpoint, kept for existing configs) or
/// `rpc_urls`; durations in their unit.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Repr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rpc_url: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rpc_urls: Option<Vec<Url>>,
    #[serde(default = "default_quorum")]
    quorum: usize,
    #[serde(default)]
    allow_insecure_rpc: bool,
    chain_id: u64,
    kms_auth: Address,
    #[serde(default = "default_confirmations")]
    confirmations: u64,
    #[serde(default = "default_call_timeout_ms")]
    call_timeout_ms: u64,
    #[serde(default = "default_cache_entries")]
    verdict_cache_entries: usize,
    #[serde(default = "default_max_head_age_secs")]
    max_head_age_secs: u64,
    #[serde(default = "default_head_poll_interval_ms")]
    head_poll_interval_ms: u64,
}

fn default_quorum() -> usize {
    DEFAULT_QUORUM
}
fn default_confirmations() -> u64 {
    DEFAULT_CONFIRMATIONS
}
fn default_call_timeout_ms() -> u64 {
    millis(DEFAULT_CALL_TIMEOUT)
}
fn default_cache_entries() -> usize {
    DEFAULT_VERDICT_CACHE_ENTRIES
}
fn default_max_head_age_secs() -> u64 {
    DEFAULT_MAX_HEAD_AGE.as_secs()
}
fn default_head_poll_interval_ms() -> u64 {
    millis(DEFAULT_HEAD_POLL_INTERVAL)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl TryFrom<Repr> for ChainConfig {
    type Error = String;

    fn try_from(r: Repr) -> std::result::Result<Self, String> {
        let rpc_urls = match (r.rpc_url, r.rpc_urls) {
            (Some(one), None) => vec![one],
            (None, Some(many)) => many,
            (Some(_), Some(_)) => return Err("set rpc_url or rpc_urls, not both".into()),
            (None, None) => return Err("missing field `rpc_urls` (or `rpc_url`)".into()),
        };
        if r.call_timeout_ms == 0 {
            return Err("call_timeout_ms must be positive".into());
        }
        if r.max_head_age_secs == 0 {
            return Err("max_head_age_secs must be positive".into());
        }
        if r.head_poll_interval_ms == 0 {
            return Err("head_poll_interval_ms must be positive".into());
        }
        Ok(ChainConfig {
            rpc_urls,
            quorum: r.quorum,
            allow_insecure_rpc: r.allow_insecure_rpc,
            extra_roots: Vec::new(),
            chain_id: r.chain_id,
            kms_auth: r.kms_auth,
            confirmations: r.confirmations,
            call_timeout: Duration::from_millis(r.call_timeout_ms),
            verdict_cache_entries: r.verdict_cache_entries,
            max_head_age: Duration::from_secs(r.max_head_age_secs),
            head_poll_interval: Duration::from_millis(r.head_poll_interval_ms),
        })
    }
}

impl From<ChainConfig> for Repr {
    fn from(c: ChainConfig) -> Self {
        Repr {
            rpc_url: None,
            rpc_urls: Some(c.rpc_urls),
            quorum: c.quorum,
            allow_insecure_rpc: c.allow_insecure_rpc,
            chain_id: c.chain_id,
            kms_auth: c.kms_auth,
            confirmations: c.confirmations,
            call_timeout_ms: millis(c.call_timeout),
            verdict_cache_entries: c.verdict_cache_entries,
            max_head_age_secs: c.max_head_age.as_secs(),
            head_poll_interval_ms: millis(c.head_poll_interval),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KMS_AUTH: &str = "0x5fbdb2315678afecb367f032d93f642f64180aa3";

    fn url(s: &str) -> Url {
        s.parse().unwrap()
    }

    #[test]
    fn config_round_trips_and_rejects_unknown_fields() {
        let json = r#"{"rpc_url":"http://127.0.0.1:8545/","chain_id":31337,
            "kms_auth":"0x5fbdb2315678afecb367f032d93f642f64180aa3","call_timeout_ms":1500}"#;
        let cfg: ChainConfig = serde_json::from_str(json).unwrap();
        assert_eq!(cfg.call_timeout, Duration::from_millis(1500));
        assert_eq!(cfg.confirmations, DEFAULT_CONFIRMATIONS);
        assert_eq!(cfg.rpc_urls, vec![url("http://127.0.0.1:8545/")]);
        assert_eq!(cfg.quorum, 1);
        assert!(!cfg.allow_insecure_rpc);
        assert_eq!(cfg.max_head_age, DEFAULT_MAX_HEAD_AGE);
        let back: ChainConfig =
            serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);

        let bad = json.replace("\"chain_id\"", "\"chainid\"");
        let err = serde_json::from_str::<ChainConfig>(&bad).unwrap_err();
        assert!(err.to_string().contains("chainid"), "{err}");
    }

    #[test]
    fn several_urls_and_a_quorum_deserialize_and_one_url_and_a_list_together_do_not() {
        let json = format!(
            r#"{{"rpc_urls":["https://a.example/","https://b.example/"],"quorum":2,
            "chain_id":1,"kms_auth":"{KMS_AUTH}","max_head_age_secs":30}}"#
        );
        let cfg: ChainConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(cfg.rpc_urls.len(), 2);
        assert_eq!(cfg.quorum, 2);
        assert_eq!(cfg.max_head_age, Duration::from_secs(30));
        cfg.validate().unwrap();

        let both = format!(
            r#"{{"rpc_url":"https://a.example/","rpc_urls":["https://b.example/"],
            "chain_id":1,"kms_auth":"{KMS_AUTH}"}}"#
        );
        let err = serde_json::from_str::<ChainConfig>(&both).unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
        let none = format!(r#"{{"chain_id":1,"kms_auth":"{KMS_AUTH}"}}"#);
        let err = serde_json::from_str::<ChainConfig>(&none).unwrap_err();
        assert!(err.to_string().contains("rpc_urls"), "{err}");
    }

    #[test]
    fn zero_timeout_is_rejected() {
        let json = r#"{"rpc_url":"http://127.0.0.1:8545/","chain_id":1,
            "kms_auth":"0x5fbdb2315678afecb367f032d93f642f64180aa3","call_timeout_ms":0}"#;
        let err = serde_json::from_str::<ChainConfig>(json).unwrap_err();
        assert!(err.to_string().contains("positive"), "{err}");
        let json = json.replace(r#""call_timeout_ms":0"#, r#""max_head_age_secs":0"#);
        let err = serde_json::from_str::<ChainConfig>(&json).unwrap_err();
        assert!(err.to_string().contains("max_head_age_secs"), "{err}");
    }

    #[test]
    fn plain_http_to_a_non_loopback_host_is_refused_naming_the_risk() {
        for bad in [
            "http://rpc.internal:8545/",
            "http://10.0.0.7:8545/",
            "http://[2001:db8::1]:8545/",
            "http://localhost.attacker.example/",
        ] {
            let err = check_rpc_url(&url(bad), false).unwrap_err();
            match &err {
                Error::InsecureRpc { endpoint } => assert_eq!(endpoint, &endpoint_label(&url(bad))),
                other => panic!("{bad}: expected InsecureRpc, got {other:?}"),
            }
            let msg = err.to_string();
            assert!(msg.contains("isAppAllowed"), "{msg}");
            assert!(msg.contains("allow_insecure_rpc"), "{msg}");
            assert!(!err.is_retryable());
            // The operator's explicit opt-in accepts it.
            check_rpc_url(&url(bad), true).unwrap();
        }
        for good in [
            "https://rpc.example/v3/key",
            "http://127.0.0.1:8545/",
            "http://127.3.2.1/",
            "http://[::1]:8545/",
            "http://localhost:8545/",
            "http://LOCALHOST/",
        ] {
            check_rpc_url(&url(good), false).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        let err = check_rpc_url(&url("ws://127.0.0.1:8546/"), true).unwrap_err();
        assert!(matches!(err, Error::Misconfigured(_)), "{err:?}");
    }

    #[test]
    fn validate_checks_urls_quorum_and_duplicates() {
        let base = ChainConfig::new(url("https://a.example/"), 1, Address::ZERO);
        base.validate().unwrap();
        let insecure = ChainConfig::new(url("http://rpc.internal/"), 1, Address::ZERO);
        assert!(matches!(
            insecure.validate(),
            Err(Error::InsecureRpc { .. })
        ));
        insecure.with_allow_insecure_rpc(true).validate().unwrap();

        let two = vec![url("https://a.example/"), url("https://b.example/")];
        for (urls, quorum) in [
            (two.clone(), 0),
            (two.clone(), 3),
            (vec![], 1),
            (
                vec![url("https://a.example/"), url("https://a.example/")],
                2,
            ),
        ] {
            let err = base
                .clone()
                .with_rpc_urls(urls.clone(), quorum)
                .validate()
                .unwrap_err();
            assert!(
                matches!(err, Error::Misconfigured(_)),
                "{urls:?} / {quorum}: {err:?}"
            );
        }
        base.clone().with_rpc_urls(two, 2).validate().unwrap();
    }

    #[test]
    fn endpoint_labels_drop_paths_queries_and_credentials() {
        assert_eq!(
            endpoint_label(&url("https://user:pw@mainnet.example/v3/SECRETKEY?x=1")),
            "https://mainnet.example:443"
        );
        assert_eq!(
            endpoint_label(&url("http://127.0.0.1:8545/")),
            "http://127.0.0.1:8545"
        );
        assert_eq!(
            endpoint_label(&url("http://[::1]:8545/")),
            "http://[::1]:8545"
        );
    }
}
