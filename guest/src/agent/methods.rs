//! The current dstack guest-agent methods. Semantics follow dstack's guest agent
//! (`guest-agent/src/rpc_service.rs` in Dstack-TEE/dstack, cited in
//! `docs/guest-agent.md`) wherever a public SDK can observe them.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use cairn_attestation::consts::{MAX_EVENT_NAME_LEN, MAX_EVENT_PAYLOAD_LEN};
use cairn_attestation::ids::{Measurement48, TdMeasurements};
use cairn_protocol::agent::{
    Algorithm, AttestResponse, Attestation, EmitEventRequest, GetKeyRequest, GetKeyResponse,
    GetQuoteResponse, GetTlsKeyRequest, GetTlsKeyResponse, InfoResponse, ReportDataRequest,
    SignRequest, SignResponse, TcbInfo, VerifyRequest, VerifyResponse, VersionResponse,
    ATTESTATION_VERSION, MAX_PATH_LEN, MAX_SIGN_DATA_LEN,
};
use cairn_protocol::sig;

use super::tls::{self, TlsKeyOptions};
use super::{bad, blocking, hex_arg, parse, AgentFailure, AgentResult};
use crate::error::Error;
use crate::state::GuestState;

/// The key path `Sign` derives its key from (dstack's: `vms`).
pub const SIGN_KEY_PATH: &[u8] = b"vms";
/// The purpose the app key signs for the `Sign` key (dstack's: `signing`).
pub const SIGN_KEY_PURPOSE: &str = "signing";

fn unsupported(algorithm: &str, supported: &str) -> AgentFailure {
    bad(format!(
        "algorithm {:?} is not supported ({supported})",
        algorithm.chars().take(32).collect::<String>()
    ))
}

fn signing(e: cairn_protocol::Error) -> AgentFailure {
    AgentFailure(Error::Signing(e))
}

/// A key derived from the app key for `path`, with its signature chain
/// `[app signature, KMS signature]`, for `GetKey` and `Sign`.
pub(super) enum DerivedKey {
    Secp256k1(sig::DerivedKey),
    Ed25519(sig::DerivedEd25519Key),
}

impl DerivedKey {
    pub(super) fn derive(
        s: &GuestState,
        algorithm: Algorithm,
        path: &[u8],
        purpose: &str,
    ) -> Result<Self, AgentFailure> {
        Self::derive_from(
            &s.secrets.app_key,
            s.secrets.kms_signature,
            algorithm,
            path,
            purpose,
        )
    }

    /// [`DerivedKey::derive`] from a given app key and its KMS signature.
    pub(super) fn derive_from(
        app_key: &zeroize::Zeroizing<[u8; 32]>,
        kms_sig: sig::RecoverableSignature,
        algorithm: Algorithm,
        path: &[u8],
        purpose: &str,
    ) -> Result<Self, AgentFailure> {
        match algorithm {
            Algorithm::Secp256k1 | Algorithm::Secp256k1Prehashed => {
                sig::derive_signed_key(app_key, path, purpose, kms_sig).map(Self::Secp256k1)
            }
            Algorithm::Ed25519 => {
                sig::derive_signed_ed25519_key(app_key, path, purpose, kms_sig).map(Self::Ed25519)
            }
        }
        .map_err(signing)
    }

    /// The secret, hex (a secp256k1 scalar or an ed25519 seed, 32 bytes each).
    pub(super) fn secret_hex(&self) -> String {
        match self {
            Self::Secp256k1(d) => hex::encode(d.key.to_bytes()),
            Self::Ed25519(d) => hex::encode(d.key.to_bytes()),
        }
    }

    /// `[app signature, KMS signature]`, hex.
    pub(super) fn chain_hex(&self) -> Vec<String> {
        let (app, kms) = match self {
            Self::Secp256k1(d) => (d.app_signature, d.kms_signature),
            Self::Ed25519(d) => (d.app_signature, d.kms_signature),
        };
        vec![hex::encode(app), hex::encode(kms)]
    }
}

fn check_path(path: &str, purpose: &str) -> Result<(), AgentFailure> {
    if path.len() > MAX_PATH_LEN || purpose.len() > MAX_PATH_LEN {
        return Err(bad(format!(
            "path and purpose are limited to {MAX_PATH_LEN} bytes"
        )));
    }
    Ok(())
}

