//! One node's log under audit: the entries streamed through a [`Frontier`] and checked
//! against every tree head the node committed to (its anchors, its served checkpoint,
//! the checkpoints of receipts its clients hold), each release handed to the chain
//! checks, and proofs only where streaming cannot decide.
//!
//! Fast path: every commitment is met by the stream (the root of the served entries at
//! that size is the committed root). That proves every entry below it is in the
//! committed tree and every commitment is a prefix of the next — inclusion and
//! consistency at once, with no proof requested.
//!
//! Slow path, once a commitment is not met (the served entries are not the committed
//! log): consistency proofs between successive commitments decide which head the node
//! really committed to, and an inclusion proof per entry since the last met commitment
//! decides which entries are in it. The node's stream stays on this path afterwards.

use std::collections::{HashSet, VecDeque};

use alloy::primitives::{Address, B256};
use cairn_protocol::api::{Receipt, MAX_LOG_ENTRIES_PER_RESPONSE};
use cairn_tlog::{leaf_hash, CheckpointVerifier, Frontier, Hash, ReleaseRecord};

use super::finding::{AuditStats, AuditedRelease, Finding, NodeSummary, TreeHead};
use super::policy::{Candidate, Checker};
use super::proofs::{self, BaseError};
use super::source::LogSource;
use super::{AuditOptions, MAX_AUDIT_ENTRIES};
use crate::client::ChainClient;
use crate::error::Error;

/// Most roots of recent sizes a following audit keeps to meet anchors that arrive after
/// the stream passed their size; older ones are met with a consistency proof instead.
const MAX_KEPT_ROOTS: usize = 1 << 16;

/// What the audit shares with every node: the chain, the options, the deduplicated
/// chain reads, and where results go.
pub(super) struct Ctx<'a> {
    pub(super) chain: &'a ChainClient,
    pub(super) options: &'a AuditOptions,
    pub(super) checker: &'a mut Checker,
    pub(super) stats: &'a mut AuditStats,
    pub(super) findings: &'a mut Vec<Finding>,
    pub(super) releases: &'a mut Vec<AuditedRelease>,
}

/// A tree head the node committed to.
#[derive(Debug, Clone, Copy)]
struct Claim {
    size: u64,
    root: Hash,
    kind: ClaimKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClaimKind {
    /// A `CheckpointAnchored` event.
    Anchor,
    /// The checkpoint the node serves now.
    Checkpoint,
}

/// A receipt a client holds, signed by this node.
#[derive(Debug, Clone)]
pub(super) struct HeldReceipt {
    pub(super) size: u64,
    pub(super) root: Hash,
    pub(super) receipt: Receipt,
}

/// One node's audit state; kept between rounds by a following audit.
pub(super) struct NodeAudit {
    pub(super) node: Address,
    pub(super) registered: bool,
    /// The tree head the audit starts from (empty, or the anchor before `from_block`).
    base: (u64, Hash),
    based: bool,
    /// Set after a base that does not verify: nothing more is read.
    stuck: bool,
    frontier: Frontier,
    /// The last commitment the served entries were proven against.
    verified: (u64, Hash),
    /// `verified` is a commitment the node made (not only the empty start).
    proven: bool,
    /// Leaf hashes of the entries from `verified.0` to the frontier.
    unconfirmed: Vec<Hash>,
    /// Anchors ahead of the stream.
    pending: VecDeque<Claim>,
    /// Commitments the stream could not meet, for the proof phase.
    to_prove: Vec<Claim>,
    /// The served entries are not the committed log: settle with proofs from now on.
    poisoned: bool,
    /// Roots at recent sizes (following audits), to meet late anchors.
    roots: Option<VecDeque<(u64, Hash)>>,
    last_anchor: Option<TreeHead>,
    anchors: usize,
    max_policy_block: Option<u64>,
    receipts: Vec<HeldReceipt>,
    not_logged: HashSet<u64>,
    /// Releases of this node in `Ctx::releases` whose `logged` is not settled yet.
    unsettled: Vec<usize>,
    entries: u64,
}

fn head(h: (u64, Hash)) -> TreeHead {
    TreeHead {
        size: h.0,
        root: B256::from(h.1 .0),
    }
}

impl NodeAudit {
    /// A node whose audit starts at the committed tree `base` (size 0: the start of its
    /// log); `keep_roots` for a following audit.
    pub(super) fn new(
        node: Address,
        registered: bool,
        base: Option<TreeHead>,
        keep_roots: bool,
    ) -> Self {
        let base = base.map_or((0, Hash::EMPTY_ROOT), |b| (b.size, Hash(b.root.0)));
        NodeAudit {
            node,
            registered,
            base,
            based: base.0 == 0,
            stuck: false,
            frontier: Frontier::new(),
            verified: base,
            proven: base.0 > 0,
            unconfirmed: Vec::new(),
            pending: VecDeque::new(),
            to_prove: Vec::new(),
            poisoned: false,
            roots: keep_roots.then(VecDeque::new),
            last_anchor: (base.0 > 0).then(|| head(base)),
            anchors: 0,
            max_policy_block: None,
            receipts: Vec::new(),
            not_logged: HashSet::new(),
            unsettled: Vec::new(),
            entries: 0,
        }
    }

