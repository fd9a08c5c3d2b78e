//! Merkle tree hashing, proof generation over a [`HashReader`], and proof
//! verification that needs nothing but the proof (RFC 9162 §2.1).

use crate::error::{ConsistencyError, Error, InclusionError, Result};
use crate::hash::{node_hash, Hash};

/// Read access to the stored hashes of complete subtrees.
///
/// The subtree at `(level, index)` covers the `2^level` leaves starting at
/// leaf `index << level`; level 0 holds the leaf hashes. An implementation
/// only needs to answer for subtrees that lie entirely below the tree size
/// it was built to serve. Proof generation reads at most `2·log₂ n + 2`
/// subtree hashes per proof.
pub trait HashReader {
    /// The hash of the complete subtree at `(level, index)`.
    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash>;
}

/// The largest power of two strictly less than `n` (requires `n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// `MTH(D[start:end])` for `start < end`, read from complete subtrees.
fn range_hash<R: HashReader + ?Sized>(reader: &R, start: u64, end: u64) -> Result<Hash> {
    let n = end - start;
    if n.is_power_of_two() && start.is_multiple_of(n) {
        let level = n.trailing_zeros();
        // `level` < 64 because n is a non-zero u64.
        return reader.subtree_hash(level as u8, start >> level);
    }
    let k = split_point(n);
    let left = range_hash(reader, start, start + k)?;
    let right = range_hash(reader, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The root hash of the first `size` leaves (RFC 9162 §2.1.1).
pub fn root_at<R: HashReader + ?Sized>(reader: &R, size: u64) -> Result<Hash> {
    if size == 0 {
        return Ok(Hash::EMPTY_ROOT);
    }
    range_hash(reader, 0, size)
}

/// The inclusion proof of leaf `index` in the tree of the first `size`
/// leaves, ordered from the leaf upwards (RFC 9162 §2.1.3.1 `PATH`).
pub fn inclusion_proof<R: HashReader + ?Sized>(
    reader: &R,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>> {
    if index >= size {
        return Err(Error::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::with_capacity(inclusion_proof_len(index, size));
    path(reader, index, 0, size, &mut proof)?;
    Ok(proof)
}

fn path<R: HashReader + ?Sized>(
    reader: &R,
    m: u64,
    lo: u64,
    hi: u64,
    out: &mut Vec<Hash>,
) -> Result<()> {
    if hi - lo <= 1 {
        return Ok(());
    }
    let k = split_point(hi - lo);
    if m < lo + k {
        path(reader, m, lo, lo + k, out)?;
        out.push(range_hash(reader, lo + k, hi)?);
    } else {
        path(reader, m, lo + k, hi, out)?;
        out.push(range_hash(reader, lo, lo + k)?);
    }
    Ok(())
}

/// The consistency proof between the trees of the first `old` and `new`
/// leaves (RFC 9162 §2.1.4.1 `PROOF`). Empty when `old == 0` or `old == new`.
pub fn consistency_proof<R: HashReader + ?Sized>(
    reader: &R,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>> {
    if old > new {
        return Err(Error::SizesDecreasing { old, new });
    }
    let mut proof = Vec::new();
    if old == 0 || old == new {
        return Ok(proof);
    }
    subproof(reader, old, 0, new, true, &mut proof)?;
    Ok(proof)
}

fn subproof<R: HashReader + ?Sized>(
    reader: &R,
    m: u64,
    lo: u64,
    hi: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<()> {
    let n = hi - lo;
    if m == n {
        if !complete {
            out.push(range_hash(reader, lo, hi)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(reader, m, lo, lo + k, complete, out)?;
        out.push(range_hash(reader, lo + k, hi)?);
    } else {
        subproof(reader, m - k, lo + k, hi, false, out)?;
        out.push(range_hash(reader, lo, lo + k)?);
    }
    Ok(())
}

/// Number of bits needed to represent `x`.
fn bit_len(x: u64) -> usize {
    (64 - x.leading_zeros()) as usize
}

/// `x >> n`, 0 when `n >= 64`.
fn shr(x: u64, n: usize) -> u64 {
    u32::try_from(n)
        .ok()
        .and_then(|n| x.checked_shr(n))
        .unwrap_or(0)
}

/// Hashes in an honest inclusion proof for `index < size`.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let inner = bit_len(index ^ (size - 1));
    inner + shr(index, inner).count_ones() as usize
}

/// Verifies that `leaf` (a leaf hash, see [`crate::leaf_hash`]) is at
/// `index` in the tree of `size` leaves with root `root`
/// (RFC 9162 §2.1.3.2). Needs no storage.
///
/// The index is range-checked and the proof length compared with the length
/// of an honest proof before any hashing.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), InclusionError> {
    if index >= size {
        return Err(InclusionError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    if proof.len() != expected {
        return Err(InclusionError::WrongProofLength {
            got: proof.len(),
            expected,
        });
    }
    let mut fn_ = index;
    let mut sn = size - 1;
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(InclusionError::RootMismatch);
        }
        r = if sibling_on_left(&mut fn_, &mut sn) {
            node_hash(p, &r)
        } else {
            node_hash(&r, p)
        };
    }
    if sn != 0 || r != *root {
        return Err(InclusionError::RootMismatch);
    }
    Ok(())
}

/// Hashes in an honest consistency proof for `0 < old < new`.
fn consistency_proof_len(old: u64, new: u64) -> usize {
    let index = old - 1;
    let inner = bit_len(index ^ (new - 1));
    let border = shr(index, inner).count_ones() as usize;
    let shift = old.trailing_zeros() as usize;
    let seed = usize::from(old != 1u64 << shift);
    seed + (inner - shift) + border
}

/// Verifies that the tree of `old` leaves with root `old_root` is a prefix
/// of the tree of `new` leaves with root `new_root` (RFC 9162 §2.1.4.2).
/// Needs no storage.
///
/// Edge cases: `old == new` requires an empty proof and equal roots (unequal
/// roots are a fork and give [`ConsistencyError::OldRootMismatch`]);
/// `old == 0` requires an empty proof and `old_root` = [`Hash::EMPTY_ROOT`].
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ConsistencyError> {
    if old > new {
        return Err(ConsistencyError::OldTreeLarger { old, new });
    }
    if old == 0 || old == new {
        if !proof.is_empty() {
            return Err(ConsistencyError::WrongProofLength {
                got: proof.len(),
                expected: 0,
            });
        }
        if old == 0 {
            if *old_root != Hash::EMPTY_ROOT {
                return Err(ConsistencyError::OldRootMismatch);
            }
            return Ok(());
        }
        if old_root != new_root {
            return Err(ConsistencyError::OldRootMismatch);
        }
        return Ok(());
    }
    let expected = consistency_proof_len(old, new);
    if proof.len() != expected {
        return Err(ConsistencyError::WrongProofLength {
            got: proof.len(),
            expected,
        });
    }
    // RFC 9162 §2.1.4.2 step 2: a power-of-two old tree is its own seed.
    let (seed, rest) = if old.is_power_of_two() {
        (*old_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (*first, rest),
            None => return Err(ConsistencyError::WrongProofLength { got: 0, expected }),
        }
    };
    let mut fn_ = old - 1;
    let mut sn = new - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut fr = seed;
    let mut sr = seed;
    for c in rest {
        if sn == 0 {
            return Err(ConsistencyError::NewRootMismatch);
        }
        if sibling_on_left(&mut fn_, &mut sn) {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
        } else {
            sr = node_hash(&sr, c);
        }
    }
    if fr != *old_root {
        return Err(ConsistencyError::OldRootMismatch);
    }
    if sn != 0 || sr != *new_root {
        return Err(ConsistencyError::NewRootMismatch);
    }
    Ok(())
}

/// One step of RFC 9162's proof walk (§2.1.3.2, §2.1.4.2): whether the next proof hash
/// is the left sibling, with `fn_` and `sn` moved up to the next level.
fn sibling_on_left(fn_: &mut u64, sn: &mut u64) -> bool {
    let left = *fn_ & 1 == 1 || *fn_ == *sn;
    if left {
        while *fn_ & 1 == 0 && *fn_ != 0 {
            *fn_ >>= 1;
            *sn >>= 1;
        }
    }
    *fn_ >>= 1;
    *sn >>= 1;
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(1 << 40), 1 << 39);
        assert_eq!(split_point(u64::MAX), 1 << 63);
    }

    #[test]
    fn proof_lengths_match_known_values() {
        // RFC 9162 §2.1.5 examples: tree of 7 leaves.
        assert_eq!(inclusion_proof_len(0, 7), 3);
        assert_eq!(inclusion_proof_len(3, 7), 3);
        assert_eq!(inclusion_proof_len(4, 7), 3);
        assert_eq!(inclusion_proof_len(6, 7), 2);
        assert_eq!(consistency_proof_len(3, 7), 4);
        assert_eq!(consistency_proof_len(4, 7), 1);
        assert_eq!(consistency_proof_len(6, 7), 3);
    }

    #[test]
    fn huge_sizes_do_not_overflow() {
        assert_eq!(inclusion_proof_len(u64::MAX - 1, u64::MAX), 63);
        let _ = consistency_proof_len(u64::MAX - 1, u64::MAX);
        let _ = consistency_proof_len(1, u64::MAX);
    }
}
