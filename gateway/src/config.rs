//! The node's configuration: one TOML file, then `CAIRN_GATEWAY_*` environment overrides
//! (e.g. `CAIRN_GATEWAY_CHAIN_RPC_URL` for `chain.rpc_url`), then the binary's flags.
//! Every scalar key can be overridden (a test checks it) except the `[apps.*]` tables and
//! `[acme.dns]` (TOML only); list-valued keys take comma-separated values. Unknown keys
//! are errors; every error names the key. [`Config::options`] turns it into the
//! [`GatewayOptions`] that [`crate::run`] takes.
//!
//! ```toml
//! listen = "0.0.0.0:443"                 # the public TLS listener (SNI routing)
//! registration_listen = "0.0.0.0:8444"   # CVMs register here (mutual TLS)
//! admin_listen = "127.0.0.1:8090"        # status and metrics (loopback, or a token)
//! base_domain = "gw.example.com"
//!
//! [chain]
//! rpc_url = "http://127.0.0.1:8545"
//! chain_id = 31337
//! kms_auth = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
//! confirmations = 2            # policy is read at head − confirmations
//! timeout_ms = 3000            # per RPC call
//! poll_interval_ms = 3000      # re-check every admitted instance at each new block
//! max_policy_age_ms = 30000    # no successful check for this long: route nothing
//!
//! [attestation]
//! trust = "intel"              # or "simulator" (development only; needs simulator_seed)
//! collateral_file = "/etc/cairn/collateral.json"   # or: pccs_url = "https://pccs…"
//! os_images = ["/etc/cairn/os-images/cairn-os-1.0.json"]
//!
//! [identity]
//! agent = "unix:/var/run/dstack.sock"   # this CVM's guest agent (or "tcp:127.0.0.1:8090")
//!
//! [tls]                        # the certificate for *.<base_domain>: a file …
//! cert_file = "/etc/cairn-gateway/cert.pem"     # PEM chain, leaf first
//! key_file = "/etc/cairn-gateway/key.pem"       # PKCS#8 PEM; reloaded when either changes
//!
//! # [acme] …                   # … or ACME (docs/gateway.md, "Certificates")
//!
//! [registration]
//! ttl_secs = 90                # forget an instance that has not registered for this long
//! reregister_after_secs = 30   # what the gateway tells CVMs
//!
//! [proxy]
//! max_connections = 16384
//! max_connections_per_source = 512     # per IPv4 address / IPv6 /64
//! max_connections_per_app = 4096
//! hello_timeout_ms = 5000              # the ClientHello must arrive within this
//! max_hello_len = 16384                # … and be at most this many bytes
//! handshake_timeout_ms = 10000         # the rest of a terminated handshake
//! connect_timeout_ms = 3000            # each connect to an instance
//! idle_timeout_secs = 600              # no byte either way for this long: close
//! total_timeout_secs = 86400           # longest a connection lives
//! race = 2                             # instances connected to at once
//!
//! [admin]
//! token_file = "/etc/cairn-gateway/admin-token"   # required unless admin_listen is loopback
//!
//! [apps."0x<app id>"]          # per-app options (TOML only)
//! plain_tcp = true             # forward to this app without TLS (explicit opt-in)
//! max_connections = 100
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_acme::{AcmeConfig, AgentClient, AgentEndpoint};
use cairn_attestation::simulator::{OsImage, SimPki, SimPkiConfig};
use cairn_attestation::{Collateral, OsImageManifest, PccsClient, Verifier};
use cairn_onchain::alloy::primitives::Address;
use cairn_onchain::ChainConfig;
use cairn_service::EnvKinds;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::limits::{ProxyLimits, RegistrationLimits};