    /// What the audit saw of this node.
    pub(super) fn summary(&self) -> NodeSummary {
        NodeSummary {
            node: self.node,
            registered: self.registered,
            anchors: self.anchors,
            start: self.base.0,
            verified_size: self.proven.then_some(self.verified.0),
            entries: self.entries,
        }
    }

    /// Adds a receipt signed by this node.
    pub(super) fn hold_receipt(&mut self, r: HeldReceipt) {
        let at = self.receipts.partition_point(|x| x.size <= r.size);
        self.receipts.insert(at, r);
    }

    /// A `CheckpointAnchored` event of this node, in chain order.
    pub(super) fn observe_anchor(
        &mut self,
        size: u64,
        root: B256,
        block: u64,
        findings: &mut Vec<Finding>,
    ) {
        self.anchors += 1;
        let anchored = TreeHead { size, root };
        if let Some(previous) = self.last_anchor {
            if size < previous.size || (size == previous.size && root != previous.root) {
                findings.push(Finding::AnchorRollback {
                    node: self.node,
                    block,
                    previous,
                    anchored,
                });
                return;
            }
            if size == previous.size {
                return;
            }
        }
        self.last_anchor = Some(anchored);
        let claim = Claim {
            size,
            root: Hash(root.0),
            kind: ClaimKind::Anchor,
        };
        if size >= self.frontier.size() && self.based {
            self.pending.push_back(claim);
        } else {
            self.late(claim);
        }
    }

    /// A commitment at a size the stream already passed.
    fn late(&mut self, claim: Claim) {
        if !self.based {
            // Before the base is established the stream has not started: keep it.
            self.pending.push_back(claim);
            return;
        }
        if !self.poisoned {
            if let Some(roots) = &self.roots {
                if let Some((_, root)) = roots.iter().find(|(s, _)| *s == claim.size) {
                    if *root != claim.root {
                        self.unmet(claim);
                    }
                    return;
                }
            }
        }
        self.to_prove.push(claim);
    }

    /// A commitment the served entries do not meet.
    fn unmet(&mut self, claim: Claim) {
        self.poisoned = true;
        self.to_prove.push(claim);
    }

    /// The largest size the stream goes to this round, given the served checkpoint
    /// (`None`: it could not be had; then the last anchor).
    fn target(&mut self, checkpoint: Option<Claim>, findings: &mut Vec<Finding>) -> u64 {
        let here = self.frontier.size();
        let Some(cp) = checkpoint else {
            return self.pending.back().map_or(here, |c| c.size).max(here);
        };
        let floor = self
            .last_anchor
            .map_or(0, |a| a.size)
            .max(self.verified.0)
            .max(here);
        if cp.size < floor {
            findings.push(Finding::CheckpointNotConsistent {
                node: self.node,
                anchor_size: floor,
                checkpoint_size: cp.size,
                detail: format!(
                    "the served log ({}) is smaller than what the node committed to before ({floor})",
                    cp.size
                ),
            });
            if cp.size < here {
                // The stream already read past it: those entries were audited.
                return here;
            }
            // A rollback: the entries the node still serves are audited all the same
            // (their inclusion in the served checkpoint and in the anchors up to its
            // size, each release against the chain). Anchors above it stay unmet.
            let at = self.pending.partition_point(|c| c.size <= cp.size);
            self.pending.insert(at, cp);
            return cp.size;
        }
        // Every pending anchor is at most `floor`, so the checkpoint goes last.
        self.pending.push_back(cp);
        cp.size
    }

