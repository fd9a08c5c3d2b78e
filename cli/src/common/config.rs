//! Global flags and `cairn.toml` profiles. Every setting comes from, in order: a flag, its
//! `CAIRN_*` environment variable, the selected profile of `cairn.toml`; a missing one is
//! a [`UsageError`](super::UsageError) naming the flag, the variable and the profile key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use cairn_onchain::alloy::primitives::Address;
use cairn_onchain::alloy::signers::local::PrivateKeySigner;
use cairn_onchain::{ChainClient, ChainConfig};
use clap::Args;
use serde::Deserialize;
use url::Url;

use super::output::fail;
use super::signer::{SignerArgs, SignerSource};

/// Largest `cairn.toml` read.
const MAX_CONFIG: u64 = 256 * 1024;
/// The profile used without `--profile`.
const DEFAULT_PROFILE: &str = "default";

/// Flags of every command.
#[derive(Debug, Args)]
pub struct Global {
    /// Print one JSON object on stdout (errors too: `{"error":{"code","message"}}`).
    #[arg(long, global = true)]
    pub json: bool,
    /// The profile of cairn.toml to use (`[profile.NAME]`; default `default`).
    #[arg(long, global = true, env = "CAIRN_PROFILE")]
    pub profile: Option<String>,
    /// The config file (default: ./cairn.toml when it exists).
    #[arg(long, global = true, env = "CAIRN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Chain, KMS and signer flags of the commands that use them (`app`, `dao`, `kms`).
#[derive(Debug, Args)]
pub struct ChainArgs {
    /// JSON-RPC endpoint(s), comma-separated or repeated; several must agree (--quorum).
    #[arg(
        long = "rpc-url",
        env = "CAIRN_RPC_URL",
        value_delimiter = ',',
        global = true
    )]
    pub rpc_urls: Vec<String>,
    /// How many endpoints must agree on every read.
    #[arg(long, env = "CAIRN_QUORUM", global = true)]
    pub quorum: Option<usize>,
    /// The chain id the endpoints must serve.
    #[arg(long, env = "CAIRN_CHAIN_ID", global = true)]
    pub chain_id: Option<u64>,
    /// The KmsAuth contract (0x…).
    #[arg(long, env = "CAIRN_KMS_AUTH", global = true)]
    pub kms_auth: Option<String>,
    /// The KMS node URL (`https://…`).
    #[arg(long, env = "CAIRN_KMS_URL", global = true)]
    pub kms_url: Option<String>,
    /// Blocks behind the head that reads are pinned to.
    #[arg(long, env = "CAIRN_CONFIRMATIONS", global = true)]
    pub confirmations: Option<u64>,
    /// Refuse a chain head older than this many seconds (a stuck RPC).
    #[arg(long, env = "CAIRN_MAX_HEAD_AGE", global = true, value_name = "SECS")]
    pub max_head_age: Option<u64>,
    /// Seconds each RPC call may take.
    #[arg(long, env = "CAIRN_RPC_TIMEOUT", global = true, value_name = "SECS")]
    pub rpc_timeout: Option<u64>,
    #[command(flatten)]
    pub signer: SignerArgs,
}

/// One profile of `cairn.toml` (every key optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    rpc_url: Option<String>,
    rpc_urls: Option<Vec<String>>,
    quorum: Option<usize>,
    chain_id: Option<u64>,
    kms_auth: Option<String>,
    kms_url: Option<String>,
    confirmations: Option<u64>,
    max_head_age: Option<u64>,
    rpc_timeout: Option<u64>,
    private_key_file: Option<PathBuf>,
    keystore: Option<PathBuf>,
    password_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    profile: std::collections::BTreeMap<String, Profile>,
}

/// The settings of one run: flags over env over profile.
#[derive(Debug)]
pub struct Resolved {
    profile_name: String,
    source: String,
    rpc_urls: Vec<String>,
    quorum: Option<usize>,
    chain_id: Option<u64>,
    kms_auth: Option<String>,
    kms_url: Option<String>,
    confirmations: Option<u64>,
    max_head_age: Option<u64>,
    rpc_timeout: Option<u64>,
    signer: SignerSource,
}

impl Resolved {
    /// Merge `chain` (flags and env) over the profile `global` selects.
    pub fn new(global: &Global, chain: &ChainArgs) -> anyhow::Result<Resolved> {
        let profile_name = global
            .profile
            .clone()
            .unwrap_or_else(|| DEFAULT_PROFILE.to_owned());
        let path = match &global.config {
            Some(p) => Some(p.clone()),
            None => Some(PathBuf::from("cairn.toml")).filter(|p| p.is_file()),
        };
        let (profile, source) = match &path {
            Some(p) => {
                let mut file = load(p)?;
                match file.profile.remove(&profile_name) {
                    Some(profile) => (profile, p.display().to_string()),
                    None if global.profile.is_some() => {
                        return Err(fail(format!(
                            "{}: no [profile.{profile_name}] (profiles: {})",
                            p.display(),
                            file.profile.keys().cloned().collect::<Vec<_>>().join(", ")
                        )));
                    }
                    None => (Profile::default(), p.display().to_string()),
                }
            }
            None if global.profile.is_some() => {
                return Err(fail(format!(
                    "--profile {profile_name}: no cairn.toml here; pass --config FILE"
                )));
            }
            None => (Profile::default(), "cairn.toml".to_owned()),
        };
        let rpc_urls = if !chain.rpc_urls.is_empty() {
            chain.rpc_urls.clone()
        } else if let Some(urls) = profile.rpc_urls {
            urls
        } else {
            profile.rpc_url.into_iter().collect()
        };
        let signer = chain.signer.source(
            profile.private_key_file,
            profile.keystore,
            profile.password_file,
        );
        Ok(Resolved {
            profile_name,
            source,
            rpc_urls,
            quorum: chain.quorum.or(profile.quorum),
            chain_id: chain.chain_id.or(profile.chain_id),
            kms_auth: chain.kms_auth.clone().or(profile.kms_auth),
            kms_url: chain.kms_url.clone().or(profile.kms_url),
            confirmations: chain.confirmations.or(profile.confirmations),
            max_head_age: chain.max_head_age.or(profile.max_head_age),
            rpc_timeout: chain.rpc_timeout.or(profile.rpc_timeout),
            signer,
        })
    }

