//! The guest agent, called through its router (no socket), after a real boot.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cairn_attestation::{RaTlsServerVerifier, Usage};
use cairn_guest::{agent, boot, GuestState};
use cairn_kms::RootKeys;
use cairn_protocol::agent::*;
use cairn_protocol::sig;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::hostile::Hostile;
use crate::world::*;

/// A guest of `w`'s app booted (app not started) against `w`'s KMS.
pub async fn booted(
    w: &World,
) -> (
    Share,
    Arc<GuestState>,
    Arc<cairn_attestation::simulator::SimTdx>,
) {
    let s = w.share("");
    let tee = guest_tee(1);
    let mut cfg = s.config();
    cfg.start_app = false;
    cfg.device_id = Some(tee.device_id().0);
    let b = boot(as_tee(&tee), kms_client(), &cfg).await.unwrap();
    (s, b.state, tee)
}

/// A fresh [`World`] and a guest [`booted`] in it.
pub async fn world_booted() -> (
    World,
    Share,
    Arc<GuestState>,
    Arc<cairn_attestation::simulator::SimTdx>,
) {
    let w = World::start().await;
    let (s, state, tee) = booted(&w).await;
    (w, s, state, tee)
}

/// Send `req` through the router; the status, content type and raw body.
pub async fn call_raw(
    state: &Arc<GuestState>,
    req: Request<Body>,
) -> (StatusCode, Option<String>, axum::body::Bytes) {
    let resp = agent::router(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        ct,
        resp.into_body().collect().await.unwrap().to_bytes(),
    )
}

