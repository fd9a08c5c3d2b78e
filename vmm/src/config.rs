//! The VMM's configuration: one TOML file, then `CAIRN_VMM_*` environment overrides
//! (e.g. `CAIRN_VMM_CHAIN_RPC_URL` for `chain.rpc_url`; lists comma-separated), then the
//! binary's flags. Unknown keys are errors; every error names the key.
//!
//! ```toml
//! state_dir = "/var/lib/cairn-vmm"
//!
//! [api]
//! unix_socket = "/run/cairn-vmm.sock"    # mode 0600
//! tcp = "127.0.0.1:9080"                 # a non-loopback address needs token_file
//! token_file = "/etc/cairn/vmm.token"    # bearer token required on TCP when set
//!
//! [chain]                                # the pre-flight reads policy here
//! rpc_url = "http://127.0.0.1:8545"
//! chain_id = 31337
//! kms_auth = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
//! confirmations = 2
//! timeout_ms = 3000
//!
//! [cvm]
//! kms_urls = ["https://127.0.0.1:8443"]  # default sys-config of new CVMs
//! gateway_urls = []
//! port_range = [20000, 20999]            # host ports handed out (loopback)
//! max_cvms = 128
//! max_vcpus = 16                         # per CVM
//! max_memory_mb = 65536                  # per CVM
//! approval_poll_ms = 2000                # wait_for_approval polls the chain this often
//! stop_grace_ms = 10000                  # SIGTERM → SIGKILL
//! # device_id = "0x…"                    # this host's device id, for the Device check
//!
//! [backend]
//! kind = "process"                       # or "qemu"
//! [backend.process]
//! guest_bin = "cairn-guest"
//! guest_args = ["--kms-trust", "simulator"]
//! [backend.qemu]
//! qemu = "qemu-system-x86_64"
//!
//! [[image]]                              # process backend: the simulator's image
//! name = "cairn-os"
//! version = "1.0"
//! kind = "simulator"
//!
//! [logs]
//! max_bytes = 1048576                    # console log rotated past this
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_onchain::alloy::primitives::Address;
use cairn_onchain::ChainConfig;
use cairn_service::EnvKinds;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Prefix of the environment overrides.
pub const ENV_PREFIX: &str = "CAIRN_VMM_";
/// Largest config file read.
pub const MAX_CONFIG_LEN: u64 = 1024 * 1024;
/// Largest token file read.
pub const MAX_TOKEN_LEN: u64 = 4096;
/// Shortest bearer token accepted.
pub const MIN_TOKEN_LEN: usize = 16;
/// Default policy confirmations.
pub const DEFAULT_CONFIRMATIONS: u64 = 2;
/// Default per-call RPC timeout, milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 3000;
/// Default host port range.
pub const DEFAULT_PORT_RANGE: [u16; 2] = [20000, 20999];
/// Default most CVMs.
pub const DEFAULT_MAX_CVMS: usize = 128;
/// Default most vCPUs of one CVM.
pub const DEFAULT_MAX_VCPUS: u32 = 16;
/// Default most memory of one CVM, MiB.
pub const DEFAULT_MAX_MEMORY_MB: u32 = 65536;
/// Default `wait_for_approval` poll interval, milliseconds.
pub const DEFAULT_APPROVAL_POLL_MS: u64 = 2000;
/// Default time between SIGTERM and SIGKILL, milliseconds (the guest itself gives its
/// app 5 s).
pub const DEFAULT_STOP_GRACE_MS: u64 = 10_000;
/// Default console log size before rotation.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 1024 * 1024;
/// Default rotation check interval, milliseconds.
pub const DEFAULT_LOG_CHECK_MS: u64 = 1000;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where manifests, states, host shares and logs live (`cvms/<id>/`).
    pub state_dir: PathBuf,
    /// The API listeners.
    #[serde(default)]
    pub api: ApiSection,
    /// The chain the pre-flight reads.
    pub chain: ChainSection,
    /// CVM defaults and limits.
    #[serde(default)]
    pub cvm: CvmSection,
    /// The backend.
    #[serde(default)]
    pub backend: BackendSection,
    /// The OS images CVMs may use.
    #[serde(default, rename = "image")]
    pub images: Vec<ImageSection>,
    /// Console log capture.
    #[serde(default)]
    pub logs: LogsSection,
}

