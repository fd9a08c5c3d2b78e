//! Soak benchmark of a 3-node KMS cluster (`scripts/bench.sh soak`; issue 14; not in CI).
//!
//! Three real `cairn-kms` processes on one anvil (node 0 bootstrapped, nodes 1 and 2
//! onboarded from it: `cairn_kms::testing::ProcCluster` on a `TestNet`), N callers (distinct simulated guests of one
//! app) offering a fixed total rate of `POST /v1/app-key` for a fixed time, and node 2
//! restarted every `restart` seconds, alternately by `kill -9` and by SIGTERM. Nodes 0
//! and 1 run for the whole soak, so their RSS growth is the leak figure.
//!
//! A caller keeps a warm mutual RA-TLS connection per node and asks its home node first
//! (callers spread evenly over the three). When a release
//! fails there with a retryable error (refused, reset, timed out, 503) it drops the
//! connection and asks the next URL over a fresh one — as a guest tries each KMS URL in
//! turn — and the release only fails from the guest's point of view when every URL
//! failed in one round. A non-retryable answer (a denial) is a failure at once.
//!
//! Printed: releases, failed releases (guest's view), failovers, p50/p99/max of a release
//! including its failovers, per node RSS (first and last sample of each process life)
//! and log bytes, and the anchor lag (log size minus the size anchored on chain, sampled;
//! and how long the last anchor took to cover everything once the load stopped).
//!
//! `cargo run --release -p cairn-kms --example kms_soak -- [secs] [rate/s] [restart secs] [callers]`
//! (defaults 600 500 120 64). The `cairn-kms` binary is taken from next to the example's
//! directory (`target/release/cairn-kms`; build it first) or from `CAIRN_KMS_BIN`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_attestation::ids::AppId;
use cairn_attestation::RaTlsCert;
use cairn_kms::testing::{
    image, pki, proc_client, ClusterOptions, Guest, ProcCluster, ProcNode, TestNet, CONFIRMATIONS,
};
use cairn_kms_client::KmsConnection;
use cairn_onchain::alloy::primitives::Address;
use cairn_protocol::api::{
    AppKeyRequest, AppKeyResponse, CheckpointResponse, PATH_APP_KEY, PATH_LOG_CHECKPOINT,
};
use hyper::Method;

/// The node restarted during the soak.
const VICTIM: usize = 2;
/// How often RSS, log size and anchor lag are sampled.
const SAMPLE: Duration = Duration::from_secs(10);
/// Block time of the soak's chain.
const BLOCK_TIME: Duration = Duration::from_millis(250);
/// The compose of the soak's app (allowed on any device), which every caller runs.
const COMPOSE: &[u8] = br#"{"manifest_version":2,"name":"soak","runner":"process"}"#;

/// One sample of a node: seconds into the soak, RSS (KiB, while running), log bytes,
/// and (log size, anchored size) when the node and the chain answered.
type Sample = (u64, Option<u64>, u64, Option<(u64, u64)>);

/// A caller: one warm connection per KMS URL, each release asked of its home URL first
/// and then of the others in turn (as a booting guest tries its list).
struct Caller {
    urls: Vec<String>,
    cert: Arc<RaTlsCert>,
    home: usize,
    conns: Vec<Option<KmsConnection>>,
    client: cairn_kms_client::KmsClient,
    /// Warm connections found closed and replaced by a fresh one.
    stale: u64,
}

/// One `app-key` call on the connection in `slot`, connecting first when it is empty.
async fn call(
    client: &cairn_kms_client::KmsClient,
    url: &str,
    cert: &RaTlsCert,
    slot: &mut Option<KmsConnection>,
) -> Result<AppKeyResponse, cairn_kms_client::Error> {
    if slot.is_none() {
        *slot = Some(client.connect(url, Some(cert)).await?);
    }
    let conn = slot.as_mut().expect("just connected");
    conn.call(Method::POST, PATH_APP_KEY, Some(&AppKeyRequest::default()))
        .await
}

/// What one release cost: its latency, failovers, or why it failed on every URL.
struct Outcome {
    latency: Duration,
    failovers: u64,
    failed: Option<String>,
}

