//! The auditing light client of a KMS cluster's key-release logs (DESIGN.md §6,
//! "Audit"; `docs/auditor.md`).
//!
//! An audit reads the chain (KmsAuth's node list and `CheckpointAnchored` events, block
//! headers, policy at past blocks) and each node's log (a [`LogSource`]), and reports
//! typed [`Finding`]s:
//! 1. **Nodes**: every node KmsAuth lists, every node that anchored or was added or
//!    removed in the audited blocks ([`audit_all`]), or the nodes asked for.
//! 2. **Anchors**: read from `CheckpointAnchored` events, page by page of blocks; two
//!    successive anchors of a node that go backwards are an [`Finding::AnchorRollback`].
//! 3. **The log**: the node's served checkpoint must be signed by the node; every entry
//!    is streamed through a [`Frontier`](cairn_tlog::Frontier) and the root compared at
//!    each anchored size, the checkpoint's size and each held receipt's size. A match
//!    proves inclusion of every entry below it and consistency of successive heads at
//!    once; only a mismatch costs proofs (see `node`).
//! 4. **Each release** (of the app asked for, or all): its policy block exists with the
//!    recorded hash and is not stale, its node was registered at that block, and
//!    `isAppAllowed` (`isKmsAllowed` for onboarding) allows the recorded boot info at
//!    that block — exactly the KMS's call for version-2 records. Identical calls are
//!    made once.
//!
//! Only a chain that cannot be read is an error (the audit then says nothing); all else
//! is a finding, and [`AuditOutcome`] turns a result into clean / findings / could not
//! audit. [`Auditor`] keeps its state between polls, so [`Auditor::follow`] keeps
//! auditing new anchors and entries as they appear (a monitor).
//!
//! [`verify_receipt`] checks one release receipt on its own.
//!
//! What it trusts: the chain as the [`ChainClient`] reads it (its quorum of RPC
//! endpoints; an archive node for old blocks). Nothing a log source serves is trusted.
//! What it does not do: find releases a node never logged and no client reports (only
//! a receipt held by a client can show those), or judge the quotes behind a release
//! (the record keeps their hash, not the quote).

mod finding;
mod node;
mod policy;
mod proofs;
mod receipt;
mod source;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use cairn_protocol::api::Receipt;
use cairn_tlog::CheckpointVerifier;

pub use finding::{
    AuditOutcome, AuditReport, AuditStats, AuditedRelease, Finding, NodeSummary, Staleness,
    TreeHead,
};
pub use receipt::{verify_receipt, ReceiptError};
pub use source::{LogSource, LogSources, SourceError};

use self::node::{Ctx, HeldReceipt, NodeAudit};
use self::policy::Checker;
use self::source::Single;
use crate::bindings::KmsAuth::KmsAuthEvents;
use crate::client::ChainClient;
use crate::config::DEFAULT_CONFIRMATIONS;
use crate::error::Error;
use crate::history::{BlockRange, MAX_LOG_BLOCK_SPAN};

/// Most log entries one audit round reads from one node (bounds time and memory against
/// a huge claimed size); more is a [`Finding::Truncated`].
pub const MAX_AUDIT_ENTRIES: u64 = 1 << 20;
/// Default [`AuditOptions::max_policy_age`]: ten minutes between a release and the
/// timestamp of the block its policy was read at. A KMS refuses a head older than its
/// `max_head_age` (two minutes by default) and reads `confirmations` blocks behind it.
pub const DEFAULT_MAX_POLICY_AGE: Duration = Duration::from_secs(600);

/// What to audit, and how strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditOptions {
    /// Check only the releases of this app against the chain (every log is still read
    /// and proven whole). `None`: every release.
    pub app: Option<Address>,
    /// Read chain events from this block on, and each node's log from the size it had
    /// anchored before it (`--from-block`): what an earlier audit covered is not read
    /// again. 0: everything.
    pub from_block: u64,
    /// Audit only these nodes (even if the chain does not name them). `None`: every node
    /// the chain names.
    pub nodes: Option<Vec<Address>>,
    /// How far a policy block may trail the newest policy block of the node's earlier
    /// entries (the KMS's confirmation depth) before it is stale.
    pub confirmations: u64,
    /// How far a policy block's timestamp may be from its record's, either way.
    pub max_policy_age: Duration,
    /// Receipts clients hold: each must be in the log of the node that signed it.
    pub receipts: Vec<Receipt>,
    /// Keep every checked release in [`AuditReport::releases`] (memory grows with the
    /// log; meant for one app).
    pub collect_releases: bool,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            app: None,
            from_block: 0,
            nodes: None,
            confirmations: DEFAULT_CONFIRMATIONS,
            max_policy_age: DEFAULT_MAX_POLICY_AGE,
            receipts: Vec::new(),
            collect_releases: false,
        }
    }
}

impl AuditOptions {
    setters! {
        /// Only the releases of `app`.
        fn with_app(app: Address) => Some;
        /// From block `from_block` on.
        fn from_block(from_block: u64);
        /// Only these nodes.
        fn with_nodes(nodes: Vec<Address>) => Some;
        /// The KMS's confirmation depth.
        fn with_confirmations(confirmations: u64);
        /// The largest distance between a policy block's and its record's timestamps.
        fn with_max_policy_age(max_policy_age: Duration);
        /// Receipts clients hold.
        fn with_receipts(receipts: Vec<Receipt>);
    }

