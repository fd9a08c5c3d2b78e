//! The guest agent: dstack's guest-agent HTTP/JSON API (FORMATS.md "Guest agent HTTP
//! API", `docs/guest-agent.md`) on a unix socket, optionally TCP.
//!
//! Served only after a successful boot: every method answers from the [`GuestState`]
//! (the measured identity, the event log, the released app key).
//!
//! Every request goes through the same layers, outermost first:
//!
//! ```text
//! trace ─► JSON errors ─► deadline (REQUEST_TIMEOUT, 503)
//!       ─► read the whole body (≤ MAX_REQUEST_LEN: 413; BODY_READ_TIMEOUT: 408; protobuf: 415)
//!       ─► one permit of MAX_CONCURRENT_REQUESTS, shared by every route ─► the method
//! ```
//!
//! The body is read in full before the method runs, for every path (also `Info`,
//! `Version` and unknown paths, whose methods ignore it). hyper closes a connection
//! whose request body was left unread, and dstack's JS SDK writes the body in a
//! separate write after the headers: without this, a method that answered before the
//! body arrived made the SDK see `EPIPE`/`ECONNRESET`. Reading it before taking the
//! permit also means a slow client only ever holds its own connection, not one of the
//! shared permits.
//!
//! Errors are `{"error":"..."}`: 400 for bad input, 404 for unknown paths (naming the
//! replacement), 405, 408, 413, 415, 500/503 otherwise.
//!
//! # Layout
//! - `methods` — the current dstack methods (`GetKey`, `Sign`, …).
//! - `tappd` — the legacy `/prpc/Tappd.*` methods, mapped onto the current ones.
//! - `tls` — issuing a TLS key and certificate through the KMS (`GetTlsKey`,
//!   `Tappd.DeriveKey`).

mod methods;
mod tappd;
pub(crate) mod tls;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, StatusCode};
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use cairn_protocol::agent::{
    AgentError, MAX_REQUEST_LEN, METHODS, METHOD_ATTEST, METHOD_EMIT_EVENT, METHOD_GET_KEY,
    METHOD_GET_QUOTE, METHOD_GET_TLS_KEY, METHOD_INFO, METHOD_SIGN, METHOD_VERIFY, METHOD_VERSION,
    TAPPD_DERIVE_K256_KEY, TAPPD_DERIVE_KEY, TAPPD_INFO, TAPPD_METHODS, TAPPD_PREFIX,
    TAPPD_RAW_QUOTE, TAPPD_TDX_QUOTE, TAPPD_VERSION,
};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use tokio::net::{TcpListener, UnixListener};

use crate::error::Error;
use crate::state::GuestState;

pub use methods::{SIGN_KEY_PATH, SIGN_KEY_PURPOSE};
pub use tls::MAX_ALT_NAMES;

/// How long one agent request may take, body included (then 503).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a client may take to send its request body (then 408).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests whose methods run at once, over every route and listener of one router.
pub const MAX_CONCURRENT_REQUESTS: usize = 64;
/// Largest error-response body the JSON-error layer reads to rewrap (axum's rejection
/// texts are short).
const MAX_REJECTION_TEXT: usize = 4096;

/// An agent error, rendered as `{"error":"..."}` with its status.
#[derive(Debug)]
pub struct AgentFailure(Error);

impl From<Error> for AgentFailure {
    fn from(e: Error) -> Self {
        AgentFailure(e)
    }
}

impl AgentFailure {
    /// The error inside.
    pub(crate) fn into_inner(self) -> Error {
        self.0
    }
}

impl IntoResponse for AgentFailure {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Kms(_) | Error::NoKeys => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        tracing::warn!(error = %self.0, %status, "agent request failed");
        json_error(status, self.0.to_string())
    }
}

/// A `{"error": message}` response.
fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(AgentError {
            error: message.into(),
        }),
    )
        .into_response()
}

type AgentResult<T> = Result<Json<T>, AgentFailure>;

fn bad(msg: impl Into<String>) -> AgentFailure {
    AgentFailure(Error::BadRequest(msg.into()))
}

/// Parse a JSON body; an empty body is `{}`.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, AgentFailure> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

fn hex_arg(s: &str, max: usize, field: &str) -> Result<Vec<u8>, AgentFailure> {
    cairn_protocol::agent::decode_hex(s, max).map_err(|e| bad(format!("{field}: {e}")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::error::Result<T> + Send + 'static,
) -> Result<T, AgentFailure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentFailure(Error::Io(format!("worker: {e}"))))?
        .map_err(AgentFailure)
}

fn path(method: &str) -> String {
    format!("/{method}")
}

fn tappd_path(method: &str) -> String {
    format!("{TAPPD_PREFIX}{method}")
}

