//! The public listener: one task per connection, routed by the SNI of its ClientHello.
//!
//! ```text
//!  accept ─► connection slot, source slot (else closed at once)
//!  ClientHello (hello timeout, size bound) ─► SNI
//!    base domain itself ─► the gateway's own pages (ACME document), terminated here
//!    <id>[-port][s].<base> ─► policy fresh? ─► app or instance known? ─► port allowed?
//!                             ─► app's connection permit ─► (each refusal: a TLS alert)
//!  passthrough: connect (race) ─► replay the hello bytes ─► forward untouched
//!  terminate:   handshake with the client ‖ connect + TLS to the app (race, chain for
//!               the app id) ─► forward; no instance answered ─► HTTP 502
//!  forward until: a side closes, idle, total lifetime, revocation, shutdown
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cairn_service::{accept_admitted, ConnectionGate, Refusal};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::StartHandshake;

use crate::backend::{self, Hop, Target};
use crate::forward::{self, Bounds, Ended, Io};
use crate::hello::{self, alerts, Hello, HelloError};
use crate::service::Shared;
use crate::sni::{self, Mode};

/// The answer when no instance of the app answered (terminating mode).
const BAD_GATEWAY: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 33\r\nconnection: close\r\n\r\nno instance of this app answered\n";
/// Before a 502, how long the gateway waits for the client's request head.
const REQUEST_HEAD_WAIT: Duration = Duration::from_secs(2);
/// After a 502, how long the client's request is read and discarded before closing (so
/// it reads the answer rather than a reset).
const DRAIN_AFTER_502: Duration = Duration::from_millis(500);
/// At most this much of it.
const MAX_DRAIN: usize = 64 * 1024;
/// Time allowed for one request to the gateway's own pages.
const OWN_PAGES_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve the public listener until `stop` flips.
pub(crate) async fn serve(listener: TcpListener, g: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let limits = g.options.proxy;
    let gate = ConnectionGate::new(limits.max_connections, limits.max_connections_per_source);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, ?limits, "gateway proxy listening");
    }
    let refused = |why: Refusal| g.metrics.refused(why.label());
    while let Some((tcp, remote, admitted)) =
        accept_admitted(&listener, &gate, forward::stopped(&mut stop), refused).await
    {
        let _ = tcp.set_nodelay(true);
        let (g, stop) = (Arc::clone(&g), stop.clone());
        tokio::spawn(async move {
            let _admitted = admitted;
            handle(g, tcp, remote, stop).await;
        });
    }
}

async fn refuse(g: &Shared, stream: &mut TcpStream, reason: &'static str, alert: u8) {
    g.metrics.refused(reason);
    hello::send_alert(stream, alert).await;
}

async fn handle(g: Arc<Shared>, tcp: TcpStream, remote: SocketAddr, stop: watch::Receiver<bool>) {
    let _open = g.metrics.connection_opened();
    let limits = g.options.proxy;
    let local = tcp.local_addr().unwrap_or(remote);
    let mut hello = match hello::read_hello(tcp, limits.max_hello_len, limits.hello_timeout).await {
        Ok(h) => h,
        Err((e, stream)) => {
            let reason = e.label();
            tracing::debug!(%remote, error = %e, "no ClientHello");
            match (e, stream) {
                (HelloError::TooLarge(_), Some(mut s)) => {
                    refuse(&g, &mut s, reason, alerts::HANDSHAKE_FAILURE).await
                }
                _ => g.metrics.refused(reason),
            }
            return;
        }
    };
    let name = hello.server_name();
    let base = &g.options.base_domain;
    if sni::is_base(name.as_deref(), base) {
        return own_pages(&g, hello, stop).await;
    }
    let route = match sni::parse(name.as_deref(), base) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%remote, error = %e, "unroutable name");
            return refuse(&g, &mut hello.stream, e.label(), alerts::UNRECOGNIZED_NAME).await;
        }
    };
    // Fail closed: without a recent complete policy check, or while the gateway itself
    // is not allowed, nothing new is routed.
    if !g.policy.fresh(g.options.max_policy_age) || g.policy.self_denied().is_some() {
        return refuse(
            &g,
            &mut hello.stream,
            "policy_stale",
            alerts::INTERNAL_ERROR,
        )
        .await;
    }
    let Some(candidates) = g.registry.lookup(&route.id) else {
        return refuse(
            &g,
            &mut hello.stream,
            "unknown_app",
            alerts::UNRECOGNIZED_NAME,
        )
        .await;
    };
    let targets: Vec<Target> = candidates
        .instances
        .iter()
        .filter(|i| !i.is_closed())
        .filter_map(|i| {
            i.reach().target(route.port).map(|(addr, pp)| Target {
                instance: Arc::clone(i),
                addr,
                proxy_header: pp,
            })
        })
        .collect();
    if targets.is_empty() {
        return refuse(&g, &mut hello.stream, "port_denied", alerts::ACCESS_DENIED).await;
    }
    let Ok(_app_permit) = Arc::clone(&candidates.permits).try_acquire_owned() else {
        return refuse(&g, &mut hello.stream, "app_limit", alerts::ACCESS_DENIED).await;
    };
    let app_id = candidates.app_id;
    match route.mode {
        Mode::Passthrough => passthrough(&g, hello, app_id, targets, remote, local, stop).await,
        Mode::Terminate => {
            let hop = if candidates.options.plain_tcp {
                Hop::Raw
            } else {
                Hop::Tls
            };
            terminate(&g, hello, app_id, targets, hop, remote, local, stop).await
        }
    }
}

