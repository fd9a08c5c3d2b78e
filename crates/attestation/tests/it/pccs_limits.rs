//! The PCCS client under hostile load (issue 10 item 5): quotes with forged or unknown
//! FMSPCs make it fetch at most what its rate limit allows and grow no cache past its
//! bounds; concurrent requests for one new platform cause one fetch. Time is the
//! client's injected `now`; the PCCS is the simulator's, on loopback, counting requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use cairn_attestation::simulator::{SimPccs, SimPki, SimPkiConfig};
use cairn_attestation::{Error, PccsClient, PccsLimits, Tee};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::common::*;

const PCKCRL: &str = "/sgx/certification/v4/pckcrl";
const DEADLINE: Duration = Duration::from_secs(30);

/// A [`SimPccs`] on loopback whose requests are counted on arrival and then wait until
/// the gate is open.
struct Server {
    url: String,
    pccs: SimPccs,
    arrived: Arc<AtomicU64>,
    gate: watch::Sender<bool>,
    _stop: oneshot::Sender<()>,
}

impl Server {
    fn arrived(&self) -> u64 {
        self.arrived.load(Ordering::SeqCst)
    }
    fn open(&self) {
        self.gate.send_replace(true);
    }
}

#[derive(Clone)]
struct Gate {
    arrived: Arc<AtomicU64>,
    open: watch::Receiver<bool>,
}

async fn gate(State(mut g): State<Gate>, req: Request, next: Next) -> Response {
    g.arrived.fetch_add(1, Ordering::SeqCst);
    // A closed sender means the test ended: answer anyway.
    let _ = g.open.wait_for(|open| *open).await;
    next.run(req).await
}

async fn serve(pccs: SimPccs, open: bool) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (gate_tx, gate_rx) = watch::channel(open);
    let arrived = Arc::new(AtomicU64::new(0));
    let state = Gate {
        arrived: Arc::clone(&arrived),
        open: gate_rx,
    };
    let router = pccs
        .router()
        .layer(axum::middleware::from_fn_with_state(state, gate));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Server {
        url,
        pccs,
        arrived,
        gate: gate_tx,
        _stop: stop,
    }
}

/// Poll `cond` until it holds; panic naming `what` after [`DEADLINE`].
async fn poll_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Requests of the forged-FMSPC flood, and the tasks sending them.
const FORGED_FLOOD: u64 = 100_000;
const FLOOD_TASKS: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_fmspcs_fetches_nothing_and_keeps_no_state() {
    let pki = pki();
    let server = serve(SimPccs::new(Arc::clone(&pki)), true).await;
    let client = Arc::new(PccsClient::new(&server.url).unwrap());
    let genuine = evidence().quote;
    // A real platform is fetched once and stays cached through the flood.
    client
        .collateral_for_quote(&genuine, pki.root_ca_der(), NOW)
        .await
        .unwrap();
    assert_eq!(server.pccs.requests(), 4);

    let rss_before = rss_kib();
    let started = Instant::now();
    let forger = Arc::new(FmspcForger::new(&genuine));
    let tasks: Vec<_> = (0..FLOOD_TASKS)
        .map(|task| {
            let (client, forger, pki) = (Arc::clone(&client), Arc::clone(&forger), pki.clone());
            tokio::spawn(async move {
                let mut in_client = Duration::ZERO;
                for i in (task..FORGED_FLOOD).step_by(FLOOD_TASKS as usize) {
                    let quote = forger.forge(nth_fmspc(i));
                    let t = Instant::now();
                    // 1000 requests per simulated second.
                    let err = client
                        .collateral_for_quote(&quote, pki.root_ca_der(), NOW + i / 1000)
                        .await
                        .unwrap_err();
                    in_client += t.elapsed();
                    assert!(
                        matches!(
                            err,
                            Error::UntrustedPckChain {
                                source: webpki::Error::InvalidSignatureForPublicKey
                            }
                        ),
                        "request {i}: {err:?}"
                    );
                }
                in_client
            })
        })
        .collect();
    let mut in_client = Duration::ZERO;
    for t in tasks {
        in_client += t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let root = pki.root_ca_der();

    // Genuine chains of another root, each on its own platform: refused the same way (its
    // CA names equal the trusted ones, so the path ends at the trusted root and the
    // signature check fails there).
    let other = Arc::new(SimPki::new(SimPkiConfig::new([9u8; 32], NOW)).unwrap());
    for i in 0..100u8 {
        let quote = quote_on_platform(&other, [i; 32], nth_fmspc(FORGED_FLOOD + u64::from(i)));
        let err = client
            .collateral_for_quote(&quote, root, NOW + 100)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::UntrustedPckChain {
                    source: webpki::Error::InvalidSignatureForPublicKey
                }
            ),
            "{err:?}"
        );
    }

    let stats = client.stats();
    assert_eq!(
        server.pccs.requests(),
        4,
        "no request for a forged platform"
    );
    assert_eq!(server.arrived(), 4);
    assert_eq!(stats.fetches, 1);
    assert_eq!(stats.untrusted_chains, FORGED_FLOOD + 100);
    assert_eq!((stats.cached, stats.failures, stats.in_flight), (1, 0, 0));
    // The real platform is still served from the cache.
    client
        .collateral_for_quote(&genuine, root, NOW + 100)
        .await
        .unwrap();
    assert_eq!(server.pccs.requests(), 4);
    println!(
        "forged flood: {FORGED_FLOOD} requests in {elapsed:.1?} ({:.1} µs each in the client), 0 fetches, \
         cache {} entries / {} bytes, failures {}, RSS {:?} → {:?} KiB",
        in_client.as_secs_f64() * 1e6 / FORGED_FLOOD as f64,
        stats.cached,
        stats.cached_bytes,
        stats.failures,
        rss_before,
        rss_kib()
    );
}

