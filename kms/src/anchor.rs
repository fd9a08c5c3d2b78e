//! Checkpoint anchoring (DESIGN.md §6) and the bound on unanchored releases.
//!
//! The anchoring task posts `(treeSize, rootHash)` to `KmsAuth.anchorCheckpoint` from the
//! node's own address every `anchor_interval` when the log grew — sooner when the
//! unanchored entries reach half of [`AnchorLimits::max_unanchored`] and the last round
//! succeeded. A failed round is counted (`cairn_kms_anchor_failures_total`), logged and
//! retried at the next tick.
//!
//! [`AnchorState`] is what the release path and `/healthz` read: how many log entries the
//! chain does not hold yet and when the log was last fully anchored. A release is refused
//! (503 `unavailable.anchor`) when admitting it would leave more than `max_unanchored`
//! entries unanchored, or when some entry is unanchored and the log was last fully
//! anchored more than `max_age` ago. Admission reserves a slot until the entry is
//! appended, so concurrent releases cannot overshoot the count.
//!
//! "Fully anchored at T" means: a round read the log head at T and, when it returned, the
//! chain held that head (it anchored it, or it already was). A fresh node with an empty
//! log, or one whose log equals its on-chain anchor, is fully anchored when it opens; a
//! node restarted with unanchored entries starts its age from the moment it opened (the
//! count bound still covers those entries, since it is computed from the on-chain anchor).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cairn_onchain::alloy::primitives::{Address, B256};
use cairn_onchain::{ChainClient, PolicyBlock};
use cairn_tlog::Log;
use tokio::sync::{watch, Notify};

use crate::error::{Error, Result};
use crate::node::Node;
use crate::reject::{ApiError, Dependency};

/// Default `log.max_unanchored`: releases are refused while this many log entries are not
/// anchored on chain. At the default anchoring interval this is ~166 releases/s sustained
/// with a chain that accepts every anchor; an early anchoring round starts at half of it.
pub const DEFAULT_MAX_UNANCHORED: u64 = 10_000;
/// Default `log.max_anchor_age`: releases are refused while some entry is unanchored and
/// the log was last fully anchored longer ago than this (10 default anchoring intervals,
/// so a chain or gas outage of a few minutes does not stop releases).
pub const DEFAULT_MAX_ANCHOR_AGE: Duration = Duration::from_secs(600);
/// Longest anchoring error kept for `/healthz` and release refusals.
pub const MAX_ANCHOR_ERROR_LEN: usize = 512;

/// How far releases may run ahead of the log's on-chain anchor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnchorLimits {
    /// Most log entries that may be unanchored; a release that would exceed it is refused.
    /// At least 1.
    pub max_unanchored: u64,
    /// Longest time since the log was last fully anchored while an entry is unanchored.
    /// Must exceed the anchoring interval.
    pub max_age: Duration,
}

impl Default for AnchorLimits {
    fn default() -> Self {
        Self {
            max_unanchored: DEFAULT_MAX_UNANCHORED,
            max_age: DEFAULT_MAX_ANCHOR_AGE,
        }
    }
}

impl AnchorLimits {
    /// Check the limits against the anchoring `interval`; errors name the config key.
    pub fn check(&self, interval: Duration) -> Result<()> {
        if self.max_unanchored == 0 {
            return Err(Error::Config {
                key: "log.max_unanchored".into(),
                reason: "must be > 0".into(),
            });
        }
        if self.max_age <= interval {
            return Err(Error::Config {
                key: "log.max_anchor_age_secs".into(),
                reason: format!(
                    "must exceed the anchoring interval ({} s): otherwise releases are refused between two rounds",
                    interval.as_secs_f64()
                ),
            });
        }
        Ok(())
    }
}

/// The anchoring state the release path and `/healthz` read.
#[derive(Debug)]
pub(crate) struct AnchorState {
    limits: AnchorLimits,
    inner: Mutex<Inner>,
    /// Wakes the anchoring task early (half the count bound reached).
    wake: Notify,
}

#[derive(Debug)]
struct Inner {
    /// Tree size the chain holds for this node, as far as this node knows.
    anchored: u64,
    /// When the log was last fully anchored (see the module docs).
    caught_up_at: Instant,
    /// Releases admitted and not yet appended (or abandoned).
    reserved: u64,
    /// Anchoring rounds failed in a row.
    failures: u64,
    /// The last failure, bounded; cleared by a successful round.
    last_error: Option<String>,
}

