//! [`verify_receipt`]: one release receipt (what a guest got with its keys) checked as
//! an auditor would: the checkpoint is signed by a node registered at the receipt's
//! policy block, the entry is included in it, it records that release, and the policy
//! allowed it.

use alloy::primitives::{Address, B256};
use cairn_protocol::api::Receipt;
use cairn_tlog::{CheckpointVerifier, EntryError, ReleaseKind, ReleaseRecord};

use super::proofs;
use super::source::LogSource;
use crate::client::{ChainClient, PolicyBlock, Verdict};
use crate::error::{Check, Error};
use crate::record::boot_info_of;

/// Why a release receipt does not verify ([`verify_receipt`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// The chain could not be read (the check is incomplete, not failed).
    #[error("the chain could not be read: {0}")]
    Chain(#[from] Error),
    /// The receipt's policy block is not on the chain with the receipt's hash.
    #[error("policy block {number} is not on the chain with hash {recorded} (chain: {actual:?})")]
    PolicyBlockMismatch {
        /// Recorded block number.
        number: u64,
        /// Recorded block hash.
        recorded: B256,
        /// The chain's hash at that number, if the block exists.
        actual: Option<B256>,
    },
    /// The checkpoint is not signed by any KMS node registered at the policy block.
    #[error("the checkpoint is not signed by a KMS node registered at block {number}")]
    UnregisteredSigner {
        /// The policy block the registry was read at.
        number: u64,
    },
    /// The entry index is not inside the checkpoint's tree.
    #[error("log index {index} is outside the checkpoint's tree of size {size}")]
    OutsideCheckpoint {
        /// The receipt's log index.
        index: u64,
        /// The checkpoint's tree size.
        size: u64,
    },
    /// The log source failed or served something else than asked.
    #[error("log source: {detail}")]
    Source {
        /// What went wrong.
        detail: String,
    },
    /// The served entry is not provably included in the checkpoint's tree.
    #[error("the entry is not included in the checkpoint: {detail}")]
    NotIncluded {
        /// Why the inclusion proof failed.
        detail: String,
    },
    /// The entry is not a release record.
    #[error("the entry is not a release record: {0}")]
    BadRecord(#[source] EntryError),
    /// The record is not the release the receipt is for.
    #[error("the logged record differs from the receipt in {field}")]
    Mismatch {
        /// The first differing field.
        field: &'static str,
    },
    /// The release was not allowed by `KmsAuth` at its policy block.
    #[error("the release was not allowed at its policy block ({check}): {reason:?}")]
    NotAllowed {
        /// The typed check.
        check: Check,
        /// The contract's reason.
        reason: String,
    },
}

/// Check a release receipt of `kind` for `app_id` as an auditor would, from the chain
/// and the node's log (`source`, untrusted):
/// 1. the receipt's policy block is on the chain with the receipt's hash;
/// 2. its checkpoint is signed by a KMS node registered (`kmsNodes`) at that block;
/// 3. the entry at the receipt's index is included in the checkpoint's tree (RFC 9162
///    inclusion proof against the signed root);
/// 4. the entry records a release of `kind` to `app_id` by that node, on this chain, at
///    the receipt's policy block;
/// 5. `KmsAuth.isAppAllowed` (`isKmsAllowed` for onboarding) allowed the recorded boot
///    info at that block.
///
/// Returns the verified record.
pub async fn verify_receipt<S: LogSource>(
    chain: &ChainClient,
    source: &mut S,
    receipt: &Receipt,
    app_id: Address,
    kind: ReleaseKind,
) -> Result<ReleaseRecord, ReceiptError> {
    let number = receipt.policy_block_number;
    let recorded = B256::from(receipt.policy_block_hash);
    let actual = chain.find_block(number).await?.map(|b| b.hash);
    if actual != Some(recorded) {
        return Err(ReceiptError::PolicyBlockMismatch {
            number,
            recorded,
            actual,
        });
    }
    let at = PolicyBlock {
        number,
        hash: recorded,
    };

    let origin = receipt.checkpoint.lines().next().unwrap_or_default();
    let (node, cp) = chain
        .kms_nodes(at)
        .await?
        .into_iter()
        .find_map(|n| {
            let cp = CheckpointVerifier::new(origin, n)
                .ok()?
                .open(receipt.checkpoint.as_bytes())
                .ok()?;
            Some((n, cp))
        })
        .ok_or(ReceiptError::UnregisteredSigner { number })?;

    let (index, size) = (receipt.log_index, cp.size());
    if index >= size {
        return Err(ReceiptError::OutsideCheckpoint { index, size });
    }
    let page = source
        .entries(index, index + 1)
        .await
        .map_err(|e| ReceiptError::Source {
            detail: e.to_string(),
        })?;
    let entry = match page.entries.as_slice() {
        [entry] if page.start == index => entry.0.clone(),
        other => {
            return Err(ReceiptError::Source {
                detail: format!(
                    "asked for entry {index}, got {} entries from {}",
                    other.len(),
                    page.start
                ),
            })
        }
    };
    proofs::inclusion(
        source,
        &cairn_tlog::leaf_hash(&entry),
        index,
        (size, cp.root()),
    )
    .await
    .map_err(|detail| ReceiptError::NotIncluded { detail })?;

    let record = ReleaseRecord::decode(&entry).map_err(ReceiptError::BadRecord)?;
    let mismatch = if record.kind != kind {
        Some("kind")
    } else if record.boot.app_id != app_id {
        Some("app_id")
    } else if record.kms_node != node {
        Some("kms_node")
    } else if record.chain_id != chain.chain_id() {
        Some("chain_id")
    } else if record.policy_block_number != number {
        Some("policy_block_number")
    } else if record.policy_block_hash != recorded {
        Some("policy_block_hash")
    } else {
        None
    };
    if let Some(field) = mismatch {
        return Err(ReceiptError::Mismatch { field });
    }

    let boot = boot_info_of(&record);
    let verdict = match kind {
        ReleaseKind::KmsOnboard | ReleaseKind::KmsOnboardReceipt => {
            chain.is_kms_allowed(&boot, at).await
        }
        ReleaseKind::AppKey | ReleaseKind::SignCert => chain.is_app_allowed(&boot, at).await,
    };
    match verdict {
        Ok(Verdict::Allowed) => Ok(record),
        Err(Error::Denied { check, reason }) => Err(ReceiptError::NotAllowed { check, reason }),
        Err(e) => Err(ReceiptError::Chain(e)),
    }
}