    /// One round: the served checkpoint (when `with_checkpoint`), then the entries up to
    /// it (or up to the last anchor), each commitment met or proven, each release
    /// checked against the chain. Errors only when the chain cannot be read.
    pub(super) async fn advance<S: LogSource>(
        &mut self,
        source: &mut S,
        ctx: &mut Ctx<'_>,
        with_checkpoint: bool,
    ) -> Result<(), Error> {
        if self.stuck {
            return Ok(());
        }
        if !self.based && !self.establish_base(source, ctx).await {
            return Ok(());
        }
        let checkpoint = if with_checkpoint {
            self.checkpoint(source, ctx.findings).await
        } else {
            None
        };
        let target = if with_checkpoint {
            self.target(checkpoint, ctx.findings)
        } else {
            self.pending
                .back()
                .map_or(self.frontier.size(), |c| c.size)
                .max(self.frontier.size())
        };
        if with_checkpoint
            && checkpoint.is_none()
            && self.last_anchor.is_none()
            && self.base.0 == 0
            && self.frontier.size() == 0
        {
            ctx.findings
                .push(Finding::NoVerifiedHead { node: self.node });
        }
        self.meet(ctx.findings);
        self.stream(source, ctx, target).await?;
        if !self.to_prove.is_empty() || self.poisoned {
            self.settle_by_proofs(source, ctx).await;
        }
        if with_checkpoint {
            self.settle_receipts(source, ctx.findings).await;
        }
        self.settle_releases(ctx.releases);
        Ok(())
    }

    /// The frontier at the base (the anchor before `from_block`), from the source.
    async fn establish_base<S: LogSource>(&mut self, source: &mut S, ctx: &mut Ctx<'_>) -> bool {
        ctx.stats.proofs += 1;
        match proofs::frontier_at(source, self.base).await {
            Ok(f) => {
                self.frontier = f;
                self.based = true;
                // Anchors seen before the base was set are replayed against it.
                let held: Vec<Claim> = self.pending.drain(..).collect();
                for c in held {
                    if c.size >= self.frontier.size() {
                        self.pending.push_back(c);
                    } else {
                        self.to_prove.push(c);
                    }
                }
                true
            }
            Err(BaseError::Source(detail)) => {
                ctx.findings.push(Finding::SourceUnavailable {
                    node: self.node,
                    detail,
                });
                false
            }
            Err(BaseError::Invalid(detail)) => {
                ctx.findings.push(Finding::NotLogged {
                    node: self.node,
                    index: self.base.0.saturating_sub(1),
                    detail,
                });
                self.stuck = true;
                false
            }
        }
    }

    /// The served checkpoint, signed by this node, as a commitment.
    async fn checkpoint<S: LogSource>(
        &mut self,
        source: &mut S,
        findings: &mut Vec<Finding>,
    ) -> Option<Claim> {
        let text = match source.checkpoint().await {
            Ok(text) => text,
            Err(e) => {
                findings.push(Finding::SourceUnavailable {
                    node: self.node,
                    detail: e.to_string(),
                });
                return None;
            }
        };
        let origin = text.lines().next().unwrap_or_default();
        match CheckpointVerifier::new(origin, self.node).and_then(|v| v.open(text.as_bytes())) {
            Ok(cp) => Some(Claim {
                size: cp.size(),
                root: cp.root(),
                kind: ClaimKind::Checkpoint,
            }),
            Err(e) => {
                findings.push(Finding::BadCheckpoint {
                    node: self.node,
                    detail: e.to_string(),
                });
                None
            }
        }
    }

    /// Meets every commitment (and receipt) at the frontier's size.
    fn meet(&mut self, findings: &mut Vec<Finding>) {
        let size = self.frontier.size();
        while let Some(c) = self.pending.front().copied() {
            if c.size > size {
                break;
            }
            self.pending.pop_front();
            if c.size < size || self.poisoned {
                self.to_prove.push(c);
                continue;
            }
            if self.frontier.root() == c.root {
                self.verified = (c.size, c.root);
                self.proven = true;
                self.unconfirmed.clear();
                if c.kind == ClaimKind::Anchor {
                    if let Some(roots) = &mut self.roots {
                        roots.retain(|(s, _)| *s > c.size);
                    }
                }
            } else {
                self.unmet(c);
            }
        }
        if self.poisoned {
            return;
        }
        if !self.receipts.iter().any(|r| r.size == size) {
            return;
        }
        let root = self.frontier.root();
        for r in self
            .receipts
            .iter()
            .filter(|r| r.size == size && r.root != root)
        {
            findings.push(Finding::MissingEntry {
                node: self.node,
                index: r.receipt.log_index,
                checkpoint_size: r.size,
                detail: format!(
                    "the receipt's checkpoint root differs from the log's at size {size}: the node signed another log for this client"
                ),
            });
        }
        self.receipts.retain(|r| r.size != size);
    }

