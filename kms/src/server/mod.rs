//! The HTTPS server: a TLS accept loop (tokio-rustls, ring) serving an axum router per
//! connection (hyper HTTP/1.1), with the peer's client certificate, if any, inserted
//! into every request as a [`Peer`] extension.
//!
//! Limits (each documented at its const): connections, in-flight requests, body size,
//! handshake, header and request timeouts. Shutdown: stop accepting, stop the anchoring
//! task, let in-flight requests (releases included) finish for up to [`DRAIN_TIMEOUT`].

mod handlers;
pub(crate) mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use cairn_protocol::api::{
    PATH_APP_KEY, PATH_ENV_PUBKEY, PATH_LOG_CHECKPOINT, PATH_LOG_CONSISTENCY, PATH_LOG_ENTRIES,
    PATH_LOG_INCLUSION, PATH_META, PATH_ONBOARD, PATH_SIGN_CERT,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceExt as _;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::Result;
use crate::node::Node;

/// Most open connections; further ones are closed at once. Each costs a task and TLS
/// state; guests keep one warm connection each.
pub const MAX_CONNECTIONS: usize = 1024;
/// Most requests processed at once across connections; more wait in line. Bounds the
/// memory and the chain/verification work in flight.
pub const MAX_IN_FLIGHT: usize = 256;
/// Largest request body. The biggest request is a CSR (16 KiB as hex, 32 KiB + JSON).
pub const MAX_BODY: usize = 64 * 1024;
/// Time allowed for a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to read a request's headers.
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
/// extension are treated as having no client certificate.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route(PATH_APP_KEY, post(handlers::app_key))
        .route(PATH_SIGN_CERT, post(handlers::sign_cert))
        .route(PATH_ENV_PUBKEY, get(handlers::env_pubkey))
        .route(PATH_META, get(handlers::meta))
        .route(PATH_ONBOARD, post(handlers::onboard))
        .route(PATH_LOG_CHECKPOINT, get(handlers::checkpoint))
        .route(PATH_LOG_ENTRIES, get(handlers::entries))
        .route(PATH_LOG_INCLUSION, get(handlers::inclusion))
        .route(PATH_LOG_CONSISTENCY, get(handlers::consistency))
        .route("/metrics", get(handlers::metrics))
        .route("/healthz", get(handlers::healthz))
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        // Global: `Router::layer` wraps every route separately, and this layer shares one
        // semaphore across all of them.
        .layer(GlobalConcurrencyLimitLayer::new(MAX_IN_FLIGHT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(node)
}

/// Serve `node` on `listener` until `shutdown` completes; also runs the checkpoint
/// anchoring task. Returns after in-flight requests drained (or `DRAIN_TIMEOUT`, 30 s).
pub async fn run(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let acceptor = TlsAcceptor::from(tls::server_config(node.server_cert())?);
    let app = router(Arc::clone(&node));
    let (stop_tx, stop_rx) = watch::channel(false);
    let anchor = tokio::spawn(crate::anchor::run(Arc::clone(&node), stop_rx));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "KMS serving");
    }
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(%remote, "connection limit reached; closing");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
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
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    app.clone().oneshot(req)
                },
            );
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
    Ok(())
}
