//! Exhaustive and property tests of proof generation and verification.

use cairn_tlog::{
    leaf_hash, verify_consistency, verify_inclusion, ConsistencyError, Hash, InclusionError,
    MemoryTree,
};
use proptest::prelude::*;

use crate::support::{memory_tree, vector_entry};

#[test]
fn every_inclusion_proof_up_to_64_verifies_and_any_bit_flip_fails() {
    let tree = memory_tree(64);
    for size in 1..=64u64 {
        let root = tree.root_at(size).expect("root");
        for index in 0..size {
            let leaf = leaf_hash(&vector_entry(index));
            let proof = tree.inclusion_proof(index, size).expect("proof");
            verify_inclusion(&leaf, index, size, &proof, &root).expect("honest proof verifies");
            for i in 0..proof.len() {
                for bit in 0..256 {
                    let mut bad = proof.clone();
                    bad[i].0[bit / 8] ^= 1 << (bit % 8);
                    assert_eq!(
                        verify_inclusion(&leaf, index, size, &bad, &root),
                        Err(InclusionError::RootMismatch),
                        "flipped bit {bit} of hash {i}: index {index} size {size}"
                    );
                }
            }
        }
    }
}

#[test]
fn inclusion_rejects_wrong_leaf_index_size_and_length() {
    let tree = memory_tree(13);
    let root = tree.root();
    let leaf = leaf_hash(&vector_entry(5));
    let proof = tree.inclusion_proof(5, 13).expect("proof");
    verify_inclusion(&leaf, 5, 13, &proof, &root).expect("honest");
    // Another leaf's hash at the same position.
    assert_eq!(
        verify_inclusion(&leaf_hash(&vector_entry(6)), 5, 13, &proof, &root),
        Err(InclusionError::RootMismatch)
    );
    // A hash that is not this leaf's, at a position with the same proof length.
    assert_eq!(
        verify_inclusion(&tree.root_at(1).expect("r"), 0, 13, &proof, &root),
        Err(InclusionError::RootMismatch)
    );
    // Claimed at another index with the same proof length.
    assert_eq!(
        verify_inclusion(&leaf, 4, 13, &proof, &root),
        Err(InclusionError::RootMismatch)
    );
    assert_eq!(
        verify_inclusion(&leaf, 13, 13, &proof, &root),
        Err(InclusionError::IndexOutOfRange {
            index: 13,
            size: 13
        })
    );
    assert_eq!(
        verify_inclusion(&leaf, 0, 0, &[], &Hash::EMPTY_ROOT),
        Err(InclusionError::IndexOutOfRange { index: 0, size: 0 })
    );
    let mut longer = proof.clone();
    longer.push(root);
    assert_eq!(
        verify_inclusion(&leaf, 5, 13, &longer, &root),
        Err(InclusionError::WrongProofLength {
            got: 5,
            expected: 4
        })
    );
    assert_eq!(
        verify_inclusion(&leaf, 5, 13, &proof[..3], &root),
        Err(InclusionError::WrongProofLength {
            got: 3,
            expected: 4
        })
    );
    // Leaf and node hashes are domain-separated: an entry that spells out
    // an interior node (0x01 ‖ left ‖ right) does not hash to that node.
    let (l0, l1) = (leaf_hash(&vector_entry(0)), leaf_hash(&vector_entry(1)));
    let mut spelled = vec![0x01];
    spelled.extend_from_slice(&l0.0);
    spelled.extend_from_slice(&l1.0);
    assert_ne!(leaf_hash(&spelled[1..]), tree.root_at(2).expect("r"));
    assert_ne!(leaf_hash(&spelled), tree.root_at(2).expect("r"));
}

#[test]
fn consistency_proofs_between_all_sizes_up_to_200_verify() {
    let tree = memory_tree(200);
    let roots: Vec<Hash> = (0..=200).map(|n| tree.root_at(n).expect("root")).collect();
    for new in 0..=200u64 {
        for old in 0..=new {
            let proof = tree.consistency_proof(old, new).expect("proof");
            verify_consistency(old, new, &roots[old as usize], &roots[new as usize], &proof)
                .unwrap_or_else(|e| panic!("{old} -> {new}: {e}"));
        }
    }
}

