//! HTTP handlers: parse, call [`Node`], translate. Bad input is 400 with the API's error
//! shape (including JSON and query rejections); see `reject` for the status mapping.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use cairn_attestation::ids::AppId;
use cairn_protocol::api::{
    AppKeyRequest, AppKeyResponse, CheckpointResponse, ConsistencyProofResponse, EnvPubkeyResponse,
    Hash32, InclusionProofResponse, LogEntriesResponse, LogEntry, MetaResponse, OnboardRequest,
    OnboardResponse, SignCertRequest, SignCertResponse, MAX_LOG_ENTRIES_PER_RESPONSE,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::Peer;
use crate::node::Node;
use crate::reject::ApiError;

type NodeState = State<Arc<Node>>;

/// `Json` whose rejections use the API's error shape.
pub(crate) struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

fn json_rejection(rej: JsonRejection) -> ApiError {
    ApiError::BadRequest {
        status: match rej.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        },
        message: rej.body_text(),
    }
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|rej| ApiError::bad_request(rej.body_text()))
}

fn peer_cert(peer: &Option<Extension<Peer>>) -> Option<&[u8]> {
    peer.as_ref()
        .and_then(|Extension(p)| p.cert.as_deref())
        .map(Vec::as_slice)
}

/// The release endpoints, one a row: `handler(Request) -> Response = Node method`. Each
/// passes the caller's client certificate and its JSON body to the node.
macro_rules! release_handlers {
    ($($name:ident($req:ty) -> $resp:ty = $release:ident;)*) => {$(
        pub(crate) async fn $name(
            State(node): NodeState,
            peer: Option<Extension<Peer>>,
            ApiJson(req): ApiJson<$req>,
        ) -> Result<Json<$resp>, ApiError> {
            node.$release(peer_cert(&peer), &req).await.map(Json)
        }
    )*};
}

release_handlers! {
    app_key(AppKeyRequest) -> AppKeyResponse = release_app_key;
    sign_cert(SignCertRequest) -> SignCertResponse = sign_cert;
    onboard(OnboardRequest) -> OnboardResponse = onboard_peer;
}

pub(crate) async fn env_pubkey(
    State(node): NodeState,
    Path(app_id): Path<String>,
) -> Result<Json<EnvPubkeyResponse>, ApiError> {
    let app_id = AppId::from_hex(&app_id)
        .ok_or_else(|| ApiError::bad_request("app_id must be 20 bytes of hex"))?;
    node.env_pubkey(&app_id).map(Json)
}

pub(crate) async fn meta(State(node): NodeState) -> Json<MetaResponse> {
    Json(node.meta())
}

pub(crate) async fn checkpoint(
    State(node): NodeState,
) -> Result<Json<CheckpointResponse>, ApiError> {
    let cp = node.log().checkpoint(node.checkpoint_signer())?;
    Ok(Json(CheckpointResponse {
        checkpoint: cp.to_string(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntriesQuery {
    start: u64,
    end: u64,
}

pub(crate) async fn entries(
    State(node): NodeState,
    q: Result<Query<EntriesQuery>, QueryRejection>,
) -> Result<Json<LogEntriesResponse>, ApiError> {
    let EntriesQuery { start, end } = query(q)?;
    let size = node.log().size();
    if start >= end || end > size {
        return Err(ApiError::bad_request(format!(
            "need start < end <= log size {size}, got start={start} end={end}"
        )));
    }
    let end = end.min(start.saturating_add(MAX_LOG_ENTRIES_PER_RESPONSE));
    let entries = node.log().entries(start..end)?;
    Ok(Json(LogEntriesResponse {
        start,
        entries: entries.into_iter().map(LogEntry).collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InclusionQuery {
    index: u64,
    size: u64,
}

pub(crate) async fn inclusion(
    State(node): NodeState,
    q: Result<Query<InclusionQuery>, QueryRejection>,
) -> Result<Json<InclusionProofResponse>, ApiError> {
    let InclusionQuery { index, size } = query(q)?;
    let log_size = node.log().size();
    if index >= size || size > log_size {
        return Err(ApiError::bad_request(format!(
            "need index < size <= log size {log_size}, got index={index} size={size}"
        )));
    }
    let hashes = node.log().inclusion_proof(index, size)?;
    Ok(Json(InclusionProofResponse {
        index,
        size,
        hashes: hashes.into_iter().map(|h| Hash32(h.0)).collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsistencyQuery {
    first: u64,
    second: u64,
}

pub(crate) async fn consistency(
    State(node): NodeState,
    q: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> Result<Json<ConsistencyProofResponse>, ApiError> {
    let ConsistencyQuery { first, second } = query(q)?;
    let log_size = node.log().size();
    if first > second || second > log_size {
        return Err(ApiError::bad_request(format!(
            "need first <= second <= log size {log_size}, got first={first} second={second}"
        )));
    }
    let hashes = node.log().consistency_proof(first, second)?;
    Ok(Json(ConsistencyProofResponse {
        first,
        second,
        hashes: hashes.into_iter().map(|h| Hash32(h.0)).collect(),
    }))
}

pub(crate) async fn metrics(State(node): NodeState) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        node.render_metrics(),
    )
}

/// `ok`, or 503 `unavailable.anchor` saying why the node is not ready (local state only).
pub(crate) async fn healthz(State(node): NodeState) -> Result<&'static str, ApiError> {
    node.readiness().map(|()| "ok")
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".to_owned())
}
