//! The guest agent: dstack's guest-agent HTTP/JSON API (FORMATS.md "Guest agent HTTP
//! API", `docs/guest-agent.md`) on a unix socket, optionally TCP.
//!
//! Served only after a successful boot: every method answers from the [`GuestState`]
//! (the measured identity, the event log, the released app key). Bodies are capped at
//! [`MAX_REQUEST_LEN`], requests time out after [`REQUEST_TIMEOUT`], at most
//! [`MAX_CONCURRENT_REQUESTS`] run at once. Errors are `{"error":"..."}` with 400 for bad
//! input and 500/503 otherwise.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use cairn_attestation::consts::{MAX_EVENT_NAME_LEN, MAX_EVENT_PAYLOAD_LEN};
use cairn_attestation::ids::{Measurement48, TdMeasurements};
use cairn_attestation::{RaTlsCertBuilder, Usage};
use cairn_protocol::agent::{
    decode_hex, AgentError, AttestResponse, Attestation, EmitEventRequest, GetKeyRequest,
    GetKeyResponse, GetQuoteResponse, GetTlsKeyRequest, GetTlsKeyResponse, InfoResponse,
    ReportDataRequest, SignRequest, SignResponse, TcbInfo, VerifyRequest, VerifyResponse,
    VersionResponse, ATTESTATION_VERSION, MAX_PATH_LEN, MAX_REQUEST_LEN, MAX_SIGN_DATA_LEN,
};
use cairn_protocol::sig;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, UnixListener};

use crate::error::Error;
use crate::state::GuestState;

/// How long one agent request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Requests served at once.
pub const MAX_CONCURRENT_REQUESTS: usize = 64;
/// The key path `Sign` derives its key from.
pub const SIGN_KEY_PATH: &[u8] = b"cairn/agent/sign";
/// The purpose the app key signs for the `Sign` key.
pub const SIGN_KEY_PURPOSE: &str = "signing";

/// An agent error, rendered as `{"error":"..."}`.
#[derive(Debug)]
pub struct AgentFailure(Error);

impl From<Error> for AgentFailure {
    fn from(e: Error) -> Self {
        AgentFailure(e)
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
        (
            status,
            Json(AgentError {
                error: self.0.to_string(),
            }),
        )
            .into_response()
    }
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
    decode_hex(s, max).map_err(|e| bad(format!("{field}: {e}")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::error::Result<T> + Send + 'static,
) -> Result<T, AgentFailure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentFailure(Error::Io(format!("worker: {e}"))))?
        .map_err(AgentFailure)
}

/// The agent's router (tests call it without a socket).
pub fn router(state: Arc<GuestState>) -> Router {
    Router::new()
        .route("/GetKey", post(get_key))
        .route("/GetTlsKey", post(get_tls_key))
        .route("/GetQuote", post(get_quote))
        .route("/Attest", post(attest))
        .route("/Info", post(info).get(info))
        .route("/Sign", post(sign))
        .route("/Verify", post(verify))
        .route("/Version", post(version).get(version))
        .route("/EmitEvent", post(emit_event))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_LEN))
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            MAX_CONCURRENT_REQUESTS,
        ))
        .layer(axum::middleware::from_fn(timeout_layer))
        // method and path only: bodies (keys, report data) are never traced
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn timeout_layer(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(AgentError {
                error: "request timed out".to_owned(),
            }),
        )
            .into_response(),
    }
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

async fn get_key(State(s): State<Arc<GuestState>>, body: Bytes) -> AgentResult<GetKeyResponse> {
    let req: GetKeyRequest = parse(&body)?;
    if !matches!(req.algorithm.as_str(), "" | "secp256k1" | "k256") {
        return Err(bad(format!(
            "algorithm {:?} is not supported (secp256k1 only)",
            req.algorithm.chars().take(32).collect::<String>()
        )));
    }
    if req.path.len() > MAX_PATH_LEN || req.purpose.len() > MAX_PATH_LEN {
        return Err(bad(format!(
            "path and purpose are limited to {MAX_PATH_LEN} bytes"
        )));
    }
    let d = sig::derive_signed_key(
        &s.secrets.app_key,
        req.path.as_bytes(),
        &req.purpose,
        s.secrets.kms_signature,
    )
    .map_err(|e| AgentFailure(Error::Signing(e)))?;
    Ok(Json(GetKeyResponse {
        key: hex::encode(d.key.to_bytes()),
        signature_chain: vec![hex::encode(d.app_signature), hex::encode(d.kms_signature)],
    }))
}

fn report_data(req: &ReportDataRequest) -> Result<[u8; 64], AgentFailure> {
    let bytes = hex_arg(&req.report_data, 64, "report_data")?;
    let mut rd = [0u8; 64];
    rd[..bytes.len()].copy_from_slice(&bytes);
    Ok(rd)
}

async fn quote(s: &Arc<GuestState>, rd: [u8; 64]) -> Result<(Vec<u8>, Vec<u8>), AgentFailure> {
    let s = s.clone();
    blocking(move || s.quote_with_log(&rd)).await
}