    /// Reads entries up to `target`, meeting commitments and checking releases.
    async fn stream<S: LogSource>(
        &mut self,
        source: &mut S,
        ctx: &mut Ctx<'_>,
        target: u64,
    ) -> Result<(), Error> {
        let mut read = 0u64;
        // The page asked for while the previous page's chain reads ran: (start, want,
        // answer).
        let mut fetched = None;
        while self.frontier.size() < target {
            if read >= MAX_AUDIT_ENTRIES {
                ctx.findings.push(Finding::Truncated {
                    node: self.node,
                    size: self.frontier.size(),
                });
                return Ok(());
            }
            let start = self.frontier.size();
            let want = page_len(start, target, read);
            let answer = match fetched.take() {
                Some((s, w, answer)) if s == start && w == want => answer,
                _ => {
                    ctx.stats.entry_pages += 1;
                    source.entries(start, start + want).await
                }
            };
            let page = match answer {
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
                    ctx.findings.push(Finding::EntriesUnavailable {
                        node: self.node,
                        start,
                        detail,
                    });
                    return Ok(());
                }
            };
            read += page.len() as u64;
            let mut batch = Vec::new();
            for entry in &page {
                let index = self.frontier.size();
                let leaf = leaf_hash(&entry.0);
                self.frontier.push(leaf);
                self.unconfirmed.push(leaf);
                self.entries += 1;
                ctx.stats.entries += 1;
                match ReleaseRecord::decode(&entry.0) {
                    Err(e) => ctx.findings.push(Finding::UndecodableEntry {
                        node: self.node,
                        index,
                        detail: e.to_string(),
                    }),
                    Ok(record) => {
                        self.check_receipt_entry(index, &record, ctx.findings);
                        let block = record.policy_block_number;
                        let behind = self
                            .max_policy_block
                            .filter(|max| block.saturating_add(ctx.options.confirmations) < *max);
                        self.max_policy_block =
                            Some(self.max_policy_block.map_or(block, |m| m.max(block)));
                        if ctx.options.app.is_none_or(|app| record.boot.app_id == app) {
                            batch.push(Candidate {
                                node: self.node,
                                index,
                                record,
                                behind,
                            });
                        }
                    }
                }
                if let Some(roots) = &mut self.roots {
                    if !self.poisoned {
                        if roots.len() >= MAX_KEPT_ROOTS {
                            roots.pop_front();
                        }
                        roots.push_back((self.frontier.size(), self.frontier.root()));
                    }
                }
                self.meet(ctx.findings);
            }
            // The next page is asked for while this page's releases are checked against
            // the chain (a chain error drops it unread).
            let (next, next_want) = (
                self.frontier.size(),
                page_len(self.frontier.size(), target, read),
            );
            let prefetch = async {
                if next_want > 0 && read < MAX_AUDIT_ENTRIES {
                    Some(source.entries(next, next + next_want).await)
                } else {
                    None
                }
            };
            let checked =
                ctx.checker
                    .check(ctx.chain, ctx.options, ctx.stats, &batch, ctx.findings);
            let (clean, answer) = tokio::join!(checked, prefetch);
            let clean = clean?;
            if let Some(answer) = answer {
                ctx.stats.entry_pages += 1;
                fetched = Some((next, next_want, answer));
            }
            if ctx.options.collect_releases {
                for (c, allowed) in batch.into_iter().zip(clean) {
                    self.unsettled.push(ctx.releases.len());
                    ctx.releases.push(AuditedRelease {
                        node: c.node,
                        index: c.index,
                        exact: c.record.is_exact(),
                        record: c.record,
                        logged: false,
                        allowed,
                    });
                }
            }
        }
        Ok(())
    }

    /// A receipt's index holds the release the receipt is for.
    fn check_receipt_entry(&self, index: u64, record: &ReleaseRecord, findings: &mut Vec<Finding>) {
        for r in self
            .receipts
            .iter()
            .filter(|r| r.receipt.log_index == index)
        {
            let same = record.policy_block_number == r.receipt.policy_block_number
                && record.policy_block_hash.0 == r.receipt.policy_block_hash
                && record.kms_node == self.node;
            if !same {
                findings.push(Finding::MissingEntry {
                    node: self.node,
                    index,
                    checkpoint_size: r.size,
                    detail: format!(
                        "the log's entry {index} is another release (policy block {}) than the receipt's (policy block {})",
                        record.policy_block_number, r.receipt.policy_block_number
                    ),
                });
            }
        }
    }

