//! Step 3 of the audit: each release against the chain at its recorded block — the
//! block exists with the recorded hash and is not stale, the node was registered (for a
//! release; a `kms-onboard-receipt` records what the node received, before it could be
//! registered), and the policy allowed the recorded boot info.
//!
//! Every chain read is deduplicated for the whole audit: one header per block number,
//! one `isKmsNode` per (node, block hash), one `isAppAllowed` / `isKmsAllowed` per
//! (query, boot info, block hash); distinct reads of a batch run concurrently.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::Hash as StdHash;

use alloy::primitives::{keccak256, Address, B256};
use alloy::sol_types::SolValue;
use cairn_tlog::ReleaseRecord;
use futures_util::{stream, StreamExt, TryStreamExt};

use super::finding::{AuditStats, Finding, Staleness};
use super::AuditOptions;
use crate::client::{BlockHeader, BootInfo, ChainClient, PolicyBlock, Verdict};
use crate::error::{Check, Error};
use crate::record::boot_info_of;

/// Chain reads of one batch in flight at once.
pub(super) const CHAIN_CONCURRENCY: usize = 16;
/// Most answers each memo keeps; a memo that would overflow starts over before a batch
/// (an audit stays correct, it only re-reads).
const MEMO_CAP: usize = 1 << 16;

/// A bounded map of chain answers.
struct Memo<K, V>(HashMap<K, V>);

impl<K: Eq + StdHash, V> Memo<K, V> {
    fn new() -> Self {
        Memo(HashMap::new())
    }
    fn get(&self, k: &K) -> Option<&V> {
        self.0.get(k)
    }
    /// The keys of `needed` not answered yet. A memo too full to keep every key of
    /// `needed` is emptied first, so that after the batch's reads every key of `needed`
    /// is answered (a batch is far smaller than the cap): the checks never find a
    /// needed answer missing.
    fn missing(&mut self, needed: HashSet<K>) -> HashSet<K> {
        if self.0.len() + needed.len() > MEMO_CAP {
            self.0.clear();
        }
        needed
            .into_iter()
            .filter(|k| !self.0.contains_key(k))
            .collect()
    }
    fn insert(&mut self, k: K, v: V) {
        self.0.insert(k, v);
    }

    /// Reads the answers to the questions of `needed` (a key and what reading it takes)
    /// that are not answered yet, [`CHAIN_CONCURRENCY`] at a time, and keeps them;
    /// `reads` counts the reads (before they run).
    async fn fill<Q, Fut>(
        &mut self,
        mut needed: HashMap<K, Q>,
        reads: &mut u64,
        read: impl Fn(K, Q) -> Fut,
    ) -> Result<(), Error>
    where
        K: Copy,
        Fut: Future<Output = Result<V, Error>>,
    {
        let missing: Vec<(K, Q)> = self
            .missing(needed.keys().copied().collect())
            .into_iter()
            .filter_map(|k| needed.remove(&k).map(|q| (k, q)))
            .collect();
        *reads += missing.len() as u64;
        let got: Vec<(K, V)> = stream::iter(missing)
            .map(|(k, q)| {
                let answer = read(k, q);
                async move { answer.await.map(|v| (k, v)) }
            })
            .buffer_unordered(CHAIN_CONCURRENCY)
            .try_collect()
            .await?;
        for (k, v) in got {
            self.insert(k, v);
        }
        Ok(())
    }
}

/// A release to check: the record, where it is, and whether the stream saw it trail
/// the node's newest earlier policy block by more than the depth.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    pub(super) node: Address,
    pub(super) index: u64,
    pub(super) record: ReleaseRecord,
    /// The newest policy block of the node's earlier entries, when this record's is
    /// more than the confirmation depth behind it.
    pub(super) behind: Option<u64>,
}

/// Which policy question a record answers.
fn is_kms(record: &ReleaseRecord) -> bool {
    record.kind.is_kms_policy()
}

type VerdictKey = (bool, B256, B256);
type Denial = Option<(Check, String)>;

