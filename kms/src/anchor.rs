//! Checkpoint anchoring (DESIGN.md §6): every `anchor_interval`, if the log grew since
//! the last anchor, post `(treeSize, rootHash)` to `KmsAuth.anchorCheckpoint` from the
//! node's own address. Failures are logged and retried at the next tick; shutdown-aware.

use std::sync::Arc;

use cairn_onchain::alloy::primitives::{Address, B256};
use cairn_onchain::{ChainClient, PolicyBlock};
use cairn_tlog::Log;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::node::Node;

/// Startup check: the local log must extend the checkpoint `node` last anchored on chain
/// (as of `at`): at least as large, with the same root at the anchored size. A log that
/// was lost, rolled back or forked is an error (logged) and the node refuses to serve.
pub async fn check_log_extends_anchor(
    chain: &ChainClient,
    log: &Log,
    node: [u8; 20],
    at: PolicyBlock,
) -> Result<()> {
    let Some(anchor) = chain.latest_anchor(Address::from(node), at).await? else {
        return Ok(());
    };
    let local_size = log.size();
    let refuse = |reason: String| {
        let e = Error::LogBehindAnchor {
            local_size,
            anchored_size: anchor.tree_size,
            reason,
        };
        tracing::error!(error = %e, "local log does not match the on-chain anchor");
        Err(e)
    };
    if local_size < anchor.tree_size {
        return refuse("the local log is smaller than the anchored tree".into());
    }
    let root = log.root_at(anchor.tree_size)?;
    if root.0 != anchor.root_hash.0 {
        return refuse(format!(
            "root at the anchored size is 0x{}, the anchor says {}",
            hex::encode(root.0),
            anchor.root_hash
        ));
    }
    Ok(())
}

/// Anchor once if the log is larger than `anchored`; returns the size now anchored.
pub async fn anchor_once(node: &Node, anchored: u64) -> Result<u64, cairn_onchain::Error> {
    let (size, root) = node.log().head();
    if size <= anchored {
        return Ok(anchored);
    }
    node.chain()
        .anchor_checkpoint(size, B256::from(root.0))
        .await?;
    tracing::info!(size, root = %root, "checkpoint anchored");
    Ok(size)
}

/// The anchoring loop; ends when `stop` turns true (or its sender is dropped).
pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let mut anchored = 0u64;
    // The on-chain anchor, if any, is where this node left off.
    if let Ok(at) = node.chain().policy_block().await {
        let me = cairn_onchain::alloy::primitives::Address::from(node.address());
        if let Ok(Some(a)) = node.chain().latest_anchor(me, at).await {
            anchored = a.tree_size;
        }
    }
    let mut tick = tokio::time::interval(node.anchor_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = stop.changed() => {
                if r.is_err() || *stop.borrow() {
                    return;
                }
                continue;
            }
        }
        match anchor_once(&node, anchored).await {
            Ok(size) => anchored = size,
            Err(e) => tracing::warn!(error = %e, "anchoring failed; will retry"),
        }
    }
}