/// The agent's router (tests call it without a socket). Clones share one concurrency
/// limit: serve every listener of one agent from clones of one router.
pub fn router(state: Arc<GuestState>) -> Router {
    Router::new()
        .route(&path(METHOD_GET_KEY), post(methods::get_key))
        .route(&path(METHOD_GET_TLS_KEY), post(methods::get_tls_key))
        .route(&path(METHOD_GET_QUOTE), post(methods::get_quote))
        .route(&path(METHOD_ATTEST), post(methods::attest))
        .route(&path(METHOD_INFO), post(methods::info).get(methods::info))
        .route(&path(METHOD_SIGN), post(methods::sign))
        .route(&path(METHOD_VERIFY), post(methods::verify))
        .route(
            &path(METHOD_VERSION),
            post(methods::version).get(methods::version),
        )
        .route(&path(METHOD_EMIT_EVENT), post(methods::emit_event))
        .route(&tappd_path(TAPPD_DERIVE_KEY), post(tappd::derive_key))
        .route(
            &tappd_path(TAPPD_DERIVE_K256_KEY),
            post(tappd::derive_k256_key),
        )
        .route(&tappd_path(TAPPD_TDX_QUOTE), post(tappd::tdx_quote))
        .route(&tappd_path(TAPPD_RAW_QUOTE), post(tappd::raw_quote))
        .route(
            &tappd_path(TAPPD_INFO),
            post(methods::info).get(methods::info),
        )
        .route(
            &tappd_path(TAPPD_VERSION),
            post(methods::version).get(methods::version),
        )
        .fallback(unknown_path)
        // innermost: one semaphore shared by every route (and every clone)
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            MAX_CONCURRENT_REQUESTS,
        ))
        .layer(from_fn(read_body))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_LEN))
        .layer(from_fn(deadline))
        .layer(from_fn(json_errors))
        // method and path only: bodies (keys, report data) are never traced
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// 404 for a path the agent does not serve, naming what replaces it.
async fn unknown_path(uri: axum::http::Uri) -> Response {
    json_error(StatusCode::NOT_FOUND, unknown_path_message(uri.path()))
}

/// The message of a 404: the current method a known dstack name maps to, or the list.
pub fn unknown_path_message(path: &str) -> String {
    let shown: String = path.chars().take(128).collect();
    let name = path
        .trim_start_matches('/')
        .trim_start_matches("prpc/")
        .rsplit('.')
        .next()
        .unwrap_or_default();
    if let Some((legacy, current)) = TAPPD_METHODS.iter().find(|(m, _)| *m == name) {
        return format!(
            "{shown} is not served; the legacy method is POST {TAPPD_PREFIX}{legacy}, its replacement POST /{current}"
        );
    }
    if let Some(current) = METHODS.iter().find(|m| **m == name) {
        return format!("{shown} is not served; use POST /{current}");
    }
    format!(
        "{shown} is not a guest-agent method; use POST /{} (legacy: {})",
        METHODS.join(", POST /"),
        TAPPD_METHODS
            .iter()
            .map(|(m, _)| format!("{TAPPD_PREFIX}{m}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The whole request deadline: 503 `{"error":"request timed out after 60s"}`.
async fn deadline(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("request timed out after {}s", REQUEST_TIMEOUT.as_secs()),
        ),
    }
}

/// Whether a request's content type is one the agent cannot parse (dstack's prpc also
/// speaks protobuf; Cairn's agent speaks JSON only).
fn is_protobuf(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.to_ascii_lowercase().contains("protobuf"))
        .unwrap_or(false)
}

/// Read the whole body (bounded in size and time) before the method runs; see the
/// module docs for why.
async fn read_body(req: Request, next: Next) -> Response {
    if is_protobuf(&req) {
        return json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the guest agent speaks JSON only (Content-Type: application/json)",
        );
    }
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_REQUEST_LEN);
    let bytes = match tokio::time::timeout(BODY_READ_TIMEOUT, limited.collect()).await {
        Err(_) => {
            return json_error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {}s",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            )
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {MAX_REQUEST_LEN} bytes"),
            )
        }
        Ok(Err(e)) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!("reading the request body: {e}"),
            )
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Give every error response the agent's shape: axum's own rejections (405, extractor
/// errors) are plain text or empty; they become `{"error": <text or reason>}`.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let body = http_body_util::Limited::new(resp.into_body(), MAX_REJECTION_TEXT)
        .collect()
        .await
        .map(|c| String::from_utf8_lossy(&c.to_bytes()).trim().to_owned())
        .unwrap_or_default();
    let message = if body.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request rejected")
            .to_owned()
    } else {
        body
    };
    json_error(status, message)
}

/// Serve on a unix socket at `path` (a stale socket file is replaced; anything else there
/// is an error) until `shutdown` resolves. The socket is made `0660`.
pub async fn serve_unix(
    path: &Path,
    state: Arc<GuestState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> crate::error::Result<()> {
    let listener = bind_unix(path)?;
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Io(e.to_string()))
}

/// Bind the agent's unix socket (replacing a stale socket file).
pub fn bind_unix(path: &Path) -> crate::error::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?
        }
        Ok(_) => {
            return Err(Error::Io(format!(
                "{} exists and is not a socket",
                path.display()
            )))
        }
        Err(_) => {}
    }
    let listener =
        UnixListener::bind(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    Ok(listener)
}

/// Serve on a bound TCP listener (development) until `shutdown` resolves.
pub async fn serve_tcp(
    listener: TcpListener,
    state: Arc<GuestState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> crate::error::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Io(e.to_string()))
}
