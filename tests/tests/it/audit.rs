//! The auditing light client (`cairn_onchain::audit`) against the real KMS log and
//! anvil: the log's integrity (a clean audit after allowed boots and anchors; a forked
//! entry, forked proofs, a missing entry from a client's receipt, an anchor rollback in
//! the events read, a `from_block` start) and the outcome as exit codes. The releases'
//! policy (revocation, stale blocks, unregistered nodes, follow mode) is in
//! `audit_policy`.

use std::collections::HashMap;

use cairn_e2e::*;
use cairn_kms_client::KmsConnection;
use cairn_onchain::alloy::primitives::{Address, B256};
use cairn_onchain::testing::{Behaviour, RpcProxy, FIXTURE_MAX_HEAD_AGE};
use cairn_onchain::{
    audit_all, audit_app, reasons, AuditOptions, AuditOutcome, AuditReport, BlockRange,
    ChainClient, ChainConfig, Check, Finding, LogSource, PolicyBlock, SourceError, TreeHead,
};
use cairn_protocol::api::{
    ConsistencyProofResponse, InclusionProofResponse, LogEntriesResponse, LogEntry, Receipt,
};
use cairn_tlog::{Checkpoint, MemoryTree, ReleaseRecord};

/// How a [`Liar`] source deviates from the real KMS.
#[derive(Clone)]
pub enum Lie {
    /// Serve a different (valid) record at this index: a fork at the same size.
    ForkEntry(u64),
    /// Flip a byte of every non-empty consistency proof.
    ForkProofs,
    /// Both: a forked entry and forked consistency proofs.
    ForkEntryAndProofs(u64),
    /// Serve the record at this index with its policy block replaced by `at`.
    EarlierPolicyBlock(u64, PolicyBlock),
    /// Serve an older signed checkpoint (of `size`) and nothing beyond it: the log
    /// rolled back to hide what came after.
    RolledBack { checkpoint: String, size: u64 },
}

/// A log source that forwards to the real KMS and lies as told.
pub struct Liar {
    pub inner: KmsConnection,
    pub lie: Lie,
}

impl LogSource for Liar {
    async fn checkpoint(&mut self) -> Result<String, SourceError> {
        match &self.lie {
            Lie::RolledBack { checkpoint, .. } => Ok(checkpoint.clone()),
            _ => self.inner.checkpoint().await,
        }
    }

    async fn entries(&mut self, start: u64, end: u64) -> Result<LogEntriesResponse, SourceError> {
        if let Lie::RolledBack { size, .. } = self.lie {
            if end > size {
                return Err(SourceError(format!(
                    "bad_request: end {end} > log size {size}"
                )));
            }
        }
        let mut page = self.inner.entries(start, end).await?;
        for (i, entry) in page.entries.iter_mut().enumerate() {
            let index = page.start + i as u64;
            let mut record = ReleaseRecord::decode(&entry.0).expect("a KMS record");
            match self.lie {
                Lie::ForkEntry(at) | Lie::ForkEntryAndProofs(at) if at == index => {
                    record.boot.device_id = B256::repeat_byte(0x77);
                }
                Lie::EarlierPolicyBlock(at, block) if at == index => {
                    record.policy_block_number = block.number;
                    record.policy_block_hash = block.hash;
                }
                _ => continue,
            }
            *entry = LogEntry(record.encode().expect("encode"));
        }
        Ok(page)
    }

    async fn inclusion_proof(
        &mut self,
        index: u64,
        size: u64,
    ) -> Result<InclusionProofResponse, SourceError> {
        self.inner.inclusion_proof(index, size).await
    }

    async fn consistency_proof(
        &mut self,
        first: u64,
        second: u64,
    ) -> Result<ConsistencyProofResponse, SourceError> {
        let mut proof = self.inner.consistency_proof(first, second).await?;
        if let (Lie::ForkProofs | Lie::ForkEntryAndProofs(_), Some(h)) =
            (&self.lie, proof.hashes.first_mut())
        {
            h.0[0] ^= 1;
        }
        Ok(proof)
    }
}

/// A [`Liar`] over a fresh connection to `kms`.
pub async fn liar(kms: &Kms, lie: Lie) -> Liar {
    Liar {
        inner: kms.client(None).await,
        lie,
    }
}

/// `audit_all` of the cluster with `source` as the only log source, for `node`.
pub async fn audit_node<S: LogSource + Send>(
    net: &Devnet,
    node: Address,
    source: S,
    options: AuditOptions,
) -> cairn_onchain::Result<AuditReport> {
    let mut sources = HashMap::from([(node, source)]);
    audit_all(&net.client, &mut sources, options).await
}

