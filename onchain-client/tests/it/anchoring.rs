//! Log anchoring by registered KMS nodes; sizes only grow.

use cairn_onchain::alloy::primitives::B256;
use cairn_onchain::KmsAuth::KmsAuthErrors;
use cairn_onchain::{BlockRange, Error};

use crate::common::devnet;

#[tokio::test]
async fn registered_node_anchors_and_a_shrink_is_rejected_with_the_decoded_error() {
    let net = devnet(0).await;
    let node = net.client_as(1, 0).await;
    let node_addr = node.connection().sender().unwrap();
    net.client.add_kms_node(node_addr).await.unwrap();

    let root10 = B256::repeat_byte(0x10);
    let r = node.anchor_checkpoint(10, root10).await.unwrap();
    let at = node.policy_block().await.unwrap();
    let anchor = node
        .latest_anchor(node_addr, at)
        .await
        .unwrap()
        .expect("anchored");
    assert_eq!((anchor.tree_size, anchor.root_hash), (10, root10));
    assert_eq!(Some(anchor.block_number), r.block_number);

    let err = node
        .anchor_checkpoint(5, B256::repeat_byte(0x05))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Revert {
                op: "KmsAuth.anchorCheckpoint",
                ..
            }
        ),
        "{err:?}"
    );
    match err.as_kms_auth_error() {
        Some(KmsAuthErrors::KmsAuthCheckpointShrinks(e)) => {
            assert_eq!((e.anchored, e.given), (10, 5))
        }
        _ => panic!("expected KmsAuthCheckpointShrinks, got {err:?}"),
    }

    let err = node
        .anchor_checkpoint(10, B256::repeat_byte(0xff))
        .await
        .unwrap_err();
    assert!(
        matches!(err.as_kms_auth_error(), Some(KmsAuthErrors::KmsAuthCheckpointConflict(e)) if e.treeSize == 10),
        "{err:?}"
    );

    node.anchor_checkpoint(12, B256::repeat_byte(0x12))
        .await
        .unwrap();
    let head = at.number + 10;
    let anchors = net.client.anchors(BlockRange::new(0, head)).await.unwrap();
    let seen: Vec<(u64, B256)> = anchors
        .iter()
        .map(|a| (a.event.treeSize, a.event.rootHash))
        .collect();
    assert_eq!(seen, vec![(10, root10), (12, B256::repeat_byte(0x12))]);
    assert!(anchors.iter().all(|a| a.event.node == node_addr));
}

#[tokio::test]
async fn non_node_cannot_anchor() {
    let net = devnet(0).await;
    let stranger = net.client_as(2, 0).await;
    let addr = stranger.connection().sender().unwrap();
    let err = stranger
        .anchor_checkpoint(1, B256::repeat_byte(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err.as_kms_auth_error(), Some(KmsAuthErrors::KmsAuthNotKmsNode(e)) if e.node == addr),
        "{err:?}"
    );
}