/// `POST /<method>` (a leading `/` or `/prpc/…` path is used as is); the status and the
/// JSON body (`Null` when the body is not JSON).
pub async fn call(
    state: &Arc<GuestState>,
    method: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let path = if method.starts_with('/') {
        method.to_owned()
    } else {
        format!("/{method}")
    };
    let (status, _, bytes) = call_raw(
        state,
        Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap(),
    )
    .await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// `POST /<method>` must answer 200; its JSON body as `T`.
pub async fn call_ok<T: serde::de::DeserializeOwned>(
    state: &Arc<GuestState>,
    method: &str,
    body: &str,
) -> T {
    let (st, v) = call(state, method, body).await;
    assert_eq!(st, StatusCode::OK, "{method} {body}: {v}");
    serde_json::from_value(v).unwrap()
}

/// With a KMS that misbehaves as `hostile`, a booted guest refuses `GetTlsKey` with
/// each of `bodies`: 503 naming `message`.
pub async fn tls_key_refused(hostile: Hostile, bodies: &[&str], message: &str) {
    let w = World::with_kms(hostile).await;
    let (_s, state, _) = booted(&w).await;
    for body in bodies {
        call_refused(
            &state,
            "GetTlsKey",
            body,
            StatusCode::SERVICE_UNAVAILABLE,
            message,
        )
        .await;
    }
}

/// `POST /<method>` must be refused with `status` and a JSON error naming `needle`, and
/// hand out no key.
pub async fn call_refused(
    state: &Arc<GuestState>,
    method: &str,
    body: &str,
    status: StatusCode,
    needle: &str,
) {
    let (st, v) = call(state, method, body).await;
    assert_eq!(st, status, "{method} {body}: {v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains(needle)),
        "{method} {body}: expected an error naming {needle:?}, got {v}"
    );
    assert!(v.get("key").is_none(), "{v}");
}

/// `GetKey` with `body` is refused 400 naming `needle` ([`call_refused`]).
async fn get_key_refused(state: &Arc<GuestState>, body: &str, needle: &str) {
    call_refused(state, "GetKey", body, StatusCode::BAD_REQUEST, needle).await;
}

/// A hex signature chain as 65-byte recoverable signatures.
pub fn sig_chain(chain: &[String]) -> Vec<[u8; 65]> {
    chain
        .iter()
        .map(|h| hex::decode(h).unwrap().try_into().unwrap())
        .collect()
}

/// A `Verify` request of `signature` by `public_key` over the hex `data`.
pub fn verify_body(algorithm: &str, data: &str, signature: &str, public_key: &str) -> String {
    format!(
        r#"{{"algorithm":"{algorithm}","data":"{data}","signature":"{signature}","public_key":"{public_key}"}}"#
    )
}

/// A [`sig`] chain check of a derived key `K` (secp256k1's or ed25519's): the app key the
/// chain recovers, or why not.
type ChainCheck<K> = fn(
    &[u8; 20],
    &str,
    &K,
    &sig::RecoverableSignature,
    &sig::RecoverableSignature,
    &k256::ecdsa::VerifyingKey,
) -> cairn_protocol::Result<k256::ecdsa::VerifyingKey>;

/// The chain check `verify` of `key`, derived for `purpose` of the app `app_id`, by the
/// hex `chain` `[app signature, KMS signature]` under the KMS root of [`root_keys`].
fn chain_to_the_kms_root<K: ?Sized>(
    verify: ChainCheck<K>,
    app_id: &[u8; 20],
    purpose: &str,
    key: &K,
    chain: &[String],
) -> cairn_protocol::Result<k256::ecdsa::VerifyingKey> {
    let chain = sig_chain(chain);
    assert_eq!(chain.len(), 2, "[app signature, KMS signature]");
    let root = root_keys();
    verify(
        app_id,
        purpose,
        key,
        &chain[0],
        &chain[1],
        root.k256().verifying_key(),
    )
}

/// A `GetKey` answer must be 200 with a key whose signature chain for purpose "seal"
/// verifies to `root`; the key.
async fn sealed_key(
    state: &Arc<GuestState>,
    body: &str,
    app_id: &[u8; 20],
    root: &RootKeys,
) -> [u8; 32] {
    let (st, v) = call(state, "GetKey", body).await;
    assert_eq!(st, StatusCode::OK, "{body}: {v}");
    checked_get_key(&v, app_id, "seal", root.k256().verifying_key())
        .to_bytes()
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_key_of_the_previous_generation_in_a_rotation_window_chains_to_the_old_root() {
    // A real rotation on chain, generation 1 ([`MASTER`]) → 2, with a window open: the
    // guest boots inside it and gets both generations from the KMS.
    let w = World::start().await;
    let (new_root, until) = w.rotate(ROTATION_WINDOW_SECS).await;
    let (s, state, _) = booted(&w).await;
    assert_eq!(state.secrets.key_generation, 2);
    let previous = state.secrets.previous.as_ref().expect("asked at boot");
    assert_eq!((previous.key_generation, previous.valid_until), (1, until));
    let app_id = s.app_id().0;
    // Absent or current: generation 2, chained to the current root.
    let body = r#"{"path":"/seal","purpose":"seal"}"#;
    let current = sealed_key(&state, body, &app_id, &new_root).await;
    let body = r#"{"path":"/seal","purpose":"seal","key_generation":2}"#;
    assert_eq!(sealed_key(&state, body, &app_id, &new_root).await, current);
    // The previous generation: another key, chained to the previous root.
    let body = r#"{"path":"/seal","purpose":"seal","key_generation":1}"#;
    let old = sealed_key(&state, body, &app_id, &root_keys()).await;
    assert_ne!(old, current);
    // A generation the CVM does not hold is refused, naming what it holds.
    let (st, v) = call(
        &state,
        "GetKey",
        r#"{"path":"/seal","purpose":"seal","key_generation":7}"#,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("key generation 7") && msg.contains("current 2, previous 1"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_booted_outside_a_window_has_no_previous_generation_to_give() {
    // The rotation's window has closed (generation 1 erased) when the guest boots.
    let w = World::start().await;
    w.rotate(ROTATION_WINDOW_SECS).await;
    w.close_rotation_window(ROTATION_WINDOW_SECS).await;
    let (_s, state, _) = booted(&w).await;
    assert_eq!(state.secrets.key_generation, 2);
    assert!(state.secrets.previous.is_none());
    let body = r#"{"path":"/seal","key_generation":1}"#;
    get_key_refused(&state, body, "previous none").await;
}

#[tokio::test]
async fn get_key_signature_chain_verifies_to_the_kms_root() {
    let (_w, s, state, _) = world_booted().await;
    let r: GetKeyResponse = call_ok(
        &state,
        "GetKey",
        r#"{"path":"wallet/0","purpose":"eth","algorithm":"secp256k1"}"#,
    )
    .await;
    let answer = serde_json::to_value(&r).unwrap();
    let key = checked_get_key(
        &answer,
        &s.app_id().0,
        "eth",
        root_keys().k256().verifying_key(),
    );
    // a different purpose recovers another app key, which the KMS never signed
    let compressed = sig::compressed(key.verifying_key());
    assert!(matches!(
        chain_to_the_kms_root(
            sig::verify_signature_chain,
            &s.app_id().0,
            "other",
            &compressed,
            &r.signature_chain
        ),
        Err(cairn_protocol::Error::WrongSigner)
    ));
    let body = r#"{"path":"x","algorithm":"rsa"}"#;
    get_key_refused(&state, body, "not supported").await;
}

#[tokio::test]
async fn ed25519_get_key_is_dstacks_derivation_and_its_chain_verifies_to_the_kms_root() {
    let (_w, s, state, _) = world_booted().await;
    let r: GetKeyResponse = call_ok(
        &state,
        "GetKey",
        r#"{"path":"wallet/sol","purpose":"solana","algorithm":"ed25519"}"#,
    )
    .await;
    let seed: [u8; 32] = hex::decode(&r.key).unwrap().try_into().unwrap();
    // dstack: the ed25519 seed is the HKDF output the secp256k1 derivation also uses
    let (_, secp) = call(
        &state,
        "GetKey",
        r#"{"path":"wallet/sol","purpose":"solana"}"#,
    )
    .await;
    assert_eq!(secp["key"], r.key);
    let pk = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    chain_to_the_kms_root(
        sig::verify_ed25519_signature_chain,
        &s.app_id().0,
        "solana",
        pk.as_bytes(),
        &r.signature_chain,
    )
    .unwrap();
    // the app signature is over the ed25519 key, not the secp256k1 one of the same path
    assert_ne!(secp["signature_chain"][0], r.signature_chain[0]);
}

#[tokio::test]
async fn ed25519_sign_and_verify_follow_dstack() {
    let (_w, s, state, _) = world_booted().await;
    let r: SignResponse = call_ok(
        &state,
        "Sign",
        r#"{"algorithm":"ed25519","data":"68656c6c6f"}"#,
    )
    .await;
    assert_eq!(r.signature_chain.len(), 3);
    assert_eq!(r.signature_chain[0], r.signature);
    let pk: [u8; 32] = hex::decode(&r.public_key).unwrap().try_into().unwrap();
    // the key is GetKey(path "vms", purpose "signing", ed25519), as in dstack
    let (_, k) = call(
        &state,
        "GetKey",
        r#"{"path":"vms","purpose":"signing","algorithm":"ed25519"}"#,
    )
    .await;
    let seed: [u8; 32] = hex::decode(k["key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(
        ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes(),
        pk
    );
    // pure Ed25519 over the data
    let sig = ed25519_dalek::Signature::from_slice(&hex::decode(&r.signature).unwrap()).unwrap();
    ed25519_dalek::VerifyingKey::from_bytes(&pk)
        .unwrap()
        .verify_strict(b"hello", &sig)
        .unwrap();
    chain_to_the_kms_root(
        sig::verify_ed25519_signature_chain,
        &s.app_id().0,
        "signing",
        &pk,
        &r.signature_chain[1..],
    )
    .unwrap();
    let verify = |data: &str| verify_body("ed25519", data, &r.signature, &r.public_key);
    let (_, v) = call(&state, "Verify", &verify("68656c6c6f")).await;
    assert_eq!(v["valid"], true);
    let (_, v) = call(&state, "Verify", &verify("68656c6c70")).await;
    assert_eq!(v["valid"], false);
}

#[tokio::test]
async fn get_quote_pads_report_data_and_verifies_with_the_event_log() {
    let (_w, s, state, _) = world_booted().await;
    let r: GetQuoteResponse = call_ok(&state, "GetQuote", r#"{"report_data":"68656c6c6f"}"#).await;
    let mut rd = [0u8; 64];
    rd[..5].copy_from_slice(b"hello");
    assert_eq!(r.report_data, hex::encode(rd));
    let vq = verify_hex_quote(&r.quote, &r.event_log, &rd);
    assert_eq!(*vq.compose_hash(), s.compose_hash());
    assert_eq!(vq.os_image_hash(), Some(&guest_os().os_image_hash()));
    assert_eq!(r.vm_config, "{\"cpus\":1}");
    let (st, _) = call(
        &state,
        "GetQuote",
        &format!(r#"{{"report_data":"{}"}}"#, "00".repeat(65)),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = call(&state, "GetQuote", "{not json").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn info_reports_the_measured_identity_and_tcb_info() {
    let (_w, s, state, tee) = world_booted().await;
    let r: InfoResponse = call_ok(&state, "Info", "{}").await;
    assert_eq!(r.app_id, hex::encode(s.app_id().0));
    assert_eq!(r.instance_id, hex::encode(s.instance_id().as_bytes()));
    assert_eq!(r.compose_hash, hex::encode(s.compose_hash().0));
    assert_eq!(r.app_name, "demo");
    assert_eq!(r.device_id, hex::encode(tee.device_id().0));
    let tcb: TcbInfo = serde_json::from_str(&r.tcb_info).unwrap();
    let m = guest_os().measurements();
    assert_eq!(tcb.mrtd, m.mrtd.to_hex());
    assert_eq!(tcb.rtmr3, tee.rtmr3().to_hex());
    assert_eq!(tcb.app_compose, s.compose);
    assert_eq!(tcb.event_log.as_array().unwrap().len(), 9);
    assert_eq!(
        r.key_provider_info,
        format!(
            r#"{{"name":"kms","id":"{}"}}"#,
            hex::encode(root_keys().ca().spki_der())
        )
    );
}

#[tokio::test]
async fn get_tls_key_returns_an_ra_tls_leaf_signed_by_the_app_ca() {
    let (_w, s, state, _) = world_booted().await;
    let r: GetTlsKeyResponse = call_ok(&state, "GetTlsKey", r#"{"subject":"demo.example","alt_names":["demo.example"],"usage_ra_tls":true,"usage_server_auth":true,"usage_client_auth":true}"#).await;
    assert_eq!(r.certificate_chain.len(), 3);
    assert!(r.key.starts_with("-----BEGIN PRIVATE KEY-----"));
    let keys = s.app_keys();
    assert_eq!(r.certificate_chain[1], keys.ca().cert_pem());
    let (_, leaf) = x509_parser::pem::parse_x509_pem(r.certificate_chain[0].as_bytes()).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf.contents).unwrap();
    // signed by the app CA
    let (_, ca) = x509_parser::parse_x509_certificate(keys.ca().cert_der()).unwrap();
    cert.verify_signature(Some(ca.public_key())).unwrap();
    // the leaf key is the returned key, and its evidence verifies as an app:custom RA-TLS cert
    let kp = rcgen::KeyPair::from_pem(&r.key).unwrap();
    assert_eq!(
        cert.public_key().raw,
        rcgen::PublicKeyData::subject_public_key_info(&kp).as_slice()
    );
    let id = RaTlsServerVerifier::new(verifier())
        .require_usage(Usage::AppCustom)
        .verify_cert_der(&leaf.contents, rustls_pki_types::UnixTime::now())
        .unwrap();
    assert_eq!(*id.app_id(), s.app_id());

    // without usage_ra_tls: still a leaf from the app CA for the returned key
    let r: GetTlsKeyResponse = call_ok(&state, "GetTlsKey", r#"{"subject":"plain"}"#).await;
    let (_, leaf) = x509_parser::pem::parse_x509_pem(r.certificate_chain[0].as_bytes()).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf.contents).unwrap();
    cert.verify_signature(Some(ca.public_key())).unwrap();
    let kp = rcgen::KeyPair::from_pem(&r.key).unwrap();
    assert_eq!(
        cert.public_key().raw,
        rcgen::PublicKeyData::subject_public_key_info(&kp).as_slice()
    );
}

#[tokio::test]
async fn get_tls_key_with_ra_tls_refuses_a_leaf_without_evidence() {
    let w = World::with_kms(Hostile::LeafWithoutEvidence).await;
    let (_s, state, _) = booted(&w).await;
    call_refused(
        &state,
        "GetTlsKey",
        r#"{"subject":"x","usage_ra_tls":true}"#,
        StatusCode::INTERNAL_SERVER_ERROR,
        "carries no RA-TLS evidence",
    )
    .await;
    // a plain TLS key still works with such a KMS
    let _: GetTlsKeyResponse = call_ok(&state, "GetTlsKey", r#"{"subject":"x"}"#).await;
}

#[tokio::test]
async fn get_tls_key_refuses_a_chain_not_issued_under_the_kms_root() {
    let bodies = [
        r#"{"subject":"x"}"#,
        r#"{"subject":"x","usage_ra_tls":true}"#,
    ];
    tls_key_refused(
        Hostile::ForeignChain,
        &bodies,
        "is refused: app CA certificate signature does not verify",
    )
    .await;
}

#[tokio::test]
async fn sign_and_verify_round_trip_and_reject_tampering() {
    let (_w, _s, state, _) = world_booted().await;
    let r: SignResponse = call_ok(
        &state,
        "Sign",
        r#"{"algorithm":"secp256k1","data":"616263"}"#,
    )
    .await;
    let body = |data: &str| verify_body("secp256k1", data, &r.signature, &r.public_key);
    let (_, v) = call(&state, "Verify", &body("616263")).await;
    assert_eq!(v["valid"], true);
    let (_, v) = call(&state, "Verify", &body("616264")).await;
    assert_eq!(v["valid"], false);
    // dstack's shape: a 64-byte ECDSA-SHA256 signature, the chain [signature, app
    // signature, KMS signature], the key GetKey(path "vms", purpose "signing")
    assert_eq!(hex::decode(&r.signature).unwrap().len(), 64);
    assert_eq!(r.signature_chain.len(), 3);
    assert_eq!(r.signature_chain[0], r.signature);
    let (_, k) = call(&state, "GetKey", r#"{"path":"vms","purpose":"signing"}"#).await;
    assert_eq!(k["signature_chain"][0], r.signature_chain[1]);
    let key =
        k256::ecdsa::SigningKey::from_slice(&hex::decode(k["key"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(
        hex::encode(sig::compressed(key.verifying_key())),
        r.public_key
    );
    {
        use k256::ecdsa::signature::Verifier;
        let s = k256::ecdsa::Signature::from_slice(&hex::decode(&r.signature).unwrap()).unwrap();
        key.verifying_key().verify(b"abc", &s).unwrap();
    }
    let (st, _) = call(
        &state,
        "Sign",
        r#"{"algorithm":"secp256k1_prehashed","data":"00"}"#,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, v) = call(&state, "Version", "").await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["version"].is_string());
}

#[tokio::test]
async fn emit_event_extends_rtmr3_after_system_ready() {
    let (_w, _s, state, tee) = world_booted().await;
    let before = tee.rtmr3();
    let (st, v) = call(
        &state,
        "EmitEvent",
        r#"{"event":"app-started","payload":"01"}"#,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // dstack answers an empty reply with JSON null (its Rust SDK parses it as `()`)
    assert_eq!(v, serde_json::Value::Null);
    let (st, ct, raw) = call_raw(
        &state,
        Request::post("/EmitEvent")
            .body(Body::from(r#"{"event":"app-started","payload":"02"}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(&raw[..], b"null");
    assert_eq!(ct.as_deref(), Some("application/json"));
    assert_ne!(tee.rtmr3(), before);
    assert_eq!(tee.rtmr3(), state.event_log().rtmr3());
    assert_eq!(
        state.event_log().events().last().unwrap().name,
        "app-started"
    );
}

#[tokio::test]
async fn the_agent_socket_never_replaces_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dstack.sock");
    std::fs::write(&path, b"not a socket").unwrap();
    let err = agent::bind_unix(&path).unwrap_err();
    assert!(
        matches!(&err, cairn_guest::Error::Io(m) if m.contains("is not a socket")),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
    // a stale socket is replaced
    std::fs::remove_file(&path).unwrap();
    drop(agent::bind_unix(&path).unwrap());
    let listener = agent::bind_unix(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o660
    );
    drop(listener);
}

#[tokio::test]
async fn attest_wraps_a_verifiable_quote_in_a_versioned_document() {
    let (_w, s, state, _) = world_booted().await;
    let r: AttestResponse = call_ok(&state, "Attest", r#"{"report_data":"aa"}"#).await;
    let doc: Attestation = serde_json::from_slice(&hex::decode(&r.attestation).unwrap()).unwrap();
    assert_eq!(doc.version, ATTESTATION_VERSION);
    let mut rd = [0u8; 64];
    rd[0] = 0xAA;
    let vq = verify_hex_quote(&doc.quote, &doc.event_log, &rd);
    assert_eq!(*vq.app_id(), s.app_id());
}

/// The agent served on a unix socket by the production serve loop
/// ([`agent::serve_unix`]), stopped by [`ServedAgent::stop`].
pub struct ServedAgent {
    pub socket: std::path::PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<cairn_guest::Result<()>>,
}

impl ServedAgent {
    pub async fn unix(share: &Share, state: Arc<GuestState>) -> Self {
        let socket = share.dir.path().join("dstack.sock");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let path = socket.clone();
        let task = tokio::spawn(async move {
            agent::serve_unix(&path, state, async move {
                let _ = stopped.await;
            })
            .await
        });
        // serve_unix binds before it serves: poll until the socket answers.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while tokio::net::UnixStream::connect(&socket).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "agent socket never came up"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        ServedAgent { socket, stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }

    /// Serves the agent of `share` while `client` runs against its socket, then stops
    /// it: before the caller checks what the client did, so a failed check leaves no
    /// server behind.
    pub async fn during<F: std::future::Future>(
        share: &Share,
        state: Arc<GuestState>,
        client: impl FnOnce(std::path::PathBuf) -> F,
    ) -> F::Output {
        let agent = ServedAgent::unix(share, state).await;
        let out = client(agent.socket.clone()).await;
        agent.stop().await;
        out
    }
}
