//! [`PolicyHead`]: the pinned policy block, advanced in the background, so that no
//! release waits on an RPC for a question it has asked before.
//!
//! ```text
//!  every poll_interval:  head() ── quorum: latest headers, agreed hash at head − N
//!        │                 │
//!        │           fresh? (head timestamp vs clock, max_head_age)
//!        │                 │ new pinned block?
//!        │                 └─► re-read every tracked read at it (bounded set) ─► cache
//!        └─► publish Ok(head) — or the error: a failed or stale head is never the old block
//!
//!  release path:  view()?  ── the published head, its age checked again at the clock
//!                   └─ view.is_app_allowed(boot) ── cache hit (no RPC), or one quorum read
//! ```
//!
//! What it guarantees:
//! - a change on chain is seen by a release after `confirmations` blocks plus at most one
//!   `poll_interval` plus the time one advance takes;
//! - the release path returns an error, never an answer at an old block, when the last
//!   advance failed (unreachable endpoints, [`Error::ChainDisagreement`], a stale head) or
//!   when the published head has aged past `max_head_age` (a hung advance cannot freeze
//!   policy either);
//! - errors are never cached; a read that failed to refresh is read again (live) by the
//!   next request that needs it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use alloy::primitives::{keccak256, Address, B256};
use alloy::sol_types::SolValue;
use futures_util::stream::{self, StreamExt};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::cache::Query;
use crate::client::{
    unix_now, BootInfo, ChainClient, Head, KeyGenerations, PolicyBlock, Read, RootKeys, Verdict,
};
use crate::config::ChainConfig;
use crate::error::{Error, Result};

/// A clock: seconds since the Unix epoch. Head ages are judged against it.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The [`Clock`] of a [`HeadOptions`]; its `Debug` shows the time it reads.
#[derive(Clone)]
struct HeadClock(Clock);

impl std::fmt::Debug for HeadClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Clock").field(&(self.0)()).finish()
    }
}

/// Default number of recently used reads a [`PolicyHead`] keeps answered.
pub const DEFAULT_TRACKED_READS: usize = 1024;
/// How many reads one refresh runs at once.
pub const REFRESH_CONCURRENCY: usize = 16;

/// How a [`PolicyHead`] runs.
#[derive(Clone, Debug)]
pub struct HeadOptions {
    /// Interval between advances.
    pub poll_interval: Duration,
    /// A head older than this (by its block timestamp at the clock,
    /// [`HeadOptions::with_clock`]) is an error.
    pub max_head_age: Duration,
    /// Most recently used reads re-read at each new pinned block (least recently used
    /// ones are dropped first).
    pub max_tracked: usize,
    /// The clock head ages are judged against ([`HeadOptions::with_clock`]).
    clock: HeadClock,
}

impl HeadOptions {
    /// The poll interval and head age bound of `config`, [`DEFAULT_TRACKED_READS`], the
    /// system clock.
    pub fn new(config: &ChainConfig) -> Self {
        Self {
            poll_interval: config.head_poll_interval,
            max_head_age: config.max_head_age,
            max_tracked: DEFAULT_TRACKED_READS,
            clock: HeadClock(Arc::new(unix_now)),
        }
    }

    setters! {
        /// Judges head ages against `clock` instead of the system clock.
        fn with_clock(clock: Clock) => HeadClock;
        /// Sets how many recently used reads are kept answered.
        fn with_max_tracked(max_tracked: usize);
    }
}

/// What a [`PolicyHead`] reports for metrics and health checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadStatus {
    /// The published head, or `None` while the last advance failed.
    pub head: Option<Head>,
    /// Why the last advance failed (its message), if it did.
    pub error: Option<String>,
    /// Advances completed (successful or not).
    pub advances: u64,
    /// Advances that failed.
    pub failures: u64,
    /// Reads that ended in [`Error::ChainDisagreement`] (all callers of the client).
    pub disagreements: u64,
    /// Reads kept answered at each new block.
    pub tracked: usize,
}

/// The pinned policy block, advanced in the background (see the module docs). Cheap to
/// clone; the background task stops when the last clone is dropped.
#[derive(Clone)]
pub struct PolicyHead {
    inner: Arc<Inner>,
}

cairn_protocol::redacted_debug!(PolicyHead { status(), .. });

struct Inner {
    client: Arc<ChainClient>,
    options: HeadOptions,
    state: Mutex<std::result::Result<Head, Arc<Error>>>,
    tracked: Mutex<Tracked>,
    advancing: tokio::sync::Mutex<()>,
    advances: watch::Sender<u64>,
    failures: AtomicU64,
    task: Mutex<Option<AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let task = self
            .task
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
        }
    }
}

