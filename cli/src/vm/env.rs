//! `--env` / `--env-file` for `cairn vm deploy|upgrade`: the plaintext never leaves this
//! process. The app's env key comes from the KMS (its RA-TLS evidence verified against
//! *our* trust root) and is accepted only when the root key registered on *our* chain
//! signed it (`cairn_vmm::encrypt_env`); the VMM receives ciphertext.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use cairn_kms_client::KmsClient;
use cairn_onchain::{ChainClient, ChainConfig};
use cairn_protocol::env::{EnvVar, EnvVars};
use clap::Args;

use crate::common::KmsTrust;
use crate::common::{DEFAULT_PCCS_URL, DEFAULT_SIM_PKI_SEED};

/// Env options of `deploy` and `upgrade`.
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// A variable for the app, NAME=VALUE (repeatable); encrypted here, for the app's
    /// KMS env key. Needs --app-id, the chain (--rpc-url, --chain-id, --kms-auth) and a KMS.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// A file of NAME=VALUE lines (`#` comments), encrypted like --env.
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    /// The KMS to fetch the env key from (default: the first --kms-url).
    #[arg(long, env = "CAIRN_KMS_URL")]
    pub env_kms_url: Option<String>,
    /// The chain's JSON-RPC URL (where the KMS root key is registered).
    #[arg(long, env = "CAIRN_RPC_URL")]
    pub rpc_url: Option<url::Url>,
    /// The chain id.
    #[arg(long, env = "CAIRN_CHAIN_ID")]
    pub chain_id: Option<u64>,
    /// The KmsAuth contract.
    #[arg(long, env = "CAIRN_KMS_AUTH")]
    pub kms_auth: Option<String>,
    /// The root the KMS's attestation is verified against.
    #[arg(long, env = "CAIRN_KMS_TRUST", value_enum, default_value = "intel")]
    pub kms_trust: KmsTrust,
    /// Collateral source for --kms-trust intel.
    #[arg(long, env = "CAIRN_PCCS_URL", default_value = DEFAULT_PCCS_URL)]
    pub pccs_url: String,
    /// The simulator PKI seed for --kms-trust simulator (32 bytes hex).
    #[arg(long, env = "CAIRN_SIM_PKI_SEED", default_value = DEFAULT_SIM_PKI_SEED)]
    pub sim_pki_seed: String,
}

impl EnvArgs {
    /// The variables given, if any.
    fn vars(&self) -> anyhow::Result<Option<EnvVars>> {
        let mut lines: Vec<String> = self.env.clone();
        if let Some(f) = &self.env_file {
            let text = super::read_text(f)?;
            lines.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            );
        }
        if lines.is_empty() {
            return Ok(None);
        }
        let vars = lines
            .iter()
            .map(|l| {
                let (k, v) = l
                    .split_once('=')
                    .ok_or_else(|| anyhow!("env entry {:?} is not NAME=VALUE", k_only(l)))?;
                Ok(EnvVar {
                    key: k.to_owned(),
                    value: v.to_owned(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Some(EnvVars::new(vars).context("env")?))
    }

    /// Encrypt the given variables for `app_id`, or `None` when none were given.
    pub async fn encrypt(
        &self,
        app_id: Option<[u8; 20]>,
        kms_urls: &[String],
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(vars) = self.vars()? else {
            return Ok(None);
        };
        let app_id =
            app_id.ok_or_else(|| anyhow!("--env needs --app-id (the app the env is for)"))?;
        let (Some(rpc), Some(chain_id), Some(kms_auth)) = (
            self.rpc_url.clone(),
            self.chain_id,
            self.kms_auth.as_deref(),
        ) else {
            bail!("--env needs the chain: --rpc-url, --chain-id and --kms-auth (or CAIRN_RPC_URL, CAIRN_CHAIN_ID, CAIRN_KMS_AUTH)");
        };
        let kms_url = self
            .env_kms_url
            .clone()
            .or_else(|| kms_urls.first().cloned())
            .ok_or_else(|| anyhow!("--env needs a KMS: --env-kms-url or --kms-url"))?;
        let kms_auth = kms_auth
            .parse()
            .with_context(|| format!("--kms-auth {kms_auth}"))?;
        let config =
            ChainConfig::new(rpc, chain_id, kms_auth).with_call_timeout(Duration::from_secs(10));
        let chain = ChainClient::connect(&config, None)
            .await
            .context("connecting to the chain")?;
        let now = cairn_onchain::unix_now();
        let kms = self.kms_client(now)?;
        let blob = cairn_vmm::encrypt_env(&kms, &kms_url, &chain, app_id, &vars, now)
            .await
            .context("encrypting the env for the app's KMS key")?;
        Ok(Some(blob))
    }

    fn kms_client(&self, now: u64) -> anyhow::Result<KmsClient> {
        crate::common::kms_client(self.kms_trust, &self.pccs_url, &self.sim_pki_seed, now)
    }
}

/// The name part of an entry, for error messages (never the value).
fn k_only(l: &str) -> String {
    l.chars().take_while(|c| *c != '=').take(64).collect()
}
