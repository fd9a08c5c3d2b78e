//! [`PccsClient`]: collateral from a PCCS (Intel PCS v4 API), and the limits on what
//! quotes from unauthenticated peers can make it do.
//!
//! [`PccsClient::collateral_for_quote`], the path a peer's quote takes, in order:
//! 1. the quote is size-checked and parsed, with its PCK chain (at most
//!    [`crate::MAX_PCK_CHAIN_CERTS`] certificates);
//! 2. collateral cached for the platform (FMSPC, PCK CA, SGX/TDX) the PCK leaf claims and
//!    valid at `now` is returned as is: collateral is public, Intel-signed data, and the
//!    verifier checks the quote against it afterwards;
//! 3. the PCK chain must verify to the trust root at `now`
//!    (→ [`Error::UntrustedPckChain`]); nothing is fetched or stored for a chain that
//!    does not, so a forged FMSPC costs one signature check and no state;
//! 4. a fetch for this platform that failed less than
//!    [`PccsLimits::failure_ttl_secs`] ago returns the same error again;
//! 5. a fetch for this platform already in flight is joined: one fetch per platform,
//!    every caller gets its result;
//! 6. a fetch takes a token from a bucket refilled at [`PccsLimits::fetches_per_minute`]
//!    and holding at most [`PccsLimits::fetch_burst`] (→ [`Error::PccsRateLimited`],
//!    retryable);
//! 7. the fetch (four requests, each under [`DEFAULT_PCCS_REQUEST_TIMEOUT`], all under
//!    [`DEFAULT_PCCS_FETCH_TIMEOUT`]) is cached on success until the collateral expires,
//!    or remembered on failure; both caches are bounded in entries and bytes, evicting
//!    expired entries first, then the oldest.
//!
//! Time is the caller's `now` (unix seconds) throughout, so tests drive it.
//!
//! # Layout
//! - `limits` — [`PccsLimits`], [`PccsStats`], the token bucket.
//! - `fetch` — the four PCS v4 requests and the root CA CRL fallback.

mod fetch;
mod limits;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::bounded::BoundedCache;
use crate::collateral::Collateral;
use crate::consts::{INTEL_ROOT_CA_DER, MAX_QUOTE_LEN};
use crate::error::{check_len, Error, Result};
use crate::pck::{claimed_platform, pck_chain, verify_pck_chain, Platform};
use limits::TokenBucket;
pub use limits::{PccsLimits, PccsStats};

/// Timeout for connecting to a PCCS.
pub const DEFAULT_PCCS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout for one PCCS request.
pub const DEFAULT_PCCS_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Timeout for one whole collateral fetch (its four requests).
pub const DEFAULT_PCCS_FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Default sustained rate of collateral fetches: tokens added per minute.
pub const DEFAULT_PCCS_FETCHES_PER_MINUTE: u32 = 30;
/// Default burst of collateral fetches: the token bucket's capacity.
pub const DEFAULT_PCCS_FETCH_BURST: u32 = 10;
/// Default number of platforms whose collateral is cached.
pub const DEFAULT_PCCS_MAX_COLLATERAL: usize = 256;
/// Default byte budget of the collateral cache (estimated from the collateral's fields).
pub const DEFAULT_PCCS_COLLATERAL_BYTES: usize = 32 << 20;
/// Default number of remembered fetch failures.
pub const DEFAULT_PCCS_MAX_FAILURES: usize = 1024;
/// Default time a failed fetch is remembered, seconds.
pub const DEFAULT_PCCS_FAILURE_TTL_SECS: u64 = 30;

/// Byte budget of the failure cache per entry it may hold (an error is a URL and a
/// reason; a larger one is simply not remembered).
const FAILURE_BYTES_PER_ENTRY: usize = 2048;
/// How often a caller re-joins after the fetch it waited for was abandoned (its leading
/// request cancelled) before giving up.
const MAX_JOIN_ATTEMPTS: usize = 4;