async fn get_quote(State(s): State<Arc<GuestState>>, body: Bytes) -> AgentResult<GetQuoteResponse> {
    let rd = report_data(&parse(&body)?)?;
    let (q, log) = quote(&s, rd).await?;
    Ok(Json(GetQuoteResponse {
        quote: hex::encode(q),
        event_log: String::from_utf8_lossy(&log).into_owned(),
        report_data: hex::encode(rd),
        vm_config: s.vm_config.clone(),
    }))
}

async fn attest(State(s): State<Arc<GuestState>>, body: Bytes) -> AgentResult<AttestResponse> {
    let rd = report_data(&parse(&body)?)?;
    let (q, log) = quote(&s, rd).await?;
    let doc = Attestation {
        version: ATTESTATION_VERSION.to_owned(),
        quote: hex::encode(q),
        event_log: String::from_utf8_lossy(&log).into_owned(),
        vm_config: s.vm_config.clone(),
    };
    let json = serde_json::to_vec(&doc).map_err(|e| AgentFailure(Error::Io(e.to_string())))?;
    Ok(Json(AttestResponse {
        attestation: hex::encode(json),
    }))
}

/// The TD measurements of a quote (our own, so parsing is all that is needed).
fn measurements(quote: &[u8]) -> crate::error::Result<TdMeasurements> {
    let q = dcap_qvl::quote::Quote::parse(quote)
        .map_err(|e| Error::Io(format!("own quote does not parse: {e}")))?;
    let td = q
        .report
        .as_td10()
        .ok_or_else(|| Error::Io("own quote is not a TDX quote".to_owned()))?;
    Ok(TdMeasurements {
        mrtd: Measurement48(td.mr_td),
        rtmr0: Measurement48(td.rt_mr0),
        rtmr1: Measurement48(td.rt_mr1),
        rtmr2: Measurement48(td.rt_mr2),
        rtmr3: Measurement48(td.rt_mr3),
    })
}

async fn info(State(s): State<Arc<GuestState>>) -> AgentResult<InfoResponse> {
    let (q, log) = quote(&s, [0u8; 64]).await?;
    let m = measurements(&q)?;
    let events: serde_json::Value =
        serde_json::from_slice(&log).map_err(|e| AgentFailure(Error::Io(e.to_string())))?;
    let device_id = s.device_id.map(hex::encode).unwrap_or_default();
    let compose_hash = hex::encode(s.compose_hash);
    let os_image_hash = hex::encode(s.secrets.os_image_hash);
    let mr_aggregated = m.mr_aggregated().to_hex();
    let tcb = TcbInfo {
        mrtd: m.mrtd.to_hex(),
        rtmr0: m.rtmr0.to_hex(),
        rtmr1: m.rtmr1.to_hex(),
        rtmr2: m.rtmr2.to_hex(),
        rtmr3: m.rtmr3.to_hex(),
        mr_aggregated: mr_aggregated.clone(),
        os_image_hash: os_image_hash.clone(),
        compose_hash: compose_hash.clone(),
        device_id: device_id.clone(),
        app_compose: String::from_utf8_lossy(&s.compose_bytes).into_owned(),
        event_log: events,
    };
    Ok(Json(InfoResponse {
        app_id: hex::encode(s.app_id.0),
        instance_id: hex::encode(s.instance_id.as_bytes()),
        app_cert: String::new(),
        tcb_info: serde_json::to_string(&tcb)
            .map_err(|e| AgentFailure(Error::Io(e.to_string())))?,
        app_name: s.compose.name.clone(),
        device_id,
        mr_aggregated,
        os_image_hash,
        key_provider_info: String::from_utf8_lossy(&s.secrets.key_provider.to_payload())
            .into_owned(),
        compose_hash,
        vm_config: s.vm_config.clone(),
    }))
}

/// Most alt names in a `GetTlsKey` request.
pub const MAX_ALT_NAMES: usize = 32;

