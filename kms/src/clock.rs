//! [`Clock`]: the node's wall clock, injected so that tests can set it.
//!
//! Everything in this crate that depends on the time of day reads it from a [`Clock`]:
//! certificate and collateral validity windows (the caller's evidence and the node's
//! own), release-record timestamps, `sign-cert` leaf validity and the `env-pubkey`
//! timestamp, and the validity windows of the node's own RA-TLS certificates (issued at
//! its "now"). Durations (timeouts, the pinned-block reuse window, metrics) use the
//! monotonic clock instead and are not affected.

use std::sync::Arc;

/// Seconds since the Unix epoch by the system clock: the chain client's, so that the
/// node and its policy head read one clock (0 on a clock before 1970, which fails every
/// collateral window: fail closed).
pub use cairn_onchain::unix_now;

/// A source of "now" in seconds since the Unix epoch. Cheap to clone (shared).
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The system clock ([`unix_now`]).
    pub fn system() -> Self {
        Clock(Arc::new(unix_now))
    }

    /// A clock that always reads `secs`.
    pub fn fixed(secs: u64) -> Self {
        Clock(Arc::new(move || secs))
    }

    /// A clock that reads `f` (tests move time with it).
    pub fn from_fn(f: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Clock(Arc::new(f))
    }

    /// The current time, seconds since the Unix epoch.
    pub fn now(&self) -> u64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Clock").field(&self.now()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_and_function_clocks_read_what_they_are_given() {
        assert_eq!(Clock::fixed(1_700_000_000).now(), 1_700_000_000);
        let t = Arc::new(std::sync::atomic::AtomicU64::new(5));
        let c = {
            let t = Arc::clone(&t);
            Clock::from_fn(move || t.load(std::sync::atomic::Ordering::SeqCst))
        };
        assert_eq!(c.now(), 5);
        t.store(9, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(c.clone().now(), 9);
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(Clock::system().now() > 1_577_836_800);
    }
}