/// Default public listener.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 443);
/// Default registration listener.
pub const DEFAULT_REGISTRATION_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8444);
/// Default admin listener (loopback).
pub const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8090);
/// Default agent endpoint (dstack's socket path).
pub const DEFAULT_AGENT: &str = "unix:/var/run/dstack.sock";
/// Default policy confirmations.
pub const DEFAULT_CONFIRMATIONS: u64 = 2;
/// Default per-call RPC timeout.
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(3);
/// Default policy poll interval: a revocation closes connections within this (plus the
/// confirmations).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(3);
/// Default bound on the age of the last successful policy check; past it nothing is
/// routed (fail closed).
pub const DEFAULT_MAX_POLICY_AGE: Duration = Duration::from_secs(30);
/// Default timeout of one guest-agent call.
pub const DEFAULT_AGENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long start-up waits for the guest agent to answer.
pub const DEFAULT_AGENT_STARTUP: Duration = Duration::from_secs(120);
/// Default interval of the certificate file check.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);
/// Prefix of the environment overrides.
pub const ENV_PREFIX: &str = "CAIRN_GATEWAY_";
/// Largest config, token or OS image manifest file read.
pub const MAX_FILE_LEN: u64 = 1024 * 1024;
/// Shortest admin token accepted.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The public TLS listener (SNI routing).
    #[serde(default = "d_listen")]
    pub listen: SocketAddr,
    /// The registration listener (mutual TLS).
    #[serde(default = "d_registration_listen")]
    pub registration_listen: SocketAddr,
    /// The admin listener (status, metrics).
    #[serde(default = "d_admin_listen")]
    pub admin_listen: SocketAddr,
    /// The domain apps are routed under.
    pub base_domain: String,
    /// `[chain]`.
    pub chain: ChainSection,
    /// `[attestation]`.
    pub attestation: AttestationSection,
    /// `[identity]`.
    #[serde(default)]
    pub identity: IdentitySection,
    /// `[tls]`: the certificate files (or `[acme]`).
    pub tls: Option<TlsSection>,
    /// `[acme]`: ACME DNS-01 (or `[tls]`).
    pub acme: Option<AcmeConfig>,
    /// `[registration]`.
    #[serde(default)]
    pub registration: RegistrationSection,
    /// `[proxy]`.
    #[serde(default)]
    pub proxy: ProxySection,
    /// `[admin]`.
    #[serde(default)]
    pub admin: AdminSection,
    /// `[apps."0x…"]`: per-app options, keyed by app id.
    #[serde(default)]
    pub apps: BTreeMap<String, AppSection>,
}

fn d_listen() -> SocketAddr {
    DEFAULT_LISTEN
}
fn d_registration_listen() -> SocketAddr {
    DEFAULT_REGISTRATION_LISTEN
}
fn d_admin_listen() -> SocketAddr {
    DEFAULT_ADMIN_LISTEN
}

/// `[chain]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSection {
    /// JSON-RPC URL.
    pub rpc_url: url::Url,
    /// Expected chain id.
    pub chain_id: u64,
    /// KmsAuth proxy address.
    pub kms_auth: Address,
    /// Policy is read at `head − confirmations` (default 2).
    pub confirmations: Option<u64>,
    /// Per-call RPC timeout, milliseconds (default 3000).
    pub timeout_ms: Option<u64>,
    /// Policy poll interval, milliseconds (default 3000).
    pub poll_interval_ms: Option<u64>,
    /// Longest time without a successful policy check before routing stops,
    /// milliseconds (default 30000).
    pub max_policy_age_ms: Option<u64>,
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

/// `[attestation]`: how registering CVMs' evidence is verified.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationSection {
    /// Trust root.
    pub trust: Trust,
    /// Simulator PKI seed (32 bytes hex), required with `trust = "simulator"`.
    pub simulator_seed: Option<String>,
    /// Simulator PKI time anchor (unix seconds; default now). Must match the KMS's.
    pub simulator_pki_now: Option<u64>,
    /// With `trust = "simulator"`: the simulated OS image recognised (name, version;
    /// default `cairn-os`, `1.0`).
    pub simulator_os_image: Option<(String, String)>,
    /// Collateral file (dcap-qvl JSON).
    pub collateral_file: Option<PathBuf>,
    /// PCCS base URL (Intel PCS v4 API).
    pub pccs_url: Option<String>,
    /// OS image manifests (canonical JSON) this gateway recognises.
    #[serde(default)]
    pub os_images: Vec<PathBuf>,
}

/// `[identity]`: where the gateway's own identity comes from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    /// This CVM's guest agent: `unix:<path>` or `tcp:<host:port>`.
    #[serde(default = "d_agent")]
    pub agent: String,
    /// Timeout of one agent call, milliseconds (default 30000).
    pub timeout_ms: Option<u64>,
    /// How long start-up waits for the agent, seconds (default 120).
    pub startup_timeout_secs: Option<u64>,
}

impl Default for IdentitySection {
    fn default() -> Self {
        IdentitySection {
            agent: d_agent(),
            timeout_ms: None,
            startup_timeout_secs: None,
        }
    }
}

fn d_agent() -> String {
    DEFAULT_AGENT.to_owned()
}

/// `[tls]`: the serving certificate from files.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM chain, leaf first.
    pub cert_file: PathBuf,
    /// PKCS#8 PEM private key (mode 0600).
    pub key_file: PathBuf,
    /// How often the files are checked for a change, seconds (default 10).
    pub reload_interval_secs: Option<u64>,
}

/// `[registration]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationSection {
    /// Seconds after which an instance that has not registered again is forgotten.
    pub ttl_secs: Option<u64>,
    /// Seconds after which a CVM is told to register again.
    pub reregister_after_secs: Option<u64>,
    /// Most open registration connections.
    pub max_connections: Option<usize>,
    /// Most open registration connections per source.
    pub max_connections_per_source: Option<usize>,
    /// TLS handshake timeout of a registration, milliseconds.
    pub handshake_timeout_ms: Option<u64>,
}

