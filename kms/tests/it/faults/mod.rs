//! Fault tests (issue 14, "Fault tests"; docs/reliability.md lists each with its outcome):
//! what a KMS node, a cluster of them and their callers survive, and how they fail
//! closed and recover by themselves.
//!
//! - `kill`: `kill -9` one of three `cairn-kms` processes under a 64-client load;
//! - `crash`: `kill -9` a node mid-append, again and again;
//! - `chain_outage`: the chain RPC down, stalled, and back;
//! - `reorg`: a reorg deeper than the confirmation depth;
//! - `disk_full`: no space left under the log, then space again;
//! - `clock_skew`: guest and KMS clocks apart.
//!
//! Every test is bounded (deadlines, never a bare wait) and hermetic (its own anvil,
//! free ports, temp dirs). Shared here: the audit of one node's log for the world's app.

mod chain_outage;
mod clock_skew;
mod crash;
mod disk_full;
mod kill;
mod reorg;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cairn_kms_client::KmsConnection;
use cairn_onchain::alloy::primitives::Address;
use cairn_onchain::{audit_app, verify_receipt, AuditReport};
use cairn_protocol::api::Receipt;
use cairn_tlog::ReleaseKind;

use crate::world::{Running, World};

/// The `cairn-kms` binary of this build.
pub const BIN: &str = env!("CARGO_BIN_EXE_cairn-kms");

/// A hang detector for whole phases of a fault test (never a speed assertion).
pub const PHASE_DEADLINE: Duration = Duration::from_secs(120);

/// Mine a block at a time until the chain holds an anchor of `kms`'s whole log (its size
/// now) and `also()` holds; `what` names the wait if [`PHASE_DEADLINE`] passes first.
pub async fn until_log_anchored(w: &World, kms: &Running, what: &str, also: impl Fn() -> bool) {
    let size = kms.node.log().size();
    let deadline = Instant::now() + PHASE_DEADLINE;
    loop {
        w.net.mine(1).await;
        let anchored = w
            .latest_anchor_of(kms.node.address())
            .await
            .map_or(0, |a| a.tree_size);
        if anchored >= size && also() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Audit the world's app on `node` through `source` with the light client: the report
/// must be clean (anchors consistent, checkpoint extends the last anchor, every release
/// logged and allowed at its block), and every receipt in `held` must verify
/// (`verify_receipt`) and be one of the audited releases. Returns the report.
pub async fn audit_node(
    w: &World,
    source: &mut KmsConnection,
    node: [u8; 20],
    held: &[&Receipt],
) -> AuditReport {
    let app = Address::from(w.app_id.0);
    let report = audit_app(&w.client, source, Address::from(node), app)
        .await
        .expect("the chain answers the audit");
    assert!(
        report.is_clean(),
        "audit of node 0x{} found: {:?}",
        hex::encode(node),
        report.findings
    );
    let audited: BTreeSet<u64> = report
        .releases
        .iter()
        .filter(|r| r.record.kind == ReleaseKind::AppKey)
        .inspect(|r| assert!(r.logged && r.allowed, "{r:?}"))
        .map(|r| r.index)
        .collect();
    for receipt in held {
        let record = verify_receipt(&w.client, source, receipt, app, ReleaseKind::AppKey)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "receipt {} of 0x{}: {e}",
                    receipt.log_index,
                    hex::encode(node)
                )
            });
        assert_eq!(record.kms_node.into_array(), node);
        assert!(
            audited.contains(&receipt.log_index),
            "receipt {} is not among the audited releases",
            receipt.log_index
        );
    }
    report
}
