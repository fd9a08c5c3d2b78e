//! The auditing light client (`cairn_onchain::audit`) against the real KMS log: a clean
//! audit after allowed boots and two anchors, and the findings when the log source lies
//! (a forked entry, forked proofs, a record pointing at a block before its compose hash
//! was allowed).

use cairn_e2e::*;
use cairn_kms_client::KmsConnection;
use cairn_onchain::alloy::primitives::{Address, B256};
use cairn_onchain::{audit_app, reasons, Finding, LogSource, PolicyBlock, SourceError};
use cairn_protocol::api::{
    ConsistencyProofResponse, InclusionProofResponse, LogEntriesResponse, LogEntry,
};
use cairn_tlog::ReleaseRecord;

/// How a [`Liar`] source deviates from the real KMS.
#[derive(Clone, Copy)]
enum Lie {
    /// Serve a different (valid) record at this index: a fork at the same size.
    ForkEntry(u64),
    /// Flip a byte of every non-empty consistency proof.
    ForkProofs,
    /// Serve the record at this index with its policy block replaced by `at`.
    EarlierPolicyBlock(u64, PolicyBlock),
}

/// A log source that forwards to the real KMS and lies as told.
struct Liar {
    inner: KmsConnection,
    lie: Lie,
}

impl LogSource for Liar {
    async fn checkpoint(&mut self) -> Result<String, SourceError> {
        self.inner.checkpoint().await
    }

    async fn entries(&mut self, start: u64, end: u64) -> Result<LogEntriesResponse, SourceError> {
        let mut page = self.inner.entries(start, end).await?;
        for (i, entry) in page.entries.iter_mut().enumerate() {
            let index = page.start + i as u64;
            let mut record = ReleaseRecord::decode(&entry.0).unwrap();
            match self.lie {
                Lie::ForkEntry(at) if at == index => {
                    record.device_id = B256::repeat_byte(0x77);
                }
                Lie::EarlierPolicyBlock(at, block) if at == index => {
                    record.policy_block_number = block.number;
                    record.policy_block_hash = block.hash;
                }
                _ => continue,
            }
            *entry = LogEntry(record.encode().unwrap());
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
        if let (Lie::ForkProofs, Some(h)) = (self.lie, proof.hashes.first_mut()) {
            h.0[0] ^= 1;
        }
        Ok(proof)
    }
}

/// Four allowed boots of one app; anchors after the second and the third boot. Returns
/// the devnet, the KMS, the app id and a policy block from before any compose hash was
/// allowed.
async fn scenario() -> (Devnet, Kms, Address, PolicyBlock, Vec<Cvm>) {
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let app = net.deploy_app(net.owner, None).await;
    let before = net.client.policy_block().await.unwrap();
    let cvms: Vec<Cvm> = (0..4u8)
        .map(|i| Cvm::new(&kms.url(), app.app_id(), 0x50 + i, "v1"))
        .collect();
    for cvm in &cvms {
        app.add_compose_hash(cvm.compose_hash()).await.unwrap();
    }
    net.mine(CONFIRMATIONS).await;
    let mut anchored = 0;
    for (i, cvm) in cvms.iter().enumerate() {
        cvm.boot().await.unwrap();
        if i == 1 || i == 2 {
            anchored = cairn_kms::anchor_once(&kms.node, anchored).await.unwrap();
        }
    }
    assert_eq!(anchored, 3);
    (net, kms, app.app_id(), before, cvms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_of_an_honest_log_finds_every_release_logged_and_allowed_and_lies_are_found() {
    let (net, kms, app_id, before, _cvms) = scenario().await;
    let node = Address::from(kms.node.address());

    // Honest source: clean.
    let mut source = kms.client(None).await;
    let report = audit_app(&net.client, &mut source, node, app_id)
        .await
        .unwrap();
    assert_eq!(report.findings, vec![]);
    assert!(report.is_clean());
    assert_eq!(report.anchors, 2);
    assert_eq!(report.verified_size, Some(4));
    assert_eq!(report.releases.len(), 4);
    assert!(report.releases.iter().all(|r| r.logged && r.allowed));
    assert_eq!(
        report.releases.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );

    // Another app has no releases here.
    let other = audit_app(&net.client, &mut source, node, Address::repeat_byte(9))
        .await
        .unwrap();
    assert!(other.is_clean());
    assert!(other.releases.is_empty());

    // A different entry at the same size: not provably logged.
    let mut liar = Liar {
        inner: kms.client(None).await,
        lie: Lie::ForkEntry(1),
    };
    let report = audit_app(&net.client, &mut liar, node, app_id)
        .await
        .unwrap();
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    assert!(
        matches!(&report.findings[0], Finding::NotLogged { index: 1, detail } if detail.contains("root")),
        "{:?}",
        report.findings
    );
    assert!(!report.releases[1].logged);

    // Forked consistency proofs: the anchors and the checkpoint do not chain; releases
    // are then checked against the last anchor only (size 3).
    let mut liar = Liar {
        inner: kms.client(None).await,
        lie: Lie::ForkProofs,
    };
    let report = audit_app(&net.client, &mut liar, node, app_id)
        .await
        .unwrap();
    assert!(
        matches!(
            report.findings.as_slice(),
            [
                Finding::ForkedAnchors {
                    first: 2,
                    second: 3,
                    ..
                },
                Finding::CheckpointNotConsistent {
                    anchor_size: 3,
                    checkpoint_size: 4,
                    ..
                }
            ]
        ),
        "{:?}",
        report.findings
    );
    assert_eq!(report.verified_size, Some(3));
    assert_eq!(report.releases.len(), 3);

    // A record claiming a policy block from before its compose hash was allowed: the
    // re-evaluation at that block denies it, independently of the (failing) inclusion.
    let mut liar = Liar {
        inner: kms.client(None).await,
        lie: Lie::EarlierPolicyBlock(2, before),
    };
    let report = audit_app(&net.client, &mut liar, node, app_id)
        .await
        .unwrap();
    assert!(
        matches!(
            report.findings.as_slice(),
            [
                Finding::NotLogged { index: 2, .. },
                Finding::NotAllowed { index: 2, reason }
            ] if reason == reasons::COMPOSE_HASH
        ),
        "{:?}",
        report.findings
    );
    assert!(!report.releases[2].allowed);

    // The same record with a block hash that is not the chain's: a policy-block finding.
    let forged = PolicyBlock {
        number: before.number,
        hash: B256::repeat_byte(0xee),
    };
    let mut liar = Liar {
        inner: kms.client(None).await,
        lie: Lie::EarlierPolicyBlock(0, forged),
    };
    let report = audit_app(&net.client, &mut liar, node, app_id)
        .await
        .unwrap();
    assert!(
        matches!(
            report.findings.as_slice(),
            [
                Finding::NotLogged { index: 0, .. },
                Finding::PolicyBlockMismatch { index: 0, number, actual: Some(h), .. }
            ] if *number == before.number && *h == before.hash
        ),
        "{:?}",
        report.findings
    );
    kms.stop().await;
}
