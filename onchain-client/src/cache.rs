//! A bounded cache of policy reads keyed by (query, input, block hash).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use alloy::primitives::{Address, B256};

use crate::client::{KeyGenerations, RootKeys};

/// Which policy question a cached answer answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Query {
    /// `KmsAuth.isAppAllowed(bootInfo)`.
    App,
    /// `KmsAuth.isKmsAllowed(bootInfo)`.
    Kms,
    /// `keyGeneration` + `rootKeys(generation)`.
    RootKeys,
    /// `keyGeneration` + `transitionWindow` + `rootKeys` of both generations.
    KeyGenerations,
    /// `isKmsNode(address)`.
    KmsNode,
    /// `gatewayAppId`.
    GatewayAppId,
}

/// Cache key: the query, keccak256 of its ABI-encoded input (zero for none), and the
/// block hash the answer was read at. Because the block hash is part of the key, an
/// answer never outlives the block it was read at: a later policy block is a different
/// key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) query: Query,
    pub(crate) input: B256,
    pub(crate) block: B256,
}

/// What the chain said at that block. Errors are never cached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A verdict: `None` = allowed, `Some(reason)` = denied.
    Verdict(Option<String>),
    /// The current root keys (`None`: no generation set).
    RootKeys(Option<RootKeys>),
    /// The served key generations (`None`: no generation set).
    KeyGenerations(Option<KeyGenerations>),
    /// A yes/no read.
    Bool(bool),
    /// An address read (`None`: unset).
    Address(Option<Address>),
}

/// A value kept in the cache as one [`Outcome`] variant.
pub(crate) trait Cached: Sized {
    /// The value as its outcome.
    fn into_outcome(self) -> Outcome;
    /// The value back; the outcome itself when it is of another kind.
    fn from_outcome(outcome: Outcome) -> Result<Self, Box<Outcome>>;
}

macro_rules! cached_as {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        $(
            impl Cached for $ty {
                fn into_outcome(self) -> Outcome {
                    Outcome::$variant(self)
                }
                fn from_outcome(outcome: Outcome) -> Result<Self, Box<Outcome>> {
                    match outcome {
                        Outcome::$variant(v) => Ok(v),
                        other => Err(Box::new(other)),
                    }
                }
            }
        )*
    };
}

cached_as! {
    Verdict(Option<String>),
    RootKeys(Option<RootKeys>),
    KeyGenerations(Option<KeyGenerations>),
    Bool(bool),
    Address(Option<Address>),
}

/// FIFO-bounded verdict cache. A capacity of 0 disables it.
#[derive(Debug)]
pub(crate) struct VerdictCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Key, Outcome>,
    order: VecDeque<Key>,
}

impl VerdictCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub(crate) fn get(&self, key: &Key) -> Option<Outcome> {
        if self.capacity == 0 {
            return None;
        }
        // A poisoned lock only means another thread panicked mid-insert; the map is
        // still a valid map, so keep serving from it.
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.map.get(key).cloned()
    }

    pub(crate) fn insert(&self, key: Key, outcome: Outcome) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.map.insert(key, outcome).is_none() {
            inner.order.push_back(key);
        }
        while inner.order.len() > self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.map.remove(&old);
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        if self.capacity == 0 {
            return 0;
        }
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(input: u8, block: u8) -> Key {
        Key {
            query: Query::App,
            input: B256::repeat_byte(input),
            block: B256::repeat_byte(block),
        }
    }

    #[test]
    fn verdict_is_not_reused_at_another_block() {
        let cache = VerdictCache::new(8);
        cache.insert(key(1, 1), Outcome::Verdict(None));
        assert_eq!(cache.get(&key(1, 1)), Some(Outcome::Verdict(None)));
        assert_eq!(
            cache.get(&key(1, 2)),
            None,
            "allow at block 1 must not answer block 2"
        );
        let kms = Key {
            query: Query::Kms,
            ..key(1, 1)
        };
        assert_eq!(
            cache.get(&kms),
            None,
            "app verdict must not answer the KMS query"
        );
    }

    #[test]
    fn cache_is_bounded_and_evicts_oldest_first() {
        let cache = VerdictCache::new(3);
        for i in 0..10u8 {
            cache.insert(key(i, 0), Outcome::Verdict(Some(format!("r{i}"))));
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&key(6, 0)), None);
        assert_eq!(
            cache.get(&key(9, 0)),
            Some(Outcome::Verdict(Some("r9".into())))
        );
    }

    #[test]
    fn zero_capacity_disables_the_cache() {
        let cache = VerdictCache::new(0);
        cache.insert(key(1, 1), Outcome::Verdict(None));
        assert_eq!(cache.get(&key(1, 1)), None);
        assert_eq!(cache.len(), 0);
    }
}
