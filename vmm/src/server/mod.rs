//! The VMM's HTTP API: the router (one route table, also the source of truth the
//! OpenAPI test compares against), bearer-token auth on TCP, limits, and [`run`].
//!
//! Limits (each documented at its const): connections, in-flight requests, body size,
//! header and request timeouts, concurrent log followers.

mod handlers;
pub(crate) mod listen;
mod openapi;
mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use cairn_protocol::vmm::{
    PATH_APP, PATH_APPS, PATH_CVM, PATH_CVMS, PATH_CVM_LOGS, PATH_CVM_RESTART, PATH_CVM_START,
    PATH_CVM_STOP, PATH_CVM_UPGRADE, PATH_IMAGES, PATH_OPENAPI,
};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub(crate) use handlers::ApiJson;
pub use listen::Transport;
pub use openapi::openapi;
pub use ui::{PAGE_CSP, PAGE_PATH, SCRIPT_PATH, STYLE_PATH};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::manager::Vmm;

/// Most open API connections.
pub const MAX_CONNECTIONS: usize = 256;
/// Most API requests processed at once (log followers count only while starting).
pub const MAX_IN_FLIGHT: usize = 64;
/// Largest request body: a compose (256 KiB) and an env (256 KiB, hex) with room.
pub const MAX_BODY: usize = 2 * 1024 * 1024;
/// Time allowed for one request (pre-flight included: the chain timeout is shorter; a
/// stop waits for the guest's grace period, 10 s by default).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Most concurrent `logs?follow=true` streams.
pub const MAX_FOLLOWERS: usize = 64;

/// The shared state of the handlers.
#[derive(Clone)]
pub(crate) struct Api {
    pub vmm: Arc<Vmm>,
    /// SHA-256 of the bearer token, when one is configured.
    pub token: Option<[u8; 32]>,
    pub followers: Arc<Semaphore>,
}

/// The route table: (path, method, handler). The router is built from it, and the
/// OpenAPI test checks the document lists exactly these.
pub(crate) fn routes() -> Vec<(&'static str, Method, MethodRouter<Api>)> {
    use handlers as h;
    vec![
        (PATH_CVMS, Method::GET, get(h::list)),
        (PATH_CVMS, Method::POST, post(h::create)),
        (PATH_CVM, Method::GET, get(h::status)),
        (PATH_CVM, Method::DELETE, delete(h::remove)),
        (PATH_CVM_START, Method::POST, post(h::start)),
        (PATH_CVM_STOP, Method::POST, post(h::stop)),
        (PATH_CVM_RESTART, Method::POST, post(h::restart)),
        (PATH_CVM_UPGRADE, Method::POST, post(h::upgrade)),
        (PATH_CVM_LOGS, Method::GET, get(h::logs)),
        (PATH_IMAGES, Method::GET, get(h::images)),
        (PATH_APPS, Method::GET, get(h::apps)),
        (PATH_APP, Method::GET, get(h::app)),
        (PATH_OPENAPI, Method::GET, get(h::openapi_json)),
        ("/healthz", Method::GET, get(h::healthz)),
        ("/metrics", Method::GET, get(h::metrics)),
    ]
}

/// The (path, method) pairs the router serves.
pub fn route_table() -> Vec<(&'static str, Method)> {
    routes().into_iter().map(|(p, m, _)| (p, m)).collect()
}

