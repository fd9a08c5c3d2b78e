//! The host side of the guest → host channel ([`cairn_protocol::hostapi`]): one unix
//! socket per CVM (`<cvm>/host-api.sock`, process backend), whose reports go into that
//! CVM's status. The socket's location identifies the CVM; the VMM trusts nothing a
//! report says beyond showing it (and `app.started` moving `booting` to `running`).
//!
//! Limits: 16 connections per socket, bodies of [`MAX_BODY`], 5 s per request.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use cairn_protocol::hostapi::{HostInfo, Notification, MAX_BODY, PATH_INFO, PATH_NOTIFY};
use tower_http::timeout::TimeoutLayer;

use crate::error::{Error, Result};
use crate::manager::{CvmRef, Vmm};
use crate::server::{listen, ApiJson};

/// Most open connections on one CVM's host-API socket.
pub const MAX_CONNECTIONS: usize = 16;
/// Time allowed for one report.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct HostState {
    cvm: CvmRef,
    vmm: std::sync::Weak<Vmm>,
}

async fn notify(
    State(s): State<HostState>,
    ApiJson(n): ApiJson<Notification>,
) -> Result<StatusCode> {
    if let Some(v) = s.vmm.upgrade() {
        v.metrics().guest_report();
    }
    tracing::debug!(cvm = %s.cvm.id, event = %n.event, "guest report");
    s.cvm.on_report(n)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn info() -> Json<HostInfo> {
    Json(HostInfo {
        name: "cairn-vmm".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

/// Bind `cvm`'s host-API socket (replacing a stale one) and serve it until the CVM is
/// removed or the VMM shuts down.
pub(crate) fn serve(cvm: &CvmRef, vmm: &Arc<Vmm>) -> Result<()> {
    let path = cvm.dir.host_api();
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", &path, e)),
    }
    let listener =
        tokio::net::UnixListener::bind(&path).map_err(|e| Error::io("bind", &path, e))?;
    let router = Router::new()
        .route(PATH_NOTIFY, post(notify))
        .route(PATH_INFO, get(info))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(HostState {
            cvm: Arc::clone(cvm),
            vmm: Arc::downgrade(vmm),
        });
    let task = tokio::spawn(listen::serve(
        None,
        Some(listener),
        router,
        MAX_CONNECTIONS,
        std::future::pending(),
    ));
    cvm.add_task(task.abort_handle());
    Ok(())
}