    /// The slow path: which commitments chain by consistency proofs, and which entries
    /// since the last met commitment are in the resulting head.
    async fn settle_by_proofs<S: LogSource>(&mut self, source: &mut S, ctx: &mut Ctx<'_>) {
        let mut claims = std::mem::take(&mut self.to_prove);
        claims.sort_by_key(|c| c.size);
        let mut prev = self.verified;
        let mut head = self.verified;
        for c in claims {
            if c.size < self.verified.0 {
                // A commitment below the verified head: it must be a prefix of it.
                ctx.stats.proofs += 1;
                if let Err(detail) =
                    proofs::consistency(source, (c.size, c.root), self.verified).await
                {
                    ctx.findings
                        .push(self.inconsistent(c, self.verified.0, detail, true));
                }
                continue;
            }
            ctx.stats.proofs += 1;
            match proofs::consistency(source, prev, (c.size, c.root)).await {
                Ok(()) => head = (c.size, c.root),
                Err(detail) => {
                    ctx.findings
                        .push(self.inconsistent(c, prev.0, detail, false));
                    if c.kind == ClaimKind::Anchor {
                        // The chain's record wins over the served log.
                        head = (c.size, c.root);
                    }
                }
            }
            prev = (c.size, c.root);
        }
        if !self.poisoned && head == self.verified {
            return;
        }
        // Every entry since the last met commitment, against the head.
        let first = self.verified.0;
        let proven_to = head.0.min(self.frontier.size());
        if head.0 > self.verified.0 || self.poisoned {
            for (i, leaf) in self.unconfirmed.iter().enumerate() {
                let index = first + i as u64;
                if index >= proven_to {
                    break;
                }
                ctx.stats.proofs += 1;
                if let Err(detail) = proofs::inclusion(source, leaf, index, head).await {
                    self.not_logged.insert(index);
                    ctx.findings.push(Finding::NotLogged {
                        node: self.node,
                        index,
                        detail,
                    });
                }
            }
            let done = usize::try_from(proven_to.saturating_sub(first)).unwrap_or(usize::MAX);
            self.unconfirmed.drain(..done.min(self.unconfirmed.len()));
            self.verified = head;
            self.proven = true;
        }
    }

    /// The finding for commitment `c` not extending (or not being a prefix of) the
    /// tree head of size `other`.
    fn inconsistent(&self, c: Claim, other: u64, detail: String, below: bool) -> Finding {
        let (first, second) = if below {
            (c.size, other)
        } else {
            (other, c.size)
        };
        match c.kind {
            ClaimKind::Anchor => Finding::ForkedAnchors {
                node: self.node,
                first,
                second,
                detail,
            },
            ClaimKind::Checkpoint => Finding::CheckpointNotConsistent {
                node: self.node,
                anchor_size: other,
                checkpoint_size: c.size,
                detail,
            },
        }
    }

    /// Receipts the stream did not reach: larger than the served log (a rollback that
    /// hides their entries), or below the start (proven against the verified head).
    async fn settle_receipts<S: LogSource>(&mut self, source: &mut S, findings: &mut Vec<Finding>) {
        let size = self.frontier.size();
        let mut keep = Vec::new();
        for r in std::mem::take(&mut self.receipts) {
            if r.size > size {
                findings.push(Finding::MissingEntry {
                    node: self.node,
                    index: r.receipt.log_index,
                    checkpoint_size: r.size,
                    detail: format!(
                        "the receipt's checkpoint (size {}) is larger than the log the node serves ({size})",
                        r.size
                    ),
                });
            } else if r.size <= self.verified.0 {
                if let Err(detail) =
                    proofs::consistency(source, (r.size, r.root), self.verified).await
                {
                    findings.push(Finding::MissingEntry {
                        node: self.node,
                        index: r.receipt.log_index,
                        checkpoint_size: r.size,
                        detail: format!(
                            "the receipt's checkpoint is not a prefix of the log the node committed to: {detail}"
                        ),
                    });
                }
            } else {
                keep.push(r);
            }
        }
        self.receipts = keep;
    }

    /// Marks this node's collected releases logged once their index is proven.
    fn settle_releases(&mut self, releases: &mut [AuditedRelease]) {
        let verified = self.verified.0;
        let not_logged = &self.not_logged;
        self.unsettled.retain(|&i| match releases.get_mut(i) {
            Some(r) if r.index < verified => {
                r.logged = !not_logged.contains(&r.index);
                false
            }
            Some(_) => true,
            None => false,
        });
    }
}

/// How many entries to ask for from `start` towards `target`, `read` read this round
/// (0 when there is nothing left to read).
fn page_len(start: u64, target: u64, read: u64) -> u64 {
    target
        .saturating_sub(start)
        .min(MAX_LOG_ENTRIES_PER_RESPONSE)
        .min(MAX_AUDIT_ENTRIES.saturating_sub(read))
}
