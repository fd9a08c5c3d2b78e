//! Helpers shared by the test modules.

use cairn_tlog::{Hash, MemoryTree};

/// The i-th entry of the vector file (`tests/reference/rfc9162.py`).
pub fn vector_entry(i: u64) -> Vec<u8> {
    format!("cairn-tlog vector entry {i}").into_bytes()
}

/// An in-memory tree of `n` vector entries.
pub fn memory_tree(n: u64) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..n {
        t.push(&vector_entry(i));
    }
    t
}

/// Parses 64 hex characters into a hash.
pub fn hash_hex(s: &str) -> Hash {
    let bytes = hex::decode(s).expect("test vector hex");
    Hash::from_slice(&bytes).expect("test vector hash length")
}

/// A small deterministic PRNG (SplitMix64) so tests need no `rand`.
pub struct SplitMix(pub u64);

impl SplitMix {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish value in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
}
