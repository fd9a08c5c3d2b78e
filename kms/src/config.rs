//! The node's configuration: one TOML file, then `CAIRN_KMS_*` environment overrides
//! (e.g. `CAIRN_KMS_CHAIN_RPC_URLS` for `chain.rpc_urls`), then the binary's flags.
//! Every key can be overridden (a test checks it); list-valued keys take comma-separated
//! values (`CAIRN_KMS_CHAIN_RPC_URLS=https://a/,https://b/`,
//! `CAIRN_KMS_ATTESTATION_OS_IMAGES=/a.json,/b.json`,
//! `CAIRN_KMS_TEE_SIMULATOR_OS_IMAGE=cairn-os,1.0`), booleans `true`/`false`. Unknown
//! keys are errors; every error names the key.
//!
//! ```toml
//! listen = "0.0.0.0:8443"
//! data_dir = "/var/lib/cairn-kms"
//!
//! [chain]
//! rpc_urls = ["https://rpc-a.example/v3/KEY", "https://rpc-b.example/"]
//! quorum = 2                 # both must agree on the block hash and every verdict
//! chain_id = 1
//! kms_auth = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
//! confirmations = 2          # policy is read at head − confirmations
//! timeout_ms = 3000          # per RPC call
//! max_head_age_secs = 120    # an older head is refused (503)
//! poll_interval_ms = 1000    # the pinned block advances in the background this often
//! head_wait_ms = 10000       # longest an app-key waits for its min_policy_block (≤ 20000)
//!
//! [attestation]
//! trust = "intel"            # or "simulator" (development only; needs simulator_seed)
//! collateral_file = "/etc/cairn/collateral.json"   # or: pccs_url = "https://pccs…"
//! # pccs_fetches_per_minute = 30  # with pccs_url: sustained collateral fetch rate
//! # pccs_fetch_burst = 10          # with pccs_url: fetches allowed at once
//! os_images = ["/etc/cairn/os-images/cairn-os-1.0.json"]
//!
//! [tee]
//! kind = "tdx"               # or "simulator" (needs attestation.trust = "simulator")
//! event_log = "/run/cairn/event-log.json"         # tdx: this CVM's measured event log
//!
//! [log]
//! origin = "cairn-kms/node-1"   # default: cairn-kms/0x<node address>
//! anchor_interval_secs = 60
//! max_unanchored = 10000     # refuse releases beyond this many unanchored entries
//! max_anchor_age_secs = 600  # … or when the log was last fully anchored longer ago
//!
//! [server]
//! max_connections = 1024
//! max_connections_per_source = 128   # per IPv4 address / IPv6 /64
//! handshake_timeout_ms = 5000
//! body_idle_timeout_ms = 5000        # longest pause inside a request body
//! body_timeout_ms = 10000            # a whole request body
//! write_stall_timeout_ms = 10000     # a response write that makes no progress
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_attestation::ids::{AppId, ComposeHash, InstanceId};
use cairn_attestation::simulator::{OsImage, SimHostConfig, SimPki, SimPkiConfig, SimTdx};
use cairn_attestation::{
    Collateral, EventLog, OsImageManifest, PccsClient, PccsLimits, TdxTee, Tee, Verifier,
};
use cairn_onchain::alloy::primitives::Address;
use cairn_onchain::ChainConfig;
use cairn_service::{ConfigError, EnvKinds};
use rustls_pki_types::CertificateDer;
use serde::Deserialize;

use crate::anchor::AnchorLimits;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::evidence::CollateralSource;
use crate::node::{NodeOptions, DEFAULT_ANCHOR_INTERVAL, DEFAULT_HEAD_WAIT, MAX_HEAD_WAIT};
use crate::server::ServerLimits;

/// Default listen address.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8443);
/// Default policy confirmations.
pub const DEFAULT_CONFIRMATIONS: u64 = 2;
/// Default per-call RPC timeout, milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 3000;
/// Largest PEM file of extra RPC TLS roots read.
pub const MAX_RPC_CA_FILE_LEN: u64 = 256 * 1024;
/// Prefix of the environment overrides.
pub const ENV_PREFIX: &str = "CAIRN_KMS_";
/// Largest config file read.
pub const MAX_CONFIG_LEN: u64 = 1024 * 1024;
/// Largest OS image manifest or event log file read.
pub const MAX_FILE_LEN: u64 = 1024 * 1024;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen address.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Data directory (`secrets/`, `log/`).
    pub data_dir: PathBuf,
    /// Chain settings.
    pub chain: ChainSection,
    /// Attestation settings.
    pub attestation: AttestationSection,
    /// This node's own TEE.
    pub tee: TeeSection,
    /// Log settings.
    #[serde(default)]
    pub log: LogSection,
    /// Connection and request-body limits.
    #[serde(default)]
    pub server: ServerSection,
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
}

