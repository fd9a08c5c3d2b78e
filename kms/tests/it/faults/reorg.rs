//! A reorg deeper than the confirmation depth (anvil `evm_snapshot` before a policy
//! change, `evm_revert` after the node released under it, then a longer chain without
//! the change: every block from the fork point on is replaced).
//!
//! The node's defined behaviour (docs/reliability.md "Reorgs", docs/kms.md): verdicts are
//! cached per (question, block hash), so nothing read at an orphaned block is reused —
//! the next head advance pins the new canonical block and the question is asked again
//! there. A release already made at a block that is later orphaned stays in the log (it
//! happened); its receipt and the audit flag it (`PolicyBlockMismatch`), which is how a
//! reorg deeper than the confirmations becomes visible. Anchors mined in orphaned blocks
//! vanish with them; the next anchoring round after the log grows posts the whole log
//! again.

use std::time::{Duration, Instant};

use cairn_attestation::ids::ComposeHash;
use cairn_onchain::alloy::primitives::{Address, B256};
use cairn_onchain::alloy::providers::ext::AnvilApi;
use cairn_onchain::{audit_app, verify_receipt, Finding, ReceiptError};
use cairn_tlog::ReleaseKind;
use hyper::StatusCode;

use crate::faults::{until_log_anchored, PHASE_DEADLINE};
use crate::release::app_key;
use crate::world::{image, pki, refused_app_key, Guest, World, CONFIRMATIONS};

/// Version 2 of the world's app: allowed only on the branch that gets orphaned.
const COMPOSE_V2: &[u8] = br#"{"manifest_version":2,"name":"demo","runner":"process","v":2}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_deeper_than_the_confirmations_never_reuses_a_verdict_from_an_orphaned_block() {
    let (w, kms) = World::serving(0xE1).await;
    let v2 = Guest::boot(pki(), 0x81, image(), w.app_id, COMPOSE_V2);
    let mut v2_conn = kms.client(Some(&v2.cert())).await;
    let err = app_key(&mut v2_conn).await.unwrap_err();
    assert_eq!(err.body.error.code, "denied.compose_hash", "{err:?}");

    // The fork point; then the branch that allows v2, past the confirmations.
    let conn = w.connect(0).await;
    let snapshot = conn
        .provider()
        .anvil_snapshot()
        .await
        .expect("evm_snapshot");
    let fork_point = w.head_number().await;
    w.app
        .add_compose_hash(B256::from(ComposeHash::of_compose(COMPOSE_V2).0))
        .await
        .expect("addComposeHash");
    w.mine(CONFIRMATIONS).await;
    let orphaned = app_key(&mut v2_conn)
        .await
        .expect("v2 allowed on this branch");
    let at = (
        orphaned.receipt.policy_block_number,
        B256::from(orphaned.receipt.policy_block_hash),
    );
    assert!(at.0 > fork_point, "the allowing block is on the branch");
    let old_head = w.head_number().await;

    // The reorg: every block after the fork point replaced by a longer chain without
    // the change (deeper than the confirmations by construction).
    assert!(conn
        .provider()
        .anvil_revert(snapshot)
        .await
        .expect("evm_revert"));
    w.net.mine(old_head - fork_point + 1).await;
    let canonical = w
        .client
        .find_block(at.0)
        .await
        .expect("read the block")
        .expect("the height exists again");
    assert_ne!(
        canonical.hash, at.1,
        "the release's policy block is orphaned"
    );
    assert!(old_head - fork_point > CONFIRMATIONS);

    // The node follows by itself (no head sync by the test): its pinned block moves to
    // the new chain.
    let deadline = Instant::now() + PHASE_DEADLINE;
    loop {
        let pinned = kms.node.policy_head().status().head.map(|h| h.pinned);
        if pinned.is_some_and(|p| p.number >= at.0) {
            let on_new_chain = w.client.find_block(pinned.unwrap().number).await.unwrap();
            if on_new_chain == pinned {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the policy head never followed the reorg"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The same guest on the same connection: the allow of the orphaned block is not
    // reused; the new chain says no.
    refused_app_key(
        &kms,
        &mut v2_conn,
        StatusCode::FORBIDDEN,
        "denied.compose_hash",
    )
    .await;
    // Version 1 (allowed before the fork) keeps getting keys.
    let v1 = w.guest(0x82);
    let kept = app_key(&mut kms.client(Some(&v1.cert())).await)
        .await
        .expect("v1 is allowed on both branches");

    // The release made at the orphaned block is flagged by its receipt and the audit.
    let app = Address::from(w.app_id.0);
    let mut source = kms.client(None).await;
    match verify_receipt(
        &w.client,
        &mut source,
        &orphaned.receipt,
        app,
        ReleaseKind::AppKey,
    )
    .await
    {
        Err(ReceiptError::PolicyBlockMismatch {
            number,
            recorded,
            actual,
        }) => {
            assert_eq!((number, recorded), at);
            assert_eq!(actual, Some(canonical.hash));
        }
        other => panic!("expected PolicyBlockMismatch, got {other:?}"),
    }
    verify_receipt(
        &w.client,
        &mut source,
        &kept.receipt,
        app,
        ReleaseKind::AppKey,
    )
    .await
    .expect("the release on the canonical chain verifies");

    // Anchoring re-posts the whole log (its anchors on the branch are gone).
    until_log_anchored(&w, &kms, "anchoring never re-posted the log", || true).await;
    let report = audit_app(
        &w.client,
        &mut source,
        Address::from(kms.node.address()),
        app,
    )
    .await
    .expect("audit");
    assert_eq!(
        report.findings,
        vec![Finding::PolicyBlockMismatch {
            node: Address::from(kms.node.address()),
            index: orphaned.receipt.log_index,
            number: at.0,
            recorded: at.1,
            actual: Some(canonical.hash),
        }],
        "exactly the orphaned release is flagged"
    );
    kms.stop().await;
}
