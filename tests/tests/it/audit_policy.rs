//! The audit re-evaluates each release against the chain at its recorded block: a
//! release after revocation, a policy block that is too old (behind the node's earlier
//! ones, or far from the release's time), a release by a node no longer registered, a
//! version-1 record (approximate), identical calls made once, follow mode finding
//! a bad release as soon as it is logged, and a node's onboarding receipt (kind 3,
//! logged before the node is registered: clean, unless its source was not an allowed
//! KMS at its block).
//!
//! A real KMS refuses all of these releases, so they are written the way a
//! compromised KMS would: straight into the node's own log (`Forger`), which the node
//! then serves and anchors as usual.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use cairn_e2e::*;
use cairn_kms::Node;
use cairn_onchain::alloy::primitives::{keccak256, Address, B256};
use cairn_onchain::alloy::sol_types::SolValue;
use cairn_onchain::{
    audit_all, audit_app, boot_info_of, reasons, AuditOptions, AuditOutcome, AuditReport, Auditor,
    Check, Finding, PolicyBlock, Staleness,
};
use cairn_tlog::{RecordVersion, ReleaseKind, ReleaseRecord};
use tokio::sync::{mpsc, oneshot};

use crate::audit::node_of;

/// Writes records into a KMS node's own log, as a compromised node would. It holds the
/// node: drop it before [`Kms::stop`], which waits for every handle on the node to go.
struct Forger {
    node: Arc<Node>,
    /// The last anchored size.
    anchored: u64,
}

impl Forger {
    fn new(kms: &Kms) -> Self {
        Forger {
            node: kms.node.clone(),
            anchored: 0,
        }
    }

    /// The honest record at `index`.
    fn record(&self, index: u64) -> ReleaseRecord {
        ReleaseRecord::decode(&self.node.log().entry(index).unwrap()).unwrap()
    }

    /// Appends `record`; returns its index.
    async fn append(&self, record: &ReleaseRecord) -> u64 {
        let bytes = record.encode().unwrap();
        let node = self.node.clone();
        tokio::task::spawn_blocking(move || node.log().append(bytes))
            .await
            .unwrap()
            .unwrap()
    }

    /// Appends a copy of the record at `index` judged at the policy block `at` (a release
    /// the chain no longer allowed there); returns its index.
    async fn append_judged_at(&self, index: u64, at: &PolicyBlock) -> u64 {
        let mut record = self.record(index);
        record.policy_block_number = at.number;
        record.policy_block_hash = at.hash;
        self.append(&record).await
    }

    /// Anchors the log as the node does.
    async fn anchor(&mut self) {
        self.anchored = cairn_kms::anchor_once(&self.node, self.anchored)
            .await
            .unwrap();
    }
}

/// One app with a compose hash allowed, one KMS, `boots` boots of distinct CVMs; the
/// node's address and a [`Forger`] of its log (nothing anchored yet).
type World = (
    Devnet,
    Kms,
    cairn_onchain::AppAuthClient,
    Vec<Cvm>,
    Address,
    Forger,
);

async fn world(boots: u8) -> World {
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let (app, cvms) = net.booted_app(&kms, 0x70..0x70 + boots).await;
    let node = node_of(&kms);
    let forger = Forger::new(&kms);
    (net, kms, app, cvms, node, forger)
}

/// The owner revokes `cvm`'s compose hash; then the node releases (and logs) the first
/// record again, judged at the pinned block after the revocation. Returns that block and
/// the forged record's index.
async fn release_after_revocation(
    net: &Devnet,
    app: &cairn_onchain::AppAuthClient,
    cvm: &Cvm,
    forger: &Forger,
) -> (PolicyBlock, u64) {
    app.remove_compose_hash(cvm.compose_hash()).await.unwrap();
    net.mine(CONFIRMATIONS).await;
    let after = net.client.policy_block().await.unwrap();
    let index = forger.append_judged_at(0, &after).await;
    (after, index)
}

/// Drops the forger (its handle on the node), then stops the KMS.
async fn finish(forger: Forger, kms: Kms) {
    drop(forger);
    kms.stop().await;
}