/// `[chain]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSection {
    /// One JSON-RPC endpoint (the same as a one-element `rpc_urls`).
    pub rpc_url: Option<url::Url>,
    /// JSON-RPC endpoints; `https://` unless loopback or `allow_insecure_rpc`.
    #[serde(default)]
    pub rpc_urls: Vec<url::Url>,
    /// How many endpoints must agree on each read (default 1).
    #[serde(default = "default_quorum")]
    pub quorum: usize,
    /// Accept plain-HTTP endpoints that are not loopback (dangerous: whoever is on the
    /// network path answers `isAppAllowed`).
    #[serde(default)]
    pub allow_insecure_rpc: bool,
    /// PEM file of TLS roots trusted for the endpoints, besides the system's.
    pub rpc_ca_file: Option<PathBuf>,
    /// Expected chain id (checked on connect, for every endpoint).
    pub chain_id: u64,
    /// KmsAuth proxy address.
    pub kms_auth: Address,
    /// Policy is read at `head − confirmations`.
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
    /// Per-call RPC timeout in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// A head whose block timestamp is older than this (seconds) is refused, 503.
    #[serde(default = "default_max_head_age_secs")]
    pub max_head_age_secs: u64,
    /// How often the pinned block advances in the background, milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Longest an `app-key` request waits for the policy block to reach its
    /// `min_policy_block`, milliseconds (default [`crate::DEFAULT_HEAD_WAIT`], at most
    /// [`crate::MAX_HEAD_WAIT`]; 0 answers 503 `unavailable.policy_head_behind` at once).
    pub head_wait_ms: Option<u64>,
}

fn default_quorum() -> usize {
    cairn_onchain::DEFAULT_QUORUM
}
fn default_max_head_age_secs() -> u64 {
    cairn_onchain::DEFAULT_MAX_HEAD_AGE.as_secs()
}
fn default_poll_interval_ms() -> u64 {
    u64::try_from(cairn_onchain::DEFAULT_HEAD_POLL_INTERVAL.as_millis()).unwrap_or(1000)
}

fn default_confirmations() -> u64 {
    DEFAULT_CONFIRMATIONS
}
fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// Which root of trust quotes are verified against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trust {
    /// Intel's SGX root CA.
    Intel,
    /// The TDX simulator's mock root (development only).
    Simulator,
}

/// `[attestation]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationSection {
    /// Trust root.
    pub trust: Trust,
    /// Simulator PKI seed (32 bytes hex), required with `trust = "simulator"`.
    pub simulator_seed: Option<String>,
    /// Collateral file (dcap-qvl JSON).
    pub collateral_file: Option<PathBuf>,
    /// PCCS base URL (Intel PCS v4 API).
    pub pccs_url: Option<String>,
    /// With `pccs_url`: collateral fetches per minute, sustained (default
    /// [`cairn_attestation::DEFAULT_PCCS_FETCHES_PER_MINUTE`]).
    pub pccs_fetches_per_minute: Option<u32>,
    /// With `pccs_url`: collateral fetches allowed at once (default
    /// [`cairn_attestation::DEFAULT_PCCS_FETCH_BURST`]).
    pub pccs_fetch_burst: Option<u32>,
    /// OS image manifests (canonical JSON) this node recognises.
    #[serde(default)]
    pub os_images: Vec<PathBuf>,
}

/// Kind of this node's own TEE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TeeKind {
    /// Linux configfs-tsm.
    Tdx,
    /// The in-process simulator (development only).
    Simulator,
}

/// `[tee]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeeSection {
    /// Backend.
    pub kind: TeeKind,
    /// tdx: this CVM's event log (JSON) as measured at boot.
    pub event_log: Option<PathBuf>,
    /// simulator: host seed (32 bytes hex).
    pub simulator_host_seed: Option<String>,
    /// simulator: OS image name and version (`OsImage::example`).
    #[serde(default = "default_sim_image")]
    pub simulator_os_image: (String, String),
}

fn default_sim_image() -> (String, String) {
    ("cairn-os".to_owned(), "1.0".to_owned())
}

/// `[log]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// Checkpoint origin line.
    pub origin: Option<String>,
    /// Seconds between anchoring attempts (default 60).
    pub anchor_interval_secs: Option<u64>,
    /// Most log entries not yet anchored on chain; releases beyond it answer 503
    /// `unavailable.anchor` (default [`crate::DEFAULT_MAX_UNANCHORED`]).
    pub max_unanchored: Option<u64>,
    /// Seconds since the log was last fully anchored after which releases answer 503
    /// `unavailable.anchor` while an entry is unanchored (default 600; must exceed
    /// `anchor_interval_secs`).
    pub max_anchor_age_secs: Option<u64>,
}

/// `[server]`: connection and request-body limits (defaults in [`ServerLimits`]).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Most open connections (default 1024).
    pub max_connections: Option<usize>,
    /// Most open connections per source IPv4 address or IPv6 /64 (default 128).
    pub max_connections_per_source: Option<usize>,
    /// TLS handshake timeout, milliseconds (default 5000).
    pub handshake_timeout_ms: Option<u64>,
    /// Longest pause inside a request body, milliseconds (default 5000).
    pub body_idle_timeout_ms: Option<u64>,
    /// Time allowed for a whole request body, milliseconds (default 10000).
    pub body_timeout_ms: Option<u64>,
    /// Longest a response write may make no progress, milliseconds (default 10000).
    pub write_stall_timeout_ms: Option<u64>,
}

