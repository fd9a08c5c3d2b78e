//! The tlog crash test at the service level: a `cairn-kms` process under a release load
//! is killed with SIGKILL again and again (appends and anchoring transactions in
//! flight). After each kill it restarts by itself from its data directory — which it
//! refuses unless its log extends the checkpoint it anchored on chain — every release a
//! caller was answered is in the log, the light client's audit is clean, and anchoring
//! resumes: the chain's anchor for the node grows past the restart size.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_kms::testing::{ClusterOptions, FailoverClient, ProcCluster};
use tokio::sync::watch;

use crate::faults::{audit_node, BIN, PHASE_DEADLINE};
use crate::world::World;

/// Kills (and restarts) of the node.
const ROUNDS: u64 = 5;
/// Concurrent callers.
const CALLERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_append_again_and_again_restarts_extends_its_anchor_and_audits_clean() {
    let w = World::new().await;
    let mut cluster =
        ProcCluster::start(&w, Path::new(BIN), 1, 0xA0, &ClusterOptions::default()).await;
    let url = cluster.urls();
    let address = cluster.nodes[0].address;

    let answered = Arc::new(AtomicU64::new(0));
    let certs: Vec<_> = (0..CALLERS)
        .map(|i| Arc::new(w.guest(0x40 + i as u8).cert()))
        .collect();
    // The load runs until the kill; it is stopped while the node restarts and is
    // audited (so each round's audit reads a bounded log).
    let load = |stop: watch::Receiver<bool>| {
        certs
            .iter()
            .map(|cert| {
                let mut caller = FailoverClient::new(&url, 0, cert.clone());
                let (answered, stop) = (answered.clone(), stop.clone());
                tokio::spawn(async move {
                    // Attempts at a dead node fail (refused, reset) and are retried; a
                    // non-retryable answer fails the test.
                    let mut fatal = Vec::new();
                    while !*stop.borrow() {
                        match caller.release().await {
                            Ok(_) => {
                                answered.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) if e.0.iter().any(|(_, e)| !e.is_retryable()) => {
                                fatal.push(format!("{:?}", e.0));
                            }
                            Err(_) => {}
                        }
                    }
                    (caller, fatal)
                })
            })
            .collect::<Vec<_>>()
    };
    let mut held = Vec::new();
    let mut anchored_before = 0u64;
    for round in 0..ROUNDS {
        let (stop_tx, stop) = watch::channel(false);
        let callers = load(stop);
        // Kill after a varying number of answered releases, so the kill lands at
        // different points of the append / fsync / anchoring cycle.
        let target = answered.load(Ordering::SeqCst) + 8 + 13 * round;
        let deadline = Instant::now() + PHASE_DEADLINE;
        while answered.load(Ordering::SeqCst) < target {
            assert!(Instant::now() < deadline, "round {round}: no releases");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        cluster.nodes[0].kill9();
        stop_tx.send(true).expect("callers listen");
        for c in callers {
            let (caller, fatal) = tokio::time::timeout(PHASE_DEADLINE, c)
                .await
                .expect("callers stop")
                .expect("caller task");
            assert!(fatal.is_empty(), "{fatal:?}");
            held.extend(caller.held);
        }
        let acknowledged = answered.load(Ordering::SeqCst);

        // Restart: Node::open refuses a log that does not extend the on-chain anchor.
        cluster.nodes[0].spawn();
        cluster.nodes[0].wait_ready().await;
        let mut source = cluster.nodes[0]
            .public_client()
            .await
            .expect("connect for the audit");
        let report = audit_node(&w, &mut source, address, &[]).await;
        let size = report.nodes[0].verified_size.expect("a verified head");
        assert!(
            size >= acknowledged,
            "round {round}: log size {size} < {acknowledged} releases answered"
        );

        // Anchoring resumes after the restart: the chain's anchor grows to at least the
        // size the node restarted with.
        let deadline = Instant::now() + PHASE_DEADLINE;
        let anchored = loop {
            w.net.mine(1).await;
            let a = w.latest_anchor_of(address).await.map_or(0, |a| a.tree_size);
            if a >= size {
                break a;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: anchor stuck at {a}, log {size}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(anchored >= anchored_before);
        anchored_before = anchored;
        eprintln!(
            "round {round}: killed after {acknowledged} answered releases; restarted with \
             {size} entries, anchored {anchored}"
        );
    }

    // Every receipt from every incarnation of the node verifies against its log.
    let receipts: Vec<_> = held.iter().map(|h| &h.receipt).collect();
    let mut source = cluster.nodes[0].public_client().await.expect("connect");
    let report = audit_node(&w, &mut source, address, &receipts).await;
    eprintln!(
        "{ROUNDS} kills: {} releases answered, {} logged, {} anchors on chain",
        receipts.len(),
        report.releases.len(),
        report.nodes[0].anchors
    );
}