/// `audit_app` of `app` over the node of `kms`.
async fn audit_one(net: &Devnet, kms: &Kms, app: &cairn_onchain::AppAuthClient) -> AuditReport {
    let mut source = kms.client(None).await;
    audit_app(&net.client, &mut source, node_of(kms), app.app_id())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_after_revocation_is_found_with_the_contracts_reason() {
    let (net, kms, app, cvms, node, mut forger) = world(1).await;
    forger.anchor().await;

    // The DAO revokes the compose hash; a compromised node still releases (and logs)
    // at the pinned block after the revocation.
    let (after, index) = release_after_revocation(&net, &app, &cvms[0], &forger).await;
    forger.anchor().await;

    let report = audit_one(&net, &kms, &app).await;
    assert_findings!(report, [Finding::NotAllowed { node: n, index: i, block, check: Check::ComposeHash, reason }]
            if *n == node && *i == index && *block == after.number && reason == reasons::COMPOSE_HASH);
    assert!(report.releases[0].allowed);
    assert!(!report.releases[1].allowed && report.releases[1].logged);
    assert_eq!(report.outcome().exit_code(), 1);
    finish(forger, kms).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_block_behind_the_nodes_earlier_ones_or_far_from_the_release_time_is_stale() {
    let (net, kms, app, cvms, node, mut forger) = world(1).await;
    let old = forger.record(0);
    // Later, a new boot is judged at a newer block.
    net.mine(10).await;
    cvms[0].boot().await.unwrap();
    let newer = forger.record(1);
    assert!(newer.policy_block_number > old.policy_block_number + CONFIRMATIONS);

    // A release judged at the first, long superseded block (still allowed there).
    let mut stale = old.clone();
    stale.timestamp = newer.timestamp;
    let behind = forger.append(&stale).await;
    // A release judged at the newer block but made an hour and more later.
    let mut late = newer.clone();
    late.timestamp = newer.timestamp + 3700;
    let far = forger.append(&late).await;
    forger.anchor().await;

    let report = audit_one(&net, &kms, &app).await;
    assert_findings!(report, [
            Finding::StalePolicyBlock {
                index: i,
                block: b,
                staleness: Staleness::BehindPrevious { previous, depth: CONFIRMATIONS },
                ..
            },
            Finding::StalePolicyBlock {
                index: j,
                staleness: Staleness::TimeGap { max_secs: 600, record_timestamp, .. },
                ..
            },
        ] if *i == behind && *b == old.policy_block_number
            && *previous == newer.policy_block_number
            && *j == far && *record_timestamp == late.timestamp);
    // The thresholds are the auditor's: a deeper tolerance and a longer age accept both.
    let mut sources = HashMap::from([(node, kms.client(None).await)]);
    let lenient = AuditOptions::default()
        .with_confirmations(100)
        .with_max_policy_age(Duration::from_secs(7200));
    let report = audit_all(&net.client, &mut sources, lenient).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.findings);
    finish(forger, kms).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_by_a_node_removed_from_kmsauth_is_found_even_though_it_is_no_longer_listed() {
    let (net, kms, _, _, node, mut forger) = world(1).await;
    forger.anchor().await;

    net.client.remove_kms_node(node).await.unwrap();
    net.mine(CONFIRMATIONS).await;
    let after = net.client.policy_block().await.unwrap();
    let index = forger.append_judged_at(0, &after).await;

    // The node is not in `kmsNodes` any more; its anchors and removal name it.
    assert!(!net.client.kms_nodes(after).await.unwrap().contains(&node));
    let mut sources = HashMap::from([(node, kms.client(None).await)]);
    let report = audit_all(&net.client, &mut sources, AuditOptions::default())
        .await
        .unwrap();
    assert_findings!(report, [Finding::UnregisteredNode { node: n, index: i, block }]
            if *n == node && *i == index && *block == after.number);
    let summary = report.node(node).unwrap();
    assert!(!summary.registered);
    assert_eq!(summary.verified_size, Some(2));
    finish(forger, kms).await;
}

/// A two-node cluster built as documented (docs/operator.md §5): B onboarded from A,
/// registered after. Returns the devnet, A, B, and a [`Forger`] of B's log; both logs
/// anchored.
async fn onboarded_pair() -> (Devnet, Kms, Kms, Forger) {
    let net = Devnet::new().await;
    let mut cluster = net.start_cluster(2).await;
    let b = cluster.nodes.pop().unwrap();
    let a = cluster.nodes.pop().unwrap();
    cairn_kms::anchor_once(&a.node, 0).await.unwrap();
    // B's log holds its receipt before B serves, and B's anchoring task anchors it at
    // once (an interval's first tick): wait for that anchor rather than racing it with a
    // second transaction from B's account (same nonce: "replacement underpriced").
    let nb = node_of(&b).into_array();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while net.net.latest_anchor_of(nb).await.map(|a| a.tree_size) != Some(1) {
        assert!(
            std::time::Instant::now() < deadline,
            "B never anchored its receipt"
        );
        net.net.mine(1).await;
    }
    let mut forger = Forger::new(&b);
    forger.anchored = 1;
    (net, a, b, forger)
}

/// `audit_all` over the logs of `a` and `b`, keeping every checked record.
async fn audit_pair(net: &Devnet, a: &Kms, b: &Kms) -> AuditReport {
    let mut sources = HashMap::from([
        (node_of(a), a.client(None).await),
        (node_of(b), b.client(None).await),
    ]);
    audit_all(
        &net.client,
        &mut sources,
        AuditOptions::default().collecting_releases(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_onboarded_then_registered_cluster_audits_clean_over_both_logs() {
    let (net, a, b, forger) = onboarded_pair().await;
    let nb = node_of(&b);

    // B's entry 0 is its receipt: A's boot, at a block where B was not registered yet.
    let receipt = forger.record(0);
    assert_eq!(receipt.kind, ReleaseKind::KmsOnboardReceipt);
    assert_eq!(receipt.boot.device_id, a.node.own_evidence().boot.deviceId);
    let at = PolicyBlock {
        number: receipt.policy_block_number,
        hash: receipt.policy_block_hash,
    };
    assert!(!net.client.is_kms_node(nb, at).await.unwrap());

    let report = audit_pair(&net, &a, &b).await;
    assert_eq!(report.findings, vec![]);
    assert!(report.is_clean());
    // A's kms-onboard is a release; B's receipt is counted apart.
    assert_eq!((report.stats.releases, report.stats.receipts), (1, 1));
    let kinds: HashSet<(Address, u64, ReleaseKind, bool)> = report
        .releases
        .iter()
        .map(|r| (r.node, r.index, r.record.kind, r.allowed))
        .collect();
    assert_eq!(
        kinds,
        HashSet::from([
            (node_of(&a), 0, ReleaseKind::KmsOnboard, true),
            (nb, 0, ReleaseKind::KmsOnboardReceipt, true),
        ])
    );
    drop(forger);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_from_a_source_not_allowed_at_its_block_is_not_allowed_and_a_release_by_an_unregistered_node_still_is_found(
) {
    let (net, a, b, mut forger) = onboarded_pair().await;
    let nb = node_of(&b);
    let receipt = forger.record(0);
    let before = PolicyBlock {
        number: receipt.policy_block_number,
        hash: receipt.policy_block_hash,
    };

    // The same record logged as a release (kind 2) at B's pre-registration block: B
    // released while not registered.
    let as_release = forger
        .append(&ReleaseRecord {
            kind: ReleaseKind::KmsOnboard,
            ..receipt.clone()
        })
        .await;
    // A's device is removed; then B logs a receipt from A judged after that.
    net.client
        .remove_kms_device(a.node.own_evidence().boot.deviceId)
        .await
        .unwrap();
    net.mine(CONFIRMATIONS).await;
    let after = net.client.policy_block().await.unwrap();
    let late = forger.append_judged_at(0, &after).await;
    forger.anchor().await;

    let report = audit_pair(&net, &a, &b).await;
    assert_findings!(report, [
        Finding::UnregisteredNode { node: n1, index: i1, block: b1 },
        Finding::NotAllowed { node: n2, index: i2, block: b2, check: Check::KmsDevice, reason },
    ] if *n1 == nb && *i1 == as_release && *b1 == before.number
        && *n2 == nb && *i2 == late && *b2 == after.number && reason == reasons::KMS_DEVICE);
    assert_eq!((report.stats.releases, report.stats.receipts), (2, 2));
    drop(forger);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_record_is_audited_approximately_and_says_so() {
    let (net, kms, app, _, _, mut forger) = world(1).await;
    let mut v1 = forger.record(0);
    assert_eq!(v1.version, RecordVersion::V2);
    v1.version = RecordVersion::V1;
    v1.boot.mr_system = B256::ZERO;
    v1.boot.advisory_ids.clear();
    forger.append(&v1).await;
    forger.anchor().await;

    let report = audit_one(&net, &kms, &app).await;
    assert!(report.is_clean(), "{:?}", report.findings);
    assert_eq!(
        report
            .releases
            .iter()
            .map(|r| (r.exact, r.allowed))
            .collect::<Vec<_>>(),
        vec![(true, true), (false, true)]
    );
    assert_eq!(report.stats.approximate, 1);
    finish(forger, kms).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_policy_calls_are_made_once() {
    let (net, kms, app, cvms, _, mut forger) = world(2).await;
    // The same CVM again, at the same pinned block: the same boot info.
    cvms[0].boot().await.unwrap();
    forger.anchor().await;

    let records: Vec<ReleaseRecord> = (0..3).map(|i| forger.record(i)).collect();
    let distinct: HashSet<(B256, B256)> = records
        .iter()
        .map(|r| (keccak256(boot_info_of(r).abi_encode()), r.policy_block_hash))
        .collect();
    let blocks: HashSet<u64> = records.iter().map(|r| r.policy_block_number).collect();
    assert_eq!(records[0].boot, records[2].boot);
    assert_eq!(
        records[0].policy_block_hash, records[2].policy_block_hash,
        "no block was mined between the two boots"
    );

    let report = audit_one(&net, &kms, &app).await;
    assert!(report.is_clean(), "{:?}", report.findings);
    assert_eq!(report.stats.releases, 3);
    assert_eq!(report.stats.policy_calls, distinct.len() as u64);
    assert_eq!(report.stats.policy_calls, 2);
    assert_eq!(report.stats.header_reads, blocks.len() as u64);
    assert_eq!(report.stats.registration_calls, blocks.len() as u64);
    finish(forger, kms).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_mode_reports_a_bad_release_as_soon_as_it_is_logged() {
    let (net, kms, app, cvms, node, mut forger) = world(1).await;
    forger.anchor().await;
    let mut sources = HashMap::from([(node, kms.client(None).await)]);
    let mut auditor = Auditor::monitor(&net.client, AuditOptions::default());

    assert_eq!(auditor.poll(&mut sources).await.unwrap(), vec![]);
    assert_eq!(auditor.report().stats.releases, 1);
    // New honest releases and anchors: nothing to report, and nothing read twice.
    cvms[0].boot().await.unwrap();
    forger.anchor().await;
    cvms[0].boot().await.unwrap();
    assert_eq!(auditor.poll(&mut sources).await.unwrap(), vec![]);
    let report = auditor.report();
    assert_eq!((report.stats.releases, report.stats.entries), (3, 3));
    assert_eq!(report.node(node).unwrap().verified_size, Some(3));
    assert_eq!(
        report.stats.proofs, 0,
        "a late anchor is met from the kept roots"
    );

    // A revoked compose hash, then a release under it: the next poll reports it.
    let (_, revoked) = release_after_revocation(&net, &app, &cvms[0], &forger).await;
    let found = auditor.poll(&mut sources).await.unwrap();
    assert!(
        matches!(found.as_slice(), [Finding::NotAllowed { index, .. }] if *index == revoked),
        "{found:?}"
    );
    // Reported once.
    assert_eq!(auditor.poll(&mut sources).await.unwrap(), vec![]);

    // The loop: a finding reaches the callback while the monitor runs.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let follow = auditor.follow(
        &mut sources,
        Duration::from_millis(20),
        async {
            let _ = stopped.await;
        },
        move |f: &Finding| {
            let _ = tx.send(f.clone());
        },
    );
    let driver = async {
        // The revoked release again, an hour later: a finding it had not yet.
        let mut stale = forger.record(revoked);
        stale.timestamp += 3700;
        let index = forger.append(&stale).await;
        let seen = tokio::time::timeout(DEADLINE, rx.recv()).await;
        let _ = stop.send(());
        (index, seen)
    };
    let (ended, (index, seen)) = tokio::join!(follow, driver);
    ended.unwrap();
    let seen = seen.expect("a finding within the deadline").unwrap();
    assert!(
        matches!(&seen, Finding::StalePolicyBlock { index: i, staleness: Staleness::TimeGap { .. }, .. } if *i == index),
        "{seen:?}"
    );
    assert_eq!(auditor.report().outcome(), AuditOutcome::Findings);
    finish(forger, kms).await;
}
