//! A node that rolled its served log back below what it anchored: the audit reports the
//! rollback and still audits every entry the node serves (their inclusion in the served
//! checkpoint, each release re-evaluated at its policy block), so a bad release in the
//! served part is its own finding, not hidden behind the rollback.

use std::collections::HashMap;

use cairn_e2e::*;
use cairn_onchain::{audit_all, reasons, AuditOptions, AuditOutcome, Check, Finding, LogSource};
use cairn_tlog::ReleaseRecord;

use crate::audit::{liar, node_of, Lie};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_node_still_has_its_served_entries_audited() {
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let node = node_of(&kms);
    let app = net.deploy_app(net.owner, None).await;
    let cvm = Cvm::new(&kms.url(), app.app_id(), 0x90, "v1");
    app.add_compose_hash(cvm.compose_hash()).await.unwrap();
    net.mine(CONFIRMATIONS).await;
    cvm.boot().await.unwrap();

    // The compose hash is revoked; a compromised node still releases under it (written
    // straight into its own log) at a block after the revocation.
    app.remove_compose_hash(cvm.compose_hash()).await.unwrap();
    net.mine(CONFIRMATIONS).await;
    let after = net.client.policy_block().await.unwrap();
    let log = kms.node.log();
    let mut record = ReleaseRecord::decode(&log.entry(0).unwrap()).unwrap();
    record.policy_block_number = after.number;
    record.policy_block_hash = after.hash;
    let revoked = log.append(record.encode().unwrap()).unwrap();
    assert_eq!(revoked, 1);
    // The checkpoint it signed at size 2, then one more entry and an anchor at size 3.
    let served = kms.client(None).await.checkpoint().await.unwrap();
    log.append(log.entry(0).unwrap()).unwrap();
    assert_eq!(cairn_kms::anchor_once(&kms.node, 0).await.unwrap(), 3);

    // The node now serves the size-2 checkpoint and nothing beyond it.
    let mut sources = HashMap::from([(
        node,
        liar(
            &kms,
            Lie::RolledBack {
                checkpoint: served,
                size: 2,
            },
        )
        .await,
    )]);
    let report = audit_all(
        &net.client,
        &mut sources,
        AuditOptions::default().collecting_releases(),
    )
    .await
    .unwrap();
    assert!(
        matches!(
            report.findings.as_slice(),
            [
                Finding::EntriesUnavailable { node: n0, start: 0, .. },
                Finding::CheckpointNotConsistent { node: n1, anchor_size: 3, checkpoint_size: 2, .. },
                Finding::NotAllowed { node: n2, index: 1, block, check: Check::ComposeHash, reason },
            ] if *n0 == node && *n1 == node && *n2 == node
                && *block == after.number && reason == reasons::COMPOSE_HASH
        ),
        "{:?}",
        report.findings
    );
    // Both served entries were read, judged and proven in the served checkpoint.
    assert_eq!(report.stats.entries, 2);
    assert_eq!(report.node(node).unwrap().verified_size, Some(2));
    assert_eq!(report.releases.len(), 2);
    assert!(report.releases[0].allowed && report.releases[0].logged);
    assert!(!report.releases[1].allowed && report.releases[1].logged);
    assert_eq!(report.outcome(), AuditOutcome::Findings);
    kms.stop().await;
}