/// `[api]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// A unix socket to serve on (created with mode 0600).
    pub unix_socket: Option<PathBuf>,
    /// A TCP address to serve on.
    pub tcp: Option<SocketAddr>,
    /// A file holding the bearer token required on TCP (at least [`MIN_TOKEN_LEN`]
    /// bytes). Required when `tcp` is not a loopback address.
    pub token_file: Option<PathBuf>,
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
    /// Policy is read at `head − confirmations`.
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
    /// Per-call RPC timeout, milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_confirmations() -> u64 {
    DEFAULT_CONFIRMATIONS
}
fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// `[cvm]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CvmSection {
    /// KMS URLs written into new CVMs' `sys-config.json`.
    #[serde(default)]
    pub kms_urls: Vec<String>,
    /// Gateway URLs written into new CVMs' `sys-config.json`.
    #[serde(default)]
    pub gateway_urls: Vec<String>,
    /// A PCCS for the guests (`sys-config.json` `pccs_url`).
    pub pccs_url: Option<String>,
    /// Host ports handed out, inclusive.
    #[serde(default = "default_port_range")]
    pub port_range: [u16; 2],
    /// Most CVMs.
    #[serde(default = "default_max_cvms")]
    pub max_cvms: usize,
    /// Most vCPUs of one CVM.
    #[serde(default = "default_max_vcpus")]
    pub max_vcpus: u32,
    /// Most memory of one CVM, MiB.
    #[serde(default = "default_max_memory_mb")]
    pub max_memory_mb: u32,
    /// How often `wait_for_approval` asks the chain, milliseconds.
    #[serde(default = "default_approval_poll_ms")]
    pub approval_poll_ms: u64,
    /// Time between SIGTERM and SIGKILL on stop, milliseconds.
    #[serde(default = "default_stop_grace_ms")]
    pub stop_grace_ms: u64,
    /// This host's device id (32 bytes hex), so the pre-flight can judge the Device check;
    /// without it the Device check is left to the KMS.
    pub device_id: Option<String>,
}

impl Default for CvmSection {
    fn default() -> Self {
        CvmSection {
            kms_urls: Vec::new(),
            gateway_urls: Vec::new(),
            pccs_url: None,
            port_range: DEFAULT_PORT_RANGE,
            max_cvms: DEFAULT_MAX_CVMS,
            max_vcpus: DEFAULT_MAX_VCPUS,
            max_memory_mb: DEFAULT_MAX_MEMORY_MB,
            approval_poll_ms: DEFAULT_APPROVAL_POLL_MS,
            stop_grace_ms: DEFAULT_STOP_GRACE_MS,
            device_id: None,
        }
    }
}

fn default_port_range() -> [u16; 2] {
    DEFAULT_PORT_RANGE
}
fn default_max_cvms() -> usize {
    DEFAULT_MAX_CVMS
}
fn default_max_vcpus() -> u32 {
    DEFAULT_MAX_VCPUS
}
fn default_max_memory_mb() -> u32 {
    DEFAULT_MAX_MEMORY_MB
}
fn default_approval_poll_ms() -> u64 {
    DEFAULT_APPROVAL_POLL_MS
}
fn default_stop_grace_ms() -> u64 {
    DEFAULT_STOP_GRACE_MS
}

/// Which backend runs CVMs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// `cairn-guest` processes on the TDX simulator (development, tests).
    #[default]
    Process,
    /// TDX VMs under QEMU/KVM.
    Qemu,
}

/// `[backend]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    /// Which backend.
    #[serde(default)]
    pub kind: BackendKind,
    /// The `setsid` binary (util-linux): each guest / QEMU runs in its own session, so
    /// stopping it reaches everything it started.
    #[serde(default = "default_setsid")]
    pub setsid: PathBuf,
    /// Environment of the guest / QEMU process, which otherwise starts from an empty
    /// environment plus the VMM's `PATH` (e.g. `RUST_LOG = "info"`).
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// `[backend.process]`.
    #[serde(default)]
    pub process: ProcessSection,
    /// `[backend.qemu]`.
    #[serde(default)]
    pub qemu: QemuSection,
}

impl Default for BackendSection {
    fn default() -> Self {
        BackendSection {
            kind: BackendKind::default(),
            setsid: default_setsid(),
            env: Default::default(),
            process: ProcessSection::default(),
            qemu: QemuSection::default(),
        }
    }
}

/// `[backend.process]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSection {
    /// The `cairn-guest` binary.
    #[serde(default = "default_guest_bin")]
    pub guest_bin: PathBuf,
    /// Extra arguments of `cairn-guest boot` (e.g. simulator seeds, `--kms-trust`).
    #[serde(default)]
    pub guest_args: Vec<String>,
}

impl Default for ProcessSection {
    fn default() -> Self {
        ProcessSection {
            guest_bin: default_guest_bin(),
            guest_args: Vec::new(),
        }
    }
}

fn default_guest_bin() -> PathBuf {
    PathBuf::from("cairn-guest")
}
fn default_setsid() -> PathBuf {
    PathBuf::from("setsid")
}

