//! The HTTPS server: a TLS accept loop (tokio-rustls, ring) serving an axum router per
//! connection (hyper HTTP/1.1), with the peer's client certificate, if any, inserted
//! into every request as a [`Peer`] extension.
//!
//! Limits: connections in all and per source, the TLS handshake, headers, the request
//! body (read in full before the request competes for a permit), stalled writes
//! ([`ServerLimits`], `limits`); in-flight releases ([`MAX_IN_FLIGHT`]) and in-flight
//! public API requests ([`MAX_PUBLIC_IN_FLIGHT`]) in separate pools, so neither waits
//! behind the other, and `/healthz` and `/metrics` in none (they read local state only);
//! body size ([`MAX_BODY`]) and the per-request timeout. Shutdown: stop accepting, stop
//! the anchoring task, let in-flight requests (releases included) finish for up to
//! [`DRAIN_TIMEOUT`].

mod handlers;
mod limits;
pub(crate) mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse as _;
use axum::routing::{get, post};
use axum::Router;
use cairn_protocol::api::{
    PATH_APP_KEY, PATH_ENV_PUBKEY, PATH_LOG_CHECKPOINT, PATH_LOG_CONSISTENCY, PATH_LOG_ENTRIES,
    PATH_LOG_INCLUSION, PATH_META, PATH_ONBOARD, PATH_SIGN_CERT,
};
use cairn_service::{accept_admitted, ConnectionGate};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceExt as _;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use limits::{
    ServerLimits, DEFAULT_BODY_IDLE_TIMEOUT, DEFAULT_BODY_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_SOURCE, DEFAULT_WRITE_STALL_TIMEOUT,
};

use crate::error::Result;
use crate::node::Node;

/// Most release requests (`app-key`, `sign-cert`, `onboard`) processed at once; more wait
/// in line. Bounds the memory and the chain/verification work in flight. A request takes
/// a permit only once its body is in memory.
pub const MAX_IN_FLIGHT: usize = 256;
/// Most public API requests (`meta`, `env-pubkey`, log endpoints) processed at once, in
/// a pool of their own.
pub const MAX_PUBLIC_IN_FLIGHT: usize = 256;
/// Largest request body. The biggest request is a CSR (16 KiB as hex, 32 KiB + JSON).
pub const MAX_BODY: usize = 64 * 1024;
/// Time allowed to read a request's headers; hyper also runs it while a kept-alive
/// connection waits for its next request, so idle connections close after it.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for one request, release path included (the chain RPC timeout is
/// shorter, so a dead chain answers 503 before this fires).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The peer of a connection: its client certificate (DER) if it presented one. The TLS
/// layer has checked only that the peer holds the certificate key (see `tls`).
#[derive(Clone, Debug, Default)]
pub struct Peer {
    /// The end-entity client certificate, DER.
    pub cert: Option<Arc<Vec<u8>>>,
}

/// The router with every endpoint and the limits; requests without a [`Peer`]
/// extension are treated as having no client certificate. Releases and the public API
/// have separate concurrency pools; `/healthz` and `/metrics` have none.
pub fn router(node: Arc<Node>) -> Router {
    // `Router::layer` wraps every route separately; a global layer shares one semaphore
    // across the routes of its router.
    let releases = Router::new()
        .route(PATH_APP_KEY, post(handlers::app_key))
        .route(PATH_SIGN_CERT, post(handlers::sign_cert))
        .route(PATH_ONBOARD, post(handlers::onboard))
        .layer(GlobalConcurrencyLimitLayer::new(MAX_IN_FLIGHT));
    let public = Router::new()
        .route(PATH_ENV_PUBKEY, get(handlers::env_pubkey))
        .route(PATH_META, get(handlers::meta))
        .route(PATH_LOG_CHECKPOINT, get(handlers::checkpoint))
        .route(PATH_LOG_ENTRIES, get(handlers::entries))
        .route(PATH_LOG_INCLUSION, get(handlers::inclusion))
        .route(PATH_LOG_CONSISTENCY, get(handlers::consistency))
        .layer(GlobalConcurrencyLimitLayer::new(MAX_PUBLIC_IN_FLIGHT));
    let probes = Router::new()
        .route("/metrics", get(handlers::metrics))
        .route("/healthz", get(handlers::healthz));
    Router::new()
        .merge(releases)
        .merge(public)
        .merge(probes)
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(node)
}