/// The API router for `vmm`, with the web page; `token` (if any) is required on TCP
/// requests to the API. Requests without a [`Transport`] extension (in-process tests)
/// count as unix-socket requests.
pub fn router(vmm: Arc<Vmm>, token: Option<&str>) -> Router {
    let api = Api {
        vmm,
        token: token.map(|t| Sha256::digest(t.as_bytes()).into()),
        followers: Arc::new(Semaphore::new(MAX_FOLLOWERS)),
    };
    let mut r: Router<Api> = Router::new();
    for (path, _, method_router) in routes() {
        r = r.route(path, method_router);
    }
    let api_routes = r
        .fallback(handlers::not_found)
        .layer(middleware::from_fn_with_state(api.clone(), auth))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(GlobalConcurrencyLimitLayer::new(MAX_IN_FLIGHT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http())
        .layer(middleware::map_response(api_headers))
        .with_state(api);
    // The web page's static files: no data, no auth (see `ui`).
    ui::router().merge(api_routes)
}

/// The CSP of API responses: nothing in them is a document that may run or load
/// anything (a log opened in a browser stays text).
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";

async fn api_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(API_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    resp
}

/// Constant-time equality of two digests.
fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(api): State<Api>, req: Request, next: Next) -> Response {
    let tcp = matches!(req.extensions().get::<Transport>(), Some(Transport::Tcp(_)));
    if let (true, Some(want)) = (tcp, api.token.as_ref()) {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| <[u8; 32]>::from(Sha256::digest(t.trim().as_bytes())));
        if !given.is_some_and(|g| digest_eq(&g, want)) {
            return Error::Unauthorized.into_response();
        }
    }
    next.run(req).await
}

/// The listeners of a VMM.
#[derive(Debug, Default)]
pub struct Listeners {
    /// Loopback (or, with a token, any) TCP.
    pub tcp: Option<TcpListener>,
    /// A unix socket.
    pub unix: Option<UnixListener>,
}

impl Listeners {
    /// Bind what `[api]` asks for: the unix socket (a stale socket file is replaced;
    /// mode 0600) and the TCP address.
    pub async fn bind(config: &Config) -> Result<Listeners> {
        let unix = match &config.api.unix_socket {
            Some(path) => Some(bind_unix(path)?),
            None => None,
        };
        let tcp = match config.api.tcp {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| Error::config("api.tcp", format!("cannot bind {addr}: {e}")))?,
            ),
            None => None,
        };
        if tcp.is_none() && unix.is_none() {
            return Err(Error::config("api", "set api.unix_socket and/or api.tcp"));
        }
        Ok(Listeners { tcp, unix })
    }
}

/// Bind a unix socket at `path` (replacing a stale socket file), mode 0600.
pub fn bind_unix(path: &Path) -> Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|e| Error::io("remove", path, e))?
        }
        Ok(_) => {
            return Err(Error::config(
                "api.unix_socket",
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(_) => {}
    }
    let l = UnixListener::bind(path).map_err(|e| {
        Error::config(
            "api.unix_socket",
            format!("cannot bind {}: {e}", path.display()),
        )
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("chmod", path, e))?;
    Ok(l)
}

fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Run a VMM: open the state directory from `config` (re-adopting CVMs), serve the API
/// on `listeners` until `shutdown` completes, drain, stop background work. CVMs keep
/// running after it returns; the next `run` re-adopts them.
///
/// Refuses to start when a TCP listener is not on loopback and no bearer token is
/// configured.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let token = config.token()?;
    if let Some(tcp) = &listeners.tcp {
        let addr = tcp
            .local_addr()
            .map_err(|e| Error::config("api.tcp", e.to_string()))?;
        if !is_loopback(addr) && token.is_none() {
            return Err(Error::config(
                "api.token_file",
                format!("{addr} is not a loopback address: a bearer token is required"),
            ));
        }
    }
    let vmm = Vmm::open(config).await?;
    let app = router(Arc::clone(&vmm), token.as_deref());
    if let Some(addr) = listeners.tcp.as_ref().and_then(|l| l.local_addr().ok()) {
        tracing::info!(%addr, auth = token.is_some(), "VMM serving on TCP");
    }
    if listeners.unix.is_some() {
        tracing::info!("VMM serving on a unix socket");
    }
    listen::serve(
        listeners.tcp,
        listeners.unix,
        app,
        MAX_CONNECTIONS,
        shutdown,
    )
    .await;
    vmm.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_compare_in_full() {
        let a: [u8; 32] = Sha256::digest(b"a-token").into();
        let b: [u8; 32] = Sha256::digest(b"b-token").into();
        assert!(digest_eq(&a, &a));
        assert!(!digest_eq(&a, &b));
    }
}
