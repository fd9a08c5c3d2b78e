//! [`BoundedCache`]: a map bounded by entry count and by bytes, evicting dead entries
//! first and then the oldest insertion. Every cache of this crate that a peer can grow
//! (verified results, PCCS collateral, PCCS failures) is one.

use std::collections::{BTreeMap, HashMap};

/// A size-bounded map evicting the oldest insertion first: at most `max_entries` entries
/// whose declared sizes sum to at most `budget` bytes. An entry larger than the whole
/// budget is not stored.
#[derive(Debug)]
pub(crate) struct BoundedCache<K, V> {
    map: HashMap<K, (V, usize, u64)>,
    order: BTreeMap<u64, K>,
    next_seq: u64,
    bytes: usize,
    budget: usize,
    max_entries: usize,
}

impl<K: std::hash::Hash + Eq + Clone, V> BoundedCache<K, V> {
    pub(crate) fn new(budget: usize, max_entries: usize) -> Self {
        BoundedCache {
            map: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            bytes: 0,
            budget,
            max_entries,
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(v, _, _)| v)
    }

    pub(crate) fn remove(&mut self, key: &K) {
        if let Some((_, size, seq)) = self.map.remove(key) {
            self.bytes -= size;
            self.order.remove(&seq);
        }
    }

    fn evict_oldest(&mut self) -> bool {
        match self.order.pop_first() {
            Some((_, key)) => {
                if let Some((_, size, _)) = self.map.remove(&key) {
                    self.bytes -= size;
                }
                true
            }
            None => false,
        }
    }

    /// Evict entries for which `dead` holds, then the oldest until `size` more bytes fit.
    pub(crate) fn insert(&mut self, key: K, value: V, size: usize, dead: impl Fn(&V) -> bool) {
        self.remove(&key);
        if size > self.budget || self.max_entries == 0 {
            return;
        }
        if self.bytes + size > self.budget || self.map.len() >= self.max_entries {
            let dead_keys: Vec<K> = self
                .map
                .iter()
                .filter(|(_, (v, _, _))| dead(v))
                .map(|(k, _)| k.clone())
                .collect();
            for k in &dead_keys {
                self.remove(k);
            }
        }
        while self.bytes + size > self.budget || self.map.len() >= self.max_entries {
            if !self.evict_oldest() {
                break;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key.clone());
        self.bytes += size;
        self.map.insert(key, (value, size, seq));
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Sum of the declared sizes of the entries held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drop every entry.
    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::BoundedCache;

    fn alive(_: &u32) -> bool {
        false
    }

    #[test]
    fn bounded_cache_evicts_the_oldest_first_and_stays_within_budget() {
        let mut c = BoundedCache::new(100, 10);
        c.insert(1, 10, 40, alive);
        c.insert(2, 20, 40, alive);
        c.insert(3, 30, 40, alive);
        assert_eq!(c.get(&1), None, "oldest evicted");
        assert_eq!((c.get(&2), c.get(&3)), (Some(&20), Some(&30)));
        assert_eq!((c.len(), c.bytes), (2, 80));
        // One big entry pushes out both.
        c.insert(4, 40, 90, alive);
        assert_eq!((c.len(), c.bytes), (1, 90));
        assert_eq!(c.get(&4), Some(&40));
        // Larger than the whole budget: not stored, nothing evicted.
        c.insert(5, 50, 101, alive);
        assert_eq!((c.len(), c.bytes, c.get(&5)), (1, 90, None));
        // Re-inserting a key replaces it without double counting.
        c.insert(4, 41, 30, alive);
        assert_eq!((c.len(), c.bytes, c.get(&4)), (1, 30, Some(&41)));
    }

    #[test]
    fn bounded_cache_drops_dead_entries_before_live_ones_and_caps_entries() {
        let mut c = BoundedCache::new(100, 2);
        c.insert(1, 1, 10, alive);
        c.insert(2, 99, 10, alive);
        // Full by count: the dead entry (2) goes, the older live one (1) stays.
        c.insert(3, 3, 10, |v: &u32| *v == 99);
        assert_eq!(
            (c.get(&1), c.get(&2), c.get(&3)),
            (Some(&1), None, Some(&3))
        );
        c.insert(4, 4, 10, alive);
        assert_eq!((c.get(&1), c.len()), (None, 2));
        c.remove(&3);
        assert_eq!((c.bytes, c.len()), (10, 1));
    }
}