/// One request of a connection: count it, read its body (so it reaches a permit only
/// once the body is in memory), then hand it to the router with the connection's peer.
async fn serve_request(
    app: Router,
    node: Arc<Node>,
    peer: Peer,
    limits: ServerLimits,
    req: hyper::Request<hyper::body::Incoming>,
) -> std::result::Result<axum::response::Response, Infallible> {
    let _in_flight = node.metrics().request_started();
    let mut req = match limits::read_body(req, &limits, node.metrics()).await {
        Ok(req) => req,
        Err(e) => {
            tracing::debug!(error = %e, "request body refused");
            let mut resp = e.into_response();
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Ok(resp);
        }
    };
    req.extensions_mut().insert(peer);
    app.oneshot(req).await
}

/// Serve `node` on `listener` with the default [`ServerLimits`] until `shutdown`
/// completes; also runs the checkpoint anchoring task. Returns after in-flight requests
/// drained (or [`DRAIN_TIMEOUT`]).
pub async fn run(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    run_with(listener, node, ServerLimits::default(), shutdown).await
}

/// [`run`] with explicit connection and body limits.
pub async fn run_with(
    listener: TcpListener,
    node: Arc<Node>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let acceptor = TlsAcceptor::from(tls::server_config(Arc::new(crate::node::CurrentCert(
        Arc::clone(&node),
    )))?);
    let app = router(Arc::clone(&node));
    serve(listener, node, app, acceptor, limits, shutdown).await
}

/// The accept loop of [`run_with`], serving `app` with `acceptor`'s TLS certificate.
/// Product code serves only [`router`] under the node's own certificate; the test
/// support (`testing`, feature `test-utils`) serves a KMS in disguise through here, so
/// a hostile test server is the real server with exactly one thing changed.
pub(crate) async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    app: Router,
    acceptor: TlsAcceptor,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let anchor = tokio::spawn(crate::anchor::run(Arc::clone(&node), stop_rx.clone()));
    let generations = tokio::spawn(crate::node::sync_task(
        Arc::clone(&node),
        node.anchor_interval(),
        stop_rx,
    ));
    let graceful = GracefulShutdown::new();
    let gate = ConnectionGate::new(limits.max_connections, limits.max_connections_per_source);
    tokio::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, ?limits, "KMS serving");
    }
    let refused = |why| node.metrics().connection_refused(why);
    while let Some((tcp, remote, admitted)) =
        accept_admitted(&listener, &gate, &mut shutdown, refused).await
    {
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        let node = Arc::clone(&node);
        tokio::spawn(async move {
            let _admitted = admitted;
            let _open = node.metrics().connection_opened();
            let io = limits::WriteDeadline::new(tcp, limits.write_stall_timeout);
            let tls =
                match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(io)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        node.metrics().handshake_timed_out();
                        tracing::debug!(%remote, "TLS handshake timed out");
                        return;
                    }
                };
            let peer = Peer {
                cert: tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| Arc::new(c.to_vec())),
            };
            let service = hyper::service::service_fn({
                let node = Arc::clone(&node);
                move |req| serve_request(app.clone(), Arc::clone(&node), peer.clone(), limits, req)
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    tracing::info!("shutting down: draining connections");
    let _ = stop_tx.send(true);
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout: closing remaining connections");
    }
    if let Err(e) = anchor.await {
        tracing::warn!(error = %e, "anchoring task failed");
    }
    if let Err(e) = generations.await {
        tracing::warn!(error = %e, "key-generation sync task failed");
    }
    Ok(())
}
