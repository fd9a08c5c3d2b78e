//! `verify_receipt`: a release receipt checked as an auditor would — and every way a
//! forged or mismatched receipt is refused, each by its own typed error.

use cairn_onchain::alloy::primitives::{Address, B256};
use cairn_onchain::testing::{LogLie, MemoryLog};
use cairn_onchain::{recorded_boot_info, verify_receipt, Check, PolicyBlock, ReceiptError};
use cairn_protocol::api::Receipt;
use cairn_tlog::{
    AppBootInfo, Checkpoint, CheckpointSigner, RecordVersion, ReleaseKind, ReleaseRecord,
};

use crate::common::{boot, devnet, Devnet, COMPOSE};

fn node_key(byte: u8) -> k256::ecdsa::SigningKey {
    k256::ecdsa::SigningKey::from_bytes((&[byte; 32]).into()).unwrap()
}

/// A node (key 0x42, registered) that logged one app-key release of `app_id` at `at`
/// after `others` releases of another app; its receipt and log.
struct Logged {
    receipt: Receipt,
    log: MemoryLog,
    signer: CheckpointSigner,
}

impl Logged {
    /// `verify_receipt` of this receipt for `app_id` and `kind` against `net`'s chain and
    /// this log.
    async fn verify(
        &mut self,
        net: &Devnet,
        app_id: Address,
        kind: ReleaseKind,
    ) -> Result<ReleaseRecord, ReceiptError> {
        verify_receipt(&net.client, &mut self.log, &self.receipt, app_id, kind).await
    }
}

fn logged(net: &Devnet, app_id: Address, at: PolicyBlock, key: u8) -> Logged {
    let signer = CheckpointSigner::new("cairn-kms/test", node_key(key)).unwrap();
    let b = boot(app_id, COMPOSE);
    let record = |app: Address| ReleaseRecord {
        version: RecordVersion::V2,
        kind: ReleaseKind::AppKey,
        boot: AppBootInfo {
            app_id: app,
            ..recorded_boot_info(&b)
        },
        key_generation: 1,
        chain_id: net.chain_id(),
        policy_block_number: at.number,
        policy_block_hash: at.hash,
        quote_hash: B256::repeat_byte(1),
        client_key_hash: B256::repeat_byte(2),
        kms_node: signer.address(),
        timestamp: 1_700_000_000,
    };
    let log = MemoryLog::new(
        [
            Address::repeat_byte(0x99),
            app_id,
            Address::repeat_byte(0x98),
        ]
        .map(|app| record(app).encode().unwrap()),
    );
    let tree = log.tree();
    let cp = Checkpoint::new("cairn-kms/test", tree.size(), tree.root()).unwrap();
    let receipt = Receipt {
        log_index: 1,
        checkpoint: signer.sign(cp).unwrap().to_string(),
        policy_block_number: at.number,
        policy_block_hash: at.hash.0,
    };
    Logged {
        receipt,
        log,
        signer,
    }
}

#[tokio::test]
async fn an_honest_receipt_verifies_and_every_forgery_is_refused_by_its_check() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    let node = CheckpointSigner::new("cairn-kms/test", node_key(0x42))
        .unwrap()
        .address();
    net.client.add_kms_node(node).await.unwrap();
    let at = net.client.policy_block().await.unwrap();
    let app_id = app.app_id();

    let mut l = logged(&net, app_id, at, 0x42);
    assert_eq!(l.signer.address(), node);
    let record = l.verify(&net, app_id, ReleaseKind::AppKey).await.unwrap();
    assert_eq!(record.boot.app_id, app_id);
    assert_eq!(record.kms_node, node);

    // Another app's receipt, or another kind of release.
    let err = l
        .verify(&net, Address::repeat_byte(0x77), ReleaseKind::AppKey)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReceiptError::Mismatch { field: "app_id" }),
        "{err:?}"
    );
    let err = l
        .verify(&net, app_id, ReleaseKind::SignCert)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReceiptError::Mismatch { field: "kind" }),
        "{err:?}"
    );

    // An index outside the signed tree.
    let mut r = l.receipt.clone();
    r.log_index = 3;
    let err = verify_receipt(&net.client, &mut l.log, &r, app_id, ReleaseKind::AppKey)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReceiptError::OutsideCheckpoint { index: 3, size: 3 }),
        "{err:?}"
    );

    // A policy block that is not the chain's.
    let mut r = l.receipt.clone();
    r.policy_block_hash[0] ^= 1;
    let err = verify_receipt(&net.client, &mut l.log, &r, app_id, ReleaseKind::AppKey)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReceiptError::PolicyBlockMismatch { actual: Some(h), .. } if h == at.hash),
        "{err:?}"
    );

    // An entry that is not the one the signed root commits to.
    l.log.lie = LogLie::TamperEntries;
    let err = l
        .verify(&net, app_id, ReleaseKind::AppKey)
        .await
        .unwrap_err();
    assert!(matches!(err, ReceiptError::NotIncluded { .. }), "{err:?}");

    // A checkpoint signed by a key the chain does not list as a KMS node.
    let mut rogue = logged(&net, app_id, at, 0x43);
    let err = rogue
        .verify(&net, app_id, ReleaseKind::AppKey)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReceiptError::UnregisteredSigner { number } if number == at.number),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_receipt_for_a_release_the_policy_did_not_allow_is_refused_with_the_reason() {
    let net = devnet(0).await;
    let app = net.app_with_compose().await;
    app.remove_compose_hash(COMPOSE).await.unwrap();
    let node = CheckpointSigner::new("cairn-kms/test", node_key(0x42))
        .unwrap()
        .address();
    net.client.add_kms_node(node).await.unwrap();
    let at = net.client.policy_block().await.unwrap();
    let mut l = logged(&net, app.app_id(), at, 0x42);
    let err = l
        .verify(&net, app.app_id(), ReleaseKind::AppKey)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ReceiptError::NotAllowed { check: Check::ComposeHash, reason }
            if reason == cairn_onchain::reasons::COMPOSE_HASH),
        "{err:?}"
    );
}
