//! What the chain says about a KMS node: its boot info from its verified evidence, and
//! `KmsAuth.isKmsAllowed` at a pinned block (DESIGN.md §4-5, docs/guest.md "Which KMS a
//! guest trusts").

use cairn_attestation::{OsImageManifest, VerifiedQuote};
use cairn_onchain::alloy::primitives::{Address, B256};
use cairn_onchain::{BootInfo, ChainClient, PolicyBlock};

use crate::connection::KmsConnection;
use crate::error::{Error, Result};

/// The `AppBootInfo` the contracts judge for a verified quote of a TD running the OS
/// image whose hash is `os_image_hash` (the one place it is built: the KMS uses it for
/// its callers and itself, clients for a KMS).
pub fn boot_info(quote: &VerifiedQuote, os_image_hash: [u8; 32]) -> BootInfo {
    BootInfo {
        appId: Address::from(quote.app_id().0),
        composeHash: B256::from(quote.compose_hash().0),
        instanceId: Address::from(quote.instance_id().to_address_bytes()),
        deviceId: B256::from(quote.device_id().0),
        mrAggregated: B256::from(quote.mr_aggregated().0),
        mrSystem: B256::from(quote.mr_system().0),
        osImageHash: B256::from(os_image_hash),
        tcbStatus: quote.tcb_status().to_owned(),
        advisoryIds: quote.advisory_ids().to_vec(),
    }
}

impl KmsConnection {
    /// The KMS node's boot info: its OS image manifest from `GET /v1/meta`, accepted only
    /// if its MRTD/RTMR0-2 are the ones in the node's verified quote
    /// ([`Error::KmsImageMismatch`]); every other field comes from the verified quote.
    pub async fn kms_boot_info(&mut self) -> Result<BootInfo> {
        let meta = self.meta().await?;
        let addr = self.addr();
        let manifest =
            OsImageManifest::parse(meta.os_image_manifest.as_bytes()).map_err(|source| {
                Error::KmsImage {
                    addr: addr.clone(),
                    source,
                }
            })?;
        let quote = self.peer().identity();
        if !manifest.matches(quote.measurements()) {
            return Err(Error::KmsImageMismatch { addr });
        }
        Ok(boot_info(quote, manifest.os_image_hash().0))
    }

    /// `KmsAuth.isKmsAllowed(boot info of this KMS)` at `chain`'s pinned block
    /// (head − confirmations): its measurements, device, OS image and TCB status must be
    /// allowed. A denial is [`Error::KmsPolicy`] carrying the contract's check and reason;
    /// an unreachable chain fails closed (retryable). Returns the block judged at.
    pub async fn check_kms_allowed(&mut self, chain: &ChainClient) -> Result<PolicyBlock> {
        let boot = self.kms_boot_info().await?;
        let policy = |source| Error::KmsPolicy {
            addr: self.addr(),
            source: Box::new(source),
        };
        let at = chain.policy_block().await.map_err(policy)?;
        chain.is_kms_allowed(&boot, at).await.map_err(policy)?;
        Ok(at)
    }
}