/// What `/metrics` shows about anchoring, sampled at scrape time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AnchorGauges {
    /// Log entries not yet anchored on chain.
    pub unanchored_entries: u64,
    /// Seconds since the log was last fully anchored.
    pub last_success_age_seconds: f64,
}

/// A release admitted under the bound; dropping it (after the append, or when the
/// release fails) frees its slot.
#[must_use = "the slot must live until the entry is appended"]
pub(crate) struct Slot<'a> {
    state: &'a AnchorState,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut s = self.state.lock();
        s.reserved = s.reserved.saturating_sub(1);
    }
}

impl AnchorState {
    /// The state of a node whose on-chain anchor is at tree size `anchored`, opened at
    /// `now` (its age counts from there).
    pub(crate) fn new(limits: AnchorLimits, anchored: u64, now: Instant) -> Self {
        Self {
            limits,
            inner: Mutex::new(Inner {
                anchored,
                caught_up_at: now,
                reserved: 0,
                failures: 0,
                last_error: None,
            }),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The tree size the chain holds for this node, as far as it knows.
    pub(crate) fn anchored(&self) -> u64 {
        self.lock().anchored
    }

    /// Admit one release (release-path step 4): refused with `unavailable.anchor` when the
    /// bound would be exceeded. The slot must be held until the entry is appended.
    pub(crate) fn admit(&self, log: &Log) -> Result<Slot<'_>, ApiError> {
        let mut s = self.lock();
        self.refusal(&s, log.size(), 1)?;
        s.reserved += 1;
        let pending = log.size().saturating_sub(s.anchored) + s.reserved;
        if pending >= self.limits.max_unanchored.div_ceil(2) && s.failures == 0 {
            self.wake.notify_one();
        }
        Ok(Slot { state: self })
    }

    /// Readiness (`/healthz`): not ready while releases would be refused or the last
    /// anchoring round failed.
    pub(crate) fn health(&self, log: &Log) -> Result<(), ApiError> {
        let s = self.lock();
        self.refusal(&s, log.size(), 1)?;
        if s.failures > 0 {
            return Err(ApiError::Unavailable {
                dependency: Dependency::Anchor,
                reason: format!(
                    "anchoring failed; {}",
                    self.describe(&s, log.size().saturating_sub(s.anchored))
                ),
            });
        }
        Ok(())
    }

    /// Gauges for `/metrics`.
    pub(crate) fn gauges(&self, log: &Log) -> AnchorGauges {
        let s = self.lock();
        AnchorGauges {
            unanchored_entries: log.size().saturating_sub(s.anchored),
            last_success_age_seconds: s.caught_up_at.elapsed().as_secs_f64(),
        }
    }

    /// Why `extra` more entries may not be admitted now, if they may not.
    fn refusal(&self, s: &Inner, log_size: u64, extra: u64) -> Result<(), ApiError> {
        let unanchored = log_size.saturating_sub(s.anchored);
        let max = self.limits.max_unanchored;
        if unanchored + s.reserved + extra > max {
            return Err(ApiError::Unavailable {
                dependency: Dependency::Anchor,
                reason: format!(
                    "the log is too far ahead of its on-chain anchor (log.max_unanchored = {max}); {}",
                    self.describe(s, unanchored)
                ),
            });
        }
        let age = s.caught_up_at.elapsed();
        if unanchored > 0 && age > self.limits.max_age {
            return Err(ApiError::Unavailable {
                dependency: Dependency::Anchor,
                reason: format!(
                    "the log was last fully anchored longer ago than log.max_anchor_age_secs = {}; {}",
                    self.limits.max_age.as_secs(),
                    self.describe(s, unanchored)
                ),
            });
        }
        Ok(())
    }

    fn describe(&self, s: &Inner, unanchored: u64) -> String {
        let mut out = format!(
            "{unanchored} entries unanchored ({} in flight), last fully anchored {} s ago",
            s.reserved,
            s.caught_up_at.elapsed().as_secs()
        );
        if let Some(e) = &s.last_error {
            out.push_str(&format!(
                "; {} anchoring round(s) failed in a row, last: {e}",
                s.failures
            ));
        }
        out
    }

    /// A round that read the head at `read_at` left the chain holding `size` entries.
    fn caught_up(&self, size: u64, read_at: Instant) {
        let mut s = self.lock();
        s.anchored = s.anchored.max(size);
        s.caught_up_at = s.caught_up_at.max(read_at);
        s.failures = 0;
        s.last_error = None;
    }

    /// A round failed with `e`.
    fn failed(&self, e: &cairn_onchain::Error) {
        let mut s = self.lock();
        s.failures += 1;
        let mut msg = e.to_string();
        if msg.len() > MAX_ANCHOR_ERROR_LEN {
            let mut cut = MAX_ANCHOR_ERROR_LEN;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg.truncate(cut);
        }
        s.last_error = Some(msg);
    }

    /// Whether the last round failed (no early rounds then: retry at the tick only).
    fn failing(&self) -> bool {
        self.lock().failures > 0
    }
}

/// Startup check: the local log must extend the checkpoint `node` last anchored on chain
/// (as of `at`): at least as large, with the same root at the anchored size. A log that
/// was lost, rolled back or forked is an error (logged) and the node refuses to serve.
/// Returns the anchored size (0 when the node never anchored).
pub async fn check_log_extends_anchor(
    chain: &ChainClient,
    log: &Log,
    node: [u8; 20],
    at: PolicyBlock,
) -> Result<u64> {
    let Some(anchor) = chain.latest_anchor(Address::from(node), at).await? else {
        return Ok(0);
    };
    let local_size = log.size();
    let refuse = |reason: String| {
        let e = Error::LogBehindAnchor {
            local_size,
            anchored_size: anchor.tree_size,
            reason,
        };
        tracing::error!(error = %e, "local log does not match the on-chain anchor");
        Err(e)
    };
    if local_size < anchor.tree_size {
        return refuse("the local log is smaller than the anchored tree".into());
    }
    let root = log.root_at(anchor.tree_size)?;
    if root.0 != anchor.root_hash.0 {
        return refuse(format!(
            "root at the anchored size is 0x{}, the anchor says {}",
            hex::encode(root.0),
            anchor.root_hash
        ));
    }
    Ok(anchor.tree_size)
}

/// Anchor once if the log is larger than `anchored`; returns the size now anchored. The
/// outcome is recorded in the node's anchoring state (metrics, `/healthz`, the bound).
pub async fn anchor_once(node: &Node, anchored: u64) -> Result<u64, cairn_onchain::Error> {
    let read_at = Instant::now();
    let (size, root) = node.log().head();
    if size <= anchored {
        return Ok(anchored);
    }
    match node
        .chain()
        .anchor_checkpoint(size, B256::from(root.0))
        .await
    {
        Ok(_) => {
            node.anchor_state().caught_up(size, read_at);
            tracing::info!(size, root = %root, "checkpoint anchored");
            Ok(size)
        }
        Err(e) => {
            node.anchor_state().failed(&e);
            node.metrics().anchor_failed();
            Err(e)
        }
    }
}

/// One round of the task: anchor what the state says is unanchored, or note that the
/// chain already holds the whole log.
async fn round(node: &Node) {
    let state = node.anchor_state();
    let read_at = Instant::now();
    let anchored = state.anchored();
    if node.log().size() <= anchored {
        state.caught_up(anchored, read_at);
        return;
    }
    if let Err(e) = anchor_once(node, anchored).await {
        tracing::warn!(error = %e, "anchoring failed; will retry");
    }
}

/// The anchoring loop; ends when `stop` turns true (or its sender is dropped). It also
/// reopens the log every [`LOG_RECOVERY_INTERVAL`](crate::LOG_RECOVERY_INTERVAL) while a
/// failed write (a full disk) keeps it from taking entries, so releases resume by
/// themselves once the disk takes writes again, traffic or not.
pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(node.anchor_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut recovery = tokio::time::interval(crate::LOG_RECOVERY_INTERVAL);
    recovery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let early = !node.anchor_state().failing();
        tokio::select! {
            _ = tick.tick() => {}
            () = node.anchor_state().wake.notified(), if early => {}
            _ = recovery.tick() => {
                if node.log().is_poisoned() {
                    let n = Arc::clone(&node);
                    // A panic in the blocking task is a failed attempt; the next tick
                    // tries again.
                    let _ = tokio::task::spawn_blocking(move || n.recover_log()).await;
                }
                continue;
            }
            r = stop.changed() => {
                if r.is_err() || *stop.borrow() {
                    return;
                }
                continue;
            }
        }
        round(&node).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(n: usize) -> (tempfile::TempDir, Log) {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path().join("log")).unwrap();
        for i in 0..n {
            log.append(format!("entry-{i}").into_bytes()).unwrap();
        }
        (dir, log)
    }