impl PolicyHead {
    /// Advances once (so the head is usable, or the error is returned) and starts the
    /// background task. Must be called within a tokio runtime.
    pub async fn start(client: Arc<ChainClient>, options: HeadOptions) -> Result<PolicyHead> {
        if options.poll_interval.is_zero() || options.max_head_age.is_zero() {
            return Err(Error::misconfigured(
                "head poll interval and max head age must be positive",
            ));
        }
        let (advances, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            client,
            tracked: Mutex::new(Tracked::new(options.max_tracked)),
            options,
            state: Mutex::new(Err(Arc::new(Error::misconfigured(
                "the policy head has not advanced yet",
            )))),
            advancing: tokio::sync::Mutex::new(()),
            advances,
            failures: AtomicU64::new(0),
            task: Mutex::new(None),
        });
        if let Err(source) = inner.advance().await {
            return Err(Error::PolicyHead { source });
        }
        let task = tokio::spawn(run(Arc::downgrade(&inner), inner.options.poll_interval));
        *inner.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task.abort_handle());
        Ok(PolicyHead { inner })
    }

    /// The published head, checked fresh at the clock now: the block every read of a
    /// decision must use. [`Error::PolicyHead`] when the last advance failed,
    /// [`Error::StaleHead`] when the head aged past the bound.
    pub fn view(&self) -> Result<HeadView<'_>> {
        let state = self.state();
        let head = state.map_err(|source| Error::PolicyHead { source })?;
        head.check_fresh(
            (self.inner.options.clock.0)(),
            self.inner.options.max_head_age,
        )?;
        Ok(HeadView {
            inner: &self.inner,
            head,
        })
    }

    /// Runs one advance now, as the background task does (serialized with it).
    pub async fn advance_now(&self) -> Result<Head> {
        self.inner
            .advance()
            .await
            .map_err(|source| Error::PolicyHead { source })
    }

    /// A receiver of the number of advances completed so far (successful or not): wait
    /// on it to see the next one.
    pub fn advances(&self) -> watch::Receiver<u64> {
        self.inner.advances.subscribe()
    }

    /// The chain client the head reads through.
    pub fn client(&self) -> &Arc<ChainClient> {
        &self.inner.client
    }

    /// The published head or the last advance's failure.
    fn state(&self) -> std::result::Result<Head, Arc<Error>> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current state, for metrics and health checks.
    pub fn status(&self) -> HeadStatus {
        let state = self.state();
        let (head, error) = match state {
            Ok(h) => (Some(h), None),
            Err(e) => (None, Some(e.to_string())),
        };
        HeadStatus {
            head,
            error,
            advances: *self.inner.advances.borrow(),
            failures: self.inner.failures.load(Ordering::Relaxed),
            disagreements: self.inner.client.disagreements(),
            tracked: self
                .inner
                .tracked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .map
                .len(),
        }
    }
}

async fn run(inner: Weak<Inner>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; `start` just advanced
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        // Failures are published in the state and logged by `advance`.
        let _ = inner.advance().await;
    }
}

impl Inner {
    /// Reads the head, checks it fresh, refreshes the tracked reads at a new pinned block,
    /// then publishes the head — or publishes the error.
    async fn advance(&self) -> std::result::Result<Head, Arc<Error>> {
        let _single = self.advancing.lock().await;
        let result = match self.client.head().await {
            Ok(head) => match head.check_fresh((self.options.clock.0)(), self.options.max_head_age)
            {
                Ok(()) => Ok(head),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let published = match result {
            Ok(head) => {
                let previous = self
                    .state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                match &previous {
                    Ok(p) if p.pinned == head.pinned => {}
                    Ok(_) => self.refresh(head.pinned).await,
                    Err(e) => {
                        self.refresh(head.pinned).await;
                        tracing::info!(
                            block = head.pinned.number,
                            after = %e,
                            "policy head advancing again"
                        );
                    }
                }
                Ok(head)
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                let e = Arc::new(e);
                let was_ok = self
                    .state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_ok();
                if was_ok {
                    tracing::warn!(error = %e, "policy head cannot advance; releases fail until it does");
                } else {
                    tracing::debug!(error = %e, "policy head still cannot advance");
                }
                Err(e)
            }
        };
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = published.clone();
        self.advances.send_modify(|n| *n += 1);
        published
    }

    /// Re-reads every tracked read at `at` (into the client's cache), a few at a time.
    /// Failures are not cached; the next request that needs such a read reads it live.
    async fn refresh(&self, at: PolicyBlock) {
        let reads = self
            .tracked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reads();
        let client = &self.client;
        let failed = stream::iter(reads)
            .map(|read| async move { client.refresh(&read, at).await.is_err() })
            .buffer_unordered(REFRESH_CONCURRENCY)
            .filter(|failed| std::future::ready(*failed))
            .count()
            .await;
        if failed > 0 {
            tracing::debug!(
                block = at.number,
                failed,
                "some reads could not be refreshed"
            );
        }
    }

    fn track(&self, key: (Query, B256), make: impl FnOnce() -> Read) {
        self.tracked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .touch(key, make);
    }
}

/// Reads at one published head. Every answer is at [`HeadView::block`]; reads asked
/// before are answered from the cache, others with one quorum read (and kept answered
/// at later blocks).
pub struct HeadView<'a> {
    inner: &'a Inner,
    head: Head,
}

impl std::fmt::Debug for HeadView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadView")
            .field("head", &self.head)
            .finish()
    }
}