impl Caller {
    async fn release(&mut self) -> Outcome {
        let t = Instant::now();
        let mut failovers = 0;
        let mut last = String::new();
        for k in 0..self.urls.len() {
            let i = (self.home + k) % self.urls.len();
            let url = &self.urls[i];
            let slot = &mut self.conns[i];
            let warm = slot.is_some();
            let mut r = call(&self.client, url, &self.cert, slot).await;
            // A warm connection the node has since closed (idle timeout, restart) fails
            // on its first use: once, a fresh connection to the same URL (what any
            // pooled HTTP client does) before this URL counts as failed.
            if warm && matches!(&r, Err(e) if e.is_retryable()) {
                *slot = None;
                self.stale += 1;
                r = call(&self.client, url, &self.cert, slot).await;
            }
            match r {
                Ok(_) => {
                    return Outcome {
                        latency: t.elapsed(),
                        failovers,
                        failed: None,
                    }
                }
                Err(e) => {
                    self.conns[i] = None;
                    let retryable = e.is_retryable();
                    last = format!("{url}: {}", cairn_protocol::with_causes(&e));
                    if !retryable {
                        break;
                    }
                    failovers += 1;
                }
            }
        }
        Outcome {
            latency: t.elapsed(),
            failovers,
            failed: Some(last),
        }
    }
}

/// The node's log size (its latest checkpoint) and the size anchored on chain.
async fn anchor_lag(w: &TestNet, node: &ProcNode) -> Option<(u64, u64)> {
    let mut c = node.public_client().await.ok()?;
    let cp: CheckpointResponse = c
        .call(Method::GET, PATH_LOG_CHECKPOINT, None::<&()>)
        .await
        .ok()?;
    let size: u64 = cp.checkpoint.lines().nth(1)?.parse().ok()?;
    let at = w.client.policy_block().await.ok()?;
    let anchored = w
        .client
        .latest_anchor(Address::from(node.address), at)
        .await
        .ok()?
        .map_or(0, |a| a.tree_size);
    Some((size, anchored))
}