    fn limits(max_unanchored: u64, max_age: Duration) -> AnchorLimits {
        AnchorLimits {
            max_unanchored,
            max_age,
        }
    }

    fn is_anchor_refusal(r: Result<(), ApiError>, needle: &str) {
        match r {
            Err(ApiError::Unavailable {
                dependency: Dependency::Anchor,
                reason,
            }) => assert!(reason.contains(needle), "{reason}"),
            r => panic!("expected unavailable.anchor, got {r:?}"),
        }
    }

    #[test]
    fn a_fresh_node_with_an_empty_log_admits_releases_up_to_the_bound() {
        let (_d, log) = log_with(0);
        let s = AnchorState::new(limits(3, Duration::from_secs(60)), 0, Instant::now());
        s.health(&log).unwrap();
        for _ in 0..3 {
            drop(s.admit(&log).unwrap());
            log.append(b"x".to_vec()).unwrap();
        }
        is_anchor_refusal(s.admit(&log).map(drop), "log.max_unanchored = 3");
        is_anchor_refusal(s.health(&log), "3 entries unanchored");
        // The first anchor covers them: admitted again.
        s.caught_up(3, Instant::now());
        s.health(&log).unwrap();
        drop(s.admit(&log).unwrap());
    }

    #[test]
    fn admitted_slots_count_until_they_are_dropped() {
        let (_d, log) = log_with(0);
        let s = AnchorState::new(limits(2, Duration::from_secs(60)), 0, Instant::now());
        let a = s.admit(&log).unwrap();
        let b = s.admit(&log).unwrap();
        is_anchor_refusal(s.admit(&log).map(drop), "2 in flight");
        drop(a);
        let c = s.admit(&log).unwrap();
        drop((b, c));
    }

