//! HTTP handlers: parse, call [`Vmm`](crate::Vmm), translate. Bad input is 400 with the
//! API's error shape (JSON and query rejections included); `reject.rs` maps the rest.
//! Each handler carries its `#[utoipa::path]` (the OpenAPI document is built from them).

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_protocol::api::ErrorBody;
use cairn_protocol::vmm::{
    AppList, CreateCvmRequest, CvmInfo, CvmList, ImageList, PreflightReport, UpgradeRequest,
    MAX_LOG_TAIL_LINES,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::Api;
use crate::error::{Error, Result};
use crate::logs::{self, Follower, FOLLOW_POLL};
use crate::manager::UpgradeOutcome;

/// `Json` whose rejections use the API's error shape.
pub(crate) struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

fn json_rejection(rej: JsonRejection) -> Error {
    Error::Body {
        too_large: rej.status() == StatusCode::PAYLOAD_TOO_LARGE,
        reason: rej.body_text(),
    }
}

fn query<T>(q: std::result::Result<Query<T>, QueryRejection>) -> Result<T> {
    q.map(|Query(v)| v).map_err(|rej| Error::Body {
        too_large: false,
        reason: rej.body_text(),
    })
}

#[utoipa::path(get, path = "/v1/cvms", tag = "cvms",
    responses((status = 200, description = "Every CVM", body = CvmList)))]
pub(crate) async fn list(State(api): State<Api>) -> Json<CvmList> {
    Json(api.vmm.list())
}

#[utoipa::path(post, path = "/v1/cvms", tag = "cvms", request_body = CreateCvmRequest,
    responses(
        (status = 201, description = "Created (and started unless `start` is false)", body = CvmInfo),
        (status = 400, description = "Invalid request (names the field)", body = ErrorBody),
        (status = 403, description = "Refused by the chain pre-flight (`denied.<check>`, the contract's reason)", body = ErrorBody),
        (status = 409, description = "Name or port taken, limit reached", body = ErrorBody),
        (status = 413, description = "Body or compose too large", body = ErrorBody),
        (status = 503, description = "Chain unavailable (nothing was created)", body = ErrorBody)))]
pub(crate) async fn create(
    State(api): State<Api>,
    ApiJson(req): ApiJson<CreateCvmRequest>,
) -> Result<(StatusCode, Json<CvmInfo>)> {
    Ok((StatusCode::CREATED, Json(api.vmm.create(req).await?)))
}

#[utoipa::path(get, path = "/v1/cvms/{id}", tag = "cvms",
    params(("id" = String, Path, description = "CVM id or name")),
    responses((status = 200, description = "The CVM", body = CvmInfo),
        (status = 404, description = "No such CVM", body = ErrorBody)))]
pub(crate) async fn status(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<CvmInfo>> {
    api.vmm.get(&id).map(Json)
}

#[utoipa::path(delete, path = "/v1/cvms/{id}", tag = "cvms",
    params(("id" = String, Path, description = "CVM id or name")),
    responses((status = 204, description = "Stopped (its whole session) and removed"),
        (status = 404, description = "No such CVM", body = ErrorBody)))]
pub(crate) async fn remove(State(api): State<Api>, Path(id): Path<String>) -> Result<StatusCode> {
    api.vmm.remove(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/cvms/{id}/start", tag = "cvms",
    params(("id" = String, Path, description = "CVM id or name")),
    responses((status = 200, description = "Started (booting)", body = CvmInfo),
        (status = 403, description = "Refused by the chain pre-flight", body = ErrorBody),
        (status = 409, description = "Already running, or a port is taken", body = ErrorBody)))]
pub(crate) async fn start(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<CvmInfo>> {
    api.vmm.start(&id).await.map(Json)
}

#[utoipa::path(post, path = "/v1/cvms/{id}/stop", tag = "cvms",
    params(("id" = String, Path, description = "CVM id or name")),
    responses((status = 200, description = "Stopped", body = CvmInfo),
        (status = 404, description = "No such CVM", body = ErrorBody)))]
pub(crate) async fn stop(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<CvmInfo>> {
    api.vmm.stop(&id).await.map(Json)
}

#[utoipa::path(post, path = "/v1/cvms/{id}/restart", tag = "cvms",
    params(("id" = String, Path, description = "CVM id or name")),
    responses((status = 200, description = "Restarted (booting)", body = CvmInfo),
        (status = 403, description = "Refused by the chain pre-flight", body = ErrorBody)))]
pub(crate) async fn restart(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<CvmInfo>> {
    api.vmm.restart(&id).await.map(Json)
}

#[utoipa::path(post, path = "/v1/cvms/{id}/upgrade", tag = "cvms", request_body = UpgradeRequest,
    params(("id" = String, Path, description = "CVM id or name")),
    responses((status = 200, description = "Applied", body = CvmInfo),
        (status = 202, description = "Waiting for on-chain approval; progress in `upgrade`", body = CvmInfo),
        (status = 403, description = "Refused by the chain pre-flight", body = ErrorBody),
        (status = 409, description = "An upgrade is already waiting", body = ErrorBody)))]
pub(crate) async fn upgrade(
    State(api): State<Api>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpgradeRequest>,
) -> Result<(StatusCode, Json<CvmInfo>)> {
    Ok(match api.vmm.upgrade(&id, req).await? {
        UpgradeOutcome::Applied(i) => (StatusCode::OK, Json(i)),
        UpgradeOutcome::Waiting(i) => (StatusCode::ACCEPTED, Json(i)),
    })
}