/// Simulated minutes of the unknown-platform flood, and requests per simulated second.
const FLOOD_MINUTES: u64 = 10;
const FLOOD_PER_SECOND: u64 = 5;

#[tokio::test]
async fn genuine_chains_for_unknown_platforms_are_rate_limited_with_bounded_caches() {
    let pki = pki();
    let root = pki.root_ca_der();
    let server = serve(SimPccs::new(Arc::clone(&pki)), true).await;
    let host = tdx_on(&pki, 0x5a, false);
    let limits = PccsLimits {
        max_failures: 64,
        ..PccsLimits::default()
    };
    let client = PccsClient::new(&server.url).unwrap().with_limits(limits);
    let (n, burst) = (
        u64::from(limits.fetches_per_minute),
        u64::from(limits.fetch_burst),
    );

    let rss_before = rss_kib();
    let mut per_minute = Vec::new();
    let (mut requests, mut fetched, mut limited) = (0u64, 0u64, 0u64);
    let mut max_failure_bytes = 0;
    for minute in 0..FLOOD_MINUTES {
        let at_start = server.pccs.requests_to(PCKCRL);
        for second in 0..60 {
            let now = NOW + minute * 60 + second;
            for _ in 0..FLOOD_PER_SECOND {
                // Every request: a genuine PCK leaf for a platform the PCCS does not know.
                let quote = host
                    .on_platform(nth_fmspc(requests))
                    .unwrap()
                    .quote(&rd(1))
                    .unwrap();
                requests += 1;
                match client.collateral_for_quote(&quote, root, now).await {
                    Err(Error::CollateralFetch { url, .. }) => {
                        assert!(url.contains("/tdx/certification/v4/tcb?fmspc="), "{url}");
                        fetched += 1;
                    }
                    Err(e @ Error::PccsRateLimited { .. }) => {
                        assert!(e.is_retryable());
                        limited += 1;
                    }
                    other => panic!("request {requests}: {other:?}"),
                }
                let s = client.stats();
                assert!(s.failures <= limits.max_failures, "{s:?}");
                assert!(s.failure_bytes <= limits.max_failures * 2048, "{s:?}");
                assert_eq!((s.cached, s.in_flight, s.waiting), (0, 0, 0), "{s:?}");
                max_failure_bytes = max_failure_bytes.max(s.failure_bytes);
            }
        }
        per_minute.push(server.pccs.requests_to(PCKCRL) - at_start);
    }

    let stats = client.stats();
    assert_eq!(requests, FLOOD_MINUTES * 60 * FLOOD_PER_SECOND);
    assert_eq!(stats.fetches, fetched);
    assert_eq!(stats.rate_limited, limited);
    assert_eq!(per_minute.iter().sum::<u64>(), fetched);
    // The burst, then at most the rate in every later minute.
    assert!(per_minute[0] <= burst + n, "{per_minute:?}");
    for (m, f) in per_minute.iter().enumerate().skip(1) {
        assert!(*f <= n, "minute {m}: {f} fetches > {n}: {per_minute:?}");
    }
    // And the limiter does let the rate through (it is not simply closed).
    assert!(per_minute[1..].iter().all(|f| *f == n), "{per_minute:?}");
    // Without the bound every fetch would have left an entry.
    assert!(fetched > limits.max_failures as u64, "{fetched}");
    assert!(stats.failures <= limits.max_failures);
    println!(
        "unknown-platform flood: {requests} requests over {FLOOD_MINUTES} simulated minutes, \
         fetches per minute {per_minute:?} (limit {n}/min, burst {burst}), rate-limited {limited}, \
         failure cache {} entries / {} bytes (max seen {max_failure_bytes}), RSS {:?} → {:?} KiB",
        stats.failures,
        stats.failure_bytes,
        rss_before,
        rss_kib()
    );
}

