//! What an audit reports: [`Finding`]s (each names the node, and for a release its log
//! index and policy block), the releases it checked, counts, and the outcome
//! ([`AuditOutcome`]: clean / findings / could not audit, as exit codes 0 / 1 / 2).

use std::time::Duration;

use alloy::primitives::{Address, B256};
use cairn_tlog::ReleaseRecord;

use crate::error::{Check, Error};

/// A tree head a node committed to: an anchor, a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TreeHead {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: B256,
}

/// Why a policy block is older than the chain allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Staleness {
    /// The block is more than the confirmation depth behind the newest policy block of
    /// the node's earlier entries: the KMS judged with a policy it had already seen
    /// superseded (a stuck or rewound head could hide a revocation).
    BehindPrevious {
        /// The newest policy block of the node's earlier entries.
        previous: u64,
        /// The tolerated depth ([`AuditOptions::confirmations`](super::AuditOptions)).
        depth: u64,
    },
    /// The block's timestamp is further from the record's timestamp than allowed
    /// ([`AuditOptions::max_policy_age`](super::AuditOptions)), in either direction.
    TimeGap {
        /// The policy block's timestamp.
        block_timestamp: u64,
        /// The record's timestamp (the KMS's clock at the release).
        record_timestamp: u64,
        /// The allowed distance, seconds.
        max_secs: u64,
    },
}

/// One problem an audit found. Every variant names the node whose log it is about.
///
/// [`Finding::is_violation`] separates misbehaviour that the finding itself evidences
/// (a fork, a rollback, a release the policy did not allow, …) from what the audit
/// could not check (a log that could not be read); see `docs/auditor.md` for each.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Finding {
    // ---- the log ----
    /// Two successive `CheckpointAnchored` events of a node go backwards: a smaller
    /// size, or the same size with another root. KmsAuth forbids both, so the events
    /// read are not the contract's (a lying RPC) or the contract was replaced.
    AnchorRollback {
        /// The node.
        node: Address,
        /// Block of the offending anchor.
        block: u64,
        /// The previous anchor.
        previous: TreeHead,
        /// The offending anchor.
        anchored: TreeHead,
    },
    /// Two successive anchors are not consistent (the larger tree does not extend the
    /// smaller, or no valid consistency proof was served): the node's log was forked
    /// or rewritten between them.
    ForkedAnchors {
        /// The node.
        node: Address,
        /// Older anchored size.
        first: u64,
        /// Newer anchored size.
        second: u64,
        /// Why the consistency check failed.
        detail: String,
    },
    /// The node's served checkpoint is malformed or not signed by the node.
    BadCheckpoint {
        /// The node.
        node: Address,
        /// Why.
        detail: String,
    },
    /// The node's served checkpoint does not extend its last anchor (smaller, forked,
    /// or no valid consistency proof served): the served log was rolled back or forked.
    CheckpointNotConsistent {
        /// The node.
        node: Address,
        /// Last anchored (or previously verified) size.
        anchor_size: u64,
        /// The served checkpoint's size.
        checkpoint_size: u64,
        /// Why.
        detail: String,
    },
    /// An entry is not provably in the tree the node committed to: the served entry
    /// and its inclusion proof do not reproduce the committed root.
    NotLogged {
        /// The node.
        node: Address,
        /// Log index.
        index: u64,
        /// Why.
        detail: String,
    },
    /// A client holds a receipt for an entry the node's log does not have: the
    /// receipt's signed checkpoint is larger than the log the node serves, or not a
    /// prefix of it, or the entry at the receipt's index is another release.
    MissingEntry {
        /// The node that signed the receipt's checkpoint.
        node: Address,
        /// The receipt's log index.
        index: u64,
        /// The receipt's checkpoint size.
        checkpoint_size: u64,
        /// What is wrong.
        detail: String,
    },
    /// An entry is not a valid release record.
    UndecodableEntry {
        /// The node.
        node: Address,
        /// Log index.
        index: u64,
        /// The decoding error.
        detail: String,
    },
    // ---- the releases ----
    /// The record names another chain or another releasing node than the log's.
    WrongOrigin {
        /// The node whose log holds the record.
        node: Address,
        /// Log index.
        index: u64,
        /// What differs.
        detail: String,
    },
    /// The recorded policy block does not exist or its hash differs from the record's
    /// (a reorged or invented block).
    PolicyBlockMismatch {
        /// The node.
        node: Address,
        /// Log index.
        index: u64,
        /// Recorded block number.
        number: u64,
        /// Recorded block hash.
        recorded: B256,
        /// The chain's hash at that number, if the block exists.
        actual: Option<B256>,
    },
    /// The recorded policy block is older than the chain allows.
    StalePolicyBlock {
        /// The node.
        node: Address,
        /// Log index.
        index: u64,
        /// The recorded policy block.
        block: u64,
        /// How it is too old.
        staleness: Staleness,
    },
    /// The releasing node was not a registered KMS node (`KmsAuth.isKmsNode`) at the
    /// record's policy block.
    UnregisteredNode {
        /// The node.
        node: Address,
        /// Log index.
        index: u64,
        /// The recorded policy block.
        block: u64,
    },
    /// `KmsAuth.isAppAllowed` (`isKmsAllowed` for onboarding) denies the recorded boot
    /// info at the recorded block: a release the policy did not allow, e.g. after a
    /// revocation. Exact for version-2 records; see [`AuditedRelease::exact`].
    NotAllowed {
        /// The node.
        node: Address,
        /// Log index.
        index: u64,
        /// The recorded policy block.
        block: u64,
        /// The check that denied.
        check: Check,
        /// The contract's reason.
        reason: String,
    },
    // ---- what could not be audited ----
    /// No log source was given for a node the chain names.
    NoSource {
        /// The node.
        node: Address,
    },
    /// The node's log source did not answer (transport, status, body).
    SourceUnavailable {
        /// The node.
        node: Address,
        /// Why.
        detail: String,
    },
    /// The source did not serve entries `start..` correctly; the rest was not read
    /// (a follow-mode audit retries from `start`).
    EntriesUnavailable {
        /// The node.
        node: Address,
        /// First index not read.
        start: u64,
        /// Why.
        detail: String,
    },
    /// The log is larger than one audit reads ([`MAX_AUDIT_ENTRIES`](super::MAX_AUDIT_ENTRIES));
    /// only a prefix was read.
    Truncated {
        /// The node.
        node: Address,
        /// Entries read.
        size: u64,
    },
    /// Neither a valid checkpoint nor an anchor: nothing can be proven logged.
    NoVerifiedHead {
        /// The node.
        node: Address,
    },
    /// A receipt given to the audit whose checkpoint no audited node signed.
    UnknownReceipt {
        /// The receipt's log index.
        index: u64,
        /// The checkpoint's origin line.
        origin: String,
    },
}