async fn get_tls_key(
    State(s): State<Arc<GuestState>>,
    body: Bytes,
) -> AgentResult<GetTlsKeyResponse> {
    let req: GetTlsKeyRequest = parse(&body)?;
    if req.not_before.is_some() || req.not_after.is_some() || req.with_app_info.is_some() {
        return Err(bad(
            "not_before, not_after and with_app_info are not supported",
        ));
    }
    if req.alt_names.len() > MAX_ALT_NAMES || req.subject.len() > 256 {
        return Err(bad(format!(
            "at most {MAX_ALT_NAMES} alt names and a 256-byte subject"
        )));
    }
    let s2 = s.clone();
    let usage_ra_tls = req.usage_ra_tls;
    let (client_cert, csr_der) = blocking(move || {
        let gen = |e: rcgen::Error| Error::BadRequest(format!("certificate request: {e}"));
        let subject = if req.subject.is_empty() {
            s2.compose.name.clone()
        } else {
            req.subject.clone()
        };
        // The new key's own RA-TLS certificate: its quote binds the key, and it is the
        // client certificate of the sign-cert call (the KMS requires the CSR key to be
        // the attested client key).
        let cert = {
            let log = s2.event_log();
            RaTlsCertBuilder::new(Usage::AppCustom)
                .common_name(subject.clone())
                .alt_names(req.alt_names.clone())
                .event_log(&log.to_json())
                .app_id(s2.app_id.0)
                .build(s2.tee.as_ref())?
        };
        let key = cert.key_pair()?;
        let mut params = CertificateParams::new(req.alt_names.clone()).map_err(gen)?;
        params.distinguished_name.push(DnType::CommonName, subject);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if req.usage_server_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if req.usage_client_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        let csr = params.serialize_request(&key).map_err(gen)?;
        Ok((cert, csr.der().to_vec()))
    })
    .await?;
    // The root the guest booted with (checked then to have issued the KMS's TLS cert).
    let root = cairn_attestation::RootCa::from_pem(&s.secrets.root_ca_cert)
        .map_err(|e| AgentFailure(Error::RootCa(e)))?;
    let resp = s
        .kms
        .sign_cert(
            &s.secrets.kms_url,
            &client_cert,
            csr_der,
            &root,
            &s.app_id.0,
        )
        .await
        .map_err(|e| AgentFailure(Error::Kms(e)))?;
    let leaf = resp
        .certificate_chain
        .first()
        .ok_or_else(|| AgentFailure(Error::BadKmsResponse("empty certificate chain".to_owned())))?;
    if usage_ra_tls {
        let (_, pem) = x509_parser::pem::parse_x509_pem(leaf.as_bytes())
            .map_err(|e| AgentFailure(Error::BadKmsResponse(format!("leaf PEM: {e}"))))?;
        if let Err(e) = cairn_attestation::parse_ra_tls_extensions(&pem.contents) {
            return Err(AgentFailure(Error::BadKmsResponse(format!(
                "usage_ra_tls was requested but the KMS-issued leaf carries no RA-TLS evidence ({e})"
            ))));
        }
    }
    let key_pem = client_cert
        .key_pair()
        .map_err(|e| AgentFailure(Error::RaTls(e)))?
        .serialize_pem();
    Ok(Json(GetTlsKeyResponse {
        key: key_pem,
        certificate_chain: resp.certificate_chain,
    }))
}

fn sign_digest(algorithm: &str, data: &[u8]) -> Result<[u8; 32], AgentFailure> {
    match algorithm {
        "secp256k1" | "k256" => Ok(Sha256::digest(data).into()),
        "secp256k1_prehashed" => <[u8; 32]>::try_from(data)
            .map_err(|_| bad("secp256k1_prehashed needs a 32-byte digest")),
        other => Err(bad(format!(
            "algorithm {:?} is not supported (secp256k1, secp256k1_prehashed)",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

async fn sign(State(s): State<Arc<GuestState>>, body: Bytes) -> AgentResult<SignResponse> {
    let req: SignRequest = parse(&body)?;
    let data = hex_arg(&req.data, MAX_SIGN_DATA_LEN, "data")?;
    let digest = sign_digest(&req.algorithm, &data)?;
    let d = sig::derive_signed_key(
        &s.secrets.app_key,
        SIGN_KEY_PATH,
        SIGN_KEY_PURPOSE,
        s.secrets.kms_signature,
    )
    .map_err(|e| AgentFailure(Error::Signing(e)))?;
    let signature =
        sig::sign_recoverable(&d.key, &digest).map_err(|e| AgentFailure(Error::Signing(e)))?;
    Ok(Json(SignResponse {
        signature: hex::encode(signature),
        signature_chain: vec![hex::encode(d.app_signature), hex::encode(d.kms_signature)],
        public_key: hex::encode(sig::compressed(d.key.verifying_key())),
    }))
}

async fn verify(body: Bytes) -> AgentResult<VerifyResponse> {
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    let req: VerifyRequest = parse(&body)?;
    let data = hex_arg(&req.data, MAX_SIGN_DATA_LEN, "data")?;
    let digest = sign_digest(&req.algorithm, &data)?;
    let sig_bytes = hex_arg(&req.signature, 65, "signature")?;
    let pk = hex_arg(&req.public_key, 65, "public_key")?;
    let valid = (|| {
        let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk).ok()?;
        let sig = k256::ecdsa::Signature::from_slice(sig_bytes.get(..64)?).ok()?;
        key.verify_prehash(&digest, &sig).ok()
    })()
    .is_some();
    Ok(Json(VerifyResponse { valid }))
}

async fn version() -> Json<VersionResponse> {
    Json(VersionResponse {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        rev: "cairn-guest".to_owned(),
    })
}

async fn emit_event(
    State(s): State<Arc<GuestState>>,
    body: Bytes,
) -> AgentResult<serde_json::Value> {
    let req: EmitEventRequest = parse(&body)?;
    if req.event.is_empty() || req.event.len() > MAX_EVENT_NAME_LEN {
        return Err(bad(format!(
            "event name must be 1-{MAX_EVENT_NAME_LEN} bytes"
        )));
    }
    let payload = hex_arg(&req.payload, MAX_EVENT_PAYLOAD_LEN, "payload")?;
    let s2 = s.clone();
    blocking(move || s2.emit_event(&req.event, payload)).await?;
    Ok(Json(serde_json::json!({})))
}