    /// "missing X: pass --flag, set CAIRN_VAR, or `key` in [profile.P] of FILE".
    fn missing(&self, what: &str, flag: &str, var: &str, key: &str) -> anyhow::Error {
        fail(format!(
            "missing {what}: pass --{flag}, set {var}, or set `{key}` in [profile.{}] of {}",
            self.profile_name, self.source
        ))
    }

    /// The chain config: endpoints, chain id, KmsAuth, confirmations, timeouts.
    pub fn chain_config(&self) -> anyhow::Result<ChainConfig> {
        if self.rpc_urls.is_empty() {
            return Err(self.missing("the chain's RPC URL", "rpc-url", "CAIRN_RPC_URL", "rpc_url"));
        }
        let urls = self
            .rpc_urls
            .iter()
            .map(|u| {
                Url::parse(u.trim()).map_err(|e| fail(format!("--rpc-url {u:?}: not a URL ({e})")))
            })
            .collect::<anyhow::Result<Vec<Url>>>()?;
        let chain_id = self.chain_id.ok_or_else(|| {
            self.missing("the chain id", "chain-id", "CAIRN_CHAIN_ID", "chain_id")
        })?;
        let kms_auth = self.kms_auth()?;
        let quorum = self.quorum.unwrap_or(1);
        let first = urls[0].clone();
        let mut config = ChainConfig::new(first, chain_id, kms_auth)
            .with_rpc_urls(urls, quorum)
            .with_call_timeout(Duration::from_secs(self.rpc_timeout.unwrap_or(10)));
        if let Some(c) = self.confirmations {
            config = config.with_confirmations(c);
        }
        if let Some(secs) = self.max_head_age {
            config = config.with_max_head_age(Duration::from_secs(secs));
        }
        config
            .validate()
            .map_err(|e| fail(format!("chain settings: {e}")))?;
        Ok(config)
    }

    /// The KmsAuth address.
    pub fn kms_auth(&self) -> anyhow::Result<Address> {
        let s = self.kms_auth.as_deref().ok_or_else(|| {
            self.missing(
                "the KmsAuth address",
                "kms-auth",
                "CAIRN_KMS_AUTH",
                "kms_auth",
            )
        })?;
        parse_address("--kms-auth", s)
    }

    /// The KMS URL.
    pub fn kms_url(&self) -> anyhow::Result<String> {
        self.kms_url
            .clone()
            .ok_or_else(|| self.missing("the KMS URL", "kms-url", "CAIRN_KMS_URL", "kms_url"))
    }

    /// The transaction signer (a usage error naming the ways to give one when none is).
    pub fn signer(&self) -> anyhow::Result<PrivateKeySigner> {
        self.signer.load().and_then(|s| {
            s.ok_or_else(|| {
                fail(format!(
                    "missing signer: set CAIRN_PRIVATE_KEY, pass --private-key-file FILE or \
                     --keystore FILE, or set `private_key_file` / `keystore` in [profile.{}] of {}",
                    self.profile_name, self.source
                ))
            })
        })
    }

    /// A read-only chain client.
    pub async fn reader(&self) -> anyhow::Result<ChainClient> {
        let config = self.chain_config()?;
        ChainClient::connect(&config, None)
            .await
            .context("connecting to the chain")
    }

    /// A chain client that sends transactions as the signer.
    pub async fn writer(&self) -> anyhow::Result<ChainClient> {
        let config = self.chain_config()?;
        let signer = self.signer()?;
        ChainClient::connect(&config, Some(signer))
            .await
            .context("connecting to the chain")
    }
}

fn load(path: &Path) -> anyhow::Result<ConfigFile> {
    let bytes = read_bounded(path, MAX_CONFIG)?;
    let text =
        std::str::from_utf8(&bytes).map_err(|_| fail(format!("{}: not UTF-8", path.display())))?;
    toml::from_str(text).map_err(|e| fail(format!("{}: {}", path.display(), e.message())))
}

/// Read at most `max` bytes of `path` (more is a usage error naming the file).
pub fn read_bounded(path: &Path, max: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    let mut buf = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    if buf.len() as u64 > max {
        return Err(fail(format!("{}: larger than {max} bytes", path.display())));
    }
    Ok(buf)
}

/// Parse a `0x…` address; a usage error naming `what` otherwise.
pub fn parse_address(what: &str, s: &str) -> anyhow::Result<Address> {
    s.trim()
        .parse()
        .map_err(|_| fail(format!("{what} {s:?}: not a 0x-prefixed 20-byte address")))
}
