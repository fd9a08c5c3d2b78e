//! The chain RPC goes away — down (connections closed, requests fail at once) or stalled
//! (accepts and never answers) — for an outage, then comes back. Throughout the outage
//! every release answers within the RPC timeout: keys (only while the node still holds a
//! fresh pinned block with the caller's verdict, before its policy head notices — and
//! then logged like any release) or `503 unavailable.chain`; never a denial, never a
//! 500, never a hang. Once the head has failed nothing is released at all. When the RPC
//! returns, releases resume and anchoring catches up with nobody's help (no restart, no
//! head sync by the test).
//!
//! The issue asks for a 30 s outage. Nothing in the node depends on the outage's length
//! below `chain.max_head_age_secs` (120 s) and `log.max_anchor_age_secs` (600 s), so the
//! tests default to 3 s; `CAIRN_FAULT_OUTAGE_SECS=30` runs the length (the
//! figures in docs/reliability.md come from both).

use std::time::{Duration, Instant};

use cairn_onchain::testing::{Behaviour, RpcProxy};
use hyper::StatusCode;

use crate::faults::{audit_node, until_log_anchored, PHASE_DEADLINE};
use crate::release::app_key;
use crate::world::{pki, Running, World};

/// The node's per-call RPC timeout in these tests.
const RPC_TIMEOUT: Duration = Duration::from_secs(1);
/// What a failing release may take beyond the RPC timeout before it counts as a hang
/// (scheduling on a loaded 2-core machine; the measured figures are in the docs).
const SLACK: Duration = Duration::from_secs(5);
/// Guests never seen before the outage (their verdicts are not cached).
const FRESH_GUESTS: u8 = 8;