/// Every key that may be overridden from the environment, as a dotted path.
const ENV_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "chain.rpc_url",
    "chain.rpc_urls",
    "chain.quorum",
    "chain.allow_insecure_rpc",
    "chain.rpc_ca_file",
    "chain.chain_id",
    "chain.kms_auth",
    "chain.confirmations",
    "chain.timeout_ms",
    "chain.max_head_age_secs",
    "chain.poll_interval_ms",
    "chain.head_wait_ms",
    "attestation.trust",
    "attestation.simulator_seed",
    "attestation.collateral_file",
    "attestation.pccs_url",
    "attestation.pccs_fetches_per_minute",
    "attestation.pccs_fetch_burst",
    "attestation.os_images",
    "tee.kind",
    "tee.event_log",
    "tee.simulator_host_seed",
    "tee.simulator_os_image",
    "log.origin",
    "log.anchor_interval_secs",
    "log.max_unanchored",
    "log.max_anchor_age_secs",
    "server.max_connections",
    "server.max_connections_per_source",
    "server.handshake_timeout_ms",
    "server.body_idle_timeout_ms",
    "server.body_timeout_ms",
    "server.write_stall_timeout_ms",
];

/// Keys whose environment value is a comma-separated list (TOML arrays of strings).
const LIST_KEYS: &[&str] = &[
    "chain.rpc_urls",
    "attestation.os_images",
    "tee.simulator_os_image",
];

/// Keys whose environment value is an integer.
const INTEGER_KEYS: &[&str] = &[
    "chain.quorum",
    "chain.chain_id",
    "chain.confirmations",
    "chain.timeout_ms",
    "chain.max_head_age_secs",
    "chain.poll_interval_ms",
    "chain.head_wait_ms",
    "attestation.pccs_fetches_per_minute",
    "attestation.pccs_fetch_burst",
    "log.anchor_interval_secs",
    "log.max_unanchored",
    "log.max_anchor_age_secs",
    "server.max_connections",
    "server.max_connections_per_source",
    "server.handshake_timeout_ms",
    "server.body_idle_timeout_ms",
    "server.body_timeout_ms",
    "server.write_stall_timeout_ms",
];

/// Keys given as `true` / `false` in the environment.
const BOOL_KEYS: &[&str] = &["chain.allow_insecure_rpc"];

/// How the environment values of [`ENV_KEYS`] parse.
const ENV_KINDS: &EnvKinds = &EnvKinds {
    ints: INTEGER_KEYS,
    floats: &[],
    bools: BOOL_KEYS,
    lists: LIST_KEYS,
};

fn cfg_err(key: impl Into<String>, reason: impl Into<String>) -> Error {
    ConfigError::new(key, reason).into()
}

fn read_bounded(path: &Path, key: &str, max: u64) -> Result<Vec<u8>> {
    Ok(cairn_service::read_bounded(path, key, max)?)
}