/// The deduplicated chain reads of one audit.
pub(super) struct Checker {
    headers: Memo<u64, Option<BlockHeader>>,
    registered: Memo<(Address, B256), bool>,
    verdicts: Memo<VerdictKey, Denial>,
}

impl Checker {
    pub(super) fn new() -> Self {
        Checker {
            headers: Memo::new(),
            registered: Memo::new(),
            verdicts: Memo::new(),
        }
    }

    /// Checks `batch` (log order), appending findings; returns whether each release is
    /// clean against the chain. Errors only when the chain cannot be read.
    pub(super) async fn check(
        &mut self,
        chain: &ChainClient,
        options: &AuditOptions,
        stats: &mut AuditStats,
        batch: &[Candidate],
        findings: &mut Vec<Finding>,
    ) -> Result<Vec<bool>, Error> {
        self.fetch_headers(chain, stats, batch).await?;
        let chain_id = chain.chain_id();
        let max_secs = options.max_policy_age.as_secs();

        // Origin, block and staleness first: they need no more reads.
        let mut out = Vec::with_capacity(batch.len());
        let mut blocks: Vec<Option<PolicyBlock>> = Vec::with_capacity(batch.len());
        for c in batch {
            let (node, index, r) = (c.node, c.index, &c.record);
            if r.kind.is_release() {
                stats.releases += 1;
            } else {
                stats.receipts += 1;
            }
            if !r.is_exact() {
                stats.approximate += 1;
            }
            let mut pending = Vec::new();
            let at = if r.chain_id != chain_id || r.kms_node != node {
                pending.push(Finding::WrongOrigin {
                    node,
                    index,
                    detail: format!(
                        "record names chain {} node {}, the log is node {node} on chain {chain_id}",
                        r.chain_id, r.kms_node
                    ),
                });
                None
            } else {
                let number = r.policy_block_number;
                let header = self.headers.get(&number).copied().flatten();
                match header {
                    Some(h) if h.hash == r.policy_block_hash => {
                        if let Some(previous) = c.behind {
                            pending.push(Finding::StalePolicyBlock {
                                node,
                                index,
                                block: number,
                                staleness: Staleness::BehindPrevious {
                                    previous,
                                    depth: options.confirmations,
                                },
                            });
                        }
                        if h.timestamp.abs_diff(r.timestamp) > max_secs {
                            pending.push(Finding::StalePolicyBlock {
                                node,
                                index,
                                block: number,
                                staleness: Staleness::TimeGap {
                                    block_timestamp: h.timestamp,
                                    record_timestamp: r.timestamp,
                                    max_secs,
                                },
                            });
                        }
                        Some(PolicyBlock {
                            number,
                            hash: h.hash,
                        })
                    }
                    other => {
                        pending.push(Finding::PolicyBlockMismatch {
                            node,
                            index,
                            number,
                            recorded: r.policy_block_hash,
                            actual: other.map(|h| h.hash),
                        });
                        None
                    }
                }
            };
            out.push(pending);
            blocks.push(at);
        }

        // Registration and policy at the blocks that exist as recorded (each record's
        // verdict key computed once: an ABI encoding and a hash).
        let jobs: Vec<(&Candidate, PolicyBlock, VerdictKey)> = batch
            .iter()
            .zip(&blocks)
            .filter_map(|(c, b)| b.map(|b| (c, b, verdict_key(c, b))))
            .collect();
        self.fetch_registrations(chain, stats, &jobs).await?;
        self.fetch_verdicts(chain, stats, &jobs).await?;

        let mut keys = jobs.iter().map(|(_, _, k)| *k);
        let mut clean = Vec::with_capacity(batch.len());
        for ((c, at), mut pending) in batch.iter().zip(blocks).zip(out) {
            if let Some(at) = at {
                // `jobs` holds exactly the candidates with a block, in batch order.
                let key = keys.next();
                // Only a node that released something had to be registered then.
                if c.record.kind.is_release()
                    && self.registered.get(&(c.node, at.hash)) == Some(&false)
                {
                    pending.push(Finding::UnregisteredNode {
                        node: c.node,
                        index: c.index,
                        block: at.number,
                    });
                }
                if let Some(Some((check, reason))) = key.and_then(|k| self.verdicts.get(&k)) {
                    pending.push(Finding::NotAllowed {
                        node: c.node,
                        index: c.index,
                        block: at.number,
                        check: *check,
                        reason: reason.clone(),
                    });
                }
            }
            clean.push(pending.is_empty());
            findings.append(&mut pending);
        }
        Ok(clean)
    }

