//! [`Frontier`]: a tree of any size kept as its complete subtrees only, so a light
//! client streams entries through it and checks the root at every size it was promised
//! (an anchor, a checkpoint) without storage and without a proof per entry.

use crate::error::InclusionError;
use crate::hash::{leaf_hash, node_hash, Hash};
use crate::proof::verify_inclusion;

/// The compact form of the tree of the first `size` leaves: the roots of its complete
/// subtrees, one per set bit of `size`, largest (leftmost) first (at most 64 hashes).
///
/// [`Frontier::push`] appends a leaf in amortised O(1) hashes; [`Frontier::root`] is
/// `MTH(D[0:size])` of RFC 9162 §2.1.1 in at most 63 hashes. Two frontiers of the same
/// size are equal exactly when their trees have the same root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `(level, hash)`: the complete subtree of `2^level` leaves, levels decreasing.
    subtrees: Vec<(u8, Hash)>,
}

/// The largest power of two strictly less than `n` (requires `n >= 2`).
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash (see [`leaf_hash`]).
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut level = 0u8;
        let mut index = self.size;
        while index & 1 == 1 {
            // A set low bit of the size means a complete subtree of this level is
            // waiting on the left; the subtrees are kept exactly per set bit.
            match self.subtrees.pop() {
                Some((_, left)) => h = node_hash(&left, &h),
                None => break,
            }
            level += 1;
            index >>= 1;
        }
        self.subtrees.push((level, h));
        // 2^64 appends are out of reach; the size cannot overflow in practice.
        self.size += 1;
    }

    /// Appends an entry (hashed with [`leaf_hash`]).
    pub fn push_entry(&mut self, entry: &[u8]) {
        self.push(leaf_hash(entry));
    }

    /// The root of the tree (the empty root for size 0).
    pub fn root(&self) -> Hash {
        let mut it = self.subtrees.iter().rev();
        let Some(&(_, mut acc)) = it.next() else {
            return Hash::EMPTY_ROOT;
        };
        for (_, left) in it {
            acc = node_hash(left, &acc);
        }
        acc
    }

    /// The frontier of the tree of `size` leaves whose root is `root`, from its last
    /// leaf (`leaf`, the leaf hash of entry `size − 1`) and that leaf's inclusion proof
    /// in the tree of `size` (RFC 9162 §2.1.3.1; hashes from the leaf upwards).
    ///
    /// The proof is verified against `root` first ([`verify_inclusion`]); the frontier
    /// is then made of the proof's hashes, which for the last leaf are exactly the
    /// complete subtrees to its left. A light client starts streaming at an anchored
    /// size this way without reading the entries before it.
    pub fn from_last_leaf(
        size: u64,
        leaf: &Hash,
        proof: &[Hash],
        root: &Hash,
    ) -> Result<Self, InclusionError> {
        if size == 0 {
            return Err(InclusionError::IndexOutOfRange { index: 0, size });
        }
        verify_inclusion(leaf, size - 1, size, proof, root)?;
        // The recursion of PATH for the last leaf always descends right: at size n the
        // left part is the complete subtree of split_point(n) leaves, whose root is
        // the next proof hash (from the top). Proof order is bottom-up, so walk the
        // part sizes bottom-up too.
        let mut parts = Vec::with_capacity(proof.len());
        let mut n = size;
        while n > 1 {
            let k = split_point(n);
            parts.push(k);
            n -= k;
        }
        // `verify_inclusion` checked the proof length, which equals `parts.len()`.
        let mut low_first: Vec<(u8, Hash)> = Vec::with_capacity(proof.len() + 1);
        let (mut acc, mut acc_leaves) = (*leaf, 1u64);
        for (hash, k) in proof.iter().zip(parts.iter().rev()) {
            if *k == acc_leaves {
                acc = node_hash(hash, &acc);
                acc_leaves *= 2;
            } else {
                low_first.push((acc_leaves.trailing_zeros() as u8, acc));
                (acc, acc_leaves) = (*hash, *k);
            }
        }
        low_first.push((acc_leaves.trailing_zeros() as u8, acc));
        low_first.reverse();
        Ok(Frontier {
            size,
            subtrees: low_first,
        })
    }
}
