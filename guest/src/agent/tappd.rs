//! The legacy tappd API (`/prpc/Tappd.<Method>`), served on the agent socket and mapped
//! onto the current methods as dstack's guest agent maps them (`InternalRpcHandlerV0`
//! in dstack's `guest-agent/src/rpc_service.rs`):
//!
//! | legacy | as |
//! |---|---|
//! | `DeriveKey{path, subject, alt_names, usage_*, random_seed}` | `GetTlsKey` for the P-256 key derived from the app key for `path` (a random key with `random_seed`) |
//! | `DeriveK256Key{path, purpose, algorithm}` | `GetKey`, fields `k256_key`, `k256_signature_chain` |
//! | `TdxQuote{report_data, hash_algorithm, prefix}` | `GetQuote` over `hash(prefix ‖ ":" ‖ report_data)` |
//! | `RawQuote{report_data}` | `TdxQuote` with `raw` |
//! | `Info`, `Version` | `Info`, `Version` |

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use cairn_protocol::agent::{
    tappd_report_data, DeriveK256KeyResponse, DeriveKeyRequest, GetKeyRequest, GetTlsKeyResponse,
    ReportDataRequest, TdxQuoteRequest, TdxQuoteResponse, MAX_PATH_LEN, MAX_SIGN_DATA_LEN,
    TAPPD_RAW,
};
use p256::pkcs8::EncodePrivateKey;

use super::methods::{key_for, quote_text};
use super::tls::{self, TlsKeyOptions};
use super::{bad, hex_arg, parse, AgentFailure, AgentResult};
use crate::error::Error;
use crate::state::GuestState;

/// The P-256 key dstack's tappd derives for `path`: the HKDF bytes of the app key for
/// `path` as the scalar (`derive_p256_key_pair_from_bytes(app_key, [path])`).
fn derived_p256_key(s: &GuestState, path: &[u8]) -> Result<rcgen::KeyPair, AgentFailure> {
    let secret = cairn_protocol::sig::derive_path_secret(&s.secrets.app_key, path)
        .map_err(|e| AgentFailure(Error::Signing(e)))?;
    let internal = |m: &str| AgentFailure(Error::Io(format!("derived P-256 key: {m}")));
    let key = p256::SecretKey::from_slice(&secret[..]).map_err(|_| internal("out of range"))?;
    let der = key.to_pkcs8_der().map_err(|_| internal("PKCS#8"))?;
    rcgen::KeyPair::try_from(der.as_bytes()).map_err(|_| internal("key pair"))
}

pub(super) async fn derive_key(
    State(s): State<Arc<GuestState>>,
    body: Bytes,
) -> AgentResult<GetTlsKeyResponse> {
    let req: DeriveKeyRequest = parse(&body)?;
    if req.path.len() > MAX_PATH_LEN {
        return Err(bad(format!("path is limited to {MAX_PATH_LEN} bytes")));
    }
    let key = if req.random_seed {
        None
    } else {
        Some(derived_p256_key(&s, req.path.as_bytes())?)
    };
    let options = TlsKeyOptions {
        subject: req.subject,
        alt_names: req.alt_names,
        usage_ra_tls: req.usage_ra_tls,
        usage_server_auth: req.usage_server_auth,
        usage_client_auth: req.usage_client_auth,
        not_before: None,
        not_after: None,
        with_app_info: false,
    };
    tls::issue(&s, options, key).await.map(Json)
}

pub(super) async fn derive_k256_key(
    State(s): State<Arc<GuestState>>,
    body: Bytes,
) -> AgentResult<DeriveK256KeyResponse> {
    let req: GetKeyRequest = parse(&body)?;
    let d = key_for(&s, &req)?;
    Ok(Json(DeriveK256KeyResponse {
        k256_key: d.secret_hex(),
        k256_signature_chain: d.chain_hex(),
    }))
}

async fn tdx_quote_of(
    s: &Arc<GuestState>,
    req: TdxQuoteRequest,
) -> Result<TdxQuoteResponse, AgentFailure> {
    let content = hex_arg(&req.report_data, MAX_SIGN_DATA_LEN, "report_data")?;
    let (rd, hash_algorithm, prefix) =
        tappd_report_data(&content, &req.hash_algorithm, &req.prefix)
            .map_err(|e| bad(e.to_string()))?;
    let (quote, event_log) = quote_text(s, rd).await?;
    Ok(TdxQuoteResponse {
        quote,
        event_log,
        hash_algorithm,
        prefix,
    })
}

pub(super) async fn tdx_quote(
    State(s): State<Arc<GuestState>>,
    body: Bytes,
) -> AgentResult<TdxQuoteResponse> {
    let req: TdxQuoteRequest = parse(&body)?;
    tdx_quote_of(&s, req).await.map(Json)
}

pub(super) async fn raw_quote(
    State(s): State<Arc<GuestState>>,
    body: Bytes,
) -> AgentResult<TdxQuoteResponse> {
    let req: ReportDataRequest = parse(&body)?;
    let req = TdxQuoteRequest {
        report_data: req.report_data,
        hash_algorithm: TAPPD_RAW.to_owned(),
        prefix: String::new(),
    };
    tdx_quote_of(&s, req).await.map(Json)
}