    #[test]
    fn an_old_anchor_refuses_only_while_entries_are_unanchored() {
        let (_d, log) = log_with(0);
        let long_ago = Instant::now() - Duration::from_secs(120);
        let s = AnchorState::new(limits(100, Duration::from_secs(60)), 0, long_ago);
        // Nothing unanchored: an old anchor does not matter.
        drop(s.admit(&log).unwrap());
        log.append(b"x".to_vec()).unwrap();
        is_anchor_refusal(s.admit(&log).map(drop), "log.max_anchor_age_secs = 60");
        s.caught_up(1, Instant::now());
        drop(s.admit(&log).unwrap());
    }

    #[test]
    fn a_failed_round_makes_the_node_not_ready_until_a_round_succeeds() {
        let (_d, log) = log_with(1);
        let s = AnchorState::new(limits(100, Duration::from_secs(60)), 0, Instant::now());
        s.failed(&cairn_onchain::Error::Timeout {
            op: "KmsAuth.anchorCheckpoint",
            after: Duration::from_secs(3),
        });
        assert!(s.failing());
        is_anchor_refusal(s.health(&log), "1 anchoring round(s) failed in a row");
        // Releases are still admitted: the bounds are not reached.
        drop(s.admit(&log).unwrap());
        s.caught_up(1, Instant::now());
        s.health(&log).unwrap();
        assert!(!s.failing());
    }

    #[test]
    fn limits_must_be_positive_and_the_age_must_exceed_the_interval() {
        let interval = Duration::from_secs(60);
        AnchorLimits::default().check(interval).unwrap();
        let key = |r: Result<()>| match r {
            Err(Error::Config { key, .. }) => key,
            r => panic!("{r:?}"),
        };
        assert_eq!(
            key(limits(0, Duration::from_secs(600)).check(interval)),
            "log.max_unanchored"
        );
        assert_eq!(
            key(limits(1, interval).check(interval)),
            "log.max_anchor_age_secs"
        );
    }
}