impl Finding {
    /// Whether the finding evidences misbehaviour (`true`), or only that something could
    /// not be audited (`false`: [`Finding::NoSource`], [`Finding::SourceUnavailable`],
    /// [`Finding::EntriesUnavailable`], [`Finding::Truncated`],
    /// [`Finding::NoVerifiedHead`], [`Finding::UnknownReceipt`]).
    pub fn is_violation(&self) -> bool {
        !matches!(
            self,
            Finding::NoSource { .. }
                | Finding::SourceUnavailable { .. }
                | Finding::EntriesUnavailable { .. }
                | Finding::Truncated { .. }
                | Finding::NoVerifiedHead { .. }
                | Finding::UnknownReceipt { .. }
        )
    }

    /// The finding's stable snake_case name (`forked_anchors`, `not_allowed`, …), as
    /// `cairn audit` prints it.
    pub fn code(&self) -> &'static str {
        match self {
            Finding::AnchorRollback { .. } => "anchor_rollback",
            Finding::ForkedAnchors { .. } => "forked_anchors",
            Finding::BadCheckpoint { .. } => "bad_checkpoint",
            Finding::CheckpointNotConsistent { .. } => "checkpoint_not_consistent",
            Finding::NotLogged { .. } => "not_logged",
            Finding::MissingEntry { .. } => "missing_entry",
            Finding::UndecodableEntry { .. } => "undecodable_entry",
            Finding::WrongOrigin { .. } => "wrong_origin",
            Finding::PolicyBlockMismatch { .. } => "policy_block_mismatch",
            Finding::StalePolicyBlock { .. } => "stale_policy_block",
            Finding::UnregisteredNode { .. } => "unregistered_node",
            Finding::NotAllowed { .. } => "not_allowed",
            Finding::NoSource { .. } => "no_source",
            Finding::SourceUnavailable { .. } => "source_unavailable",
            Finding::EntriesUnavailable { .. } => "entries_unavailable",
            Finding::Truncated { .. } => "truncated",
            Finding::NoVerifiedHead { .. } => "no_verified_head",
            Finding::UnknownReceipt { .. } => "unknown_receipt",
        }
    }

    /// The log index the finding is about, if one entry.
    pub fn index(&self) -> Option<u64> {
        match self {
            Finding::NotLogged { index, .. }
            | Finding::MissingEntry { index, .. }
            | Finding::UndecodableEntry { index, .. }
            | Finding::WrongOrigin { index, .. }
            | Finding::PolicyBlockMismatch { index, .. }
            | Finding::StalePolicyBlock { index, .. }
            | Finding::UnregisteredNode { index, .. }
            | Finding::NotAllowed { index, .. }
            | Finding::UnknownReceipt { index, .. } => Some(*index),
            Finding::EntriesUnavailable { start, .. } => Some(*start),
            _ => None,
        }
    }

    /// The node the finding is about (none for an unknown receipt).
    pub fn node(&self) -> Option<Address> {
        match self {
            Finding::AnchorRollback { node, .. }
            | Finding::ForkedAnchors { node, .. }
            | Finding::BadCheckpoint { node, .. }
            | Finding::CheckpointNotConsistent { node, .. }
            | Finding::NotLogged { node, .. }
            | Finding::MissingEntry { node, .. }
            | Finding::UndecodableEntry { node, .. }
            | Finding::WrongOrigin { node, .. }
            | Finding::PolicyBlockMismatch { node, .. }
            | Finding::StalePolicyBlock { node, .. }
            | Finding::UnregisteredNode { node, .. }
            | Finding::NotAllowed { node, .. }
            | Finding::NoSource { node }
            | Finding::SourceUnavailable { node, .. }
            | Finding::EntriesUnavailable { node, .. }
            | Finding::Truncated { node, .. }
            | Finding::NoVerifiedHead { node } => Some(*node),
            Finding::UnknownReceipt { .. } => None,
        }
    }
}