#[test]
fn any_bit_flip_in_a_consistency_proof_up_to_64_fails() {
    let tree = memory_tree(64);
    for new in 1..=64u64 {
        let new_root = tree.root_at(new).expect("root");
        for old in 1..new {
            let old_root = tree.root_at(old).expect("root");
            let proof = tree.consistency_proof(old, new).expect("proof");
            for i in 0..proof.len() {
                for bit in 0..256 {
                    let mut bad = proof.clone();
                    bad[i].0[bit / 8] ^= 1 << (bit % 8);
                    let err = verify_consistency(old, new, &old_root, &new_root, &bad)
                        .expect_err("flipped proof must fail");
                    assert!(
                        matches!(
                            err,
                            ConsistencyError::OldRootMismatch | ConsistencyError::NewRootMismatch
                        ),
                        "{old} -> {new} hash {i} bit {bit}: {err:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn consistency_rejects_bad_sizes_and_lengths() {
    let tree = memory_tree(20);
    let r = |n| tree.root_at(n).expect("root");
    assert_eq!(
        verify_consistency(8, 7, &r(8), &r(7), &[]),
        Err(ConsistencyError::OldTreeLarger { old: 8, new: 7 })
    );
    assert_eq!(
        verify_consistency(7, 7, &r(7), &r(7), &[r(1)]),
        Err(ConsistencyError::WrongProofLength {
            got: 1,
            expected: 0
        })
    );
    assert_eq!(
        verify_consistency(0, 7, &r(0), &r(7), &[r(1)]),
        Err(ConsistencyError::WrongProofLength {
            got: 1,
            expected: 0
        })
    );
    // Size 0 is consistent with everything, but its root must be the empty root.
    verify_consistency(0, 7, &Hash::EMPTY_ROOT, &r(7), &[]).expect("empty prefix");
    assert_eq!(
        verify_consistency(0, 7, &r(1), &r(7), &[]),
        Err(ConsistencyError::OldRootMismatch)
    );
    let proof = tree.consistency_proof(6, 20).expect("proof");
    assert_eq!(
        verify_consistency(6, 20, &r(6), &r(20), &proof[1..]),
        Err(ConsistencyError::WrongProofLength {
            got: proof.len() - 1,
            expected: proof.len()
        })
    );
    assert_eq!(
        verify_consistency(6, 20, &r(6), &r(19), &proof),
        Err(ConsistencyError::NewRootMismatch)
    );
    assert_eq!(
        verify_consistency(6, 20, &r(5), &r(20), &proof),
        Err(ConsistencyError::OldRootMismatch)
    );
    // Empty proof for a non-trivial pair.
    assert!(matches!(
        verify_consistency(4, 8, &r(4), &r(8), &[]),
        Err(ConsistencyError::WrongProofLength { got: 0, .. })
    ));
}

fn forked(n: u64, at: u64) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..n {
        if i == at {
            t.push(b"a different release");
        } else {
            t.push(&vector_entry(i));
        }
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A log that rewrote one entry cannot prove consistency with a
    /// checkpoint of the honest log, whichever proof it sends.
    #[test]
    fn a_forked_log_is_detected_by_consistency_verification(
        n in 1u64..200, at_frac in 0.0f64..1.0, old_frac in 0.0f64..1.0,
    ) {
        let at = ((n as f64) * at_frac) as u64 % n;
        // Any old size that already contains the rewritten entry.
        let old = at + 1 + (((n - at - 1) as f64) * old_frac) as u64;
        let honest = memory_tree(n);
        let fork = forked(n, at);
        let honest_old = honest.root_at(old).expect("root");
        let fork_new = fork.root_at(n).expect("root");
        prop_assert_ne!(honest.root(), fork_new);
        // Same size, different entry: the roots differ.
        prop_assert_eq!(
            verify_consistency(n, n, &honest.root(), &fork_new, &[]),
            Err(ConsistencyError::OldRootMismatch)
        );
        // The fork's own proof does not reach the honest old root.
        let fork_proof = fork.consistency_proof(old, n).expect("proof");
        let err = verify_consistency(old, n, &honest_old, &fork_new, &fork_proof);
        prop_assert!(matches!(err, Err(ConsistencyError::OldRootMismatch | ConsistencyError::NewRootMismatch)), "{:?}", err);
        // The honest proof does not reach the fork's new root.
        if old < n {
            let honest_proof = honest.consistency_proof(old, n).expect("proof");
            let err = verify_consistency(old, n, &honest_old, &fork_new, &honest_proof);
            prop_assert!(matches!(err, Err(ConsistencyError::OldRootMismatch | ConsistencyError::NewRootMismatch)), "{:?}", err);
        }
    }

    /// Random proofs of the right length never verify and never panic.
    #[test]
    fn random_proofs_never_verify(
        index in 0u64..1000, size in 1u64..1000, seed in any::<[u8; 32]>(), len in 0usize..24,
    ) {
        let proof: Vec<Hash> = (0..len).map(|i| { let mut h = seed; h[0] ^= i as u8; Hash(h) }).collect();
        let root = Hash(seed);
        let inclusion = verify_inclusion(&Hash([1; 32]), index, size, &proof, &root);
        prop_assert!(
            matches!(
                inclusion,
                Err(InclusionError::IndexOutOfRange { .. }
                    | InclusionError::WrongProofLength { .. }
                    | InclusionError::RootMismatch)
            ),
            "{:?}", inclusion
        );
        let consistency =
            verify_consistency(index.min(size), size, &Hash([2; 32]), &root, &proof);
        prop_assert!(
            matches!(
                consistency,
                Err(ConsistencyError::WrongProofLength { .. }
                    | ConsistencyError::OldRootMismatch
                    | ConsistencyError::NewRootMismatch)
            ),
            "{:?}", consistency
        );
    }
}