/// `[proxy]`: the public listener's limits (defaults in [`ProxyLimits`]).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    /// Most open connections.
    pub max_connections: Option<usize>,
    /// Most open connections per source IPv4 address or IPv6 /64.
    pub max_connections_per_source: Option<usize>,
    /// Most open connections per app (unless the app's own `max_connections` says).
    pub max_connections_per_app: Option<usize>,
    /// ClientHello timeout, milliseconds.
    pub hello_timeout_ms: Option<u64>,
    /// Largest ClientHello, bytes.
    pub max_hello_len: Option<usize>,
    /// Rest of a terminated handshake, milliseconds.
    pub handshake_timeout_ms: Option<u64>,
    /// Each connect to an instance, milliseconds.
    pub connect_timeout_ms: Option<u64>,
    /// Idle timeout, seconds.
    pub idle_timeout_secs: Option<u64>,
    /// Total connection lifetime, seconds.
    pub total_timeout_secs: Option<u64>,
    /// Instances connected to at once when picking one.
    pub race: Option<usize>,
}

/// `[admin]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// A file holding the bearer token the admin endpoint requires (at least 16
    /// characters). Without it the admin listener must be a loopback address.
    pub token_file: Option<PathBuf>,
}

/// `[apps."0x…"]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSection {
    /// Forward to this app over plain TCP instead of TLS (explicit opt-in; the hop is then
    /// unauthenticated and unencrypted between gateway and CVM).
    #[serde(default)]
    pub plain_tcp: bool,
    /// Most open connections to this app.
    pub max_connections: Option<usize>,
}

/// Per-app options, resolved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppOptions {
    /// Forward over plain TCP.
    pub plain_tcp: bool,
    /// Connection limit override.
    pub max_connections: Option<usize>,
}

/// Where the serving certificate comes from (see [`crate::CertSource`]).
#[derive(Clone, Debug)]
pub enum CertConfig {
    /// A PEM chain and a PKCS#8 key, checked for changes every `reload_interval`.
    File {
        /// The chain.
        cert_file: PathBuf,
        /// The key.
        key_file: PathBuf,
        /// Check interval.
        reload_interval: Duration,
    },
    /// ACME DNS-01 (`cairn-acme`).
    Acme(AcmeConfig),
}

/// Everything [`crate::run`] needs, resolved from a [`Config`] (or built by a test).
#[derive(Clone)]
pub struct GatewayOptions {
    /// The domain apps are routed under (lowercase, no trailing dot).
    pub base_domain: String,
    /// The chain client settings.
    pub chain: ChainConfig,
    /// Policy poll interval.
    pub poll_interval: Duration,
    /// Fail closed past this age of the last successful policy check.
    pub max_policy_age: Duration,
    /// Verifies registering CVMs' quotes.
    pub verifier: Arc<Verifier>,
    /// Collateral from a PCCS, when not configured in the verifier.
    pub pccs: Option<Arc<PccsClient>>,
    /// OS images recognised.
    pub os_images: Vec<OsImageManifest>,
    /// This CVM's guest agent.
    pub agent: AgentClient,
    /// How long start-up waits for the agent.
    pub agent_startup_timeout: Duration,
    /// The serving certificate.
    pub certs: CertConfig,
    /// Registration limits.
    pub registration: RegistrationLimits,
    /// Proxy limits.
    pub proxy: ProxyLimits,
    /// The admin bearer token, if required.
    pub admin_token: Option<Arc<Zeroizing<String>>>,
    /// Per-app options.
    pub apps: HashMap<[u8; 20], AppOptions>,
}

impl std::fmt::Debug for GatewayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayOptions")
            .field("base_domain", &self.base_domain)
            .field("chain", &self.chain)
            .field("poll_interval", &self.poll_interval)
            .field("max_policy_age", &self.max_policy_age)
            .field("os_images", &self.os_images.len())
            .field("agent", &self.agent)
            .field("registration", &self.registration)
            .field("proxy", &self.proxy)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("apps", &self.apps)
            .finish_non_exhaustive()
    }
}

/// Every key that may be overridden from the environment, as a dotted path.
const ENV_KEYS: &[&str] = &[
    "listen",
    "registration_listen",
    "admin_listen",
    "base_domain",
    "chain.rpc_url",
    "chain.chain_id",
    "chain.kms_auth",
    "chain.confirmations",
    "chain.timeout_ms",
    "chain.poll_interval_ms",
    "chain.max_policy_age_ms",
    "attestation.trust",
    "attestation.simulator_seed",
    "attestation.simulator_pki_now",
    "attestation.simulator_os_image",
    "attestation.collateral_file",
    "attestation.pccs_url",
    "attestation.os_images",
    "identity.agent",
    "identity.timeout_ms",
    "identity.startup_timeout_secs",
    "tls.cert_file",
    "tls.key_file",
    "tls.reload_interval_secs",
    "acme.directory_url",
    "acme.base_domain",
    "acme.ca_roots",
    "acme.state_dir",
    "acme.renew_after_fraction",
    "acme.retry_initial_secs",
    "acme.retry_max_secs",
    "acme.check_interval_secs",
    "acme.request_timeout_secs",
    "acme.order_timeout_secs",
    "acme.dns_propagation_secs",
    "registration.ttl_secs",
    "registration.reregister_after_secs",
    "registration.max_connections",
    "registration.max_connections_per_source",
    "registration.handshake_timeout_ms",
    "proxy.max_connections",
    "proxy.max_connections_per_source",
    "proxy.max_connections_per_app",
    "proxy.hello_timeout_ms",
    "proxy.max_hello_len",
    "proxy.handshake_timeout_ms",
    "proxy.connect_timeout_ms",
    "proxy.idle_timeout_secs",
    "proxy.total_timeout_secs",
    "proxy.race",
    "admin.token_file",
];

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &["attestation.os_images", "attestation.simulator_os_image"];