/// [`audit_node`] of `kms`, its log read through a public connection to it.
pub async fn audit_kms(
    net: &Devnet,
    kms: &Kms,
    options: AuditOptions,
) -> cairn_onchain::Result<AuditReport> {
    audit_node(net, node_of(kms), kms.client(None).await, options).await
}

/// Every checkpoint anchored on the chain so far.
async fn all_anchors(
    net: &Devnet,
) -> Vec<cairn_onchain::Logged<cairn_onchain::KmsAuth::CheckpointAnchored>> {
    let range = BlockRange::new(0, net.head_number().await);
    net.client.anchors(range).await.unwrap()
}

/// The node address of `kms`.
pub fn node_of(kms: &Kms) -> Address {
    Address::from(kms.node.address())
}

/// Four allowed boots of one app; anchors after the second and the third boot. Returns
/// the devnet, the KMS, the app id, a policy block from before any compose hash was
/// allowed, and the receipts of the four boots.
pub async fn scenario() -> (Devnet, Kms, Address, PolicyBlock, Vec<Receipt>) {
    let (net, kms, app) = Devnet::with_kms_and_app(None).await;
    let before = net.client.policy_block().await.unwrap();
    let cvms: Vec<Cvm> = (0..4u8)
        .map(|i| Cvm::new(&kms.url(), app.app_id(), 0x50 + i, "v1"))
        .collect();
    for cvm in &cvms {
        app.add_compose_hash(cvm.compose_hash()).await.unwrap();
    }
    net.mine(CONFIRMATIONS).await;
    let mut anchored = 0;
    let mut receipts = Vec::new();
    for (i, cvm) in cvms.iter().enumerate() {
        receipts.push(cvm.boot().await.unwrap().state.secrets.receipt.clone());
        if i == 1 || i == 2 {
            anchored = cairn_kms::anchor_once(&kms.node, anchored).await.unwrap();
        }
    }
    assert_eq!(anchored, 3);
    (net, kms, app.app_id(), before, receipts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_of_an_honest_log_finds_every_release_logged_and_allowed_exactly() {
    let (net, kms, app_id, _, receipts) = scenario().await;
    let node = node_of(&kms);

    // One app, one node: clean, every release logged, allowed, exact (version 2).
    let mut source = kms.client(None).await;
    let report = audit_app(&net.client, &mut source, node, app_id)
        .await
        .unwrap();
    assert_eq!(report.findings, vec![]);
    assert!(report.is_clean());
    assert_eq!(report.outcome(), AuditOutcome::Clean);
    let summary = report.node(node).unwrap();
    assert_eq!(summary.anchors, 2);
    assert_eq!(summary.verified_size, Some(4));
    assert!(summary.registered);
    assert_eq!(report.releases.len(), 4);
    assert!(report
        .releases
        .iter()
        .all(|r| r.logged && r.allowed && r.exact));
    assert_eq!(
        report.releases.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    // Streaming met every anchor and the checkpoint: no proof was asked for.
    assert_eq!(report.stats.proofs, 0);
    assert_eq!(report.stats.entries, 4);

    // Another app has no releases here.
    let other = audit_app(&net.client, &mut source, node, Address::repeat_byte(9))
        .await
        .unwrap();
    assert!(other.is_clean());
    assert!(other.releases.is_empty());

    // The whole cluster, with the receipts the guests got: clean.
    let report = audit_kms(&net, &kms, AuditOptions::default().with_receipts(receipts))
        .await
        .unwrap();
    assert_eq!(report.findings, vec![]);
    assert_eq!(report.nodes.len(), 1);
    assert_eq!(report.stats.releases, 4);
    assert_eq!(AuditOutcome::of(&Ok(report)).exit_code(), 0);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_log_is_found_and_each_forked_entry_named() {
    let (net, kms, app_id, before, _) = scenario().await;
    let node = node_of(&kms);

    // A different entry at the same size: the anchors are not met, proofs locate it.
    let mut l = liar(&kms, Lie::ForkEntry(1)).await;
    let report = audit_app(&net.client, &mut l, node, app_id).await.unwrap();
    assert_findings!(report, [Finding::NotLogged { node: n, index: 1, detail }] if *n == node && detail.contains("root"));
    assert!(!report.releases[1].logged);
    assert!(report.releases[0].logged && report.releases[2].logged);
    assert_eq!(report.outcome(), AuditOutcome::Findings);
    assert_eq!(report.outcome().exit_code(), 1);

    // Forked consistency proofs alone change nothing: the served entries meet every
    // anchor, so no proof is needed (and none is asked for).
    let mut l = liar(&kms, Lie::ForkProofs).await;
    let report = audit_app(&net.client, &mut l, node, app_id).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.findings);
    assert_eq!(report.stats.proofs, 0);

    // A forked entry with forked proofs: the anchors and the checkpoint do not chain;
    // entries are then proven against the last anchor only (size 3). The anchors are
    // settled while their block range is read, the served checkpoint after.
    let mut l = liar(&kms, Lie::ForkEntryAndProofs(1)).await;
    let report = audit_app(&net.client, &mut l, node, app_id).await.unwrap();
    assert_findings!(
        report,
        [
            Finding::ForkedAnchors {
                first: 2,
                second: 3,
                ..
            },
            Finding::NotLogged { index: 1, .. },
            Finding::CheckpointNotConsistent {
                anchor_size: 3,
                checkpoint_size: 4,
                ..
            },
        ]
    );
    assert_eq!(report.node(node).unwrap().verified_size, Some(3));
    assert_eq!(
        report.releases.iter().map(|r| r.logged).collect::<Vec<_>>(),
        vec![true, false, true, false]
    );

    // A record claiming a policy block from before its compose hash was allowed: not
    // logged, behind the node's earlier policy blocks, and denied at that block.
    let mut l = liar(&kms, Lie::EarlierPolicyBlock(2, before)).await;
    let report = audit_app(&net.client, &mut l, node, app_id).await.unwrap();
    assert_findings!(report, [
            Finding::StalePolicyBlock { index: 2, .. },
            Finding::NotAllowed { index: 2, check: Check::ComposeHash, reason, block, .. },
            Finding::NotLogged { index: 2, .. },
        ] if reason == reasons::COMPOSE_HASH && *block == before.number);
    assert!(!report.releases[2].allowed);

    // The same record with a block hash that is not the chain's: a policy-block finding.
    let forged = PolicyBlock {
        number: before.number,
        hash: B256::repeat_byte(0xee),
    };
    let mut l = liar(&kms, Lie::EarlierPolicyBlock(0, forged)).await;
    let report = audit_app(&net.client, &mut l, node, app_id).await.unwrap();
    assert_findings!(report, [
            Finding::PolicyBlockMismatch { index: 0, number, actual: Some(h), .. },
            Finding::NotLogged { index: 0, .. },
        ] if *number == before.number && *h == before.hash);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_a_client_holds_a_receipt_for_but_the_log_hides_is_a_missing_entry() {
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let node = node_of(&kms);
    let (_app, cvms) = net.allowed_cvms(&kms, 0x60..0x60 + 3, "v1").await;
    let mut receipts = Vec::new();
    for cvm in &cvms[..2] {
        receipts.push(cvm.boot().await.unwrap().state.secrets.receipt.clone());
    }
    cairn_kms::anchor_once(&kms.node, 0).await.unwrap();
    let old = kms.client(None).await.checkpoint().await.unwrap();
    // The third release: its receipt's checkpoint has size 3.
    let held = cvms[2].boot().await.unwrap().state.secrets.receipt.clone();
    assert_eq!(held.log_index, 2);
    receipts.push(held);

    // Honest: every receipt is in the log.
    let mut sources = HashMap::from([(node, kms.client(None).await)]);
    let options = AuditOptions::default().with_receipts(receipts.clone());
    let report = audit_all(&net.client, &mut sources, options.clone())
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.findings);

    // The node serves its log as it was before the third release (a rollback, with an
    // older checkpoint it really signed): consistent with its anchor, but the client's
    // receipt proves an entry the log no longer has.
    let report = audit_node(
        &net,
        node,
        liar(
            &kms,
            Lie::RolledBack {
                checkpoint: old,
                size: 2,
            },
        )
        .await,
        options.clone(),
    )
    .await
    .unwrap();
    assert_findings!(report, [Finding::MissingEntry { node: n, index: 2, checkpoint_size: 3, .. }] if *n == node);
    assert_eq!(report.outcome(), AuditOutcome::Findings);

    // The node signed, for this client, a tree whose entry 2 is not the one its log has
    // (a split view): the receipt's checkpoint is not the log's at its size.
    let origin = receipts[2].checkpoint.lines().next().unwrap().to_owned();
    let mut tree = MemoryTree::new();
    for i in 0..2 {
        tree.push(&kms.node.log().entry(i).unwrap());
    }
    tree.push(b"another release, shown to this client only");
    let split = kms
        .node
        .checkpoint_signer()
        .sign(Checkpoint::new(&origin, 3, tree.root()).unwrap())
        .unwrap();
    let mut split_view = receipts.clone();
    split_view[2].checkpoint = split.to_string();
    let report = audit_kms(
        &net,
        &kms,
        AuditOptions::default().with_receipts(split_view),
    )
    .await
    .unwrap();
    assert_findings!(report, [Finding::MissingEntry { index: 2, checkpoint_size: 3, detail, .. }] if detail.contains("another log"));

    // By contrast, a source serving another entry at the receipt's index: the client's
    // checkpoint is the node's (its entry is in the committed tree); the served entry
    // is not logged.
    let report = audit_node(&net, node, liar(&kms, Lie::ForkEntry(2)).await, options)
        .await
        .unwrap();
    assert_findings!(report, [Finding::NotLogged { index: 2, .. }]);
    kms.stop().await;
}

/// A reader of `net` whose RPC goes through `proxy`.
async fn client_through(net: &Devnet, proxy: &RpcProxy) -> ChainClient {
    let config = ChainConfig::new(proxy.url(), net.chain_id(), net.kms_auth())
        .with_confirmations(CONFIRMATIONS)
        .with_max_head_age(FIXTURE_MAX_HEAD_AGE);
    ChainClient::connect(&config, None).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anchor_rollback_in_the_events_read_is_found() {
    let (net, kms, app_id, _, _) = scenario().await;
    let node = node_of(&kms);
    let anchors = all_anchors(&net).await;
    assert_eq!(anchors.len(), 2);
    let first_root = anchors[0].event.rootHash;

    // KmsAuth forbids shrinking and re-anchoring a size with another root, so only a
    // lying RPC shows one: the audit must not take it for history.
    let proxy = RpcProxy::start(net.endpoint()).await;
    let chain = client_through(&net, &proxy).await;
    for (by, size) in [(1u64, 1u64), (0, 2)] {
        proxy.set(Behaviour::RewindAnchors(by));
        let mut source = kms.client(None).await;
        let report = audit_app(&chain, &mut source, node, app_id).await.unwrap();
        assert_findings!(report, [Finding::AnchorRollback { node: n, previous, anchored, block }]
                if *n == node
                    && *previous == TreeHead { size: 2, root: first_root }
                    && anchored.size == size
                    && anchored.root != first_root
                    && *block == anchors[1].block_number);
        // The rest still checks out against the real anchor and the checkpoint.
        assert_eq!(report.releases.len(), 4);
        assert!(report.releases.iter().all(|r| r.logged && r.allowed));
    }
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_from_a_block_reads_only_what_came_after_the_anchor_before_it() {
    let (net, kms, _, _, _) = scenario().await;
    let node = node_of(&kms);
    let anchors = all_anchors(&net).await;
    // From just after the first anchor (size 2): entries 2 and 3 only, started from
    // the anchored tree by the last leaf's inclusion proof.
    let from = anchors[0].block_number + 1;
    let report = audit_kms(&net, &kms, AuditOptions::default().from_block(from))
        .await
        .unwrap();
    assert_eq!(report.findings, vec![]);
    let summary = report.node(node).unwrap();
    assert_eq!(summary.start, 2);
    assert_eq!(summary.anchors, 1);
    assert_eq!(summary.verified_size, Some(4));
    assert_eq!(report.stats.entries, 2);
    assert_eq!(report.stats.releases, 2);
    assert_eq!(report.stats.proofs, 1);

    // A source whose proofs lie cannot start there: the base entry is not proven.
    let report = audit_node(
        &net,
        node,
        liar(&kms, Lie::ForkEntry(1)).await,
        AuditOptions::default().from_block(from),
    )
    .await
    .unwrap();
    assert_findings!(report, [Finding::NotLogged { index: 1, .. }]);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outcome_is_clean_findings_or_could_not_audit() {
    let (mut net, kms, _, _, _) = scenario().await;
    let node = node_of(&kms);

    let clean = audit_kms(&net, &kms, AuditOptions::default()).await;
    assert_eq!(AuditOutcome::of(&clean), AuditOutcome::Clean);
    assert_eq!(AuditOutcome::of(&clean).exit_code(), 0);

    let forked = audit_node(
        &net,
        node,
        liar(&kms, Lie::ForkEntry(0)).await,
        AuditOptions::default(),
    )
    .await;
    assert_eq!(AuditOutcome::of(&forked), AuditOutcome::Findings);
    assert_eq!(AuditOutcome::of(&forked).exit_code(), 1);

    // No way to read the node's log: nothing wrong was seen, nothing was proven.
    let mut none: HashMap<Address, KmsConnection> = HashMap::new();
    let unread = audit_all(&net.client, &mut none, AuditOptions::default()).await;
    assert!(
        matches!(unread.as_ref().unwrap().findings.as_slice(), [Finding::NoSource { node: n }] if *n == node)
    );
    assert_eq!(AuditOutcome::of(&unread), AuditOutcome::CouldNotAudit);
    assert_eq!(AuditOutcome::of(&unread).exit_code(), 2);

    // No chain: an error, never a clean report.
    net.net.chain.kill_anvil();
    let failed = audit_kms(&net, &kms, AuditOptions::default()).await;
    assert!(failed.is_err());
    assert_eq!(AuditOutcome::of(&failed), AuditOutcome::CouldNotAudit);
    assert_eq!(AuditOutcome::of(&failed).exit_code(), 2);
    kms.stop().await;
}
