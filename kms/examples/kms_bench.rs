//! Load benchmark of the KMS release path (`scripts/bench.sh kms`).
//!
//! One anvil with the contracts deployed, one KMS node on the simulator, N simulated
//! guests (distinct hosts, so distinct instances), each over its own warm RA-TLS
//! connection, calling `POST /v1/app-key` in a loop for a fixed time. Prints
//! releases/s, client-side p50/p99/max latency, errors, the TLS handshake time and the
//! per-stage means from the node's metrics histograms.
//!
//! `cargo run --release -p cairn-kms --example kms_bench -- [clients] [seconds] [rate/s]`
//!
//! `CAIRN_BENCH_QUORUM=k` (default 1): the node reads the chain through k JSON-RPC
//! proxies in front of anvil (`cairn_onchain::testing::RpcProxy`) and needs all k to
//! agree. While the clock runs anvil mines a block every 250 ms, so the policy head
//! (polling every 100 ms) advances and re-reads the used verdicts in the background, as
//! on a live chain.

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_attestation::ids::AppId;
use cairn_kms::testing::{image, pki, Guest, TestNet, CONFIRMATIONS};
use cairn_kms::Stage;
use cairn_protocol::api::{AppKeyRequest, AppKeyResponse, PATH_APP_KEY};
use hyper::Method;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    // Optional total offered rate (releases/s), spread evenly over the clients; without
    // it every client sends its next request as soon as the last one is answered.
    let rate: Option<f64> = args.next().and_then(|a| a.parse().ok());

    // The test cluster of `cairn_kms::testing` with one app (any device).
    const COMPOSE: &[u8] = br#"{"manifest_version":2,"name":"bench","runner":"process"}"#;
    let w = TestNet::new(Path::new(env!("CARGO_MANIFEST_DIR"))).await;
    let app = w.deploy_app(w.owner, Some(COMPOSE)).await;
    let app_id = AppId(app.app_id().into_array());
    // CAIRN_BENCH_QUORUM=k: the node reads the chain through k JSON-RPC proxies in front
    // of anvil and needs all k to agree (default 1: anvil directly).
    let quorum: usize = std::env::var("CAIRN_BENCH_QUORUM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // A new block every 250 ms while the benchmark runs, so the policy head advances and
    // re-reads the used verdicts in the background as it would on a live chain.
    let block_time = Duration::from_millis(250);
    // Bootstrap and register a node, then reopen it behind the quorum's endpoints.
    let dir = w.start(0xF0).await.stop().await;
    let mut opts = w.options(dir.path(), 0xF0, &pki());
    let mut proxies = Vec::new();
    if quorum > 1 {
        for _ in 0..quorum {
            proxies.push(cairn_onchain::testing::RpcProxy::start(w.endpoint()).await);
        }
        let urls = proxies.iter().map(|p| p.url()).collect();
        opts.chain = opts.chain.with_rpc_urls(urls, quorum);
    }
    opts.chain = opts
        .chain
        .with_head_poll_interval(Duration::from_millis(100));
    let kms = w.serve(opts, dir).await;
    println!(
        "clients={clients} duration={secs}s offered={rate:?}/s confirmations={} quorum={quorum} \
         head_poll=100ms block_time={block_time:?}",
        CONFIRMATIONS
    );

    // Guests, their certificates and warm connections (one warm-up release each).
    let mut conns = Vec::new();
    let mut handshakes = Vec::new();
    for i in 0..clients {
        let host_seed = u8::try_from(i % 200).unwrap_or(0).wrapping_add(1);
        let guest = Guest::boot(pki(), host_seed, image(), app_id, COMPOSE);
        let cert = guest.cert();
        let t = Instant::now();
        let mut c = kms.client(Some(&cert)).await;
        handshakes.push(t.elapsed());
        let _: AppKeyResponse = c
            .call(Method::POST, PATH_APP_KEY, Some(&AppKeyRequest::default()))
            .await
            .expect("warm-up release");
        conns.push(c);
    }
    handshakes.sort();
    let before: Vec<(u64, f64)> = STAGES
        .iter()
        .map(|s| kms.node.metrics().stage_summary(*s))
        .collect();
    let log_before = kms.node.log().size();
    let buckets_before: Vec<[u64; cairn_kms::BUCKETS.len()]> = STAGES
        .iter()
        .map(|s| kms.node.metrics().stage_buckets(*s))
        .collect();

    let deadline = Instant::now() + Duration::from_secs(secs);
    let miner = {
        use cairn_onchain::alloy::providers::ext::AnvilApi;
        let conn = w.connect(0).await;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(block_time);
            while Instant::now() < deadline {
                tick.tick().await;
                let _ = conn.provider().anvil_mine(Some(1), None).await;
            }
        })
    };
    let head_before = kms.node.policy_head().status();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut c) in conns.into_iter().enumerate() {
        let period = rate.map(|r| Duration::from_secs_f64(clients as f64 / r));
        // Stagger the clients evenly over one period (no synchronized bursts).
        let offset = period.map(|p| p.mul_f64(i as f64 / clients as f64));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut tick = period.zip(offset).map(|(p, o)| {
                let mut i = tokio::time::interval_at(tokio::time::Instant::now() + o, p);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                i
            });
            while Instant::now() < deadline {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let t = Instant::now();
                let r: Result<AppKeyResponse, _> = c
                    .call(Method::POST, PATH_APP_KEY, Some(&AppKeyRequest::default()))
                    .await;
                match r {
                    Ok(_) => lat.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("client task");
        lat.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    miner.await.expect("miner task");
    let head_after = kms.node.policy_head().status();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "releases={} errors={errors} releases/s={:.0} p50={:.2}ms p99={:.2}ms max={:.2}ms",
        lat.len(),
        lat.len() as f64 / elapsed,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    println!(
        "tls handshake (client side, incl. server-cert verification): p50={:.2}ms max={:.2}ms",
        handshakes[handshakes.len() / 2].as_secs_f64() * 1e3,
        handshakes.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!("server stage means over the run (from cairn_kms_stage_duration_seconds):");
    for ((s, (n0, sum0)), b0) in STAGES.iter().zip(before).zip(buckets_before) {
        let (n1, sum1) = kms.node.metrics().stage_summary(*s);
        let n = n1 - n0;
        if n > 0 {
            // The p99 from the histogram: the upper bound of the bucket that holds it.
            let b1 = kms.node.metrics().stage_buckets(*s);
            let mut seen = 0u64;
            let p99 = cairn_kms::BUCKETS
                .iter()
                .zip(b0.iter().zip(b1.iter()))
                .find_map(|(bound, (c0, c1))| {
                    seen += c1 - c0;
                    (seen as f64 >= n as f64 * 0.99).then_some(*bound)
                });
            let p99 = p99.map_or("> 5 s".to_owned(), |b| format!("<= {:.2}ms", b * 1e3));
            println!(
                "  {s:?}: mean {:.3}ms, p99 {p99} (n={n})",
                (sum1 - sum0) / n as f64 * 1e3
            );
        }
    }
    println!(
        "log entries appended: {}",
        kms.node.log().size() - log_before
    );
    println!(
        "policy head: {} advances ({} failed), policy block {:?} -> {:?}, {} disagreements, {} tracked reads",
        head_after.advances - head_before.advances,
        head_after.failures - head_before.failures,
        head_before.head.map(|h| h.pinned.number),
        head_after.head.map(|h| h.pinned.number),
        head_after.disagreements,
        head_after.tracked,
    );
    drop(proxies);
    kms.stop().await;
}

const STAGES: [Stage; 5] = [
    Stage::Verify,
    Stage::Chain,
    Stage::Derive,
    Stage::Log,
    Stage::Total,
];