/// Keys whose environment value is a float.
const FLOAT_KEYS: &[&str] = &["acme.renew_after_fraction"];

/// Keys whose environment value is an integer.
const INTEGER_KEYS: &[&str] = &[
    "chain.chain_id",
    "chain.confirmations",
    "chain.timeout_ms",
    "chain.poll_interval_ms",
    "chain.max_policy_age_ms",
    "attestation.simulator_pki_now",
    "identity.timeout_ms",
    "identity.startup_timeout_secs",
    "tls.reload_interval_secs",
    "acme.retry_initial_secs",
    "acme.retry_max_secs",
    "acme.check_interval_secs",
    "acme.request_timeout_secs",
    "acme.order_timeout_secs",
    "acme.dns_propagation_secs",
    "registration.ttl_secs",
    "registration.reregister_after_secs",
    "registration.max_connections",
    "registration.max_connections_per_source",
    "registration.handshake_timeout_ms",
    "proxy.max_connections",
    "proxy.max_connections_per_source",
    "proxy.max_connections_per_app",
    "proxy.hello_timeout_ms",
    "proxy.max_hello_len",
    "proxy.handshake_timeout_ms",
    "proxy.connect_timeout_ms",
    "proxy.idle_timeout_secs",
    "proxy.total_timeout_secs",
    "proxy.race",
];

/// How the environment values of [`ENV_KEYS`] parse.
const ENV_KINDS: &EnvKinds = &EnvKinds {
    ints: INTEGER_KEYS,
    floats: FLOAT_KEYS,
    bools: &[],
    lists: LIST_KEYS,
};

fn cfg_err(key: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::config(key, reason)
}

/// Read at most `max` bytes of `path`, naming `key` in errors.
pub(crate) fn read_bounded(path: &Path, key: &str, max: u64) -> Result<Vec<u8>> {
    Ok(cairn_service::read_bounded(path, key, max)?)
}

fn seed(key: &str, v: &Option<String>) -> Result<[u8; 32]> {
    Ok(cairn_service::hex32(key, v.as_deref())?)
}

/// Parse an app id key of `[apps]`: 20 bytes of hex, optional `0x`.
fn app_id_key(key: &str) -> Result<[u8; 20]> {
    let mut out = [0u8; 20];
    hex::decode_to_slice(key.strip_prefix("0x").unwrap_or(key), &mut out)
        .map_err(|_| cfg_err(format!("apps.{key}"), "not an app id (20 bytes of hex)"))?;
    Ok(out)
}

/// Parse an agent endpoint: `unix:<path>`, `tcp:<host:port>`, or a bare absolute path.
pub fn parse_agent(s: &str) -> Result<AgentEndpoint> {
    let bad = |why: &str| cfg_err("identity.agent", format!("{s:?}: {why}"));
    if let Some(path) = s.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(bad("empty socket path"));
        }
        return Ok(AgentEndpoint::Unix(PathBuf::from(path)));
    }
    if let Some(addr) = s.strip_prefix("tcp:") {
        return addr
            .parse::<SocketAddr>()
            .map(AgentEndpoint::Tcp)
            .map_err(|_| bad("not an IP address and port"));
    }
    if s.starts_with('/') {
        return Ok(AgentEndpoint::Unix(PathBuf::from(s)));
    }
    Err(bad("expected unix:<path> or tcp:<ip:port>"))
}

