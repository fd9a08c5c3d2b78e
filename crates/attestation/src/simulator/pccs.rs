//! The simulator's collateral served like a PCCS (Intel PCS v4 paths).
//!
//! | path | body | issuer-chain header |
//! |---|---|---|
//! | `/sgx/certification/v4/pckcrl?ca=platform` | PCK CRL, DER | `SGX-PCK-CRL-Issuer-Chain` |
//! | `/sgx/certification/v4/rootcacrl` | root CA CRL, hex of DER (as a PCCS does) | — |
//! | `/tdx/certification/v4/tcb?fmspc=…` | `{"tcbInfo":{…},"signature":"<hex>"}` | `TCB-Info-Issuer-Chain` |
//! | `/tdx/certification/v4/qe/identity` | `{"enclaveIdentity":{…},"signature":"<hex>"}` | `SGX-Enclave-Identity-Issuer-Chain` |
//!
//! JSON bodies embed the signed objects byte for byte, compact, so they survive both an
//! exact-bytes client and dcap-qvl's re-serialising client (MOCK-PKI.md §10.8).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::{Query, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::pki::{SimPki, SIM_FMSPC};
use crate::collateral::percent_encode;

struct PccsState {
    pki: RwLock<Arc<SimPki>>,
    requests: AtomicU64,
    /// Requests per route, in the order of [`ROUTES`].
    per_route: [AtomicU64; 4],
}

/// The routes served, in the order of [`PccsState::per_route`].
const ROUTES: [&str; 4] = [
    "/sgx/certification/v4/pckcrl",
    "/sgx/certification/v4/rootcacrl",
    "/tdx/certification/v4/tcb",
    "/tdx/certification/v4/qe/identity",
];

/// A PCCS serving one [`SimPki`]'s collateral; the PKI can be swapped to simulate new
/// collateral being published.
#[derive(Clone)]
pub struct SimPccs {
    state: Arc<PccsState>,
}

impl std::fmt::Debug for SimPccs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPccs")
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

impl SimPccs {
    /// Serve `pki`'s collateral.
    pub fn new(pki: Arc<SimPki>) -> Self {
        SimPccs {
            state: Arc::new(PccsState {
                pki: RwLock::new(pki),
                requests: AtomicU64::new(0),
                per_route: Default::default(),
            }),
        }
    }

    /// Publish another PKI's collateral from now on.
    pub fn set_pki(&self, pki: Arc<SimPki>) {
        *self.state.pki.write().unwrap_or_else(|p| p.into_inner()) = pki;
    }

    /// Number of requests served so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Number of requests served so far on `path` (one of the paths in the module docs,
    /// without the query); 0 for any other path.
    pub fn requests_to(&self, path: &str) -> u64 {
        ROUTES
            .iter()
            .position(|r| *r == path)
            .map_or(0, |i| self.state.per_route[i].load(Ordering::Relaxed))
    }

    /// The axum router (for in-process tests with `oneshot`).
    pub fn router(&self) -> Router {
        Router::new()
            .route(ROUTES[0], get(pck_crl))
            .route(ROUTES[1], get(root_ca_crl))
            .route(ROUTES[2], get(tcb_info))
            .route(ROUTES[3], get(qe_identity))
            .with_state(Arc::clone(&self.state))
    }

    /// Serve on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

fn pki(state: &PccsState, route: usize) -> Arc<SimPki> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(n) = state.per_route.get(route) {
        n.fetch_add(1, Ordering::Relaxed);
    }
    Arc::clone(&state.pki.read().unwrap_or_else(|p| p.into_inner()))
}

fn with_chain(mut resp: Response, name: &'static str, chain: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(&percent_encode(chain)) {
        resp.headers_mut().insert(HeaderName::from_static(name), v);
    }
    resp
}

async fn pck_crl(
    State(s): State<Arc<PccsState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let pki = pki(&s, 0);
    if q.get("ca").map(String::as_str) != Some("platform") {
        return (StatusCode::NOT_FOUND, "unknown ca").into_response();
    }
    let resp = (
        [(header::CONTENT_TYPE, "application/pkix-crl")],
        pki.pck_crl_der().to_vec(),
    )
        .into_response();
    with_chain(
        resp,
        "sgx-pck-crl-issuer-chain",
        &pki.pck_crl_issuer_chain(),
    )
}

async fn root_ca_crl(State(s): State<Arc<PccsState>>) -> Response {
    let pki = pki(&s, 1);
    hex::encode(pki.root_ca_crl_der()).into_response()
}

async fn tcb_info(
    State(s): State<Arc<PccsState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let pki = pki(&s, 2);
    let wanted = q.get("fmspc").and_then(|f| hex::decode(f).ok());
    if wanted.as_deref() != Some(&SIM_FMSPC[..]) {
        return (StatusCode::NOT_FOUND, "unknown fmspc").into_response();
    }
    let body = format!(
        r#"{{"tcbInfo":{},"signature":"{}"}}"#,
        pki.tcb_info_json(),
        hex::encode(pki.tcb_info_signature())
    );
    let resp = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    with_chain(resp, "tcb-info-issuer-chain", &pki.tcb_info_issuer_chain())
}

async fn qe_identity(State(s): State<Arc<PccsState>>) -> Response {
    let pki = pki(&s, 3);
    let body = format!(
        r#"{{"enclaveIdentity":{},"signature":"{}"}}"#,
        pki.qe_identity_json(),
        hex::encode(pki.qe_identity_signature())
    );
    let resp = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    with_chain(
        resp,
        "sgx-enclave-identity-issuer-chain",
        &pki.tcb_info_issuer_chain(),
    )
}
