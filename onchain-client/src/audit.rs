//! Auditing light client of one KMS node's key-release log (DESIGN.md §6, "Audit").
//!
//! [`audit_app`] checks, for one app, every release the node logged:
//! 1. the node's on-chain anchors (`CheckpointAnchored`) are pairwise consistent, and the
//!    source's current checkpoint is signed by the node and extends the last anchor;
//! 2. each of the app's entries is included in the latest verified tree head;
//! 3. each release was allowed by `KmsAuth` at its recorded policy block (by number,
//!    hash checked against the record).
//!
//! Every problem is a typed [`Finding`] in the [`AuditReport`]; only chain failures
//! (the auditor cannot read the chain) are errors. Data from the [`LogSource`] is never
//! trusted: every read is bounded and a misbehaving source yields findings, not panics.
//!
//! [`verify_receipt`] checks one release receipt (what a guest got with its keys) the
//! same way: the checkpoint is signed by a node registered at the receipt's policy block,
//! the entry is included in it, it records that release, and the policy allowed it.

use std::future::Future;

use alloy::primitives::{Address, B256};
use cairn_protocol::api::{
    ConsistencyProofResponse, InclusionProofResponse, LogEntriesResponse, Receipt,
    MAX_LOG_ENTRIES_PER_RESPONSE, MAX_PROOF_HASHES,
};
use cairn_tlog::{
    leaf_hash, verify_consistency, verify_inclusion, Checkpoint, CheckpointVerifier, EntryError,
    Hash, ReleaseKind, ReleaseRecord,
};

use crate::client::{BootInfo, ChainClient, PolicyBlock, Verdict};
use crate::error::{Check, Error};
use crate::history::BlockRange;

/// Most log entries one audit reads (bounds time and memory against a huge claimed size).
pub const MAX_AUDIT_ENTRIES: u64 = 1 << 20;

/// A source failed to answer (transport, status or body). Carries a description only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log source: {0}")]
pub struct SourceError(pub String);

/// Where the auditor reads a node's log: the KMS's public `/v1/log/*` endpoints, or
/// anything serving the same wire types. Nothing it returns is trusted.
pub trait LogSource {
    /// The node's current signed checkpoint (C2SP signed note text).
    fn checkpoint(&mut self) -> impl Future<Output = Result<String, SourceError>> + Send;
    /// Entries `start..end` (a source may return fewer, never more).
    fn entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<LogEntriesResponse, SourceError>> + Send;
    /// Inclusion proof of leaf `index` in the tree of size `size`.
    fn inclusion_proof(
        &mut self,
        index: u64,
        size: u64,
    ) -> impl Future<Output = Result<InclusionProofResponse, SourceError>> + Send;
    /// Consistency proof from size `first` to size `second`.
    fn consistency_proof(
        &mut self,
        first: u64,
        second: u64,
    ) -> impl Future<Output = Result<ConsistencyProofResponse, SourceError>> + Send;
}

/// One problem the audit found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Two successive on-chain anchors are not consistent (or no valid proof was served):
    /// the node's log was forked or rewritten between them.
    ForkedAnchors {
        /// Older anchored size.
        first: u64,
        /// Newer anchored size.
        second: u64,
        /// Why the consistency check failed.
        detail: String,
    },
    /// The source's checkpoint is missing, malformed or not signed by the node.
    BadCheckpoint {
        /// Why.
        detail: String,
    },
    /// The source's checkpoint does not extend the node's last anchor (forked, rolled
    /// back, or no valid consistency proof served).
    CheckpointNotConsistent {
        /// Last anchored size.
        anchor_size: u64,
        /// Checkpoint size.
        checkpoint_size: u64,
        /// Why.
        detail: String,
    },
    /// Neither a valid checkpoint nor an anchor: nothing can be proven logged.
    NoVerifiedHead,
    /// The source did not serve entries `start..` correctly; the rest was not read.
    EntriesUnavailable {
        /// First index not read.
        start: u64,
        /// Why.
        detail: String,
    },
    /// The verified head is larger than [`MAX_AUDIT_ENTRIES`]; only a prefix was read.
    Truncated {
        /// The verified size.
        size: u64,
    },
    /// An entry is not a valid release record.
    UndecodableEntry {
        /// Log index.
        index: u64,
        /// The decoding error.
        detail: String,
    },
    /// A release of the app whose entry is not provably in the verified tree (the
    /// served entry or proof does not verify against the verified root).
    NotLogged {
        /// Log index.
        index: u64,
        /// Why.
        detail: String,
    },
    /// The recorded policy block does not exist or its hash differs from the record's.
    PolicyBlockMismatch {
        /// Log index.
        index: u64,
        /// Recorded block number.
        number: u64,
        /// Recorded block hash.
        recorded: B256,
        /// The chain's hash at that number, if the block exists.
        actual: Option<B256>,
    },
    /// The release was not allowed by `KmsAuth` at its recorded policy block.
    NotAllowed {
        /// Log index.
        index: u64,
        /// The contract's reason.
        reason: String,
    },
    /// The record names another chain or another releasing node.
    WrongOrigin {
        /// Log index.
        index: u64,
        /// What differs.
        detail: String,
    },
}