/// `[backend.qemu]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuSection {
    /// The QEMU binary.
    #[serde(default = "default_qemu")]
    pub qemu: PathBuf,
    /// The KVM device (must exist).
    #[serde(default = "default_kvm")]
    pub kvm_device: PathBuf,
    /// KVM's TDX switch (must read `Y`).
    #[serde(default = "default_tdx_param")]
    pub tdx_param: PathBuf,
    /// First vsock CID handed out.
    #[serde(default = "default_cid_start")]
    pub cid_start: u32,
    /// The vsock port the guest reports to (`host_api_url = vsock://2:PORT`).
    #[serde(default = "default_host_api_port")]
    pub host_api_port: u32,
}

impl Default for QemuSection {
    fn default() -> Self {
        QemuSection {
            qemu: default_qemu(),
            kvm_device: default_kvm(),
            tdx_param: default_tdx_param(),
            cid_start: default_cid_start(),
            host_api_port: default_host_api_port(),
        }
    }
}

fn default_qemu() -> PathBuf {
    PathBuf::from("qemu-system-x86_64")
}
fn default_kvm() -> PathBuf {
    PathBuf::from("/dev/kvm")
}
fn default_tdx_param() -> PathBuf {
    PathBuf::from("/sys/module/kvm_intel/parameters/tdx")
}
fn default_cid_start() -> u32 {
    1000
}
fn default_host_api_port() -> u32 {
    10000
}

/// How an image is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageKindConfig {
    /// The simulator's image of this name and version (process backend).
    Simulator,
    /// A real TDX image (qemu backend): manifest and boot files.
    Tdx,
}

/// `[[image]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSection {
    /// Image name (CVMs reference `name:version`).
    pub name: String,
    /// Image version.
    pub version: String,
    /// Simulator or real.
    pub kind: ImageKindConfig,
    /// tdx: the measurement manifest (canonical JSON; its SHA-256 is the OS image hash).
    pub manifest: Option<PathBuf>,
    /// tdx: the TDVF firmware.
    pub firmware: Option<PathBuf>,
    /// tdx: the kernel.
    pub kernel: Option<PathBuf>,
    /// tdx: the initrd.
    pub initrd: Option<PathBuf>,
    /// tdx: the kernel command line.
    pub cmdline: Option<String>,
}

/// `[logs]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsSection {
    /// A console log past this size is rotated (one previous file kept).
    #[serde(default = "default_log_max_bytes")]
    pub max_bytes: u64,
    /// How often sizes are checked, milliseconds.
    #[serde(default = "default_log_check_ms")]
    pub check_ms: u64,
}

impl Default for LogsSection {
    fn default() -> Self {
        LogsSection {
            max_bytes: DEFAULT_LOG_MAX_BYTES,
            check_ms: DEFAULT_LOG_CHECK_MS,
        }
    }
}

fn default_log_max_bytes() -> u64 {
    DEFAULT_LOG_MAX_BYTES
}
fn default_log_check_ms() -> u64 {
    DEFAULT_LOG_CHECK_MS
}

/// Every key that may be overridden from the environment.
const ENV_KEYS: &[&str] = &[
    "state_dir",
    "api.unix_socket",
    "api.tcp",
    "api.token_file",
    "chain.rpc_url",
    "chain.chain_id",
    "chain.kms_auth",
    "chain.confirmations",
    "chain.timeout_ms",
    "cvm.kms_urls",
    "cvm.gateway_urls",
    "cvm.pccs_url",
    "cvm.max_cvms",
    "cvm.device_id",
    "backend.kind",
    "backend.process.guest_bin",
    "backend.qemu.qemu",
    "logs.max_bytes",
];

fn read_bounded(path: &Path, key: &str, max: u64) -> Result<Vec<u8>> {
    Ok(cairn_service::read_bounded(path, key, max)?)
}

/// How the environment values of [`ENV_KEYS`] parse.
const ENV_KINDS: &EnvKinds = &EnvKinds {
    ints: &[
        "chain.chain_id",
        "chain.confirmations",
        "chain.timeout_ms",
        "cvm.max_cvms",
        "logs.max_bytes",
    ],
    floats: &[],
    bools: &[],
    lists: &["cvm.kms_urls", "cvm.gateway_urls"],
};

