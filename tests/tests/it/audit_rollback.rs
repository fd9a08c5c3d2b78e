//! A node that rolled its served log back below what it anchored: the audit reports the
//! rollback and still audits every entry the node serves (their inclusion in the served
//! checkpoint and in the anchors below it, each release re-evaluated at its policy
//! block), so a bad release in the served part is its own finding, not hidden behind the
//! rollback.

use std::collections::HashMap;

use cairn_onchain::{audit_all, reasons, AuditOptions, AuditOutcome, Check, Finding, LogSource};
use cairn_tlog::ReleaseRecord;

use crate::audit::{liar, node_of, scenario, Lie};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_node_still_has_its_served_entries_audited() {
    // Four allowed releases, anchored at sizes 2 and 3.
    let (net, kms, _, before, _) = scenario().await;
    // A compromised node releases under a policy block from before any compose hash was
    // allowed (written straight into its own log) and signs its checkpoint at size 5;
    // then logs one more release and anchors size 6.
    let log = kms.node.log();
    let mut record = ReleaseRecord::decode(&log.entry(0).unwrap()).unwrap();
    record.policy_block_number = before.number;
    record.policy_block_hash = before.hash;
    assert_eq!(log.append(record.encode().unwrap()).unwrap(), 4);
    let served = kms.client(None).await.checkpoint().await.unwrap();
    log.append(log.entry(1).unwrap()).unwrap();
    assert_eq!(cairn_kms::anchor_once(&kms.node, 3).await.unwrap(), 6);

    // The node now serves the size-5 checkpoint and nothing beyond it.
    let node = node_of(&kms);
    let rolled_back = Lie::RolledBack {
        checkpoint: served,
        size: 5,
    };
    let mut sources = HashMap::from([(node, liar(&kms, rolled_back).await)]);
    let options = AuditOptions::default().collecting_releases();
    let report = audit_all(&net.client, &mut sources, options).await.unwrap();
    // The anchor of size 6 could not be read towards; the served checkpoint is smaller
    // (the rollback); and the bad release in the served part is found as such.
    assert!(
        matches!(
            report.findings.as_slice(),
            [
                Finding::EntriesUnavailable { node: n0, start: 0, .. },
                Finding::CheckpointNotConsistent { node: n1, anchor_size: 6, checkpoint_size: 5, .. },
                Finding::StalePolicyBlock { index: 4, .. },
                Finding::NotAllowed { node: n2, index: 4, block, check: Check::ComposeHash, reason },
            ] if *n0 == node && *n1 == node && *n2 == node
                && *block == before.number && reason == reasons::COMPOSE_HASH
        ),
        "{:?}",
        report.findings
    );
    // Every served entry was read, judged, and proven in the served checkpoint (which
    // met both anchors below it).
    assert_eq!(report.stats.entries, 5);
    assert_eq!(report.node(node).unwrap().verified_size, Some(5));
    assert_eq!(report.releases.len(), 5);
    assert!(report.releases[..4].iter().all(|r| r.allowed && r.logged));
    assert!(!report.releases[4].allowed && report.releases[4].logged);
    assert_eq!(report.outcome(), AuditOutcome::Findings);
    kms.stop().await;
}