/// One release of the app found in the log, with its verdicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditedRelease {
    /// Log index.
    pub index: u64,
    /// The decoded record (as served by the source).
    pub record: ReleaseRecord,
    /// Included in the verified tree head.
    pub logged: bool,
    /// Allowed by `KmsAuth` at the recorded (hash-checked) policy block.
    pub allowed: bool,
}

/// The outcome of [`audit_app`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// The audited node.
    pub node: Address,
    /// The audited app.
    pub app_id: Address,
    /// How many of the node's anchors were found on chain.
    pub anchors: usize,
    /// Size of the tree head the releases were checked against (`None` = none verified).
    pub verified_size: Option<u64>,
    /// The app's releases, in log order.
    pub releases: Vec<AuditedRelease>,
    /// Every problem found.
    pub findings: Vec<Finding>,
}

impl AuditReport {
    /// No findings: every release of the app is logged, allowed, on an unforked log.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

fn hashes(v: &[cairn_protocol::api::Hash32]) -> Result<Vec<Hash>, String> {
    if v.len() > MAX_PROOF_HASHES {
        return Err(format!("proof has {} hashes", v.len()));
    }
    Ok(v.iter().map(|h| Hash(h.0)).collect())
}

async fn check_consistency<S: LogSource>(
    source: &mut S,
    (first, old): (u64, Hash),
    (second, new): (u64, Hash),
) -> Result<(), String> {
    if first == second {
        // No proof needed: equal sizes must have equal roots.
        return verify_consistency(first, second, &old, &new, &[]).map_err(|e| e.to_string());
    }
    let proof = source
        .consistency_proof(first, second)
        .await
        .map_err(|e| e.to_string())?;
    if proof.first != first || proof.second != second {
        return Err(format!(
            "proof is for {}→{}, asked {first}→{second}",
            proof.first, proof.second
        ));
    }
    let proof = hashes(&proof.hashes)?;
    verify_consistency(first, second, &old, &new, &proof).map_err(|e| e.to_string())
}

/// Audit every release of `app_id` logged by `node`, reading the log from `source` and
/// anchors and policy from `chain` (see the module docs and `docs/onchain-client.md`).
///
/// Errors only when the chain cannot be read (the audit is then incomplete and says
/// nothing); everything wrong with the log or the releases is a [`Finding`].
pub async fn audit_app<S: LogSource>(
    chain: &ChainClient,
    source: &mut S,
    node: Address,
    app_id: Address,
) -> Result<AuditReport, Error> {
    let mut findings = Vec::new();
    let head = chain.head().await?.number;

    // (1) Anchors, pairwise consistent.
    let anchors: Vec<(u64, Hash)> = chain
        .anchors(BlockRange::new(0, head))
        .await?
        .into_iter()
        .filter(|a| a.event.node == node)
        .map(|a| (a.event.treeSize, Hash(a.event.rootHash.0)))
        .collect();
    for pair in anchors.windows(2) {
        if let Err(detail) = check_consistency(source, pair[0], pair[1]).await {
            findings.push(Finding::ForkedAnchors {
                first: pair[0].0,
                second: pair[1].0,
                detail,
            });
        }
    }
    let last_anchor = anchors.last().copied();

    // The source's checkpoint: signed by the node, extends the last anchor.
    let checkpoint: Option<Checkpoint> = match source.checkpoint().await {
        Err(e) => {
            findings.push(Finding::BadCheckpoint {
                detail: e.to_string(),
            });
            None
        }
        Ok(text) => {
            let origin = text.lines().next().unwrap_or_default();
            match CheckpointVerifier::new(origin, node).and_then(|v| v.open(text.as_bytes())) {
                Ok(cp) => Some(cp),
                Err(e) => {
                    findings.push(Finding::BadCheckpoint {
                        detail: e.to_string(),
                    });
                    None
                }
            }
        }
    };
    let mut verified: Option<(u64, Hash)> = last_anchor;
    if let Some(cp) = checkpoint {
        let cp_head = (cp.size(), cp.root());
        match last_anchor {
            None => verified = Some(cp_head),
            Some(anchor) => match check_consistency(source, anchor, cp_head).await {
                Ok(()) => verified = Some(cp_head),
                Err(detail) => findings.push(Finding::CheckpointNotConsistent {
                    anchor_size: anchor.0,
                    checkpoint_size: cp_head.0,
                    detail,
                }),
            },
        }
    }
    let Some((size, root)) = verified else {
        findings.push(Finding::NoVerifiedHead);
        return Ok(AuditReport {
            node,
            app_id,
            anchors: anchors.len(),
            verified_size: None,
            releases: Vec::new(),
            findings,
        });
    };

    // (2) Entries of the app, each proven included in the verified head.
    let end = if size > MAX_AUDIT_ENTRIES {
        findings.push(Finding::Truncated { size });
        MAX_AUDIT_ENTRIES
    } else {
        size
    };
    let mut releases = Vec::new();
    let mut start = 0u64;
    while start < end {
        let want = (end - start).min(MAX_LOG_ENTRIES_PER_RESPONSE);
        let page = match source.entries(start, start + want).await {
            Ok(page) if page.start != start => Err(format!("page starts at {}", page.start)),
            Ok(page) if page.entries.is_empty() || page.entries.len() as u64 > want => {
                Err(format!("{} entries for {want} asked", page.entries.len()))
            }
            Ok(page) => Ok(page.entries),
            Err(e) => Err(e.to_string()),
        };
        let page = match page {
            Ok(p) => p,
            Err(detail) => {
                findings.push(Finding::EntriesUnavailable { start, detail });
                break;
            }
        };
        for (i, entry) in page.iter().enumerate() {
            let index = start + i as u64;
            let record = match ReleaseRecord::decode(&entry.0) {
                Ok(r) => r,
                Err(e) => {
                    findings.push(Finding::UndecodableEntry {
                        index,
                        detail: e.to_string(),
                    });
                    continue;
                }
            };
            if record.app_id != app_id {
                continue;
            }
            let logged = match inclusion(source, &entry.0, index, size, &root).await {
                Ok(()) => true,
                Err(detail) => {
                    findings.push(Finding::NotLogged { index, detail });
                    false
                }
            };
            releases.push(AuditedRelease {
                index,
                record,
                logged,
                allowed: false,
            });
        }
        start += page.len() as u64;
    }

    // (3) Policy re-evaluation at each recorded block.
    let chain_id = chain.chain_id();
    for release in &mut releases {
        release.allowed = reevaluate(chain, chain_id, node, release, &mut findings).await?;
    }
    Ok(AuditReport {
        node,
        app_id,
        anchors: anchors.len(),
        verified_size: Some(size),
        releases,
        findings,
    })
}

async fn inclusion<S: LogSource>(
    source: &mut S,
    entry: &[u8],
    index: u64,
    size: u64,
    root: &Hash,
) -> Result<(), String> {
    let proof = source
        .inclusion_proof(index, size)
        .await
        .map_err(|e| e.to_string())?;
    if proof.index != index || proof.size != size {
        return Err(format!(
            "proof is for leaf {} of {}, asked {index} of {size}",
            proof.index, proof.size
        ));
    }
    let proof = hashes(&proof.hashes)?;
    verify_inclusion(&leaf_hash(entry), index, size, &proof, root).map_err(|e| e.to_string())
}

/// The boot info a release record lets us rebuild. `mrSystem` and `advisoryIds` are not
/// recorded (version 1): zero and empty.
pub fn boot_info_of(record: &ReleaseRecord) -> BootInfo {
    BootInfo {
        appId: record.app_id,
        composeHash: record.compose_hash,
        instanceId: record.instance_id,
        deviceId: record.device_id,
        mrAggregated: record.mr_aggregated,
        mrSystem: B256::ZERO,
        osImageHash: record.os_image_hash,
        tcbStatus: record.tcb_status.clone(),
        advisoryIds: Vec::new(),
    }
}

async fn reevaluate(
    chain: &ChainClient,
    chain_id: u64,
    node: Address,
    release: &AuditedRelease,
    findings: &mut Vec<Finding>,
) -> Result<bool, Error> {
    let (index, r) = (release.index, &release.record);
    if r.chain_id != chain_id || r.kms_node != node {
        findings.push(Finding::WrongOrigin {
            index,
            detail: format!(
                "record names chain {} node {}, audited chain {chain_id} node {node}",
                r.chain_id, r.kms_node
            ),
        });
        return Ok(false);
    }
    let number = r.policy_block_number;
    let actual = chain.find_block(number).await?.map(|b| b.hash);
    if actual != Some(r.policy_block_hash) {
        findings.push(Finding::PolicyBlockMismatch {
            index,
            number,
            recorded: r.policy_block_hash,
            actual,
        });
        return Ok(false);
    }
    let at = PolicyBlock {
        number,
        hash: r.policy_block_hash,
    };
    let boot = boot_info_of(r);
    let verdict = match r.kind {
        ReleaseKind::KmsOnboard => chain.is_kms_allowed(&boot, at).await,
        ReleaseKind::AppKey | ReleaseKind::SignCert => chain.is_app_allowed(&boot, at).await,
    };
    match verdict {
        Ok(Verdict::Allowed) => Ok(true),
        Err(Error::Denied { reason, .. }) => {
            findings.push(Finding::NotAllowed { index, reason });
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

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
    inclusion(source, &entry, index, size, &cp.root())
        .await
        .map_err(|detail| ReceiptError::NotIncluded { detail })?;

    let record = ReleaseRecord::decode(&entry).map_err(ReceiptError::BadRecord)?;
    let mismatch = if record.kind != kind {
        Some("kind")
    } else if record.app_id != app_id {
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
        ReleaseKind::KmsOnboard => chain.is_kms_allowed(&boot, at).await,
        ReleaseKind::AppKey | ReleaseKind::SignCert => chain.is_app_allowed(&boot, at).await,
    };
    match verdict {
        Ok(Verdict::Allowed) => Ok(record),
        Err(Error::Denied { check, reason }) => Err(ReceiptError::NotAllowed { check, reason }),
        Err(e) => Err(ReceiptError::Chain(e)),
    }
}

#[cfg(test)]
mod tests {
    use cairn_protocol::api::Hash32;
    use cairn_tlog::MemoryTree;

    use super::*;

    /// A source over an in-memory tree; `flip` corrupts every non-empty proof.
    struct Memory {
        tree: MemoryTree,
        flip: bool,
    }

    impl Memory {
        fn proof(&self, v: Vec<Hash>) -> Vec<Hash32> {
            let mut out: Vec<Hash32> = v.into_iter().map(|h| Hash32(h.0)).collect();
            if let (true, Some(h)) = (self.flip, out.first_mut()) {
                h.0[0] ^= 1;
            }
            out
        }
    }

    impl LogSource for Memory {
        async fn checkpoint(&mut self) -> Result<String, SourceError> {
            Err(SourceError("no checkpoint".into()))
        }
        async fn entries(&mut self, _: u64, _: u64) -> Result<LogEntriesResponse, SourceError> {
            Err(SourceError("no entries".into()))
        }
        async fn inclusion_proof(
            &mut self,
            index: u64,
            size: u64,
        ) -> Result<InclusionProofResponse, SourceError> {
            let p = self.tree.inclusion_proof(index, size).unwrap();
            Ok(InclusionProofResponse {
                index,
                size,
                hashes: self.proof(p),
            })
        }
        async fn consistency_proof(
            &mut self,
            first: u64,
            second: u64,
        ) -> Result<ConsistencyProofResponse, SourceError> {
            let p = self.tree.consistency_proof(first, second).unwrap();
            Ok(ConsistencyProofResponse {
                first,
                second,
                hashes: self.proof(p),
            })
        }
    }

    fn tree(n: u8) -> MemoryTree {
        let mut t = MemoryTree::new();
        for i in 0..n {
            t.push(&[i]);
        }
        t
    }

    #[tokio::test]
    async fn consistency_and_inclusion_accept_honest_proofs_and_reject_forged_ones() {
        let t = tree(7);
        let (r3, r7) = (t.root_at(3).unwrap(), t.root());
        let mut honest = Memory {
            tree: t,
            flip: false,
        };
        check_consistency(&mut honest, (3, r3), (7, r7))
            .await
            .unwrap();
        check_consistency(&mut honest, (7, r7), (7, r7))
            .await
            .unwrap();
        inclusion(&mut honest, &[5], 5, 7, &r7).await.unwrap();
        // A different entry at the same index, or equal sizes with different roots.
        let err = inclusion(&mut honest, &[6], 5, 7, &r7).await.unwrap_err();
        assert!(err.contains("does not match the expected root"), "{err}");
        let err = check_consistency(&mut honest, (7, r3), (7, r7))
            .await
            .unwrap_err();
        assert!(err.contains("old root does not match"), "{err}");

        let mut liar = Memory {
            tree: tree(7),
            flip: true,
        };
        let err = check_consistency(&mut liar, (3, r3), (7, r7))
            .await
            .unwrap_err();
        assert!(err.starts_with("consistency:"), "{err}");
        let err = inclusion(&mut liar, &[5], 5, 7, &r7).await.unwrap_err();
        assert!(err.contains("does not match the expected root"), "{err}");
    }

    #[test]
    fn oversized_proofs_are_refused_before_use() {
        let v = vec![Hash32([0; 32]); MAX_PROOF_HASHES + 1];
        assert_eq!(
            hashes(&v).unwrap_err(),
            format!("proof has {} hashes", MAX_PROOF_HASHES + 1)
        );
        assert_eq!(hashes(&v[..2]).unwrap().len(), 2);
    }
}