impl Config {
    /// Parse TOML text, then apply `env` overrides (`CAIRN_VMM_<KEY>`, dots as `_`).
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
        let [lo, hi] = self.cvm.port_range;
        if lo == 0 || lo > hi {
            return Err(Error::config(
                "cvm.port_range",
                "needs [first, last] with 0 < first <= last",
            ));
        }
        cairn_protocol::sysconfig::check_urls(&self.cvm.kms_urls, "kms_urls")
            .map_err(|e| Error::config("cvm.kms_urls", e.to_string()))?;
        cairn_protocol::sysconfig::check_urls(&self.cvm.gateway_urls, "gateway_urls")
            .map_err(|e| Error::config("cvm.gateway_urls", e.to_string()))?;
        if self.chain.timeout_ms == 0 {
            return Err(Error::config("chain.timeout_ms", "must be > 0"));
        }
        if self.cvm.max_cvms == 0 {
            return Err(Error::config("cvm.max_cvms", "must be > 0"));
        }
        if self.cvm.approval_poll_ms == 0 {
            return Err(Error::config("cvm.approval_poll_ms", "must be > 0"));
        }
        if self.logs.max_bytes < 4096 {
            return Err(Error::config("logs.max_bytes", "must be at least 4096"));
        }
        if self.logs.check_ms == 0 {
            return Err(Error::config("logs.check_ms", "must be > 0"));
        }
        self.device_id()?;
        if self.images.is_empty() {
            return Err(Error::config("image", "configure at least one [[image]]"));
        }
        Ok(())
    }

    /// The configured device id, if any.
    pub fn device_id(&self) -> Result<Option<[u8; 32]>> {
        let Some(v) = self.cvm.device_id.as_deref() else {
            return Ok(None);
        };
        let mut out = [0u8; 32];
        hex::decode_to_slice(v.strip_prefix("0x").unwrap_or(v), &mut out)
            .map_err(|e| Error::config("cvm.device_id", format!("need 32 bytes of hex: {e}")))?;
        Ok(Some(out))
    }

    /// The bearer token, read from `api.token_file` (trailing whitespace trimmed).
    pub fn token(&self) -> Result<Option<String>> {
        let Some(path) = &self.api.token_file else {
            return Ok(None);
        };
        let bytes = read_bounded(path, "api.token_file", MAX_TOKEN_LEN)?;
        let token = String::from_utf8(bytes)
            .map_err(|_| Error::config("api.token_file", "not UTF-8"))?
            .trim()
            .to_owned();
        if token.len() < MIN_TOKEN_LEN {
            return Err(Error::config(
                "api.token_file",
                format!("the token must be at least {MIN_TOKEN_LEN} bytes"),
            ));
        }
        Ok(Some(token))
    }

    /// The chain client settings.
    pub fn chain_config(&self) -> ChainConfig {
        ChainConfig::new(
            self.chain.rpc_url.clone(),
            self.chain.chain_id,
            self.chain.kms_auth,
        )
        .with_confirmations(self.chain.confirmations)
        .with_call_timeout(Duration::from_millis(self.chain.timeout_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
state_dir = "/tmp/vmm"
[chain]
rpc_url = "http://127.0.0.1:8545"
chain_id = 31337
kms_auth = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
[[image]]
name = "cairn-os"
version = "1.0"
kind = "simulator"
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
        assert_eq!(c.cvm.port_range, DEFAULT_PORT_RANGE);
        assert_eq!(c.backend.kind, BackendKind::Process);
        let c = Config::parse(
            BASE,
            [
                ("CAIRN_VMM_CHAIN_CHAIN_ID".to_owned(), "5".to_owned()),
                (
                    "CAIRN_VMM_CVM_KMS_URLS".to_owned(),
                    "https://a:1, https://b:2".to_owned(),
                ),
                ("CAIRN_VMM_BACKEND_KIND".to_owned(), "qemu".to_owned()),
            ],
        )
        .unwrap();
        assert_eq!(c.chain.chain_id, 5);
        assert_eq!(c.cvm.kms_urls, vec!["https://a:1", "https://b:2"]);
        assert_eq!(c.backend.kind, BackendKind::Qemu);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = Config::parse(&format!("{BASE}\n[logs]\nbogus = 1\n"), []).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e =
            Config::parse(BASE, [("CAIRN_VMM_CHAIN_TIMEOUT_MS".into(), "x".into())]).unwrap_err();
        assert_eq!(key_of(e), "chain.timeout_ms");
        let e = Config::parse(&format!("{BASE}\n[cvm]\nport_range = [30, 20]\n"), []).unwrap_err();
        assert_eq!(key_of(e), "cvm.port_range");
        let e =
            Config::parse(&format!("{BASE}\n[cvm]\nkms_urls = [\"ftp://x\"]\n"), []).unwrap_err();
        assert_eq!(key_of(e), "cvm.kms_urls");
        let e = Config::parse(&format!("{BASE}\n[cvm]\ndevice_id = \"0x12\"\n"), []).unwrap_err();
        assert_eq!(key_of(e), "cvm.device_id");
        let no_images = BASE.split("[[image]]").next().unwrap_or_default();
        assert_eq!(key_of(Config::parse(no_images, []).unwrap_err()), "image");
    }

    #[test]
    fn short_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "short\n").unwrap();
        let text = format!("{BASE}\n[api]\ntoken_file = {:?}\n", path);
        let c = Config::parse(&text, []).unwrap();
        assert_eq!(key_of(c.token().unwrap_err()), "api.token_file");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        assert_eq!(c.token().unwrap().as_deref(), Some("0123456789abcdef0123"));
    }
}