impl Config {
    /// Parse TOML text, then apply `env` overrides (`CAIRN_GATEWAY_<KEY>`, dots as `_`).
    pub fn parse(text: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Config> {
        let config: Config =
            cairn_service::parse_with_env(text, ENV_PREFIX, ENV_KEYS, ENV_KINDS, env)?;
        config.check()?;
        Ok(config)
    }

    /// Read `path` (bounded) and apply the process environment.
    pub fn load(path: &Path) -> Result<Config> {
        let text = cairn_service::read_text(path, MAX_FILE_LEN)?;
        Config::parse(&text, std::env::vars())
    }

    fn check(&self) -> Result<()> {
        check_domain("base_domain", &self.base_domain)?;
        match (&self.tls, &self.acme) {
            (None, None) => {
                return Err(cfg_err(
                    "tls",
                    "a serving certificate is required: [tls] files or [acme]",
                ))
            }
            (Some(_), Some(_)) => {
                return Err(cfg_err("acme", "set either [tls] or [acme], not both"))
            }
            (None, Some(acme)) => {
                let base = self.base_domain.trim_end_matches('.');
                if !acme
                    .base_domain
                    .trim_end_matches('.')
                    .eq_ignore_ascii_case(base)
                {
                    return Err(cfg_err(
                        "acme.base_domain",
                        format!("must be the gateway's base_domain {base:?}"),
                    ));
                }
                acme.validate()
                    .map_err(|e| cfg_err("acme", e.to_string()))?;
            }
            (Some(_), None) => {}
        }
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
        if a.trust == Trust::Simulator && a.simulator_seed.is_none() {
            return Err(cfg_err(
                "attestation.simulator_seed",
                "required with trust = \"simulator\"",
            ));
        }
        if a.trust == Trust::Intel
            && (a.simulator_seed.is_some()
                || a.simulator_os_image.is_some()
                || a.simulator_pki_now.is_some())
        {
            return Err(cfg_err(
                "attestation.simulator_seed",
                "simulator keys need trust = \"simulator\"",
            ));
        }
        parse_agent(&self.identity.agent)?;
        if self.admin.token_file.is_none() && !self.admin_listen.ip().is_loopback() {
            return Err(cfg_err(
                "admin.token_file",
                "required when admin_listen is not a loopback address",
            ));
        }
        for key in self.apps.keys() {
            app_id_key(key)?;
        }
        let positive = [
            ("chain.poll_interval_ms", self.chain.poll_interval_ms),
            ("chain.max_policy_age_ms", self.chain.max_policy_age_ms),
            ("chain.timeout_ms", self.chain.timeout_ms),
            ("registration.ttl_secs", self.registration.ttl_secs),
            (
                "registration.reregister_after_secs",
                self.registration.reregister_after_secs,
            ),
            ("proxy.hello_timeout_ms", self.proxy.hello_timeout_ms),
            ("proxy.connect_timeout_ms", self.proxy.connect_timeout_ms),
            ("proxy.idle_timeout_secs", self.proxy.idle_timeout_secs),
            ("proxy.total_timeout_secs", self.proxy.total_timeout_secs),
            (
                "proxy.handshake_timeout_ms",
                self.proxy.handshake_timeout_ms,
            ),
        ];
        for (key, v) in positive {
            if v == Some(0) {
                return Err(cfg_err(key, "must be positive"));
            }
        }
        let counts = [
            ("proxy.max_connections", self.proxy.max_connections),
            (
                "proxy.max_connections_per_source",
                self.proxy.max_connections_per_source,
            ),
            (
                "proxy.max_connections_per_app",
                self.proxy.max_connections_per_app,
            ),
            ("proxy.race", self.proxy.race),
            (
                "registration.max_connections",
                self.registration.max_connections,
            ),
            (
                "registration.max_connections_per_source",
                self.registration.max_connections_per_source,
            ),
        ];
        for (key, v) in counts {
            if v == Some(0) {
                return Err(cfg_err(key, "must be positive"));
            }
        }
        if self.proxy.max_hello_len.is_some_and(|n| n < 512) {
            return Err(cfg_err("proxy.max_hello_len", "at least 512 bytes"));
        }
        let limits = self.registration_limits();
        if limits.reregister_after >= limits.ttl {
            return Err(cfg_err(
                "registration.reregister_after_secs",
                "must be shorter than registration.ttl_secs",
            ));
        }
        let poll = self.poll_interval();
        if self.max_policy_age() <= poll {
            return Err(cfg_err(
                "chain.max_policy_age_ms",
                "must exceed chain.poll_interval_ms",
            ));
        }
        Ok(())
    }

    fn poll_interval(&self) -> Duration {
        self.chain
            .poll_interval_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_POLL_INTERVAL)
    }