/// A failed fetch, remembered for [`PccsLimits::failure_ttl_secs`].
#[derive(Debug)]
struct Failure {
    at: u64,
    error: Error,
}

impl Failure {
    fn covers(&self, now: u64, ttl: u64) -> bool {
        self.at <= now && now < self.at.saturating_add(ttl)
    }
}

/// The result of a fetch, as shared with the callers that joined it.
type Outcome = Option<Result<Arc<Collateral>>>;

struct State {
    cache: BoundedCache<Platform, Arc<Collateral>>,
    failures: BoundedCache<Platform, Failure>,
    in_flight: HashMap<Platform, watch::Receiver<Outcome>>,
    bucket: TokenBucket,
}

impl State {
    fn new(limits: &PccsLimits) -> Self {
        State {
            cache: BoundedCache::new(limits.collateral_cache_bytes, limits.max_cached_collateral),
            failures: BoundedCache::new(
                limits.max_failures.saturating_mul(FAILURE_BYTES_PER_ENTRY),
                limits.max_failures,
            ),
            in_flight: HashMap::new(),
            bucket: TokenBucket::new(limits),
        }
    }

    fn cached(&self, platform: &Platform, now: u64) -> Option<Arc<Collateral>> {
        self.cache
            .get(platform)
            .filter(|c| c.is_valid_at(now))
            .map(Arc::clone)
    }
}

/// A copy of a fetch error (the variants [`PccsClient`] fetches produce; others as text).
fn replay_error(e: &Error) -> Error {
    match e {
        Error::CollateralFetch { url, reason } => Error::CollateralFetch {
            url: url.clone(),
            reason: reason.clone(),
        },
        Error::MalformedCollateral(m) => Error::MalformedCollateral(m.clone()),
        Error::TooLarge { what, len, max } => Error::TooLarge {
            what,
            len: *len,
            max: *max,
        },
        other => Error::MalformedCollateral(other.to_string()),
    }
}

/// A PCCS / Intel PCS v4 client that caches collateral per platform until it expires,
/// fetches only for PCK chains that verify, one fetch per platform at a time, under a
/// rate limit (see the module docs for the order of checks).
///
/// TCB Info and QE Identity are kept as the exact bytes the server sent (they are what
/// Intel signed), never re-serialised.
pub struct PccsClient {
    base_url: String,
    http: reqwest::Client,
    limits: PccsLimits,
    fetch_timeout: Duration,
    /// Boxed: the caches are a few hundred bytes, and clients sit in enums.
    state: Box<Mutex<State>>,
    waiting: AtomicUsize,
    fetches: AtomicU64,
    rate_limited: AtomicU64,
    untrusted_chains: AtomicU64,
}

impl std::fmt::Debug for PccsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PccsClient")
            .field("base_url", &self.base_url)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Whether this caller fetches or waits for another caller's fetch.
enum Role {
    Lead(watch::Sender<Outcome>),
    Join(watch::Receiver<Outcome>),
}

/// Removes the in-flight entry of a fetch whose leading request was cancelled, so the
/// callers that joined it (woken by the closed channel) start over.
struct LeadGuard<'a> {
    client: &'a PccsClient,
    platform: Platform,
    tx: Option<watch::Sender<Outcome>>,
}

impl Drop for LeadGuard<'_> {
    fn drop(&mut self) {
        if self.tx.is_some() {
            self.client.lock().in_flight.remove(&self.platform);
        }
    }
}

