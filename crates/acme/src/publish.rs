//! The published document for monitors: `GET /.dstack/acme-info` (dstack-gateway's path
//! and shape, [`crate::AcmeInfo`]). The gateway merges this router into the HTTP server it
//! serves on the base domain, behind its own limits.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::attest::AcmeInfo;
use crate::consts::ACME_INFO_PATH;
use crate::manager::AcmeManager;

/// A router serving [`ACME_INFO_PATH`] from `manager`.
pub fn acme_info_router(manager: Arc<AcmeManager>) -> Router {
    Router::new()
        .route(ACME_INFO_PATH, get(acme_info))
        .with_state(manager)
}

async fn acme_info(State(m): State<Arc<AcmeManager>>) -> Json<AcmeInfo> {
    Json(m.acme_info())
}