    async fn fetch_headers(
        &mut self,
        chain: &ChainClient,
        stats: &mut AuditStats,
        batch: &[Candidate],
    ) -> Result<(), Error> {
        let numbers = batch
            .iter()
            .map(|c| (c.record.policy_block_number, ()))
            .collect();
        self.headers
            .fill(numbers, &mut stats.header_reads, |n, ()| {
                chain.block_header(n)
            })
            .await
    }

    async fn fetch_registrations(
        &mut self,
        chain: &ChainClient,
        stats: &mut AuditStats,
        jobs: &[(&Candidate, PolicyBlock, VerdictKey)],
    ) -> Result<(), Error> {
        let blocks = jobs
            .iter()
            .filter(|(c, _, _)| c.record.kind.is_release())
            .map(|(c, at, _)| ((c.node, at.hash), *at))
            .collect();
        self.registered
            .fill(blocks, &mut stats.registration_calls, |(node, _), at| {
                chain.is_kms_node(node, at)
            })
            .await
    }

    async fn fetch_verdicts(
        &mut self,
        chain: &ChainClient,
        stats: &mut AuditStats,
        jobs: &[(&Candidate, PolicyBlock, VerdictKey)],
    ) -> Result<(), Error> {
        let mut queries: HashMap<VerdictKey, (bool, BootInfo, PolicyBlock)> = HashMap::new();
        for (c, at, key) in jobs {
            queries
                .entry(*key)
                .or_insert_with(|| (is_kms(&c.record), boot_info_of(&c.record), *at));
        }
        self.verdicts
            .fill(
                queries,
                &mut stats.policy_calls,
                |_, (kms, boot, at)| async move {
                    let verdict = if kms {
                        chain.is_kms_allowed(&boot, at).await
                    } else {
                        chain.is_app_allowed(&boot, at).await
                    };
                    match verdict {
                        Ok(Verdict::Allowed) => Ok(None),
                        Err(Error::Denied { check, reason }) => Ok(Some((check, reason))),
                        Err(e) => Err(e),
                    }
                },
            )
            .await
    }
}

/// (query, keccak256 of the ABI-encoded boot info the record gives, block hash).
fn verdict_key(c: &Candidate, at: PolicyBlock) -> VerdictKey {
    (
        is_kms(&c.record),
        keccak256(boot_info_of(&c.record).abi_encode()),
        at.hash,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_memo_starts_over_before_a_batch_and_keeps_every_answer_the_batch_needs() {
        let mut memo: Memo<usize, ()> = Memo::new();
        for k in 0..MEMO_CAP - 2 {
            memo.insert(k, ());
        }
        // Fits: only the unanswered key is missing, and nothing is dropped.
        let needed: HashSet<usize> = [0, MEMO_CAP - 2].into();
        assert_eq!(memo.missing(needed), [MEMO_CAP - 2].into());
        memo.insert(MEMO_CAP - 2, ());
        assert!(memo.get(&0).is_some());
        // Would overflow: emptied first, so every needed key is read again and all of
        // them are answered once the batch is in (none lost mid-batch).
        let needed: HashSet<usize> = [0, 1, MEMO_CAP].into();
        let missing = memo.missing(needed.clone());
        assert_eq!(missing, needed);
        for k in missing {
            memo.insert(k, ());
        }
        assert!(needed.iter().all(|k| memo.get(k).is_some()));
        assert_eq!(memo.0.len(), 3);
    }
}