/// The PKI, its root, a gated (closed) simulated PCCS of it and a shared client of that.
async fn gated_pccs() -> (Arc<SimPki>, Arc<[u8]>, Server, Arc<PccsClient>) {
    let pki = pki();
    let root: Arc<[u8]> = Arc::from(pki.root_ca_der());
    let server = serve(SimPccs::new(Arc::clone(&pki)), false).await;
    let client = Arc::new(PccsClient::new(&server.url).unwrap());
    (pki, root, server, client)
}

/// A task asking `client` for the collateral of `quote` under `root` at [`NOW`].
fn spawn_collateral(
    client: &Arc<PccsClient>,
    quote: &Arc<[u8]>,
    root: &Arc<[u8]>,
) -> tokio::task::JoinHandle<Result<Arc<cairn_attestation::Collateral>, Error>> {
    let (client, quote, root) = (Arc::clone(client), Arc::clone(quote), Arc::clone(root));
    tokio::spawn(async move { client.collateral_for_quote(&quote, &root, NOW).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_for_one_new_platform_cause_one_fetch() {
    let (_, root, server, client) = gated_pccs().await;
    let quote: Arc<[u8]> = Arc::from(evidence().quote);
    let callers = 64;
    let tasks: Vec<_> = (0..callers)
        .map(|_| spawn_collateral(&client, &quote, &root))
        .collect();
    // The leader's request reaches the gated PCCS asynchronously: wait for both it and the
    // 63 followers, then check that nobody else got through.
    poll_until(
        "63 callers waiting on one fetch that reached the PCCS",
        || client.stats().waiting == callers - 1 && server.arrived() >= 1,
    )
    .await;
    assert_eq!(
        server.arrived(),
        1,
        "only the leading caller reached the PCCS"
    );
    assert_eq!(client.stats().in_flight, 1);
    server.open();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap().unwrap());
    }
    assert!(got.iter().all(|c| Arc::ptr_eq(c, &got[0])));
    assert_eq!(server.pccs.requests(), 4, "one fetch: four requests");
    let s = client.stats();
    assert_eq!((s.fetches, s.cached, s.in_flight, s.waiting), (1, 1, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_failed_fetch() {
    let (pki, root, server, client) = gated_pccs().await;
    // A genuine host on a platform the PCCS does not know: TCB Info answers 404.
    let quote: Arc<[u8]> = Arc::from(quote_on_platform(&pki, [3; 32], nth_fmspc(0)));
    let callers = 16;
    let tasks: Vec<_> = (0..callers)
        .map(|_| spawn_collateral(&client, &quote, &root))
        .collect();
    poll_until("15 callers waiting on one fetch", || {
        client.stats().waiting == callers - 1
    })
    .await;
    server.open();
    let mut messages = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Err(e @ Error::CollateralFetch { .. }) => messages.push(e.to_string()),
            other => panic!("{other:?}"),
        }
    }
    assert!(messages.iter().all(|m| *m == messages[0]), "{messages:?}");
    assert!(messages[0].contains("HTTP 404"), "{}", messages[0]);
    assert_eq!(server.pccs.requests(), 2, "PCK CRL, then TCB Info's 404");
    let s = client.stats();
    assert_eq!((s.fetches, s.failures, s.in_flight), (1, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leading_request_hands_the_fetch_to_a_waiting_one() {
    let (_, root, server, client) = gated_pccs().await;
    let quote: Arc<[u8]> = Arc::from(evidence().quote);
    let spawn = || spawn_collateral(&client, &quote, &root);
    let leader = spawn();
    poll_until("the leader's request", || server.arrived() == 1).await;
    let follower = spawn();
    poll_until("the follower waiting", || client.stats().waiting == 1).await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    // The follower takes over: its own fetch reaches the PCCS.
    poll_until("the follower's own request", || server.arrived() == 2).await;
    server.open();
    follower.await.unwrap().unwrap();
    let s = client.stats();
    assert_eq!((s.fetches, s.cached, s.in_flight, s.waiting), (2, 1, 0, 0));
}