    /// Keep every checked release in the report.
    pub fn collecting_releases(mut self) -> Self {
        self.collect_releases = true;
        self
    }
}

/// An audit of a cluster that can be advanced: [`Auditor::poll`] reads what is new on
/// the chain and in each log since the last poll.
pub struct Auditor<'c> {
    chain: &'c ChainClient,
    options: AuditOptions,
    /// First block whose events are not read yet.
    next_block: u64,
    nodes: BTreeMap<Address, NodeAudit>,
    checker: Checker,
    stats: AuditStats,
    findings: Vec<Finding>,
    seen: HashSet<Finding>,
    releases: Vec<AuditedRelease>,
    unplaced: Vec<Receipt>,
    keep_roots: bool,
    elapsed: Duration,
}

impl std::fmt::Debug for Auditor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("options", &self.options)
            .field("next_block", &self.next_block)
            .field("nodes", &self.nodes.keys().collect::<Vec<_>>())
            .field("findings", &self.findings.len())
            .finish_non_exhaustive()
    }
}

impl<'c> Auditor<'c> {
    /// A one-shot audit of `chain`'s cluster (nothing is read until [`Auditor::poll`]).
    pub fn new(chain: &'c ChainClient, options: AuditOptions) -> Self {
        Auditor {
            chain,
            next_block: options.from_block,
            unplaced: options.receipts.clone(),
            options,
            nodes: BTreeMap::new(),
            checker: Checker::new(),
            stats: AuditStats::default(),
            findings: Vec::new(),
            seen: HashSet::new(),
            releases: Vec::new(),
            keep_roots: false,
            elapsed: Duration::ZERO,
        }
    }

    /// An audit meant to be polled again and again ([`Auditor::follow`]): it keeps the
    /// roots of the sizes it streamed since each node's last anchor, so anchors that
    /// arrive after their size was read are met without a proof.
    pub fn monitor(chain: &'c ChainClient, options: AuditOptions) -> Self {
        Auditor {
            keep_roots: true,
            ..Self::new(chain, options)
        }
    }

    /// Reads the chain's events up to its head and each node's log up to its served
    /// checkpoint, checking everything new; returns the findings not reported before.
    ///
    /// Errors only when the chain cannot be read; the audit can be polled again.
    pub async fn poll<L: LogSources>(&mut self, sources: &mut L) -> Result<Vec<Finding>, Error> {
        let t = Instant::now();
        let before = self.findings.len();
        let r = self.poll_inner(sources).await;
        self.elapsed += t.elapsed();
        r?;
        Ok(self.findings[before..].to_vec())
    }

    async fn poll_inner<L: LogSources>(&mut self, sources: &mut L) -> Result<(), Error> {
        let head = self.chain.head().await?;
        if self.next_block > head.number.saturating_add(1) {
            return Err(Error::misconfigured(format!(
                "the audit starts at block {}, beyond the head {}",
                self.next_block, head.number
            )));
        }
        // The nodes KmsAuth lists now (or the ones asked for).
        let listed = self.chain.kms_nodes(head.pinned).await?;
        let wanted: Vec<Address> = match &self.options.nodes {
            Some(nodes) => nodes.clone(),
            None => listed.clone(),
        };
        for node in wanted {
            self.ensure_node(node).await?;
        }
        for (address, node) in &mut self.nodes {
            node.registered = listed.contains(address);
        }

        // Events, one page of blocks at a time; each node's stream follows its anchors.
        let mut pending = Vec::new();
        while self.next_block <= head.number {
            let from = self.next_block;
            let to = from.saturating_add(MAX_LOG_BLOCK_SPAN - 1).min(head.number);
            let events = self.chain.kms_history(BlockRange::new(from, to)).await?;
            for e in events {
                let node = match &e.event {
                    KmsAuthEvents::CheckpointAnchored(a) => a.node,
                    KmsAuthEvents::KmsNodeAdded(a) => a.node,
                    KmsAuthEvents::KmsNodeRemoved(a) => a.node,
                    _ => continue,
                };
                if self
                    .options
                    .nodes
                    .as_ref()
                    .is_some_and(|n| !n.contains(&node))
                {
                    continue;
                }
                self.ensure_node(node).await?;
                if let KmsAuthEvents::CheckpointAnchored(a) = e.event {
                    if let Some(n) = self.nodes.get_mut(&node) {
                        n.observe_anchor(a.treeSize, a.rootHash, e.block_number, &mut pending);
                    }
                }
            }
            self.record(std::mem::take(&mut pending));
            self.next_block = to + 1;
            self.stats.block = to;
            self.advance_all(sources, false).await?;
        }
        self.stats.block = head.number;
        self.advance_all(sources, true).await
    }

