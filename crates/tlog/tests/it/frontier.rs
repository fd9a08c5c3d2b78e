//! [`Frontier`]: streamed roots equal the tree's at every size; a frontier rebuilt from
//! the last leaf's inclusion proof continues exactly like the streamed one; any change
//! to that proof or leaf is refused.

use cairn_tlog::{leaf_hash, Frontier, Hash, InclusionError};

use crate::support::{memory_tree, vector_entry};

#[test]
fn streamed_roots_equal_the_tree_roots_at_every_size_up_to_600() {
    let tree = memory_tree(600);
    let mut f = Frontier::new();
    assert_eq!(f.root(), Hash::EMPTY_ROOT);
    for i in 0..600u64 {
        f.push_entry(&vector_entry(i));
        assert_eq!(f.size(), i + 1);
        assert_eq!(
            f.root(),
            tree.root_at(i + 1).expect("root"),
            "size {}",
            i + 1
        );
    }
}

#[test]
fn a_frontier_from_the_last_leaf_proof_continues_like_the_streamed_one() {
    let tree = memory_tree(300);
    for size in 1..=260u64 {
        let root = tree.root_at(size).expect("root");
        let leaf = leaf_hash(&vector_entry(size - 1));
        let proof = tree.inclusion_proof(size - 1, size).expect("proof");
        let mut rebuilt = Frontier::from_last_leaf(size, &leaf, &proof, &root)
            .unwrap_or_else(|e| panic!("size {size}: {e}"));
        let mut streamed = Frontier::new();
        for i in 0..size {
            streamed.push_entry(&vector_entry(i));
        }
        assert_eq!(rebuilt, streamed, "size {size}");
        for i in size..size + 40 {
            rebuilt.push_entry(&vector_entry(i));
        }
        assert_eq!(
            rebuilt.root(),
            tree.root_at(size + 40).expect("root"),
            "size {size} + 40"
        );
    }
}

#[test]
fn a_frontier_is_refused_for_any_bit_flip_of_its_proof_leaf_or_root() {
    let tree = memory_tree(100);
    for size in [1u64, 2, 3, 7, 8, 13, 64, 100] {
        let root = tree.root_at(size).expect("root");
        let leaf = leaf_hash(&vector_entry(size - 1));
        let proof = tree.inclusion_proof(size - 1, size).expect("proof");
        for i in 0..proof.len() {
            for bit in 0..256 {
                let mut bad = proof.clone();
                bad[i].0[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(
                    Frontier::from_last_leaf(size, &leaf, &bad, &root),
                    Err(InclusionError::RootMismatch),
                    "size {size}, hash {i}, bit {bit}"
                );
            }
        }
        let mut bad_leaf = leaf;
        bad_leaf.0[31] ^= 1;
        assert_eq!(
            Frontier::from_last_leaf(size, &bad_leaf, &proof, &root),
            Err(InclusionError::RootMismatch)
        );
        // Another leaf's proof, or a proof for another size, has another shape or root.
        if size > 1 {
            let other = tree.inclusion_proof(size - 2, size).expect("proof");
            assert!(Frontier::from_last_leaf(size, &leaf, &other, &root).is_err());
        }
        let mut short = proof.clone();
        if short.pop().is_some() {
            assert!(matches!(
                Frontier::from_last_leaf(size, &leaf, &short, &root),
                Err(InclusionError::WrongProofLength { .. })
            ));
        }
    }
    assert_eq!(
        Frontier::from_last_leaf(0, &Hash::EMPTY_ROOT, &[], &Hash::EMPTY_ROOT),
        Err(InclusionError::IndexOutOfRange { index: 0, size: 0 })
    );
}
