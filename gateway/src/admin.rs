//! The admin listener (plain HTTP): `GET /v1/status` (admitted instances per app with
//! their on-chain verdicts, recent refusals), `GET /metrics`, `GET /healthz`.
//!
//! It is for the operator only: either it listens on a loopback address (the config
//! refuses anything else without a token), or every request but `/healthz` must carry
//! `Authorization: Bearer <token>` (compared in constant time).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cairn_protocol::api::ErrorBody;
use cairn_protocol::gateway::{GatewayStatus, PATH_STATUS};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::timeout::TimeoutLayer;

use crate::metrics::Gauges;
use crate::registry::block_ref;
use crate::service::Shared;

/// Time allowed for one admin request.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin router.
pub(crate) fn router(g: Arc<Shared>) -> Router {
    let protected = Router::new()
        .route(PATH_STATUS, get(status))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&g),
            require_token,
        ));
    Router::new()
        .merge(protected)
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            ADMIN_TIMEOUT,
        ))
        .with_state(g)
}

/// Equal length and equal bytes, without an early exit on the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(g): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if let Some(token) = &g.options.admin_token {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(presented.as_bytes(), token.as_bytes()) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(ErrorBody::new(
                    "unauthorized",
                    "this endpoint needs Authorization: Bearer <admin token>",
                )),
            )
                .into_response();
        }
    }
    next.run(req).await
}

/// The status document.
pub(crate) fn status_of(g: &Shared) -> GatewayStatus {
    let (apps, recent_denials) = g.registry.status();
    GatewayStatus {
        gateway_app_id: g.identity.app_id,
        base_domain: g.options.base_domain.clone(),
        policy_block: g.policy.last().map(block_ref),
        policy_age_ms: g.policy.age_ms(),
        apps,
        recent_denials,
    }
}

async fn status(State(g): State<Arc<Shared>>) -> Json<GatewayStatus> {
    Json(status_of(&g))
}

async fn metrics(State(g): State<Arc<Shared>>) -> impl IntoResponse {
    let gauges = Gauges {
        instances: g.registry.len() as u64,
        policy_block: g.policy.last().map_or(0, |b| b.number),
        policy_age_seconds: g.policy.age_ms().map_or(-1.0, |ms| ms as f64 / 1000.0),
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        g.metrics.render(&gauges),
    )
}

/// Serve the admin router until `stop` flips.
pub(crate) async fn serve(listener: TcpListener, g: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, token = g.options.admin_token.is_some(), "gateway admin listening");
    }
    let app = router(g);
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            crate::forward::stopped(&mut stop).await;
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "admin listener failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