    fn max_policy_age(&self) -> Duration {
        self.chain
            .max_policy_age_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_MAX_POLICY_AGE)
    }

    /// The registration limits (`[registration]`).
    pub fn registration_limits(&self) -> RegistrationLimits {
        let d = RegistrationLimits::default();
        let r = &self.registration;
        RegistrationLimits {
            ttl: r.ttl_secs.map(Duration::from_secs).unwrap_or(d.ttl),
            reregister_after: r
                .reregister_after_secs
                .map(Duration::from_secs)
                .unwrap_or(d.reregister_after),
            max_connections: r.max_connections.unwrap_or(d.max_connections),
            max_connections_per_source: r
                .max_connections_per_source
                .unwrap_or(d.max_connections_per_source),
            handshake_timeout: r
                .handshake_timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(d.handshake_timeout),
        }
    }

    /// The proxy limits (`[proxy]`).
    pub fn proxy_limits(&self) -> ProxyLimits {
        let d = ProxyLimits::default();
        let p = &self.proxy;
        let ms = |v: Option<u64>, d: Duration| v.map(Duration::from_millis).unwrap_or(d);
        let secs = |v: Option<u64>, d: Duration| v.map(Duration::from_secs).unwrap_or(d);
        ProxyLimits {
            max_connections: p.max_connections.unwrap_or(d.max_connections),
            max_connections_per_source: p
                .max_connections_per_source
                .unwrap_or(d.max_connections_per_source),
            max_connections_per_app: p
                .max_connections_per_app
                .unwrap_or(d.max_connections_per_app),
            hello_timeout: ms(p.hello_timeout_ms, d.hello_timeout),
            max_hello_len: p.max_hello_len.unwrap_or(d.max_hello_len),
            handshake_timeout: ms(p.handshake_timeout_ms, d.handshake_timeout),
            connect_timeout: ms(p.connect_timeout_ms, d.connect_timeout),
            idle_timeout: secs(p.idle_timeout_secs, d.idle_timeout),
            total_timeout: secs(p.total_timeout_secs, d.total_timeout),
            race: p.race.unwrap_or(d.race),
        }
    }

    /// The chain client settings.
    pub fn chain_config(&self) -> ChainConfig {
        let c = &self.chain;
        ChainConfig::new(c.rpc_url.clone(), c.chain_id, c.kms_auth)
            .with_confirmations(c.confirmations.unwrap_or(DEFAULT_CONFIRMATIONS))
            .with_call_timeout(
                c.timeout_ms
                    .map(Duration::from_millis)
                    .unwrap_or(DEFAULT_RPC_TIMEOUT),
            )
    }

    /// Resolve everything [`crate::run`] needs: the verifier and collateral, the OS
    /// images, the agent, the certificate source, the admin token (read now).
    pub fn options(&self) -> Result<GatewayOptions> {
        let a = &self.attestation;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut os_images = Vec::new();
        for (i, path) in a.os_images.iter().enumerate() {
            let key = format!("attestation.os_images[{i}]");
            let bytes = read_bounded(path, &key, MAX_FILE_LEN)?;
            os_images
                .push(OsImageManifest::parse(&bytes).map_err(|e| cfg_err(&key, e.to_string()))?);
        }
        let (mut verifier, sim_pki) = match a.trust {
            Trust::Intel => (Verifier::intel(), None),
            Trust::Simulator => {
                let s = seed("attestation.simulator_seed", &a.simulator_seed)?;
                let pki = SimPki::new(SimPkiConfig::new(s, a.simulator_pki_now.unwrap_or(now)))
                    .map_err(|e| cfg_err("attestation.simulator_seed", e.to_string()))?;
                let (name, version) = a
                    .simulator_os_image
                    .clone()
                    .unwrap_or_else(|| ("cairn-os".to_owned(), "1.0".to_owned()));
                os_images.push(OsImage::example(&name, &version).manifest());
                (
                    Verifier::dangerous_with_simulator_root(pki.root_ca_der()),
                    Some(pki),
                )
            }
        };
        let mut pccs = None;
        if let Some(path) = &a.collateral_file {
            verifier = verifier.with_collateral(
                Collateral::from_file(path)
                    .map_err(|e| cfg_err("attestation.collateral_file", e.to_string()))?,
            );
        } else if let Some(url) = &a.pccs_url {
            pccs =
                Some(Arc::new(PccsClient::new(url).map_err(|e| {
                    cfg_err("attestation.pccs_url", e.to_string())
                })?));
        } else if let Some(pki) = &sim_pki {
            verifier = verifier.with_collateral(
                Collateral::new(pki.collateral())
                    .map_err(|e| cfg_err("attestation.simulator_seed", e.to_string()))?,
            );
        }
        if os_images.is_empty() {
            return Err(cfg_err(
                "attestation.os_images",
                "no OS image: every registration would be refused",
            ));
        }
        let agent = AgentClient::new(parse_agent(&self.identity.agent)?).with_timeout(
            self.identity
                .timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(DEFAULT_AGENT_TIMEOUT),
        );
        let certs = match (&self.tls, &self.acme) {
            (Some(t), _) => CertConfig::File {
                cert_file: t.cert_file.clone(),
                key_file: t.key_file.clone(),
                reload_interval: t
                    .reload_interval_secs
                    .map(Duration::from_secs)
                    .unwrap_or(DEFAULT_RELOAD_INTERVAL),
            },
            (None, Some(acme)) => CertConfig::Acme(acme.clone()),
            (None, None) => return Err(cfg_err("tls", "required")),
        };
        let admin_token = match &self.admin.token_file {
            None => None,
            Some(path) => {
                let bytes = Zeroizing::new(read_bounded(path, "admin.token_file", 4096)?);
                let token = std::str::from_utf8(&bytes)
                    .map_err(|_| cfg_err("admin.token_file", "not UTF-8"))?
                    .trim()
                    .to_owned();
                if token.len() < MIN_ADMIN_TOKEN_LEN {
                    return Err(cfg_err(
                        "admin.token_file",
                        format!("the token must have at least {MIN_ADMIN_TOKEN_LEN} characters"),
                    ));
                }
                Some(Arc::new(Zeroizing::new(token)))
            }
        };
        let mut apps = HashMap::new();
        for (key, app) in &self.apps {
            apps.insert(
                app_id_key(key)?,
                AppOptions {
                    plain_tcp: app.plain_tcp,
                    max_connections: app.max_connections,
                },
            );
        }
        Ok(GatewayOptions {
            base_domain: self.base_domain.trim_end_matches('.').to_ascii_lowercase(),
            chain: self.chain_config(),
            poll_interval: self.poll_interval(),
            max_policy_age: self.max_policy_age(),
            verifier: Arc::new(verifier),
            pccs,
            os_images,
            agent,
            agent_startup_timeout: self
                .identity
                .startup_timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_AGENT_STARTUP),
            certs,
            registration: self.registration_limits(),
            proxy: self.proxy_limits(),
            admin_token,
            apps,
        })
    }
}

