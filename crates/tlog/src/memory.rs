//! An in-memory Merkle tree: the same hashing and proofs as the durable log,
//! for light clients that rebuild a small tree and for tests.

use crate::error::{Error, Result};
use crate::hash::{leaf_hash, node_hash, Hash};
use crate::proof::{self, HashReader};

/// An append-only Merkle tree held in memory.
///
/// It stores every complete subtree hash (about `2n` hashes for `n` leaves)
/// and answers roots and proofs for any prefix size, exactly like
/// [`crate::Log`] does from disk.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    /// `levels[l][i]` is the hash of the complete subtree `(l, i)`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an entry (it is hashed with [`leaf_hash`]); returns its index.
    pub fn push(&mut self, entry: &[u8]) -> u64 {
        self.push_leaf_hash(leaf_hash(entry))
    }

    /// Appends an already computed leaf hash; returns its index.
    pub fn push_leaf_hash(&mut self, leaf: Hash) -> u64 {
        let index = self.size();
        let mut level = 0usize;
        let mut idx = index;
        let mut h = leaf;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(h);
            if idx & 1 == 0 {
                break;
            }
            let left = self.levels[level][(idx - 1) as usize];
            h = node_hash(&left, &h);
            level += 1;
            idx >>= 1;
        }
        index
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Root of the whole tree.
    pub fn root(&self) -> Hash {
        // Reading our own complete subtrees cannot fail.
        self.root_at(self.size()).unwrap_or(Hash::EMPTY_ROOT)
    }

    /// Root of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash> {
        self.check_size(size)?;
        proof::root_at(self, size)
    }

    /// Inclusion proof of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>> {
        self.check_size(size)?;
        proof::inclusion_proof(self, index, size)
    }

    /// Consistency proof between the first `old` and the first `new` leaves.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>> {
        self.check_size(new)?;
        proof::consistency_proof(self, old, new)
    }

    fn check_size(&self, size: u64) -> Result<()> {
        if size > self.size() {
            return Err(Error::SizeOutOfRange {
                requested: size,
                committed: self.size(),
            });
        }
        Ok(())
    }
}

impl HashReader for MemoryTree {
    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash> {
        self.levels
            .get(usize::from(level))
            .and_then(|l| usize::try_from(index).ok().and_then(|i| l.get(i)))
            .copied()
            .ok_or(Error::Corrupt {
                what: crate::error::Corruption::MissingHash,
                index,
            })
    }
}