fn kms_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_KMS_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/examples/kms_soak → target/<profile>/cairn-kms
    exe.parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("cairn-kms"))
        .expect("target directory")
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(600);
    let rate: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(500.0);
    let restart_every: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(120);
    let callers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let bin = kms_bin();
    assert!(
        bin.exists(),
        "no {} (cargo build --release -p cairn-kms)",
        bin.display()
    );

    let w = TestNet::new(Path::new(env!("CARGO_MANIFEST_DIR"))).await;
    let app = w.deploy_app(w.owner, Some(COMPOSE)).await;
    let app_id = AppId(app.app_id().into_array());
    let opts = ClusterOptions {
        rpc_timeout_ms: 2000,
        poll_interval_ms: 100,
        anchor_interval_secs: 1,
        ..ClusterOptions::default()
    };
    let mut cluster = ProcCluster::start(&w, &bin, 3, 0xA0, &opts).await;
    let urls = cluster.urls();
    println!(
        "soak: 3 nodes, {callers} callers, offered {rate}/s for {secs}s, node {VICTIM} restarted every {restart_every}s (kill -9 / SIGTERM alternately), confirmations={}",
        CONFIRMATIONS
    );

    let deadline = Instant::now() + Duration::from_secs(secs);
    // A live chain: a block every 250 ms for the soak and the anchor catch-up after it
    // (an anchor counts once it is `confirmations` deep).
    let miner = {
        use cairn_onchain::alloy::providers::ext::AnvilApi;
        let conn = w.connect(0).await;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(BLOCK_TIME);
            loop {
                tick.tick().await;
                let _ = conn.provider().anvil_mine(Some(1), None).await;
            }
        })
    };
    let releases = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let period = Duration::from_secs_f64(callers as f64 / rate);
    for i in 0..callers {
        let guest = Guest::boot(
            pki(),
            0x10u8.wrapping_add(i as u8),
            image(),
            app_id,
            COMPOSE,
        );
        let cert = Arc::new(guest.cert());
        let mut caller = Caller {
            urls: urls.clone(),
            cert,
            home: i % urls.len(),
            conns: (0..urls.len()).map(|_| None).collect(),
            client: proc_client(),
            stale: 0,
        };
        let releases = releases.clone();
        let offset = period.mul_f64(i as f64 / callers as f64);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = Vec::new();
            let mut failovers = 0;
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while Instant::now() < deadline {
                tick.tick().await;
                let o = caller.release().await;
                failovers += o.failovers;
                match o.failed {
                    None => {
                        lat.push(o.latency);
                        releases.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(e) => failed.push(e),
                }
            }
            (lat, failed, failovers, caller.stale)
        }));
    }

    let started = Instant::now();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); 3];
    let mut restarts = 0u32;
    let mut next_restart = started + Duration::from_secs(restart_every);
    let mut next_sample = started;
    let mut max_lag = [0u64; 3];
    while Instant::now() < deadline {
        let now = Instant::now();
        if now >= next_sample {
            for (i, node) in cluster.nodes.iter().enumerate() {
                let lag = anchor_lag(&w, node).await;
                if let Some((size, anchored)) = lag {
                    max_lag[i] = max_lag[i].max(size.saturating_sub(anchored));
                }
                samples[i].push((
                    started.elapsed().as_secs(),
                    node.rss_kib(),
                    node.log_bytes(),
                    lag,
                ));
            }
            println!(
                "t={:>4}s releases={} rss_kib={:?} anchor_lag={:?}",
                started.elapsed().as_secs(),
                releases.load(Ordering::Relaxed),
                cluster
                    .nodes
                    .iter()
                    .map(|n| n.rss_kib())
                    .collect::<Vec<_>>(),
                samples
                    .iter()
                    .map(|s| s.last().and_then(|x| x.3).map(|(a, b)| a.saturating_sub(b)))
                    .collect::<Vec<_>>(),
            );
            next_sample += SAMPLE;
        }
        if now >= next_restart && now + Duration::from_secs(10) < deadline {
            let how = if restarts.is_multiple_of(2) {
                "kill -9"
            } else {
                "SIGTERM"
            };
            let t = Instant::now();
            if restarts.is_multiple_of(2) {
                cluster.nodes[VICTIM].kill9();
            } else {
                cluster.nodes[VICTIM].terminate();
            }
            cluster.nodes[VICTIM].spawn();
            cluster.nodes[VICTIM].wait_ready().await;
            println!(
                "t={:>4}s restart of node {VICTIM} ({how}): serving again after {:.2}s",
                started.elapsed().as_secs(),
                t.elapsed().as_secs_f64()
            );
            restarts += 1;
            next_restart += Duration::from_secs(restart_every);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut lat = Vec::new();
    let mut failed = Vec::new();
    let mut failovers = 0;
    let mut stale = 0;
    for t in tasks {
        let (l, f, fo, st) = t.await.expect("caller task");
        lat.extend(l);
        failed.extend(f);
        failovers += fo;
        stale += st;
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3
    };
    println!(
        "releases={} failed={} releases/s={:.0} failovers={failovers} stale_reconnects={stale} restarts={restarts} p50={:.2}ms p99={:.2}ms p999={:.2}ms max={:.2}ms",
        lat.len(),
        failed.len(),
        lat.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        pct(0.999),
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    for f in failed.iter().take(5) {
        println!("  failed: {f}");
    }

    // How long until every node's anchor covers its whole log once the load stopped.
    let stop = Instant::now();
    let mut caught_up = [None; 3];
    while caught_up.iter().any(Option::is_none) && stop.elapsed() < Duration::from_secs(120) {
        for (i, node) in cluster.nodes.iter().enumerate() {
            if caught_up[i].is_none() {
                if let Some((size, anchored)) = anchor_lag(&w, node).await {
                    if anchored >= size {
                        caught_up[i] = Some(stop.elapsed());
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    miner.abort();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let s = &samples[i];
        // RSS over the current process life (for the victim: since its last restart).
        let rss: Vec<u64> = s.iter().filter_map(|x| x.1).collect();
        let first = s.iter().find(|x| x.0 >= 60).and_then(|x| x.1);
        println!(
            "node {i}: rss first={:?}KiB at 60s={first:?}KiB last={:?}KiB max={:?}KiB; log {} entries {} bytes; max anchor lag {} entries; anchored everything {:?} after the load stopped",
            rss.first(),
            rss.last(),
            rss.iter().max(),
            s.last().and_then(|x| x.3).map_or(0, |x| x.0),
            node.log_bytes(),
            max_lag[i],
            caught_up[i],
        );
    }
}