/// A DNS name of LDH labels, 1–253 characters, not starting or ending with `.` or `-`.
fn check_domain(key: &str, d: &str) -> Result<()> {
    let d = d.strip_suffix('.').unwrap_or(d);
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(cfg_err(key, format!("{d:?} is not a DNS name")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
base_domain = "gw.example.com"
[chain]
rpc_url = "http://127.0.0.1:8545"
chain_id = 31337
kms_auth = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
[attestation]
trust = "simulator"
simulator_seed = "0x4242424242424242424242424242424242424242424242424242424242424242"
[tls]
cert_file = "/etc/cert.pem"
key_file = "/etc/key.pem"
"#;

    fn key_of(e: Error) -> String {
        match e {
            Error::Config { key, .. } => key,
            e => panic!("not a config error: {e}"),
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_apply_and_env_overrides_win() {
        let c = Config::parse(BASE, []).unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert_eq!(c.admin_listen, DEFAULT_ADMIN_LISTEN);
        assert_eq!(c.proxy_limits(), ProxyLimits::default());
        assert_eq!(c.registration_limits(), RegistrationLimits::default());
        let c = Config::parse(
            BASE,
            env(&[
                ("CAIRN_GATEWAY_CHAIN_POLL_INTERVAL_MS", "500"),
                ("CAIRN_GATEWAY_PROXY_MAX_HELLO_LEN", "4096"),
                ("CAIRN_GATEWAY_LISTEN", "127.0.0.1:9"),
                ("CAIRN_GATEWAY_ATTESTATION_SIMULATOR_OS_IMAGE", "my-os,2.0"),
            ]),
        )
        .unwrap();
        assert_eq!(c.poll_interval(), Duration::from_millis(500));
        assert_eq!(c.proxy_limits().max_hello_len, 4096);
        assert_eq!(c.listen.port(), 9);
        let opts = c.options().unwrap();
        assert_eq!(
            opts.os_images,
            vec![OsImage::example("my-os", "2.0").manifest()]
        );
        assert_eq!(opts.base_domain, "gw.example.com");
    }

    /// The field names serde expects at `section` ("" = top level), read from the
    /// unknown-field error of a config with one extra key there.
    fn fields_of(section: &str) -> Vec<String> {
        let header = format!("[{section}]\n");
        let text = if section.is_empty() {
            format!("bogus_key = 1\n{BASE}")
        } else if BASE.contains(&header) {
            BASE.replace(&header, &format!("{header}bogus_key = 1\n"))
        } else if section == "acme" {
            format!(
                "{}\n[acme]\nbogus_key = 1\n",
                BASE.replace(
                    "[tls]\ncert_file = \"/etc/cert.pem\"\nkey_file = \"/etc/key.pem\"\n",
                    ""
                )
            )
        } else {
            format!("{BASE}\n{header}bogus_key = 1\n")
        };
        let e = Config::parse(&text, []).unwrap_err().to_string();
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
    fn every_scalar_config_key_can_be_set_from_the_environment() {
        let sections = [
            "chain",
            "attestation",
            "identity",
            "tls",
            "acme",
            "registration",
            "proxy",
            "admin",
        ];
        let mut keys: Vec<String> = fields_of("")
            .into_iter()
            .filter(|k| !sections.contains(&k.as_str()) && k != "apps")
            .collect();
        for section in sections {
            keys.extend(
                fields_of(section)
                    .into_iter()
                    // the DNS provider is a tagged table: TOML only
                    .filter(|k| !(section == "acme" && k == "dns"))
                    .map(|k| format!("{section}.{k}")),
            );
        }
        for key in &keys {
            assert!(
                ENV_KEYS.contains(&key.as_str()),
                "{key} has no CAIRN_GATEWAY_ override"
            );
        }
        for key in ENV_KEYS {
            assert!(keys.iter().any(|k| k == key), "{key} is not a config key");
        }
    }

    #[test]
    fn a_certificate_source_is_required_and_only_one() {
        let without = BASE.replace(
            "[tls]\ncert_file = \"/etc/cert.pem\"\nkey_file = \"/etc/key.pem\"\n",
            "",
        );
        assert_eq!(key_of(Config::parse(&without, []).unwrap_err()), "tls");
        let acme = "\n[acme]\ndirectory_url = \"https://acme.example/dir\"\nbase_domain = \"gw.example.com\"\n[acme.dns]\nprovider = \"challtestsrv\"\nmanagement_url = \"http://127.0.0.1:8055\"\n";
        let both = format!("{BASE}{acme}");
        assert_eq!(key_of(Config::parse(&both, []).unwrap_err()), "acme");
        let c = Config::parse(&format!("{without}{acme}"), []).unwrap();
        assert!(matches!(c.options().unwrap().certs, CertConfig::Acme(_)));
        let other = format!(
            "{without}{}",
            acme.replace(
                "base_domain = \"gw.example.com\"",
                "base_domain = \"other.example\""
            )
        );
        assert_eq!(
            key_of(Config::parse(&other, []).unwrap_err()),
            "acme.base_domain"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = Config::parse(&format!("{BASE}\n[proxy]\nbogus = 1\n"), []).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("CAIRN_GATEWAY_CHAIN_CONFIRMATIONS", "x")],
                "chain.confirmations",
            ),
            (&[("CAIRN_GATEWAY_PROXY_RACE", "0")], "proxy.race"),
            (
                &[("CAIRN_GATEWAY_PROXY_MAX_HELLO_LEN", "100")],
                "proxy.max_hello_len",
            ),
            (&[("CAIRN_GATEWAY_BASE_DOMAIN", "-bad-.com")], "base_domain"),
            (
                &[("CAIRN_GATEWAY_IDENTITY_AGENT", "http://x")],
                "identity.agent",
            ),
            (
                &[("CAIRN_GATEWAY_ADMIN_LISTEN", "0.0.0.0:8090")],
                "admin.token_file",
            ),
            (
                &[("CAIRN_GATEWAY_CHAIN_MAX_POLICY_AGE_MS", "3000")],
                "chain.max_policy_age_ms",
            ),
            (
                &[("CAIRN_GATEWAY_REGISTRATION_REREGISTER_AFTER_SECS", "90")],
                "registration.reregister_after_secs",
            ),
            (
                &[("CAIRN_GATEWAY_ATTESTATION_TRUST", "intel")],
                "attestation.pccs_url",
            ),
        ];
        for (vars, key) in cases {
            let e = Config::parse(BASE, env(vars)).unwrap_err();
            assert_eq!(&key_of(e), key, "{vars:?}");
        }
        let e =
            Config::parse(&format!("{BASE}\n[apps.\"0x12\"]\nplain_tcp = true\n"), []).unwrap_err();
        assert_eq!(key_of(e), "apps.0x12");
    }

    #[test]
    fn per_app_options_and_agent_endpoints_parse() {
        let id = "0x00112233445566778899aabbccddeeff00112233";
        let c = Config::parse(
            &format!("{BASE}\n[apps.\"{id}\"]\nplain_tcp = true\nmax_connections = 7\n"),
            [],
        )
        .unwrap();
        let opts = c.options().unwrap();
        let mut key = [0u8; 20];
        hex::decode_to_slice(&id[2..], &mut key).unwrap();
        assert_eq!(
            opts.apps.get(&key),
            Some(&AppOptions {
                plain_tcp: true,
                max_connections: Some(7)
            })
        );
        assert!(
            matches!(parse_agent("unix:/run/a.sock").unwrap(), AgentEndpoint::Unix(p) if p == Path::new("/run/a.sock"))
        );
        assert!(matches!(
            parse_agent("/run/a.sock").unwrap(),
            AgentEndpoint::Unix(_)
        ));
        assert!(
            matches!(parse_agent("tcp:127.0.0.1:9").unwrap(), AgentEndpoint::Tcp(a) if a.port() == 9)
        );
        assert_eq!(
            key_of(parse_agent("tcp:localhost").unwrap_err()),
            "identity.agent"
        );
    }

    #[test]
    fn the_admin_token_is_read_checked_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "abc\n").unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, "0123456789abcdef0123\n").unwrap();
        let with = |p: &Path| {
            Config::parse(
                &format!(
                    "admin_listen = \"0.0.0.0:8090\"\n{BASE}\n[admin]\ntoken_file = {:?}\n",
                    p.display().to_string()
                ),
                [],
            )
            .unwrap()
        };
        assert_eq!(
            key_of(with(&short).options().unwrap_err()),
            "admin.token_file"
        );
        let opts = with(&good).options().unwrap();
        assert_eq!(
            opts.admin_token.as_deref().map(|t| t.as_str()),
            Some("0123456789abcdef0123")
        );
        assert!(!format!("{opts:?}").contains("0123456789abcdef"));
    }
}