/// The certificates of a PEM file (bounded); at least one.
fn read_pem_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>> {
    use rustls_pki_types::pem::PemObject as _;
    let pem = read_bounded(path, key, MAX_RPC_CA_FILE_LEN)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            cfg_err(
                key,
                format!("{}: not PEM certificates: {e}", path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(cfg_err(
            key,
            format!("{}: no certificate in the file", path.display()),
        ));
    }
    Ok(certs)
}

fn seed(key: &str, v: &Option<String>) -> Result<[u8; 32]> {
    Ok(cairn_service::hex32(key, v.as_deref())?)
}

impl Config {
    /// Parse TOML text, then apply `env` overrides (`CAIRN_KMS_<KEY>` with dots as `_`).
    pub fn parse(text: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Config> {
        let config: Config =
            cairn_service::parse_with_env(text, ENV_PREFIX, ENV_KEYS, ENV_KINDS, env)?;
        config.check()?;
        Ok(config)
    }

    /// Read `path` (bounded) and apply the process environment.
    pub fn load(path: &Path) -> Result<Config> {
        let text = cairn_service::read_text(path, MAX_CONFIG_LEN)?;
        Config::parse(&text, std::env::vars())
    }

    fn check(&self) -> Result<()> {
        let a = &self.attestation;
        if a.collateral_file.is_some() && a.pccs_url.is_some() {
            return Err(cfg_err(
                "attestation.collateral_file",
                "set either collateral_file or pccs_url, not both",
            ));
        }
        if a.trust == Trust::Intel && a.collateral_file.is_none() && a.pccs_url.is_none() {
            return Err(cfg_err(
                "attestation.pccs_url",
                "trust = \"intel\" needs collateral_file or pccs_url",
            ));
        }
        if a.pccs_url.is_none() {
            for (key, set) in [
                (
                    "attestation.pccs_fetches_per_minute",
                    a.pccs_fetches_per_minute,
                ),
                ("attestation.pccs_fetch_burst", a.pccs_fetch_burst),
            ] {
                if set.is_some() {
                    return Err(cfg_err(key, "only meaningful with pccs_url"));
                }
            }
        }
        if a.trust == Trust::Simulator && a.simulator_seed.is_none() {
            return Err(cfg_err(
                "attestation.simulator_seed",
                "required with trust = \"simulator\"",
            ));
        }
        if self.tee.kind == TeeKind::Simulator && a.trust != Trust::Simulator {
            return Err(cfg_err(
                "tee.kind",
                "a simulator TEE needs attestation.trust = \"simulator\"",
            ));
        }
        if self.tee.kind == TeeKind::Tdx && self.tee.event_log.is_none() {
            return Err(cfg_err("tee.event_log", "required with kind = \"tdx\""));
        }
        if self.tee.kind == TeeKind::Simulator {
            seed("tee.simulator_host_seed", &self.tee.simulator_host_seed)?;
        }
        if a.os_images.is_empty() && self.tee.kind == TeeKind::Tdx {
            return Err(cfg_err(
                "attestation.os_images",
                "list at least one OS image manifest",
            ));
        }
        if self.chain.timeout_ms == 0 {
            return Err(cfg_err("chain.timeout_ms", "must be > 0"));
        }
        if self.chain.max_head_age_secs == 0 {
            return Err(cfg_err("chain.max_head_age_secs", "must be > 0"));
        }
        if self.chain.poll_interval_ms == 0 {
            return Err(cfg_err("chain.poll_interval_ms", "must be > 0"));
        }
        if self.head_wait() > MAX_HEAD_WAIT {
            return Err(cfg_err(
                "chain.head_wait_ms",
                format!("must be at most {}", MAX_HEAD_WAIT.as_millis()),
            ));
        }
        self.chain_urls()?;
        if self.chain.quorum == 0 || self.chain.quorum > self.chain_urls()?.len() {
            return Err(cfg_err(
                "chain.quorum",
                format!(
                    "must be between 1 and the number of RPC endpoints ({})",
                    self.chain_urls()?.len()
                ),
            ));
        }
        for url in self.chain_urls()? {
            cairn_onchain::check_rpc_url(&url, self.chain.allow_insecure_rpc)
                .map_err(|e| cfg_err("chain.rpc_urls", e.to_string()))?;
        }
        if self.chain.allow_insecure_rpc {
            tracing::warn!(
                "chain.allow_insecure_rpc = true: plain-HTTP RPC endpoints are accepted; whoever \
                 is on their network path decides every release"
            );
        }
        if self.log.anchor_interval_secs == Some(0) {
            return Err(cfg_err("log.anchor_interval_secs", "must be > 0"));
        }
        self.anchor_limits().check(self.anchor_interval())?;
        let sv = &self.server;
        for (key, v) in [
            (
                "server.max_connections",
                sv.max_connections.map(|v| v as u64),
            ),
            (
                "server.max_connections_per_source",
                sv.max_connections_per_source.map(|v| v as u64),
            ),
            ("server.handshake_timeout_ms", sv.handshake_timeout_ms),
            ("server.body_idle_timeout_ms", sv.body_idle_timeout_ms),
            ("server.body_timeout_ms", sv.body_timeout_ms),
            ("server.write_stall_timeout_ms", sv.write_stall_timeout_ms),
        ] {
            if v == Some(0) {
                return Err(cfg_err(key, "must be > 0"));
            }
        }
        Ok(())
    }

    /// `chain.head_wait_ms`, or [`DEFAULT_HEAD_WAIT`].
    fn head_wait(&self) -> Duration {
        self.chain
            .head_wait_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_HEAD_WAIT)
    }

    fn anchor_interval(&self) -> Duration {
        self.log
            .anchor_interval_secs
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_ANCHOR_INTERVAL)
    }

    /// The bound on unanchored releases (`log.max_unanchored`, `log.max_anchor_age_secs`).
    pub fn anchor_limits(&self) -> AnchorLimits {
        let d = AnchorLimits::default();
        AnchorLimits {
            max_unanchored: self.log.max_unanchored.unwrap_or(d.max_unanchored),
            max_age: self
                .log
                .max_anchor_age_secs
                .map(Duration::from_secs)
                .unwrap_or(d.max_age),
        }
    }

    /// The server's connection and body limits (`[server]`).
    pub fn server_limits(&self) -> ServerLimits {
        let d = ServerLimits::default();
        let sv = &self.server;
        let ms = |v: Option<u64>, d: Duration| v.map(Duration::from_millis).unwrap_or(d);
        ServerLimits {
            max_connections: sv.max_connections.unwrap_or(d.max_connections),
            max_connections_per_source: sv
                .max_connections_per_source
                .unwrap_or(d.max_connections_per_source),
            handshake_timeout: ms(sv.handshake_timeout_ms, d.handshake_timeout),
            body_idle_timeout: ms(sv.body_idle_timeout_ms, d.body_idle_timeout),
            body_timeout: ms(sv.body_timeout_ms, d.body_timeout),
            write_stall_timeout: ms(sv.write_stall_timeout_ms, d.write_stall_timeout),
        }
    }

    /// The RPC endpoints: `chain.rpc_urls`, or `chain.rpc_url` as a one-element list.
    fn chain_urls(&self) -> Result<Vec<url::Url>> {
        match (&self.chain.rpc_url, self.chain.rpc_urls.is_empty()) {
            (Some(one), true) => Ok(vec![one.clone()]),
            (None, false) => Ok(self.chain.rpc_urls.clone()),
            (Some(_), false) => Err(cfg_err(
                "chain.rpc_urls",
                "set chain.rpc_url or chain.rpc_urls, not both",
            )),
            (None, true) => Err(cfg_err(
                "chain.rpc_urls",
                "required (or chain.rpc_url for one endpoint)",
            )),
        }
    }

    /// The chain client settings (reads `chain.rpc_ca_file`).
    pub fn chain_config(&self) -> Result<ChainConfig> {
        let c = &self.chain;
        let urls = self.chain_urls()?;
        let first = urls
            .first()
            .cloned()
            .ok_or_else(|| cfg_err("chain.rpc_urls", "required"))?;
        let mut config = ChainConfig::new(first, c.chain_id, c.kms_auth)
            .with_rpc_urls(urls, c.quorum)
            .with_allow_insecure_rpc(c.allow_insecure_rpc)
            .with_confirmations(c.confirmations)
            .with_call_timeout(Duration::from_millis(c.timeout_ms))
            .with_max_head_age(Duration::from_secs(c.max_head_age_secs))
            .with_head_poll_interval(Duration::from_millis(c.poll_interval_ms));
        if let Some(path) = &c.rpc_ca_file {
            for root in read_pem_certs(path, "chain.rpc_ca_file")? {
                config = config.with_extra_root(root);
            }
        }
        config
            .validate()
            .map_err(|e| cfg_err("chain.rpc_urls", e.to_string()))?;
        Ok(config)
    }

    /// Build the node options: verifier, collateral, TEE, event log, OS images.
    pub fn node_options(&self) -> Result<NodeOptions> {
        let a = &self.attestation;
        let clock = Clock::system();
        let now = clock.now();
        let sim_pki = match a.trust {
            Trust::Simulator => {
                let s = seed("attestation.simulator_seed", &a.simulator_seed)?;
                Some(Arc::new(SimPki::new(SimPkiConfig::new(s, now)).map_err(
                    |e| cfg_err("attestation.simulator_seed", e.to_string()),
                )?))
            }
            Trust::Intel => None,
        };
        let mut verifier = match &sim_pki {
            Some(pki) => Verifier::dangerous_with_simulator_root(pki.root_ca_der()),
            None => Verifier::intel(),
        };
        let collateral = if let Some(path) = &a.collateral_file {
            verifier = verifier.with_collateral(
                Collateral::from_file(path)
                    .map_err(|e| cfg_err("attestation.collateral_file", e.to_string()))?,
            );
            CollateralSource::Configured
        } else if let Some(url) = &a.pccs_url {
            let defaults = PccsLimits::default();
            let limits = PccsLimits {
                fetches_per_minute: a
                    .pccs_fetches_per_minute
                    .unwrap_or(defaults.fetches_per_minute),
                fetch_burst: a.pccs_fetch_burst.unwrap_or(defaults.fetch_burst),
                ..defaults
            };
            CollateralSource::Pccs(Arc::new(
                PccsClient::new(url)
                    .map_err(|e| cfg_err("attestation.pccs_url", e.to_string()))?
                    .with_limits(limits),
            ))
        } else if let Some(pki) = &sim_pki {
            verifier = verifier.with_collateral(
                Collateral::new(pki.collateral())
                    .map_err(|e| cfg_err("attestation.simulator_seed", e.to_string()))?,
            );
            CollateralSource::Configured
        } else {
            return Err(cfg_err("attestation.pccs_url", "no collateral source"));
        };
        let mut os_images = Vec::new();
        for (i, path) in a.os_images.iter().enumerate() {
            let key = format!("attestation.os_images[{i}]");
            let bytes = read_bounded(path, &key, MAX_FILE_LEN)?;
            os_images
                .push(OsImageManifest::parse(&bytes).map_err(|e| cfg_err(&key, e.to_string()))?);
        }
        let (tee, event_log): (Arc<dyn Tee>, Vec<u8>) = match self.tee.kind {
            TeeKind::Tdx => {
                let path = self
                    .tee
                    .event_log
                    .as_deref()
                    .ok_or_else(|| cfg_err("tee.event_log", "required"))?;
                (
                    Arc::new(TdxTee::new()),
                    read_bounded(path, "tee.event_log", MAX_FILE_LEN)?,
                )
            }
            TeeKind::Simulator => {
                let pki = sim_pki
                    .ok_or_else(|| cfg_err("tee.kind", "simulator needs trust = simulator"))?;
                let host = seed("tee.simulator_host_seed", &self.tee.simulator_host_seed)?;
                let (name, version) = &self.tee.simulator_os_image;
                let image = OsImage::example(name, version);
                os_images.push(image.manifest());
                let tdx = SimTdx::new(pki, SimHostConfig::new(host, image))
                    .map_err(|e| cfg_err("tee.simulator_host_seed", e.to_string()))?;
                let log = simulated_kms_boot(&tdx, &host)?;
                (Arc::new(tdx), log)
            }
        };
        Ok(NodeOptions {
            data_dir: self.data_dir.clone(),
            chain: self.chain_config()?,
            verifier: Arc::new(verifier),
            collateral,
            os_images,
            tee,
            event_log,
            log_origin: self.log.origin.clone(),
            anchor_interval: self.anchor_interval(),
            anchor_limits: self.anchor_limits(),
            clock,
            head_wait: self.head_wait(),
        })
    }
}