    /// Advances every node (`with_checkpoint`: up to its served checkpoint).
    async fn advance_all<L: LogSources>(
        &mut self,
        sources: &mut L,
        with_checkpoint: bool,
    ) -> Result<(), Error> {
        let mut findings = Vec::new();
        let addresses: Vec<Address> = self.nodes.keys().copied().collect();
        for address in addresses {
            let Some(node) = self.nodes.get_mut(&address) else {
                continue;
            };
            let Some(source) = sources.source(address) else {
                if with_checkpoint {
                    findings.push(Finding::NoSource { node: address });
                }
                continue;
            };
            let mut ctx = Ctx {
                chain: self.chain,
                options: &self.options,
                checker: &mut self.checker,
                stats: &mut self.stats,
                findings: &mut findings,
                releases: &mut self.releases,
            };
            node.advance(source, &mut ctx, with_checkpoint).await?;
        }
        self.record(findings);
        Ok(())
    }

    /// A node's audit, created on first sight: its start (the anchor before
    /// `from_block`) and the receipts its key signed.
    async fn ensure_node(&mut self, node: Address) -> Result<(), Error> {
        if self.nodes.contains_key(&node) {
            return Ok(());
        }
        let base = match self.options.from_block {
            0 => None,
            from => {
                let before = self.chain.block_at(from - 1).await?;
                self.chain
                    .latest_anchor(node, before)
                    .await?
                    .map(|a| TreeHead {
                        size: a.tree_size,
                        root: a.root_hash,
                    })
            }
        };
        let mut audit = NodeAudit::new(node, false, base, self.keep_roots);
        let mut rest = Vec::new();
        for receipt in std::mem::take(&mut self.unplaced) {
            let origin = receipt.checkpoint.lines().next().unwrap_or_default();
            match CheckpointVerifier::new(origin, node)
                .and_then(|v| v.open(receipt.checkpoint.as_bytes()))
            {
                Ok(cp) => audit.hold_receipt(HeldReceipt {
                    size: cp.size(),
                    root: cp.root(),
                    receipt,
                }),
                Err(_) => rest.push(receipt),
            }
        }
        self.unplaced = rest;
        self.nodes.insert(node, audit);
        Ok(())
    }

    /// Keeps the findings not reported before.
    fn record(&mut self, findings: Vec<Finding>) {
        for f in findings {
            if self.seen.insert(f.clone()) {
                self.findings.push(f);
            }
        }
    }

    /// Every finding so far, what was audited, and the work done.
    pub fn report(&self) -> AuditReport {
        let mut findings = self.findings.clone();
        for r in &self.unplaced {
            findings.push(Finding::UnknownReceipt {
                index: r.log_index,
                origin: r.checkpoint.lines().next().unwrap_or_default().to_owned(),
            });
        }
        AuditReport {
            nodes: self.nodes.values().map(NodeAudit::summary).collect(),
            releases: self.releases.clone(),
            findings,
            stats: self.stats,
            elapsed: self.elapsed,
        }
    }

    /// The releases checked so far, in the order they were checked (with
    /// [`AuditOptions::collect_releases`]); a release's `logged` is settled once a tree
    /// head the node committed to covers it (after a poll, everything up to its verified
    /// checkpoint). Cheaper than [`Auditor::report`] for a monitor printing new ones.
    pub fn releases(&self) -> &[AuditedRelease] {
        &self.releases
    }

    /// Polls every `interval` until `shutdown` completes, handing each new finding to
    /// `on_finding` as soon as the poll that found it ends (a monitor of the cluster).
    ///
    /// A poll that fails with a retryable chain error (`Error::is_retryable`) is logged
    /// and retried at the next tick; any other error ends the loop.
    pub async fn follow<L, F, D>(
        &mut self,
        sources: &mut L,
        interval: Duration,
        shutdown: D,
        mut on_finding: F,
    ) -> Result<(), Error>
    where
        L: LogSources,
        F: FnMut(&Finding),
        D: Future<Output = ()>,
    {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                _ = tick.tick() => {}
            }
            match self.poll(sources).await {
                Ok(new) => new.iter().for_each(&mut on_finding),
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "audit poll failed; retrying at the next tick")
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Audits the whole cluster once: every node (see the module docs), each log read from
/// `sources`, every release (or `options.app`'s) checked against the chain.
///
/// Errors only when the chain cannot be read; see [`AuditOutcome::of`].
pub async fn audit_all<L: LogSources>(
    chain: &ChainClient,
    sources: &mut L,
    options: AuditOptions,
) -> Result<AuditReport, Error> {
    let mut auditor = Auditor::new(chain, options);
    auditor.poll(sources).await?;
    Ok(auditor.report())
}

/// Audits `node`'s log from `source` for the releases of `app_id`, keeping each checked
/// release in the report ([`audit_all`] with the app, the node and
/// [`AuditOptions::collect_releases`]).
pub async fn audit_app<S: LogSource + Send>(
    chain: &ChainClient,
    source: &mut S,
    node: Address,
    app_id: Address,
) -> Result<AuditReport, Error> {
    let options = AuditOptions::default()
        .with_app(app_id)
        .with_nodes(vec![node])
        .collecting_releases();
    audit_all(chain, &mut Single { node, source }, options).await
}