fn bounds(g: &Shared) -> Bounds {
    Bounds {
        idle: g.options.proxy.idle_timeout,
        total: g.options.proxy.total_timeout,
    }
}

async fn passthrough(
    g: &Arc<Shared>,
    mut hello: Hello,
    app_id: [u8; 20],
    targets: Vec<Target>,
    remote: SocketAddr,
    local: SocketAddr,
    stop: watch::Receiver<bool>,
) {
    let mode = Mode::Passthrough.label();
    let Some(mut backend) = backend::connect(g, app_id, targets, Hop::Raw, remote, local).await
    else {
        g.metrics.connection_ended(mode, "backend_unavailable");
        hello::send_alert(&mut hello.stream, alerts::INTERNAL_ERROR).await;
        return;
    };
    let _conn = backend.instance.open();
    let revoked = backend.instance.closed();
    if backend.stream.write_all(&hello.raw).await.is_err() {
        g.metrics.connection_ended(mode, "backend_unavailable");
        return;
    }
    let ended = forward::forward(
        &mut hello.stream,
        &mut backend.stream,
        bounds(g),
        revoked,
        stop,
    )
    .await;
    finish(g, mode, ended, &backend.instance.app_id);
}

#[allow(clippy::too_many_arguments)]
async fn terminate(
    g: &Arc<Shared>,
    hello: Hello,
    app_id: [u8; 20],
    targets: Vec<Target>,
    hop: Hop,
    remote: SocketAddr,
    local: SocketAddr,
    stop: watch::Receiver<bool>,
) {
    let mode = Mode::Terminate.label();
    let handshake = tokio::time::timeout(
        g.options.proxy.handshake_timeout,
        StartHandshake::from_parts(hello.accepted, hello.stream)
            .into_stream(Arc::clone(&g.public_tls)),
    );
    // The client's handshake and the connect to the app run at once.
    let (client, backend) = tokio::join!(
        handshake,
        backend::connect(g, app_id, targets, hop, remote, local)
    );
    let mut client = match client {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "client handshake failed");
            g.metrics.connection_ended(mode, "handshake_failed");
            return;
        }
        Err(_) => {
            g.metrics.connection_ended(mode, "handshake_failed");
            return;
        }
    };
    let Some(mut backend) = backend else {
        g.metrics.connection_ended(mode, "backend_unavailable");
        bad_gateway(&mut client).await;
        return;
    };
    let _conn = backend.instance.open();
    let revoked = backend.instance.closed();
    let ended = forward::forward(&mut client, &mut backend.stream, bounds(g), revoked, stop).await;
    if ended != Ended::Closed {
        // best effort close_notify to the client
        let _ = tokio::time::timeout(Duration::from_millis(100), client.shutdown()).await;
    }
    finish(g, mode, ended, &backend.instance.app_id);
}

fn finish(g: &Shared, mode: &'static str, ended: Ended, app_id: &[u8; 20]) {
    if ended == Ended::Revoked {
        tracing::info!(app_id = %hex::encode(app_id), mode, "connection closed: instance revoked");
    }
    g.metrics.connection_ended(mode, ended.label());
}

/// Answer 502 to the client's request: wait for its request head (an HTTP client
/// rejects an answer that comes before its request), answer, then read and drop what it
/// still sends for a moment, so it reads the answer instead of a reset.
async fn bad_gateway<S: Io>(client: &mut S) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(REQUEST_HEAD_WAIT, async {
        while head.len() < MAX_DRAIN && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    if client.write_all(BAD_GATEWAY).await.is_err() {
        return;
    }
    let _ = client.flush().await;
    hello::drain(client, &mut buf, MAX_DRAIN, DRAIN_AFTER_502).await;
    let _ = tokio::time::timeout(Duration::from_millis(100), client.shutdown()).await;
}

/// The gateway's own pages on the base domain: the ACME document monitors read (only
/// with an ACME certificate source; otherwise the name is not served).
async fn own_pages(g: &Arc<Shared>, mut hello: Hello, stop: watch::Receiver<bool>) {
    let Some(router) = g.own_router.clone() else {
        return refuse(
            g,
            &mut hello.stream,
            "other_domain",
            alerts::UNRECOGNIZED_NAME,
        )
        .await;
    };
    let handshake = tokio::time::timeout(
        g.options.proxy.handshake_timeout,
        StartHandshake::from_parts(hello.accepted, hello.stream)
            .into_stream(Arc::clone(&g.public_tls)),
    )
    .await;
    let Ok(Ok(tls)) = handshake else {
        g.metrics.connection_ended("own", "handshake_failed");
        return;
    };
    let service = hyper_util::service::TowerToHyperService::new(router);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(OWN_PAGES_TIMEOUT)
        .serve_connection(TokioIo::new(tls), service);
    tokio::select! {
        _ = tokio::time::timeout(OWN_PAGES_TIMEOUT, conn) => {}
        _ = forward_stop(stop) => {}
    }
    g.metrics.connection_ended("own", "closed");
}

async fn forward_stop(mut stop: watch::Receiver<bool>) {
    crate::forward::stopped(&mut stop).await;
}
