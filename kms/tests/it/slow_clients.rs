//! Slow or greedy clients cannot stall the KMS (issue 10 item 4): stalled request bodies
//! hold no release permit, stalled TLS handshakes are cut, one source gets a bounded
//! number of connections, and `/healthz` and `/metrics` never wait behind releases.
//!
//! The attackers are raw TCP/TLS clients of the test, bound to other loopback addresses
//! (127.0.0.2…) than the honest client (127.0.0.1), so that the per-source limit does not
//! hide what the attack test is about.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_attestation::testing::possession_client;
use cairn_kms::{Refusal, ServerLimits};
use cairn_kms_client::{KmsClient, Timeouts};
use cairn_protocol::api::{ErrorBody, PATH_SIGN_CERT};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::release::app_key;
use crate::world::{health, metrics_text, pki, until, GateProxy, Running, World};

/// Generous for a loaded 2-core CI machine, and well under the 30 s request timeout
/// that a request stuck behind the stalled bodies needed before the fix.
const DEADLINE: Duration = Duration::from_secs(10);

/// An attacker's TLS config: checks the handshake signature, trusts any certificate
/// (the shared possession-only verifier), no client certificate.
struct AnyServer;

impl AnyServer {
    fn config() -> Arc<rustls::ClientConfig> {
        let mut config = possession_client().with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// A TCP connection to `to` from loopback address `127.0.0.<host>`.
async fn tcp_from(host: u8, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, host), 0)))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// A TLS connection (no client certificate) from `127.0.0.<host>`.
async fn tls_from(
    host: u8,
    to: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> TlsStream<TcpStream> {
    let tcp = tcp_from(host, to).await;
    TlsConnector::from(config)
        .connect(ServerName::try_from("cairn-kms").unwrap(), tcp)
        .await
        .unwrap()
}

/// A handshake that starts and stalls: a TLS record header announcing 512 bytes, then
/// nothing.
async fn stalled_handshake(host: u8, to: SocketAddr) -> TcpStream {
    let mut tcp = tcp_from(host, to).await;
    tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();
    tcp
}

/// A `POST` whose body announces `announced` bytes and sends `sent`, then stalls.
async fn stalled_body(
    host: u8,
    to: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    announced: usize,
    sent: &[u8],
) -> TlsStream<TcpStream> {
    let mut tls = tls_from(host, to, config).await;
    let head = format!(
        "POST {PATH_SIGN_CERT} HTTP/1.1\r\nhost: cairn-kms\r\ncontent-type: application/json\r\ncontent-length: {announced}\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(sent).await.unwrap();
    tls.flush().await.unwrap();
    tls
}

/// Read a whole HTTP/1.1 response that ends with the connection: (status, headers, body).
async fn response(mut tls: TlsStream<TcpStream>) -> (u16, String, Vec<u8>) {
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, tls.read_to_end(&mut raw))
        .await
        .expect("no response before the deadline");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{text}"));
    let status = head[9..12].parse().unwrap();
    (status, head.to_ascii_lowercase(), body.as_bytes().to_vec())
}

/// `/healthz` answers `ok`; how long it took.
async fn healthz(kms: &Running) -> Duration {
    let t = Instant::now();
    health(kms).await.unwrap();
    t.elapsed()
}

/// A new world and a node on `host_seed` served with `limits`.
async fn serve_with(host_seed: u8, limits: ServerLimits) -> (World, Running) {
    let w = World::new().await;
    let (opts, dir) = w.prepare(host_seed, &pki()).await;
    let node = cairn_kms::Node::open(opts).await.unwrap();
    let kms = w.serve_node_with(node, dir, limits).await;
    (w, kms)
}

/// The server ends `conn` without answering: EOF or a reset before [`DEADLINE`].
async fn assert_closed(mut conn: TcpStream, what: &str) {
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(DEADLINE, conn.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{what}"));
    assert!(matches!(read, Ok(0) | Err(_)), "{what}: {read:?}");
}

/// The error body of a 408 `bad_request.timeout` response.
fn timeout_answer(status: u16, body: &[u8]) -> ErrorBody {
    let body: ErrorBody = serde_json::from_slice(body).unwrap();
    assert_eq!(
        (status, body.error.code.as_str()),
        (408, "bad_request.timeout")
    );
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_and_handshakes_do_not_delay_a_release_or_healthz() {
    const STALLED: usize = 256;
    // 8 attacking sources of 64 connections each: under the per-source default.
    const SOURCES: usize = 8;
    let (w, kms) = World::serving(0xF6).await;
    let guest = w.guest(0x76);
    let cert = guest.cert();
    let attacker = AnyServer::config();

    let mut bodies = Vec::new();
    let mut handshakes = Vec::new();
    let addr = kms.addr;
    for i in 0..STALLED {
        let host = 2 + u8::try_from(i % SOURCES).unwrap();
        let config = Arc::clone(&attacker);
        bodies.push(tokio::spawn(async move {
            stalled_body(host, addr, config, 65536, b"{").await
        }));
        handshakes.push(tokio::spawn(stalled_handshake(host, addr)));
    }
    let mut held = Vec::new();
    for b in bodies {
        held.push(b.await.unwrap());
    }
    let mut held_tcp = Vec::new();
    for h in handshakes {
        held_tcp.push(h.await.unwrap());
    }
    // The server holds every attacking connection, and every stalled request is in.
    let m = kms.node.metrics();
    until("the server did not take every attacking connection", || {
        m.connections_open() >= 2 * STALLED as u64 && m.requests_in_flight() >= STALLED as u64
    })
    .await;

    let t = Instant::now();
    let took_health = healthz(&kms).await;
    let mut client = kms.client(Some(&cert)).await;
    app_key(&mut client).await.unwrap();
    let took_release = t.elapsed() - took_health;
    eprintln!(
        "under attack ({STALLED} stalled bodies, {STALLED} stalled handshakes): healthz {took_health:?}, app-key {took_release:?}"
    );
    assert!(took_health < DEADLINE, "healthz took {took_health:?}");
    assert!(took_release < DEADLINE, "app-key took {took_release:?}");
    assert_eq!(kms.node.log().size(), 1);
    drop((held, held_tcp));
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_at_its_connection_limit_is_refused_and_others_are_served() {
    let limits = ServerLimits {
        max_connections_per_source: 4,
        // The held connections must outlive the test.
        handshake_timeout: Duration::from_secs(120),
        ..ServerLimits::default()
    };
    let (_w, kms) = serve_with(0xF7, limits).await;
    let m = kms.node.metrics();

    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(stalled_handshake(2, kms.addr).await);
        let n = held.len() as u64;
        until("held connection not accepted", || m.connections_open() >= n).await;
    }
    // The fifth from the same source is closed at once: EOF (or a reset) instead of a
    // handshake.
    assert_closed(
        stalled_handshake(2, kms.addr).await,
        "the fifth connection was neither served nor closed",
    )
    .await;
    assert_eq!(m.connections_refused(Refusal::MaxPerSource), 1);
    assert_eq!(m.connections_refused(Refusal::MaxConnections), 0);

    // Another source is served meanwhile.
    healthz(&kms).await;
    // A slot of the source frees when one of its connections closes.
    drop(held.pop());
    until("closed connection still counted", || {
        m.connections_open() == 3
    })
    .await;
    let mut tls = tls_from(2, kms.addr, AnyServer::config()).await;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: cairn-kms\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (status, _, body) = response(tls).await;
    assert_eq!((status, &body[..]), (200, &b"ok"[..]));
    let text = kms.node.render_metrics();
    assert!(
        text.contains("cairn_kms_connections_refused_total{reason=\"max_per_source\"} 1\n"),
        "{text}"
    );
    drop(held);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_too_slow_body_is_answered_408_and_its_connection_closed() {
    let limits = ServerLimits {
        body_idle_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_secs(1),
        ..ServerLimits::default()
    };
    let (w, kms) = serve_with(0xF8, limits).await;
    let config = AnyServer::config();

    // Stalled: one byte of 100, then nothing.
    let tls = stalled_body(2, kms.addr, Arc::clone(&config), 100, b"{").await;
    let (status, head, body) = response(tls).await;
    let body = timeout_answer(status, &body);
    assert!(head.contains("connection: close"), "{head}");
    assert!(body.error.message.contains("1 of 100 bytes"), "{body:?}");

    // Too slow: a byte every 100 ms (never idle for 300 ms) runs into the 1 s total.
    let mut tls = stalled_body(3, kms.addr, config, 1000, b"{").await;
    let trickle = async {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if tls.write_all(b" ").await.is_err() || tls.flush().await.is_err() {
                break;
            }
        }
        tls
    };
    let tls = tokio::time::timeout(DEADLINE, trickle)
        .await
        .expect("the server kept reading a too slow body");
    let (status, _, body) = response(tls).await;
    timeout_answer(status, &body);
    assert_eq!(kms.node.metrics().body_timeouts(), 2);
    assert_eq!(kms.node.metrics().requests_reading_body(), 0);

    // An honest request on the same server is unaffected.
    let guest = w.guest(0x78);
    app_key(&mut kms.client(Some(&guest.cert())).await)
        .await
        .unwrap();
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_cut_at_the_handshake_timeout() {
    let limits = ServerLimits {
        handshake_timeout: Duration::from_millis(300),
        ..ServerLimits::default()
    };
    let (_w, kms) = serve_with(0xF9, limits).await;
    assert_closed(
        stalled_handshake(2, kms.addr).await,
        "a stalled handshake was kept open",
    )
    .await;
    let m = kms.node.metrics();
    until("handshake timeout not counted", || {
        m.handshake_timeouts() == 1
    })
    .await;
    until("connection still counted", || m.connections_open() == 0).await;
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics_answer_while_every_release_permit_waits_on_the_chain() {
    // One more release than there are release permits.
    const RELEASES: usize = 257;
    let w = World::new().await;
    let mut proxy = GateProxy::start(&w.endpoint()).await;
    let (mut opts, dir) = w.prepare(0xFA, &pki()).await;
    // Releases wait on the closed gate for as long as the test needs.
    // The head advances only when asked: every RPC the gate holds is a release's own.
    opts.chain = w
        .chain_config()
        .with_rpc_urls(vec![proxy.url.clone()], 1)
        .with_call_timeout(Duration::from_secs(120))
        .with_head_poll_interval(Duration::from_secs(3600));
    let node = cairn_kms::Node::open(opts).await.unwrap();
    let limits = ServerLimits {
        // Every client of this test comes from 127.0.0.1.
        max_connections_per_source: 1024,
        ..ServerLimits::default()
    };
    let kms = w.serve_node_with(node, dir, limits).await;
    let guest = w.guest(0x7A);
    let cert = guest.cert();
    // One client (its verifier caches the KMS's verified evidence), patient enough to
    // wait on the closed gate.
    let client = KmsClient::new(crate::world::verifier_for(&pki()))
        .with_timeouts(Timeouts::uniform(Duration::from_secs(300)));
    let cert = Arc::new(cert);

    proxy.close();
    let mut releases = Vec::new();
    for _ in 0..RELEASES {
        let (client, cert, url) = (client.clone(), Arc::clone(&cert), kms.url());
        releases.push(tokio::spawn(async move {
            let mut c = client.connect(&url, Some(&cert)).await.unwrap();
            app_key(&mut c).await
        }));
    }
    // Every release permit is taken by a release waiting on the chain.
    let deadline = Instant::now() + Duration::from_secs(60);
    for held in 0..cairn_kms::MAX_IN_FLIGHT {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, proxy.held.recv())
            .await
            .unwrap_or_else(|_| panic!("only {held} releases reached the chain"))
            .unwrap();
    }
    let m = kms.node.metrics();
    until("the last release did not arrive", || {
        m.requests_in_flight() >= RELEASES as u64
    })
    .await;

    let took = healthz(&kms).await;
    let t = Instant::now();
    let text = metrics_text(&kms).await;
    let took_metrics = t.elapsed();
    eprintln!(
        "{RELEASES} releases waiting on the chain: healthz {took:?}, metrics {took_metrics:?}"
    );
    assert!(took < DEADLINE, "healthz took {took:?}");
    assert!(took_metrics < DEADLINE, "metrics took {took_metrics:?}");
    assert!(
        text.contains(&format!(
            "\ncairn_kms_requests_in_flight {}\n",
            RELEASES + 1
        )),
        "{text}"
    );

    proxy.open();
    for r in releases {
        r.await.unwrap().unwrap();
    }
    assert_eq!(kms.node.log().size(), RELEASES as u64);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_its_responses_is_disconnected() {
    let limits = ServerLimits {
        write_stall_timeout: Duration::from_millis(300),
        ..ServerLimits::default()
    };
    let (_w, kms) = serve_with(0xFB, limits).await;
    let m = kms.node.metrics();
    let mut tls = tls_from(2, kms.addr, AnyServer::config()).await;
    until("connection not accepted", || m.connections_open() == 1).await;
    // Pipelined requests whose responses are never read: once the socket buffers are
    // full, the server's writes stall and it ends the connection.
    let writer = tokio::spawn(async move {
        let request = b"GET /metrics HTTP/1.1\r\nhost: cairn-kms\r\n\r\n";
        while tls.write_all(request).await.is_ok() {}
        tls
    });
    until(
        "a connection whose client reads nothing is still open",
        || m.connections_open() == 0,
    )
    .await;
    // The writer's own writes stop once the server is gone.
    let _ = tokio::time::timeout(DEADLINE, writer)
        .await
        .expect("the client can still write to a closed connection");
    kms.stop().await;
}