/// The key for a `GetKey`-shaped request (also `Tappd.DeriveK256Key`).
pub(super) fn key_for(s: &GuestState, req: &GetKeyRequest) -> Result<DerivedKey, AgentFailure> {
    let algorithm = match Algorithm::parse(&req.algorithm, true) {
        Some(a @ (Algorithm::Secp256k1 | Algorithm::Ed25519)) => a,
        _ => return Err(unsupported(&req.algorithm, "secp256k1, ed25519")),
    };
    check_path(&req.path, &req.purpose)?;
    match req.key_generation {
        None => DerivedKey::derive(s, algorithm, req.path.as_bytes(), &req.purpose),
        Some(g) if g == s.secrets.key_generation => {
            DerivedKey::derive(s, algorithm, req.path.as_bytes(), &req.purpose)
        }
        Some(g) => match &s.secrets.previous {
            Some(p) if p.key_generation == g => DerivedKey::derive_from(
                &p.app_key,
                p.kms_signature,
                algorithm,
                req.path.as_bytes(),
                &req.purpose,
            ),
            _ => Err(bad(format!(
                "key generation {g} is not held by this CVM (current {}, previous {}): it was booted outside that generation's transition window",
                s.secrets.key_generation,
                s.secrets
                    .previous
                    .as_ref()
                    .map_or("none".to_owned(), |p| p.key_generation.to_string())
            ))),
        },
    }
}

pub(super) async fn get_key(
    State(s): State<Arc<GuestState>>,
    body: Bytes,
) -> AgentResult<GetKeyResponse> {
    let req: GetKeyRequest = parse(&body)?;
    let d = key_for(&s, &req)?;
    Ok(Json(GetKeyResponse {
        key: d.secret_hex(),
        signature_chain: d.chain_hex(),
    }))
}

pub(super) fn report_data(req: &ReportDataRequest) -> Result<[u8; 64], AgentFailure> {
    pad64(&hex_arg(&req.report_data, 64, "report_data")?)
}

/// Zero-pad at most 64 bytes on the right.
pub(super) fn pad64(bytes: &[u8]) -> Result<[u8; 64], AgentFailure> {
    let mut rd = [0u8; 64];
    rd.get_mut(..bytes.len())
        .ok_or_else(|| bad("report data is longer than 64 bytes"))?
        .copy_from_slice(bytes);
    Ok(rd)
}

/// A quote over `rd` and the event log as of that quote.
pub(super) async fn quote(
    s: &Arc<GuestState>,
    rd: [u8; 64],
) -> Result<(Vec<u8>, Vec<u8>), AgentFailure> {
    let s = s.clone();
    blocking(move || s.quote_with_log(&rd)).await
}

/// [`quote`] as the API answers it: the quote as hex and the event log as text.
pub(super) async fn quote_text(
    s: &Arc<GuestState>,
    rd: [u8; 64],
) -> Result<(String, String), AgentFailure> {
    let (q, log) = quote(s, rd).await?;
    Ok((hex::encode(q), String::from_utf8_lossy(&log).into_owned()))
}

/// The report data of a `{"report_data": …}` request body, and [`quote_text`] for it.
async fn quote_of_request(
    s: &Arc<GuestState>,
    body: &Bytes,
) -> Result<([u8; 64], String, String), AgentFailure> {
    let rd = report_data(&parse(body)?)?;
    let (quote, event_log) = quote_text(s, rd).await?;
    Ok((rd, quote, event_log))
}

pub(super) async fn get_quote(
    State(s): State<Arc<GuestState>>,
    body: Bytes,
) -> AgentResult<GetQuoteResponse> {
    let (rd, quote, event_log) = quote_of_request(&s, &body).await?;
    Ok(Json(GetQuoteResponse {
        quote,
        event_log,
        report_data: hex::encode(rd),
        vm_config: s.vm_config.clone(),
    }))
}