/// The compose of a simulated KMS CVM (its app id is derived from it).
pub const SIMULATED_KMS_COMPOSE: &[u8] =
    br#"{"manifest_version":2,"name":"cairn-kms","runner":"process"}"#;

/// Measure a simulated KMS CVM's boot events (up to `boot-mr-done`) into `tee`; returns
/// the event log JSON.
pub fn simulated_kms_boot(tee: &dyn Tee, host_seed: &[u8; 32]) -> Result<Vec<u8>> {
    let compose_hash = ComposeHash::of_compose(SIMULATED_KMS_COMPOSE);
    let app_id = AppId::from_compose_hash(&compose_hash);
    let instance_id = InstanceId::derive(host_seed, &app_id);
    let mut log = EventLog::new();
    log.measure_boot(tee, &app_id, &compose_hash, &instance_id)?;
    Ok(log.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
data_dir = "/tmp/x"
[chain]
rpc_url = "http://127.0.0.1:8545"
chain_id = 31337
kms_auth = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
[attestation]
trust = "simulator"
simulator_seed = "0x4242424242424242424242424242424242424242424242424242424242424242"
[tee]
kind = "simulator"
simulator_host_seed = "0x0101010101010101010101010101010101010101010101010101010101010101"
"#;

    fn key_of(e: Error) -> String {
        match e {
            Error::Config { key, .. } => key,
            e => panic!("not a config error: {e}"),
        }
    }

    #[test]
    fn defaults_apply_and_env_overrides_win() {
        let c = Config::parse(BASE, []).unwrap();
        assert_eq!(c.chain.confirmations, DEFAULT_CONFIRMATIONS);
        assert_eq!(c.listen, default_listen());
        let c = Config::parse(
            BASE,
            [
                ("CAIRN_KMS_CHAIN_CHAIN_ID".to_owned(), "5".to_owned()),
                ("CAIRN_KMS_LISTEN".to_owned(), "127.0.0.1:9".to_owned()),
            ],
        )
        .unwrap();
        assert_eq!(c.chain.chain_id, 5);
        assert_eq!(c.listen.port(), 9);
    }

    /// The field names serde expects at `section` ("" = top level), read from the
    /// unknown-field error of a config with one extra key there.
    fn fields_of(section: &str) -> Vec<String> {
        let header = format!("[{section}]\n");
        let text = if section.is_empty() {
            format!("bogus_key = 1\n{BASE}")
        } else if BASE.contains(&header) {
            BASE.replace(&header, &format!("{header}bogus_key = 1\n"))
        } else {
            format!("{BASE}\n{header}bogus_key = 1\n")
        };
        let e = Config::parse(&text, []).unwrap_err().to_string();
        // "unknown field `bogus_key`, expected one of `a`, `b`\nin `section`"
        let expected = e
            .split_once("expected")
            .and_then(|(_, rest)| rest.lines().next())
            .unwrap_or_else(|| panic!("no field list in {e}"));
        let fields: Vec<String> = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        assert!(!fields.is_empty(), "{e}");
        fields
    }

    #[test]
    fn every_config_key_can_be_set_from_the_environment() {
        let sections = ["chain", "attestation", "tee", "log", "server"];
        let mut keys: Vec<String> = fields_of("")
            .into_iter()
            .filter(|k| !sections.contains(&k.as_str()))
            .collect();
        for section in sections {
            keys.extend(
                fields_of(section)
                    .into_iter()
                    .map(|k| format!("{section}.{k}")),
            );
        }
        for key in &keys {
            assert!(
                ENV_KEYS.contains(&key.as_str()),
                "{key} has no CAIRN_KMS_ override"
            );
        }
        for key in ENV_KEYS {
            assert!(keys.iter().any(|k| k == key), "{key} is not a config key");
        }
    }

    #[test]
    fn pccs_limits_come_from_the_config_and_need_a_pccs_url() {
        let with_pccs = BASE.replace(
            "[tee]",
            "pccs_url = \"http://127.0.0.1:1\"\npccs_fetch_burst = 3\n[tee]",
        );
        let c = Config::parse(
            &with_pccs,
            [(
                "CAIRN_KMS_ATTESTATION_PCCS_FETCHES_PER_MINUTE".to_owned(),
                "12".to_owned(),
            )],
        )
        .unwrap();
        let opts = c.node_options().unwrap();
        match &opts.collateral {
            CollateralSource::Pccs(p) => {
                assert_eq!(p.limits().fetches_per_minute, 12);
                assert_eq!(p.limits().fetch_burst, 3);
                assert_eq!(
                    p.limits().max_failures,
                    cairn_attestation::DEFAULT_PCCS_MAX_FAILURES
                );
            }
            other => panic!("{other:?}"),
        }
        let e =
            Config::parse(&BASE.replace("[tee]", "pccs_fetch_burst = 3\n[tee]"), []).unwrap_err();
        assert_eq!(key_of(e), "attestation.pccs_fetch_burst");
    }

    #[test]
    fn list_keys_take_comma_separated_values_from_the_environment() {
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        };
        let c = Config::parse(
            BASE,
            env(&[
                ("CAIRN_KMS_ATTESTATION_OS_IMAGES", "/a.json,/b.json"),
                ("CAIRN_KMS_TEE_SIMULATOR_OS_IMAGE", "my-os,2.0"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.attestation.os_images,
            vec![PathBuf::from("/a.json"), PathBuf::from("/b.json")]
        );
        assert_eq!(
            c.tee.simulator_os_image,
            ("my-os".to_owned(), "2.0".to_owned())
        );
        let c = Config::parse(BASE, env(&[("CAIRN_KMS_ATTESTATION_OS_IMAGES", "")])).unwrap();
        assert!(c.attestation.os_images.is_empty());
        // A pair needs exactly two items.
        let e =
            Config::parse(BASE, env(&[("CAIRN_KMS_TEE_SIMULATOR_OS_IMAGE", "only")])).unwrap_err();
        assert!(e.to_string().contains("simulator_os_image"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = Config::parse(&format!("{BASE}\n[log]\nbogus = 1\n"), []).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = Config::parse(BASE, [("CAIRN_KMS_CHAIN_CONFIRMATIONS".into(), "x".into())])
            .unwrap_err();
        assert_eq!(key_of(e), "chain.confirmations");
        let e =
            Config::parse(&BASE.replace("kind = \"simulator\"", "kind = \"tdx\""), []).unwrap_err();
        assert_eq!(key_of(e), "tee.event_log");
        let e = Config::parse(
            &BASE.replace("trust = \"simulator\"", "trust = \"intel\""),
            [],
        )
        .unwrap_err();
        assert_eq!(key_of(e), "attestation.pccs_url");
        let e = Config::parse(&BASE.replace("chain_id = 31337\n", ""), []).unwrap_err();
        assert!(e.to_string().contains("chain_id"), "{e}");
    }

    #[test]
    fn one_rpc_url_is_a_one_element_list_with_quorum_one() {
        let c = Config::parse(BASE, []).unwrap();
        let chain = c.chain_config().unwrap();
        assert_eq!(
            chain.rpc_urls,
            vec!["http://127.0.0.1:8545".parse().unwrap()]
        );
        assert_eq!(chain.quorum, 1);
        assert!(!chain.allow_insecure_rpc);
        assert_eq!(chain.max_head_age, cairn_onchain::DEFAULT_MAX_HEAD_AGE);
    }

    #[test]
    fn several_rpc_urls_with_a_quorum_come_from_the_file_or_the_environment() {
        let text = BASE.replace(
            "rpc_url = \"http://127.0.0.1:8545\"",
            "rpc_urls = [\"https://a.example/\", \"https://b.example/\"]\nquorum = 2\nmax_head_age_secs = 30\npoll_interval_ms = 200",
        );
        let chain = Config::parse(&text, []).unwrap().chain_config().unwrap();
        assert_eq!(chain.rpc_urls.len(), 2);
        assert_eq!(chain.quorum, 2);
        assert_eq!(chain.max_head_age, Duration::from_secs(30));
        assert_eq!(chain.head_poll_interval, Duration::from_millis(200));

        let env = [
            (
                "CAIRN_KMS_CHAIN_RPC_URLS".to_owned(),
                "https://a.example/, https://b.example/,https://c.example/".to_owned(),
            ),
            ("CAIRN_KMS_CHAIN_QUORUM".to_owned(), "3".to_owned()),
        ];
        let chain = Config::parse(&text, env).unwrap().chain_config().unwrap();
        assert_eq!(chain.rpc_urls.len(), 3);
        assert_eq!(chain.quorum, 3);
    }

    #[test]
    fn the_head_wait_defaults_to_ten_seconds_and_is_capped() {
        assert_eq!(
            Config::parse(BASE, []).unwrap().head_wait(),
            DEFAULT_HEAD_WAIT
        );
        let env = |ms: &str| [("CAIRN_KMS_CHAIN_HEAD_WAIT_MS".to_owned(), ms.to_owned())];
        let c = Config::parse(BASE, env("2500")).unwrap();
        assert_eq!(c.head_wait(), Duration::from_millis(2500));
        assert_eq!(
            Config::parse(BASE, env("0")).unwrap().head_wait(),
            Duration::ZERO
        );
        let over = (MAX_HEAD_WAIT.as_millis() + 1).to_string();
        let e = Config::parse(BASE, env(&over)).unwrap_err();
        assert_eq!(key_of(e), "chain.head_wait_ms");
    }

    #[test]
    fn plain_http_to_a_remote_rpc_is_refused_at_startup_unless_explicitly_allowed() {
        let remote = BASE.replace("http://127.0.0.1:8545", "http://rpc.internal:8545");
        let e = Config::parse(&remote, []).unwrap_err();
        let msg = e.to_string();
        assert_eq!(key_of(e), "chain.rpc_urls");
        assert!(msg.contains("isAppAllowed"), "{msg}");
        assert!(msg.contains("allow_insecure_rpc"), "{msg}");

        let env = [(
            "CAIRN_KMS_CHAIN_ALLOW_INSECURE_RPC".to_owned(),
            "true".to_owned(),
        )];
        let c = Config::parse(&remote, env).unwrap();
        assert!(c.chain_config().unwrap().allow_insecure_rpc);
        let env = [(
            "CAIRN_KMS_CHAIN_ALLOW_INSECURE_RPC".to_owned(),
            "yes".to_owned(),
        )];
        let e = Config::parse(&remote, env).unwrap_err();
        assert_eq!(key_of(e), "chain.allow_insecure_rpc");
    }

    #[test]
    fn bad_quorums_and_endpoint_lists_name_the_key() {
        let e = Config::parse(
            &BASE.replace("chain_id = 31337", "chain_id = 31337\nquorum = 2"),
            [],
        )
        .unwrap_err();
        assert_eq!(key_of(e), "chain.quorum");
        let both = BASE.replace(
            "chain_id = 31337",
            "chain_id = 31337\nrpc_urls = [\"https://a.example/\"]",
        );
        let e = Config::parse(&both, []).unwrap_err();
        assert_eq!(key_of(e), "chain.rpc_urls");
        let none = BASE.replace("rpc_url = \"http://127.0.0.1:8545\"\n", "");
        let e = Config::parse(&none, []).unwrap_err();
        assert_eq!(key_of(e), "chain.rpc_urls");
        let e = Config::parse(
            &BASE.replace(
                "chain_id = 31337",
                "chain_id = 31337\nmax_head_age_secs = 0",
            ),
            [],
        )
        .unwrap_err();
        assert_eq!(key_of(e), "chain.max_head_age_secs");
        // The per-request head cache is gone; the key is refused, not ignored.
        let e = Config::parse(
            &BASE.replace("chain_id = 31337", "chain_id = 31337\nhead_cache_ms = 250"),
            [],
        )
        .unwrap_err();
        assert!(e.to_string().contains("head_cache_ms"), "{e}");
    }

    #[test]
    fn extra_rpc_roots_are_read_from_a_bounded_pem_file() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("roots.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["rpc.example".to_owned()]).unwrap();
        std::fs::write(&pem, cert.cert.pem()).unwrap();
        let text = BASE.replace(
            "chain_id = 31337",
            &format!("chain_id = 31337\nrpc_ca_file = \"{}\"", pem.display()),
        );
        let chain = Config::parse(&text, []).unwrap().chain_config().unwrap();
        assert_eq!(chain.extra_roots, vec![cert.cert.der().clone()]);

        std::fs::write(&pem, "not a certificate").unwrap();
        let e = Config::parse(&text, [])
            .unwrap()
            .chain_config()
            .unwrap_err();
        assert_eq!(key_of(e), "chain.rpc_ca_file");
    }

    #[test]
    fn anchoring_and_server_limits_have_defaults_and_are_checked() {
        let c = Config::parse(BASE, []).unwrap();
        assert_eq!(c.anchor_limits(), AnchorLimits::default());
        assert_eq!(c.server_limits(), ServerLimits::default());
        let c = Config::parse(
            &format!(
                "{BASE}\n[log]\nmax_unanchored = 5\nmax_anchor_age_secs = 120\n[server]\nmax_connections_per_source = 3\nbody_idle_timeout_ms = 250\n"
            ),
            [("CAIRN_KMS_SERVER_BODY_TIMEOUT_MS".to_owned(), "900".to_owned())],
        )
        .unwrap();
        assert_eq!(
            c.anchor_limits(),
            AnchorLimits {
                max_unanchored: 5,
                max_age: Duration::from_secs(120)
            }
        );
        let l = c.server_limits();
        assert_eq!(l.max_connections_per_source, 3);
        assert_eq!(l.body_idle_timeout, Duration::from_millis(250));
        assert_eq!(l.body_timeout, Duration::from_millis(900));
        assert_eq!(l.max_connections, ServerLimits::default().max_connections);
        // The age must exceed the anchoring interval; zeros are refused, naming the key.
        let e = Config::parse(
            &format!("{BASE}\n[log]\nanchor_interval_secs = 60\nmax_anchor_age_secs = 60\n"),
            [],
        )
        .unwrap_err();
        assert_eq!(key_of(e), "log.max_anchor_age_secs");
        let e = Config::parse(&format!("{BASE}\n[log]\nmax_unanchored = 0\n"), []).unwrap_err();
        assert_eq!(key_of(e), "log.max_unanchored");
        let e = Config::parse(
            BASE,
            [(
                "CAIRN_KMS_SERVER_MAX_CONNECTIONS_PER_SOURCE".into(),
                "0".into(),
            )],
        )
        .unwrap_err();
        assert_eq!(key_of(e), "server.max_connections_per_source");
    }
}