impl HeadView<'_> {
    /// The pinned block all reads of this view use.
    pub fn block(&self) -> PolicyBlock {
        self.head.pinned
    }

    /// The head this view was taken at.
    pub fn head(&self) -> Head {
        self.head
    }

    /// [`ChainClient::is_app_allowed`] at [`HeadView::block`].
    pub async fn is_app_allowed(&self, boot: &BootInfo) -> Result<Verdict> {
        let key = (Query::App, keccak256(boot.abi_encode()));
        self.inner.track(key, || Read::AppAllowed(boot.clone()));
        self.inner.client.is_app_allowed(boot, self.block()).await
    }

    /// [`ChainClient::is_kms_allowed`] at [`HeadView::block`].
    pub async fn is_kms_allowed(&self, boot: &BootInfo) -> Result<Verdict> {
        let key = (Query::Kms, keccak256(boot.abi_encode()));
        self.inner.track(key, || Read::KmsAllowed(boot.clone()));
        self.inner.client.is_kms_allowed(boot, self.block()).await
    }

    /// [`ChainClient::root_keys`] at [`HeadView::block`].
    pub async fn root_keys(&self) -> Result<Option<RootKeys>> {
        self.inner.track(Read::RootKeys.key(), || Read::RootKeys);
        self.inner.client.root_keys(self.block()).await
    }

    /// [`ChainClient::key_generations`] at [`HeadView::block`].
    pub async fn key_generations(&self) -> Result<Option<KeyGenerations>> {
        self.inner
            .track(Read::KeyGenerations.key(), || Read::KeyGenerations);
        self.inner.client.key_generations(self.block()).await
    }

    /// [`ChainClient::is_kms_node`] at [`HeadView::block`].
    pub async fn is_kms_node(&self, node: Address) -> Result<bool> {
        let read = Read::IsKmsNode(node);
        self.inner.track(read.key(), || read);
        self.inner.client.is_kms_node(node, self.block()).await
    }

    /// [`ChainClient::gateway_app_id`] at [`HeadView::block`].
    pub async fn gateway_app_id(&self) -> Result<Option<Address>> {
        self.inner
            .track(Read::GatewayAppId.key(), || Read::GatewayAppId);
        self.inner.client.gateway_app_id(self.block()).await
    }

    /// Whether `boot`'s `isAppAllowed` answer at this block is cached (no RPC needed).
    pub fn is_app_verdict_cached(&self, boot: &BootInfo) -> bool {
        self.inner
            .client
            .is_cached(&Read::AppAllowed(boot.clone()), self.block())
    }
}

/// The recently used reads, bounded; least recently used dropped first.
struct Tracked {
    capacity: usize,
    tick: u64,
    map: HashMap<(Query, B256), (Read, u64)>,
}

impl Tracked {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            tick: 0,
            map: HashMap::new(),
        }
    }

    fn touch(&mut self, key: (Query, B256), make: impl FnOnce() -> Read) {
        if self.capacity == 0 {
            return;
        }
        self.tick += 1;
        if let Some(entry) = self.map.get_mut(&key) {
            entry.1 = self.tick;
            return;
        }
        if self.map.len() >= self.capacity {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(key, (make(), self.tick));
    }

    fn reads(&self) -> Vec<Read> {
        self.map.values().map(|(r, _)| r.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked_reads_are_bounded_and_drop_the_least_recently_used() {
        let mut t = Tracked::new(2);
        let node = |b: u8| Read::IsKmsNode(Address::repeat_byte(b));
        for b in [1u8, 2] {
            t.touch(node(b).key(), || node(b));
        }
        // 1 is used again, so 2 is the least recently used when 3 arrives.
        t.touch(node(1).key(), || unreachable!("already tracked"));
        t.touch(node(3).key(), || node(3));
        let mut reads = t.reads();
        reads.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(reads, vec![node(1), node(3)]);

        let mut off = Tracked::new(0);
        off.touch(node(1).key(), || node(1));
        assert!(off.reads().is_empty());
    }

    #[test]
    fn a_head_older_than_the_bound_is_stale() {
        let head = Head {
            number: 7,
            timestamp: 1_000,
            pinned: PolicyBlock {
                number: 5,
                hash: B256::repeat_byte(1),
            },
        };
        head.check_fresh(1_030, Duration::from_secs(30)).unwrap();
        head.check_fresh(900, Duration::from_secs(30)).unwrap();
        match head.check_fresh(1_031, Duration::from_secs(30)) {
            Err(Error::StaleHead { number, age, max }) => {
                assert_eq!(number, 7);
                assert_eq!(age, Duration::from_secs(31));
                assert_eq!(max, Duration::from_secs(30));
            }
            other => panic!("expected StaleHead, got {other:?}"),
        }
    }
}
