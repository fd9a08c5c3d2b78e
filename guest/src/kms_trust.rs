//! Which KMS a guest trusts (docs/guest.md "Which KMS a guest trusts", docs/security.md
//! "Guest trust in the KMS").
//!
//! `cairn-kms-client` proves *what* a KMS runs (its RA-TLS evidence, usage `kms:rpc`) and
//! that its TLS certificate is issued by the root CA it returns. That is not enough: any
//! TDX machine can run a KMS-looking service with its own root and hand out keys its
//! operator knows. So the guest also needs to know *which* KMS it wants:
//!
//! 1. **The pin** (mandatory outside the simulator): `key_provider_id` in the measured
//!    `app-compose.json`, the SPKI of the KMS root CA. A boot on real TDX without one is
//!    refused before anything is measured ([`Error::KmsPinRequired`]); the root the KMS
//!    returns must equal it ([`Error::KeyProviderMismatch`], checked in `boot`).
//! 2. **The chain** (when `sys-config.json` names an RPC endpoint and KmsAuth): before the
//!    guest asks a KMS for keys, `KmsAuth.isKmsAllowed` at a pinned block must allow that
//!    KMS's boot info, built from its *verified* quote and the OS image manifest it serves
//!    (checked against its MRTD/RTMR0-2). A KMS the chain no longer allows (a revoked
//!    image, device or measurement) is skipped like any failing KMS.

use std::time::Duration;

use cairn_attestation::{RaTlsCert, Tee};
use cairn_kms_client::{AppKeyRelease, KmsClient};
use cairn_onchain::alloy::primitives::Address;
use cairn_onchain::{ChainClient, ChainConfig};
use cairn_protocol::sysconfig::ChainSection;

use crate::error::{Error, Result};
use crate::share::HostShare;

/// Timeout of one chain read (`eth_call`, block lookup).
pub const CHAIN_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What a KMS must satisfy besides its evidence: the pin, and the chain's verdict.
pub(crate) struct KmsTrust {
    /// The pinned root CA SPKI (DER), `None` only on the simulator.
    pub(crate) pin: Option<Vec<u8>>,
    /// KmsAuth, when sys-config names it.
    chain: Option<ChainClient>,
    /// The block the VMM's pre-flight saw this app allowed at (sys-config
    /// `chain.min_policy_block`), sent with the key request so that a lagging KMS waits
    /// for it rather than refusing a fresh deploy.
    min_policy_block: Option<u64>,
}

impl KmsTrust {
    /// The rules for this boot, decided before anything is measured: the pin from the
    /// measured compose (required unless `tee` is the simulator), and a chain client
    /// when sys-config has a `chain` section (connected now: chain id and KmsAuth
    /// checked; failing closed).
    pub(crate) async fn for_boot(share: &HostShare, tee: &dyn Tee) -> Result<Self> {
        let pin = share.compose.pinned_key_provider_id()?;
        if pin.is_none() && !tee.is_simulated() {
            return Err(Error::KmsPinRequired);
        }
        let chain = match &share.sys_config.chain {
            None => None,
            Some(section) => Some(connect(section).await?),
        };
        let min_policy_block = share
            .sys_config
            .chain
            .as_ref()
            .and_then(|c| c.min_policy_block);
        Ok(KmsTrust {
            pin,
            chain,
            min_policy_block,
        })
    }

    /// Ask each KMS URL in turn; the first that passes every check releases the keys.
    /// Every failure is kept, in order ([`Error::AllKmsFailed`]).
    pub(crate) async fn request_keys(
        &self,
        kms: &KmsClient,
        urls: &[String],
        client_cert: &RaTlsCert,
    ) -> Result<(String, AppKeyRelease)> {
        let mut failures = Vec::new();
        for url in urls {
            match self.request_one(kms, url, client_cert).await {
                Ok(release) => {
                    tracing::info!(kms = %url, kms_app_id = %release.kms.app_id(), kms_compose_hash = %release.kms.compose_hash(), "KMS released keys");
                    return Ok((url.clone(), release));
                }
                Err(e) => {
                    tracing::warn!(kms = %url, error = %e, "KMS request failed");
                    failures.push((url.clone(), e));
                }
            }
        }
        Err(Error::AllKmsFailed(failures))
    }

    /// One KMS: connect (evidence verified), the chain's verdict on it, then `app-key`
    /// (its root CA checked to have issued its TLS certificate).
    async fn request_one(
        &self,
        kms: &KmsClient,
        url: &str,
        client_cert: &RaTlsCert,
    ) -> Result<AppKeyRelease, cairn_kms_client::Error> {
        let mut conn = kms.connect(url, Some(client_cert)).await?;
        if let Some(chain) = &self.chain {
            let at = conn.check_kms_allowed(chain).await?;
            tracing::info!(kms = %url, block = at.number, "KmsAuth allows the KMS");
        }
        // During a rotation's window the previous generation's keys come too (nothing
        // otherwise): the app re-encrypts with them (docs/rotation.md). The pre-flight's
        // block lets a KMS whose head lags wait for the deploy instead of refusing it.
        conn.app_key_with(&cairn_protocol::api::AppKeyRequest {
            previous_generation: Some(cairn_protocol::api::PreviousGeneration::IfServed),
            min_policy_block: self.min_policy_block,
        })
        .await
    }
}

/// A read-only client of the KmsAuth named in sys-config.
async fn connect(section: &ChainSection) -> Result<ChainClient> {
    let rpc_url = url::Url::parse(&section.rpc_url).map_err(Error::ChainRpcUrl)?;
    let kms_auth = Address::from(section.kms_auth()?);
    let config = ChainConfig::new(rpc_url, section.chain_id, kms_auth)
        .with_confirmations(section.confirmations())
        .with_call_timeout(CHAIN_CALL_TIMEOUT);
    ChainClient::connect(&config, None)
        .await
        .map_err(Error::Chain)
}