/// `GET /v1/cvms/{id}/logs` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogsQuery {
    /// Lines from the end to send first (default 200, at most 10000).
    tail: Option<u32>,
    /// Keep the response open and stream new output until the CVM stops.
    #[serde(default)]
    follow: bool,
}

#[utoipa::path(get, path = "/v1/cvms/{id}/logs", tag = "cvms",
    params(("id" = String, Path, description = "CVM id or name"), LogsQuery),
    responses((status = 200, description = "The console log (text/plain; streamed with follow)", content_type = "text/plain", body = String),
        (status = 404, description = "No such CVM", body = ErrorBody),
        (status = 503, description = "Too many followers", body = ErrorBody)))]
pub(crate) async fn logs(
    State(api): State<Api>,
    Path(id): Path<String>,
    q: std::result::Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response> {
    let q = query(q)?;
    let tail = q.tail.unwrap_or(200);
    if tail > MAX_LOG_TAIL_LINES {
        return Err(Error::invalid(
            "tail",
            format!("at most {MAX_LOG_TAIL_LINES} lines"),
        ));
    }
    let (current, old, cvm) = api.vmm.log_paths(&id)?;
    let max = api.vmm.config().logs.max_bytes;
    let head = logs::tail(&current, &old, tail as usize, max)?;
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !q.follow {
        return Ok((text, head).into_response());
    }
    let permit = std::sync::Arc::clone(&api.followers)
        .try_acquire_owned()
        .map_err(|_| Error::Busy("too many log followers"))?;
    let state = FollowState {
        first: Some(head),
        follower: Follower::from_end(&current),
        cvm,
        done: false,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if let Some(b) = st.first.take() {
            return Some((Ok::<_, Error>(b), st));
        }
        loop {
            match st.follower.poll() {
                Ok(b) if !b.is_empty() => return Some((Ok(b), st)),
                Ok(_) => {}
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
            }
            if !st.cvm.read(|d| d.state.state.is_active()) {
                // The CVM ended: one last look for what it wrote before, then the end.
                st.done = true;
                return match st.follower.poll() {
                    Ok(b) if !b.is_empty() => Some((Ok(b), st)),
                    _ => None,
                };
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    });
    Ok((text, Body::from_stream(stream)).into_response())
}

/// A log follower's state: the backlog still to send, the file position, the CVM (the
/// stream ends when it stops) and its slot among [`super::MAX_FOLLOWERS`].
struct FollowState {
    first: Option<Vec<u8>>,
    follower: Follower,
    cvm: crate::manager::CvmRef,
    done: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

#[utoipa::path(get, path = "/v1/images", tag = "images",
    responses((status = 200, description = "The OS images with their measurements and whether KmsAuth allows them", body = ImageList)))]
pub(crate) async fn images(State(api): State<Api>) -> Json<ImageList> {
    Json(api.vmm.images().await)
}

#[utoipa::path(get, path = "/v1/apps", tag = "apps",
    responses((status = 200, description = "The apps of the managed CVMs and their on-chain status", body = AppList),
        (status = 503, description = "Chain unavailable", body = ErrorBody)))]
pub(crate) async fn apps(State(api): State<Api>) -> Result<Json<AppList>> {
    api.vmm.apps().await.map(Json)
}

/// `GET /v1/apps/{app_id}` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AppQuery {
    /// The compose hash to check (`0x` + 64 hex digits).
    compose_hash: String,
    /// The OS image `NAME:VERSION`.
    image: String,
}

#[utoipa::path(get, path = "/v1/apps/{app_id}", tag = "apps",
    params(("app_id" = String, Path, description = "The app id, 0x + 40 hex digits"), AppQuery),
    responses((status = 200, description = "The pre-flight at the current policy block", body = PreflightReport),
        (status = 400, description = "Bad app id, compose hash or image", body = ErrorBody),
        (status = 503, description = "Chain unavailable", body = ErrorBody)))]
pub(crate) async fn app(
    State(api): State<Api>,
    Path(app_id): Path<String>,
    q: std::result::Result<Query<AppQuery>, QueryRejection>,
) -> Result<Json<PreflightReport>> {
    let q = query(q)?;
    let app_id = cairn_protocol::hex0x::decode_fixed::<20>(&app_id)
        .map_err(|e| Error::invalid("app_id", e.to_string()))?;
    let compose_hash = cairn_protocol::hex0x::decode_fixed::<32>(&q.compose_hash)
        .map_err(|e| Error::invalid("compose_hash", e.to_string()))?;
    api.vmm
        .app_preflight(app_id, compose_hash, &q.image)
        .await
        .map(Json)
}

#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "This document")))]
pub(crate) async fn openapi_json() -> Response {
    match super::openapi().to_json() {
        Ok(s) => ([(header::CONTENT_TYPE, "application/json")], s).into_response(),
        Err(e) => Error::Process {
            op: "openapi",
            reason: e.to_string(),
        }
        .into_response(),
    }
}

#[utoipa::path(get, path = "/healthz", tag = "meta",
    responses((status = 200, description = "Serving")))]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(api): State<Api>) -> Response {
    let text = api.vmm.metrics().render(&api.vmm.state_counts());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

pub(crate) async fn not_found(req: Request) -> Error {
    Error::NoRoute(format!("{} {}", req.method(), req.uri().path()))
}
