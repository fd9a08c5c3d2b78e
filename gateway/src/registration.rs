//! The registration listener: mutual TLS with the gateway's KMS-issued chain, then
//! `POST /v1/register` (`admission`).
//!
//! The TLS layer proves only that the client holds the key of the certificate it
//! presents (`PossessionClientVerifier::mandatory`); the chain and the evidence are
//! admission's steps 1–2, so a refusal is an answer naming the check (403
//! `denied.chain`, `denied.quote`, …) rather than an opaque TLS alert — the same choice
//! as the KMS's (docs/architecture.md).
//!
//! Limits: connections in all and per source, the handshake timeout, header and body
//! size and time, the whole request's time, and requests in flight.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use cairn_protocol::gateway::{RegisterRequest, MAX_REGISTER_BODY, PATH_REGISTER};
use cairn_service::{accept_admitted, ConnectionGate};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;
use tower_http::timeout::TimeoutLayer;

use crate::admission::{self, Peer};
use crate::reject::ApiError;
use crate::service::Shared;

/// Most registrations processed at once (each may verify a quote and call the chain).
pub const MAX_IN_FLIGHT: usize = 64;
/// Time allowed for one registration, admission included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for a request's headers (also the idle keep-alive).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The registration router; requests carry the connection's [`Peer`] as an extension.
pub(crate) fn router(g: Arc<Shared>) -> Router {
    Router::new()
        .route(PATH_REGISTER, post(register))
        .fallback(|| async { ApiError::NotFound })
        .layer(DefaultBodyLimit::max(MAX_REGISTER_BODY))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(g)
}

async fn register(
    State(g): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    body: axum::body::Bytes,
) -> Response {
    // The body is in memory before a permit is taken: a client trickling its body holds
    // a connection slot (bounded per source), never an admission permit.
    let result = match serde_json::from_slice::<RegisterRequest>(&body) {
        Err(e) => Err(ApiError::bad_request(format!("registration body: {e}"))),
        Ok(req) => match g.admissions.acquire().await {
            Ok(_permit) => admission::admit(&g, &peer, req).await,
            Err(_) => Err(ApiError::Internal("admission closed".to_owned())),
        },
    };
    match result {
        Ok((instance, resp)) => {
            g.metrics.registration("admitted", "none");
            tracing::info!(
                app_id = %hex::encode(instance.app_id),
                instance = %hex::encode(&instance.instance_id),
                address = %peer.addr.ip(),
                block = resp.policy_block.number,
                "instance admitted"
            );
            Json(resp).into_response()
        }
        Err(e) => {
            admission::record_refusal(&g, &peer, &e);
            e.into_response()
        }
    }
}

/// Serve registrations until `stop` flips.
pub(crate) async fn serve(listener: TcpListener, g: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let limits = g.options.registration;
    let acceptor = TlsAcceptor::from(Arc::clone(&g.registration_tls));
    let app = router(Arc::clone(&g));
    let gate = ConnectionGate::new(limits.max_connections, limits.max_connections_per_source);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "gateway registration listening");
    }
    while let Some((tcp, remote, admitted)) =
        accept_admitted(&listener, &gate, crate::forward::stopped(&mut stop), |_| {}).await
    {
        let (acceptor, app, stop) = (acceptor.clone(), app.clone(), stop.clone());
        tokio::spawn(async move {
            let _admitted = admitted;
            connection(acceptor, app, tcp, remote, limits.handshake_timeout, stop).await;
        });
    }
}

async fn connection(
    acceptor: TlsAcceptor,
    app: Router,
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
    handshake_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "registration handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "registration handshake timed out");
            return;
        }
    };
    let chain: Vec<Vec<u8>> = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.to_vec()).collect())
        .unwrap_or_default();
    let peer = Peer {
        chain: Arc::new(chain),
        addr: remote,
    };
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(peer.clone());
            let app = app.clone();
            async move {
                let resp = match app.oneshot(req.map(axum::body::Body::new)).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(resp)
            }
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%remote, error = %e, "registration connection ended");
            }
        }
        _ = crate::forward::stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, conn).await;
        }
    }
}