/// The outage length: `CAIRN_FAULT_OUTAGE_SECS`, default 3 s.
fn outage() -> Duration {
    let secs = std::env::var("CAIRN_FAULT_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    Duration::from_secs(secs)
}

/// A registered node reading the chain only through `proxy`, with [`RPC_TIMEOUT`].
async fn node_behind(w: &World, proxy: &RpcProxy, host_seed: u8) -> Running {
    let (mut opts, dir) = w.prepare(host_seed, &pki()).await;
    opts.chain = w
        .chain_config()
        .with_rpc_urls(vec![proxy.url()], 1)
        .with_call_timeout(RPC_TIMEOUT);
    w.serve(opts, dir).await
}

/// One release attempt during the outage.
#[derive(Debug)]
struct Attempt {
    /// Since the outage began.
    at: Duration,
    /// How long the answer took.
    took: Duration,
    /// `None` = keys released; else the status and code.
    refused: Option<(StatusCode, String)>,
}

async fn outage_then_return(behaviour: Behaviour, host_seed: u8) {
    let w = World::new().await;
    let proxy = RpcProxy::start(w.endpoint()).await;
    let kms = node_behind(&w, &proxy, host_seed).await;
    let seen = w.guest(host_seed ^ 0x11);
    let mut seen_conn = kms.client(Some(&seen.cert())).await;
    app_key(&mut seen_conn)
        .await
        .expect("a release before the outage");
    let fresh: Vec<_> = (0..FRESH_GUESTS)
        .map(|i| w.guest(host_seed.wrapping_add(0x20 + i)))
        .collect();
    let mut fresh_conns = Vec::new();
    for g in &fresh {
        fresh_conns.push(kms.client(Some(&g.cert())).await);
    }
    let released_before = kms.node.log().size();

    // The outage: callers keep asking, the seen guest (verdict cached, caller 0) and
    // fresh ones, each on its own connection.
    let length = outage();
    proxy.set(behaviour);
    let start = Instant::now();
    let mut callers = Vec::new();
    for mut conn in std::iter::once(seen_conn).chain(fresh_conns) {
        callers.push(tokio::spawn(async move {
            let mut attempts = Vec::new();
            while start.elapsed() < length {
                let t = Instant::now();
                let refused = app_key(&mut conn)
                    .await
                    .err()
                    .map(|e| (e.status, e.body.error.code));
                attempts.push(Attempt {
                    at: t.duration_since(start),
                    took: t.elapsed(),
                    refused,
                });
            }
            (conn, attempts)
        }));
    }
    let mut conns = Vec::new();
    let mut per_caller = Vec::new();
    for c in callers {
        let (conn, attempts) = tokio::time::timeout(length + PHASE_DEADLINE, c)
            .await
            .expect("callers end with the outage")
            .expect("caller task");
        conns.push(conn);
        per_caller.push(attempts);
    }
    proxy.set(Behaviour::Forward);
    let back = Instant::now();

    let detected = per_caller[0]
        .iter()
        .find(|a| a.refused.is_some())
        .map(|a| a.at)
        .unwrap_or_else(|| {
            panic!("{behaviour:?}: the cached verdict was still used at the end of the outage")
        });
    let attempts: Vec<Attempt> = per_caller.into_iter().flatten().collect();
    let (mut seen_conn, mut fresh_conn) = {
        let mut it = conns.into_iter();
        (it.next().expect("seen"), it.next().expect("fresh"))
    };

    // Fail closed: keys or 503 unavailable.chain, each within the RPC timeout.
    for a in &attempts {
        match &a.refused {
            None => {}
            Some((StatusCode::SERVICE_UNAVAILABLE, code)) if code == "unavailable.chain" => {}
            other => {
                panic!("{behaviour:?}: unexpected answer during the outage: {other:?} ({a:?})")
            }
        }
        assert!(
            a.took < RPC_TIMEOUT + SLACK,
            "{behaviour:?}: a release hung: {a:?}"
        );
    }
    // After the head failed, nothing is released.
    let late_release = attempts
        .iter()
        .find(|a| a.refused.is_none() && a.at > detected);
    assert!(
        late_release.is_none(),
        "{behaviour:?}: released after the head failed: {late_release:?}"
    );
    let released = attempts.iter().filter(|a| a.refused.is_none()).count() as u64;
    assert_eq!(
        kms.node.log().size(),
        released_before + released,
        "every release during the outage is logged, nothing else is"
    );

    // Back: releases resume by themselves — the seen guest and one never answered.
    let deadline = Instant::now() + PHASE_DEADLINE;
    let recovered = loop {
        if app_key(&mut seen_conn).await.is_ok() && app_key(&mut fresh_conn).await.is_ok() {
            break back.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{behaviour:?}: releases never resumed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let head = kms.node.policy_head().status();
    assert!(head.head.is_some() && head.failures > 0, "{head:?}");

    // Anchoring catches up by itself: the chain holds the whole log again.
    until_log_anchored(
        &w,
        &kms,
        &format!("{behaviour:?}: anchoring never resumed"),
        || kms.node.readiness().is_ok(),
    )
    .await;
    let mut source = kms.client(None).await;
    audit_node(&w, &mut source, kms.node.address(), &[]).await;

    let max_refusal = attempts
        .iter()
        .filter(|a| a.refused.is_some())
        .map(|a| a.took)
        .max()
        .unwrap_or_default();
    eprintln!(
        "{behaviour:?} for {length:?}: {} attempts, {released} released before the head noticed \
         (refused from {detected:?} on), slowest refusal {max_refusal:?} (RPC timeout \
         {RPC_TIMEOUT:?}), releases resumed {recovered:?} after the RPC returned",
        attempts.len()
    );
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_rpc_down_then_back_fails_closed_within_the_rpc_timeout_and_resumes_by_itself() {
    outage_then_return(Behaviour::Down, 0x61).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_rpc_stalled_then_back_fails_closed_within_the_rpc_timeout_and_resumes_by_itself() {
    outage_then_return(Behaviour::Stall, 0x71).await;
}
