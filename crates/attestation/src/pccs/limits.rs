//! What a [`PccsClient`](super::PccsClient) may do for unauthenticated quotes: its
//! limits, its counters, and the token bucket that rate-limits fetches.

use super::{
    DEFAULT_PCCS_COLLATERAL_BYTES, DEFAULT_PCCS_FAILURE_TTL_SECS, DEFAULT_PCCS_FETCHES_PER_MINUTE,
    DEFAULT_PCCS_FETCH_BURST, DEFAULT_PCCS_MAX_COLLATERAL, DEFAULT_PCCS_MAX_FAILURES,
};

/// What unauthenticated quotes can make a [`PccsClient`](super::PccsClient) do: fetch rate and cache sizes.
///
/// Over any `T` seconds at most `fetch_burst + fetches_per_minute · T / 60` fetches start;
/// under a sustained flood that is `fetches_per_minute` per minute once the burst is
/// spent. A bucket with `fetch_burst = 0` never fetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PccsLimits {
    /// Tokens added to the fetch bucket per minute (default
    /// [`DEFAULT_PCCS_FETCHES_PER_MINUTE`]).
    pub fetches_per_minute: u32,
    /// Capacity of the fetch bucket, which starts full (default
    /// [`DEFAULT_PCCS_FETCH_BURST`]).
    pub fetch_burst: u32,
    /// Most platforms with cached collateral (default [`DEFAULT_PCCS_MAX_COLLATERAL`]).
    pub max_cached_collateral: usize,
    /// Byte budget of the collateral cache (default [`DEFAULT_PCCS_COLLATERAL_BYTES`]).
    pub collateral_cache_bytes: usize,
    /// Most remembered fetch failures (default [`DEFAULT_PCCS_MAX_FAILURES`]).
    pub max_failures: usize,
    /// Seconds a failed fetch is remembered and answered without contacting the PCCS
    /// (default [`DEFAULT_PCCS_FAILURE_TTL_SECS`]).
    pub failure_ttl_secs: u64,
}

impl Default for PccsLimits {
    fn default() -> Self {
        PccsLimits {
            fetches_per_minute: DEFAULT_PCCS_FETCHES_PER_MINUTE,
            fetch_burst: DEFAULT_PCCS_FETCH_BURST,
            max_cached_collateral: DEFAULT_PCCS_MAX_COLLATERAL,
            collateral_cache_bytes: DEFAULT_PCCS_COLLATERAL_BYTES,
            max_failures: DEFAULT_PCCS_MAX_FAILURES,
            failure_ttl_secs: DEFAULT_PCCS_FAILURE_TTL_SECS,
        }
    }
}

/// Sizes and counters of a [`PccsClient`](super::PccsClient) (for metrics, and for tests of its bounds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PccsStats {
    /// Platforms with cached collateral.
    pub cached: usize,
    /// Estimated bytes of cached collateral.
    pub cached_bytes: usize,
    /// Remembered fetch failures.
    pub failures: usize,
    /// Estimated bytes of remembered failures.
    pub failure_bytes: usize,
    /// Fetches in progress.
    pub in_flight: usize,
    /// Callers waiting for a fetch another caller leads.
    pub waiting: usize,
    /// Fetches started since the client was made.
    pub fetches: u64,
    /// Requests refused because the fetch bucket was empty.
    pub rate_limited: u64,
    /// Requests refused before any fetch because their PCK chain did not verify.
    pub untrusted_chains: u64,
}

/// A token bucket over the caller's clock. Amounts are in 1/60 token, so a refill of
/// `per_minute` tokens per 60 s is exact at one-second steps.
#[derive(Debug)]
pub(super) struct TokenBucket {
    units: u64,
    capacity: u64,
    units_per_sec: u64,
    last: u64,
}

const UNITS_PER_TOKEN: u64 = 60;

impl TokenBucket {
    pub(super) fn new(limits: &PccsLimits) -> Self {
        let capacity = u64::from(limits.fetch_burst) * UNITS_PER_TOKEN;
        TokenBucket {
            units: capacity,
            capacity,
            units_per_sec: u64::from(limits.fetches_per_minute),
            last: 0,
        }
    }

    /// Refill for the seconds since the last call (none if the clock went back), then
    /// take one token if there is one.
    pub(super) fn take(&mut self, now: u64) -> bool {
        if now > self.last {
            if self.last != 0 {
                let add = (now - self.last).saturating_mul(self.units_per_sec);
                self.units = self.units.saturating_add(add).min(self.capacity);
            }
            self.last = now;
        }
        if self.units >= UNITS_PER_TOKEN {
            self.units -= UNITS_PER_TOKEN;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_the_rate_and_never_refills_backwards() {
        let limits = PccsLimits {
            fetches_per_minute: 6,
            fetch_burst: 2,
            ..PccsLimits::default()
        };
        let mut b = TokenBucket::new(&limits);
        let t = 1_000;
        assert!(b.take(t) && b.take(t), "the burst");
        assert!(!b.take(t), "empty");
        // 6 per minute: one token every 10 s.
        assert!(!b.take(t + 9));
        assert!(b.take(t + 10));
        assert!(!b.take(t + 10));
        // A clock going back adds nothing.
        assert!(!b.take(t + 5));
        assert!(!b.take(t + 19));
        assert!(b.take(t + 20));
        // A long pause refills to the burst, not beyond.
        assert!(b.take(t + 10_000) && b.take(t + 10_000));
        assert!(!b.take(t + 10_000));
        // No burst: never.
        let mut none = TokenBucket::new(&PccsLimits {
            fetch_burst: 0,
            ..limits
        });
        assert!(!none.take(t) && !none.take(t + 1_000_000));
    }
}
