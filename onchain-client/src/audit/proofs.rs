//! The proofs the audit asks for when streaming alone cannot decide: a consistency
//! proof between two committed tree heads, an inclusion proof of one entry, and the
//! frontier at a `from_block` start. Each answer is checked; a failure is a reason
//! string for a finding.

use cairn_tlog::{verify_consistency, verify_inclusion, Frontier, Hash};

use super::source::{hashes, LogSource};

/// `new` (size `second`) extends `old` (size `first`), by a consistency proof from
/// `source` (none needed when `first` is 0 or equals `second`).
pub(super) async fn consistency<S: LogSource>(
    source: &mut S,
    (first, old): (u64, Hash),
    (second, new): (u64, Hash),
) -> Result<(), String> {
    if first == second || first == 0 {
        return verify_consistency(first, second, &old, &new, &[]).map_err(|e| e.to_string());
    }
    let proof = source
        .consistency_proof(first, second)
        .await
        .map_err(|e| e.to_string())?;
    if proof.first != first || proof.second != second {
        return Err(format!(
            "proof is for {}→{}, asked {first}→{second}",
            proof.first, proof.second
        ));
    }
    let proof = hashes(&proof.hashes)?;
    verify_consistency(first, second, &old, &new, &proof).map_err(|e| e.to_string())
}

/// The leaf `leaf` is at `index` in the tree `(size, root)`, by an inclusion proof from
/// `source`.
pub(super) async fn inclusion<S: LogSource>(
    source: &mut S,
    leaf: &Hash,
    index: u64,
    (size, root): (u64, Hash),
) -> Result<(), String> {
    let proof = fetch_inclusion(source, index, size).await?;
    verify_inclusion(leaf, index, size, &proof, &root).map_err(|e| e.to_string())
}

async fn fetch_inclusion<S: LogSource>(
    source: &mut S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, String> {
    let proof = source
        .inclusion_proof(index, size)
        .await
        .map_err(|e| e.to_string())?;
    if proof.index != index || proof.size != size {
        return Err(format!(
            "proof is for leaf {} of {}, asked {index} of {size}",
            proof.index, proof.size
        ));
    }
    hashes(&proof.hashes)
}

/// Why the frontier at a start size could not be had.
pub(super) enum BaseError {
    /// The source did not answer (retry later).
    Source(String),
    /// The source answered with an entry or proof that does not verify.
    Invalid(String),
}

/// The frontier of the committed tree `(size, root)`, from entry `size − 1` and its
/// inclusion proof (`Frontier::from_last_leaf`).
pub(super) async fn frontier_at<S: LogSource>(
    source: &mut S,
    (size, root): (u64, Hash),
) -> Result<Frontier, BaseError> {
    if size == 0 {
        return Ok(Frontier::new());
    }
    let index = size - 1;
    let page = source
        .entries(index, size)
        .await
        .map_err(|e| BaseError::Source(e.to_string()))?;
    let entry = match page.entries.as_slice() {
        [entry] if page.start == index => entry,
        other => {
            return Err(BaseError::Invalid(format!(
                "asked for entry {index}, got {} entries from {}",
                other.len(),
                page.start
            )))
        }
    };
    let leaf = cairn_tlog::leaf_hash(&entry.0);
    let proof = fetch_inclusion(source, index, size)
        .await
        .map_err(BaseError::Source)?;
    Frontier::from_last_leaf(size, &leaf, &proof, &root)
        .map_err(|e| BaseError::Invalid(format!("entry {index}: {e}")))
}

#[cfg(test)]
mod tests {
    use cairn_protocol::api::{Hash32, MAX_PROOF_HASHES};
    use cairn_tlog::leaf_hash;

    use super::super::source::hashes;
    use super::*;
    use crate::testing::{LogLie, MemoryLog};

    /// A log whose entry `i` is the byte `i`, for `i < n`, that lies with `lie`.
    fn log(n: u8, lie: LogLie) -> MemoryLog {
        let mut log = MemoryLog::new((0..n).map(|i| vec![i]));
        log.lie = lie;
        log
    }

    #[tokio::test]
    async fn consistency_and_inclusion_accept_honest_proofs_and_reject_forged_ones() {
        let mut honest = log(7, LogLie::Honest);
        let (r3, r7) = (honest.tree().root_at(3).unwrap(), honest.tree().root());
        consistency(&mut honest, (3, r3), (7, r7)).await.unwrap();
        consistency(&mut honest, (7, r7), (7, r7)).await.unwrap();
        consistency(&mut honest, (0, Hash::EMPTY_ROOT), (7, r7))
            .await
            .unwrap();
        inclusion(&mut honest, &leaf_hash(&[5]), 5, (7, r7))
            .await
            .unwrap();
        // A different entry at the same index, or equal sizes with different roots.
        let err = inclusion(&mut honest, &leaf_hash(&[6]), 5, (7, r7))
            .await
            .unwrap_err();
        assert!(err.contains("does not match the expected root"), "{err}");
        let err = consistency(&mut honest, (7, r3), (7, r7))
            .await
            .unwrap_err();
        assert!(err.contains("old root does not match"), "{err}");

        let mut liar = log(7, LogLie::FlipProofs);
        let err = consistency(&mut liar, (3, r3), (7, r7)).await.unwrap_err();
        assert!(err.starts_with("consistency:"), "{err}");
        let err = inclusion(&mut liar, &leaf_hash(&[5]), 5, (7, r7))
            .await
            .unwrap_err();
        assert!(err.contains("does not match the expected root"), "{err}");
    }

    #[tokio::test]
    async fn the_frontier_at_a_committed_size_continues_the_tree_and_a_forged_proof_is_refused() {
        let mut honest = log(20, LogLie::Honest);
        let t = honest.tree().clone();
        let Ok(mut f) = frontier_at(&mut honest, (13, t.root_at(13).unwrap())).await else {
            panic!("an honest base verifies");
        };
        for i in 13..20u8 {
            f.push_entry(&[i]);
        }
        assert_eq!(f.root(), t.root());
        let mut liar = log(20, LogLie::FlipProofs);
        assert!(matches!(
            frontier_at(&mut liar, (13, t.root_at(13).unwrap())).await,
            Err(BaseError::Invalid(_))
        ));
        // Another root than the tree's at that size.
        assert!(matches!(
            frontier_at(&mut honest, (13, t.root_at(12).unwrap())).await,
            Err(BaseError::Invalid(_))
        ));
    }

    #[test]
    fn oversized_proofs_are_refused_before_use() {
        let v = vec![Hash32([0; 32]); MAX_PROOF_HASHES + 1];
        assert_eq!(
            hashes(&v).unwrap_err(),
            format!("proof has {} hashes", MAX_PROOF_HASHES + 1)
        );
        assert_eq!(hashes(&v[..2]).unwrap().len(), 2);
    }
}