/// Counts a caller waiting for another caller's fetch.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PccsClient {
    /// A client for `base_url` (e.g. `https://pccs.example:8081` or
    /// `https://api.trustedservices.intel.com`) with the default timeouts and
    /// [`PccsLimits::default`]. Installs ring as the process-wide rustls provider if none
    /// is installed yet.
    pub fn new(base_url: &str) -> Result<Self> {
        // Err only means another provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(DEFAULT_PCCS_CONNECT_TIMEOUT)
            .timeout(DEFAULT_PCCS_REQUEST_TIMEOUT)
            .build()
            .map_err(|e| Error::CollateralFetch {
                url: base_url.to_owned(),
                reason: e.to_string(),
            })?;
        let base_url = base_url
            .trim_end_matches('/')
            .trim_end_matches("/sgx/certification/v4")
            .trim_end_matches("/tdx/certification/v4")
            .to_owned();
        let limits = PccsLimits::default();
        Ok(PccsClient {
            base_url,
            http,
            fetch_timeout: DEFAULT_PCCS_FETCH_TIMEOUT,
            state: Box::new(Mutex::new(State::new(&limits))),
            limits,
            waiting: AtomicUsize::new(0),
            fetches: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            untrusted_chains: AtomicU64::new(0),
        })
    }

    /// Use `limits` (empties the caches and refills the fetch bucket).
    pub fn with_limits(mut self, limits: PccsLimits) -> Self {
        self.limits = limits;
        self.state = Box::new(Mutex::new(State::new(&limits)));
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> &PccsLimits {
        &self.limits
    }

    /// Current cache sizes and counters.
    pub fn stats(&self) -> PccsStats {
        let st = self.lock();
        PccsStats {
            cached: st.cache.len(),
            cached_bytes: st.cache.bytes(),
            failures: st.failures.len(),
            failure_bytes: st.failures.bytes(),
            in_flight: st.in_flight.len(),
            waiting: self.waiting.load(Ordering::Relaxed),
            fetches: self.fetches.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            untrusted_chains: self.untrusted_chains.load(Ordering::Relaxed),
        }
    }

    /// Collateral for the platform that produced `quote`, whose PCK chain must verify to
    /// `trust_root_der` (the verifier's root certificate, DER) at `now`: from the cache
    /// when still valid at `now`, else fetched (see the module docs for the checks and
    /// limits). When the PCCS has no root CA CRL, it is taken from the CRL distribution
    /// point of `trust_root_der`.
    pub async fn collateral_for_quote(
        &self,
        quote: &[u8],
        trust_root_der: &[u8],
        now: u64,
    ) -> Result<Arc<Collateral>> {
        check_len("quote", quote.len(), MAX_QUOTE_LEN)?;
        let parsed = dcap_qvl::quote::Quote::parse(quote)
            .map_err(|e| Error::MalformedQuote(format!("{e:#}")))?;
        let chain = pck_chain(&parsed)?;
        let platform = claimed_platform(&parsed, &chain)?;
        if let Some(c) = self.lock().cached(&platform, now) {
            return Ok(c);
        }
        if let Err(e) = verify_pck_chain(&chain, trust_root_der, now) {
            self.untrusted_chains.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        self.obtain(platform, trust_root_der, now).await
    }

    /// Collateral for `fmspc` under PCK CA `ca` (`"platform"` or `"processor"`), for a
    /// caller that knows its platform (e.g. to prefetch): `fmspc` must never come from an
    /// unverified quote (use [`Self::collateral_for_quote`] for those). Same cache, rate
    /// limit and coalescing; the root CA CRL fallback is Intel's SGX root CA's
    /// distribution point.
    pub async fn collateral_for(
        &self,
        fmspc: [u8; 6],
        ca: &'static str,
        for_sgx: bool,
        now: u64,
    ) -> Result<Arc<Collateral>> {
        let platform = Platform { fmspc, ca, for_sgx };
        self.obtain(platform, INTEL_ROOT_CA_DER, now).await
    }

    /// Drop every cached collateral and remembered fetch failure.
    pub fn clear_cache(&self) {
        let mut st = self.lock();
        st.cache.clear();
        st.failures.clear();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Steps 4-7 of the module docs for a platform whose chain verified.
    async fn obtain(
        &self,
        platform: Platform,
        root_der: &[u8],
        now: u64,
    ) -> Result<Arc<Collateral>> {
        for _ in 0..MAX_JOIN_ATTEMPTS {
            let role = {
                let mut st = self.lock();
                if let Some(c) = st.cached(&platform, now) {
                    return Ok(c);
                }
                if let Some(f) = st.failures.get(&platform) {
                    if f.covers(now, self.limits.failure_ttl_secs) {
                        return Err(replay_error(&f.error));
                    }
                    st.failures.remove(&platform);
                }
                if let Some(rx) = st.in_flight.get(&platform) {
                    Role::Join(rx.clone())
                } else if st.bucket.take(now) {
                    let (tx, rx) = watch::channel(None);
                    st.in_flight.insert(platform, rx);
                    Role::Lead(tx)
                } else {
                    self.rate_limited.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::PccsRateLimited {
                        fmspc: platform.fmspc,
                        per_minute: self.limits.fetches_per_minute,
                    });
                }
            };
            match role {
                Role::Lead(tx) => return self.lead(platform, root_der, now, tx).await,
                Role::Join(mut rx) => {
                    let _waiting = Waiting::new(&self.waiting);
                    let joined = match rx.wait_for(Option::is_some).await {
                        Ok(outcome) => match outcome.as_ref() {
                            Some(Ok(c)) => Some(Ok(Arc::clone(c))),
                            Some(Err(e)) => Some(Err(replay_error(e))),
                            None => None,
                        },
                        // The leading request was cancelled: start over.
                        Err(_) => None,
                    };
                    if let Some(result) = joined {
                        return result;
                    }
                }
            }
        }
        Err(Error::CollateralFetch {
            url: self.base_url.clone(),
            reason: format!(
                "the fetch for FMSPC {} was abandoned {MAX_JOIN_ATTEMPTS} times",
                hex::encode_upper(platform.fmspc)
            ),
        })
    }

    /// Fetch for `platform` (this caller holds its in-flight entry), record the result in
    /// the cache or the failure cache, then hand it to every caller that joined.
    async fn lead(
        &self,
        platform: Platform,
        root_der: &[u8],
        now: u64,
        tx: watch::Sender<Outcome>,
    ) -> Result<Arc<Collateral>> {
        let mut guard = LeadGuard {
            client: self,
            platform,
            tx: Some(tx),
        };
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let fetched =
            match tokio::time::timeout(self.fetch_timeout, self.fetch(platform, root_der)).await {
                Ok(r) => r,
                Err(_) => Err(Error::CollateralFetch {
                    url: self.base_url.clone(),
                    reason: format!("no complete answer within {:?}", self.fetch_timeout),
                }),
            };
        let result = fetched.map(Arc::new);
        {
            let mut st = self.lock();
            match &result {
                Ok(c) => {
                    tracing::debug!(
                        fmspc = %hex::encode(platform.fmspc),
                        ca = platform.ca,
                        not_after = c.not_after(),
                        "fetched collateral"
                    );
                    let size = c.estimated_bytes();
                    st.cache
                        .insert(platform, Arc::clone(c), size, |v| !v.is_valid_at(now));
                }
                Err(error) => {
                    tracing::debug!(
                        fmspc = %hex::encode(platform.fmspc),
                        ca = platform.ca,
                        %error,
                        "collateral fetch failed"
                    );
                    let failure = Failure {
                        at: now,
                        error: replay_error(error),
                    };
                    let size = std::mem::size_of::<Failure>() + error.to_string().len();
                    let ttl = self.limits.failure_ttl_secs;
                    st.failures
                        .insert(platform, failure, size, |f| !f.covers(now, ttl));
                }
            }
            st.in_flight.remove(&platform);
        }
        if let Some(tx) = guard.tx.take() {
            let shared = match &result {
                Ok(c) => Ok(Arc::clone(c)),
                Err(e) => Err(replay_error(e)),
            };
            tx.send_replace(Some(shared));
        }
        result
    }
}