pub(super) async fn attest(
    State(s): State<Arc<GuestState>>,
    body: Bytes,
) -> AgentResult<AttestResponse> {
    let (_, quote, event_log) = quote_of_request(&s, &body).await?;
    let doc = Attestation {
        version: ATTESTATION_VERSION.to_owned(),
        quote,
        event_log,
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

pub(super) async fn info(State(s): State<Arc<GuestState>>) -> AgentResult<InfoResponse> {
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

pub(super) async fn get_tls_key(
    State(s): State<Arc<GuestState>>,
    body: Bytes,
) -> AgentResult<GetTlsKeyResponse> {
    let req: GetTlsKeyRequest = parse(&body)?;
    let options = TlsKeyOptions {
        subject: req.subject,
        alt_names: req.alt_names,
        usage_ra_tls: req.usage_ra_tls,
        usage_server_auth: req.usage_server_auth,
        usage_client_auth: req.usage_client_auth,
        not_before: req.not_before,
        not_after: req.not_after,
        with_app_info: req.with_app_info.unwrap_or(false),
    };
    tls::issue(&s, options, None).await.map(Json)
}

pub(super) async fn sign(
    State(s): State<Arc<GuestState>>,
    body: Bytes,
) -> AgentResult<SignResponse> {
    use ed25519_dalek::Signer as _;
    use k256::ecdsa::signature::hazmat::PrehashSigner as _;
    let req: SignRequest = parse(&body)?;
    let algorithm = Algorithm::parse(&req.algorithm, false)
        .ok_or_else(|| unsupported(&req.algorithm, "secp256k1, secp256k1_prehashed, ed25519"))?;
    let data = hex_arg(&req.data, MAX_SIGN_DATA_LEN, "data")?;
    if algorithm == Algorithm::Secp256k1Prehashed && data.len() != 32 {
        return Err(bad(format!(
            "secp256k1_prehashed needs a 32-byte digest, got {} bytes",
            data.len()
        )));
    }
    let key = DerivedKey::derive(&s, algorithm, SIGN_KEY_PATH, SIGN_KEY_PURPOSE)?;
    let (signature, public_key) = match (&key, algorithm) {
        (DerivedKey::Ed25519(d), _) => (
            d.key.sign(&data).to_bytes().to_vec(),
            d.key.verifying_key().to_bytes().to_vec(),
        ),
        (DerivedKey::Secp256k1(d), Algorithm::Secp256k1Prehashed) => {
            let sig: k256::ecdsa::Signature = d
                .key
                .sign_prehash(&data)
                .map_err(|_| signing(cairn_protocol::Error::Signing))?;
            (
                sig.to_bytes().to_vec(),
                sig::compressed(d.key.verifying_key()).to_vec(),
            )
        }
        (DerivedKey::Secp256k1(d), _) => {
            let sig: k256::ecdsa::Signature = d.key.sign(&data);
            (
                sig.to_bytes().to_vec(),
                sig::compressed(d.key.verifying_key()).to_vec(),
            )
        }
    };
    let signature = hex::encode(signature);
    let mut signature_chain = vec![signature.clone()];
    signature_chain.extend(key.chain_hex());
    Ok(Json(SignResponse {
        signature,
        signature_chain,
        public_key: hex::encode(public_key),
    }))
}

pub(super) async fn verify(body: Bytes) -> AgentResult<VerifyResponse> {
    use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
    use k256::ecdsa::signature::Verifier as _;
    let req: VerifyRequest = parse(&body)?;
    let algorithm = Algorithm::parse(&req.algorithm, false)
        .ok_or_else(|| unsupported(&req.algorithm, "secp256k1, secp256k1_prehashed, ed25519"))?;
    let data = hex_arg(&req.data, MAX_SIGN_DATA_LEN, "data")?;
    let sig_bytes = hex_arg(&req.signature, 65, "signature")?;
    let pk = hex_arg(&req.public_key, 65, "public_key")?;
    let valid = match algorithm {
        Algorithm::Ed25519 => (|| {
            let key =
                ed25519_dalek::VerifyingKey::from_bytes(pk.as_slice().try_into().ok()?).ok()?;
            let sig = ed25519_dalek::Signature::from_slice(&sig_bytes).ok()?;
            key.verify_strict(&data, &sig).ok()
        })()
        .is_some(),
        Algorithm::Secp256k1 | Algorithm::Secp256k1Prehashed => (|| {
            let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk).ok()?;
            let sig = k256::ecdsa::Signature::from_slice(sig_bytes.get(..64)?).ok()?;
            if algorithm == Algorithm::Secp256k1Prehashed {
                key.verify_prehash(&data, &sig).ok()
            } else {
                key.verify(&data, &sig).ok()
            }
        })()
        .is_some(),
    };
    Ok(Json(VerifyResponse { valid }))
}

pub(super) async fn version() -> Json<VersionResponse> {
    Json(VersionResponse {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        rev: "cairn-guest".to_owned(),
    })
}

/// `EmitEvent` answers JSON `null`, as dstack's agent encodes its empty reply (dstack's
/// Rust SDK deserializes it as `()`).
pub(super) async fn emit_event(State(s): State<Arc<GuestState>>, body: Bytes) -> AgentResult<()> {
    let req: EmitEventRequest = parse(&body)?;
    if req.event.is_empty() || req.event.len() > MAX_EVENT_NAME_LEN {
        return Err(bad(format!(
            "event name must be 1-{MAX_EVENT_NAME_LEN} bytes"
        )));
    }
    let payload = hex_arg(&req.payload, MAX_EVENT_PAYLOAD_LEN, "payload")?;
    let s2 = s.clone();
    blocking(move || s2.emit_event(&req.event, payload)).await?;
    Ok(Json(()))
}