/// One release the audit checked against the chain, with its verdicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditedRelease {
    /// The node whose log holds it.
    pub node: Address,
    /// Log index.
    pub index: u64,
    /// The decoded record (as served by the source).
    pub record: ReleaseRecord,
    /// Proven in a tree head the node committed to (anchor or checkpoint).
    pub logged: bool,
    /// Allowed by `KmsAuth` at the recorded (hash-checked) policy block, by a node
    /// registered at that block, with a policy block that is not stale.
    pub allowed: bool,
    /// The re-evaluation used exactly the boot info the KMS evaluated (a version-2
    /// record); `false` for version-1 records, re-evaluated without `mrSystem` and
    /// advisory ids.
    pub exact: bool,
}

/// What the audit saw of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSummary {
    /// The node (its log signer address).
    pub node: Address,
    /// Registered in KmsAuth at the head the audit read.
    pub registered: bool,
    /// `CheckpointAnchored` events of the node read (from the start block on).
    pub anchors: usize,
    /// The first log index audited (0, or the size anchored before `from_block`).
    pub start: u64,
    /// Size of the largest tree head the entries were proven against (`None`: none).
    pub verified_size: Option<u64>,
    /// Entries read from the log.
    pub entries: u64,
}

/// How much work an audit did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Log entries read (every node).
    pub entries: u64,
    /// Releases checked against the chain (after the app filter).
    pub releases: u64,
    /// Onboarding receipts (`kms-onboard-receipt`: a node's record that it received a
    /// key generation) checked against the chain; not counted in `releases`.
    pub receipts: u64,
    /// Of the releases and receipts, version-1 records (approximate re-evaluation).
    pub approximate: u64,
    /// `isAppAllowed` / `isKmsAllowed` calls made (one per distinct boot info and
    /// block hash).
    pub policy_calls: u64,
    /// `isKmsNode` calls made (one per distinct node and block hash).
    pub registration_calls: u64,
    /// Block headers read (one per distinct policy block).
    pub header_reads: u64,
    /// Entry pages read from the log sources.
    pub entry_pages: u64,
    /// Proofs requested (only for a `from_block` start and to locate a mismatch).
    pub proofs: u64,
    /// The last block whose events were read.
    pub block: u64,
}

/// An audit's result: every finding, what it covered, and how much work it did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditReport {
    /// Every node audited, by address.
    pub nodes: Vec<NodeSummary>,
    /// The releases checked, in log order per node, when
    /// [`AuditOptions::collect_releases`](super::AuditOptions) is set.
    pub releases: Vec<AuditedRelease>,
    /// Every problem found.
    pub findings: Vec<Finding>,
    /// Work done.
    pub stats: AuditStats,
    /// Wall-clock time the audit took.
    pub elapsed: Duration,
}

impl AuditReport {
    /// No findings at all.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// Clean, findings (at least one violation), or could not audit (only findings
    /// about what could not be read).
    pub fn outcome(&self) -> AuditOutcome {
        if self.findings.iter().any(Finding::is_violation) {
            AuditOutcome::Findings
        } else if self.findings.is_empty() {
            AuditOutcome::Clean
        } else {
            AuditOutcome::CouldNotAudit
        }
    }

    /// The summary of `node`.
    pub fn node(&self, node: Address) -> Option<&NodeSummary> {
        self.nodes.iter().find(|n| n.node == node)
    }
}

/// The result of an audit as a command reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditOutcome {
    /// Every release of every audited log is logged, allowed and on an unforked log.
    Clean,
    /// At least one finding evidences misbehaviour.
    Findings,
    /// The audit is incomplete: the chain could not be read, or a log could not be
    /// (and nothing worse was found).
    CouldNotAudit,
}

impl AuditOutcome {
    /// The outcome of an audit call: its report's, or [`AuditOutcome::CouldNotAudit`]
    /// when it failed (the chain could not be read).
    pub fn of(result: &Result<AuditReport, Error>) -> Self {
        match result {
            Ok(report) => report.outcome(),
            Err(_) => AuditOutcome::CouldNotAudit,
        }
    }

    /// The process exit code: 0 clean, 1 findings, 2 could not audit.
    pub fn exit_code(self) -> u8 {
        match self {
            AuditOutcome::Clean => 0,
            AuditOutcome::Findings => 1,
            AuditOutcome::CouldNotAudit => 2,
        }
    }
}
