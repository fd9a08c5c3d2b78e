//! The test world: one simulated Intel PKI, a stub KMS that releases keys derived by
//! cairn-kms's real KDF (not canned bytes), and host shares in temp dirs.
//!
//! The stub stands in for the real KMS server (being built in parallel); it implements
//! `POST /v1/app-key` and `POST /v1/sign-cert` over mutual RA-TLS with the real verifiers.
//! The real KMS is exercised by the cairn-e2e tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cairn_attestation::ids::{AppId, ComposeHash, InstanceId, KeyProvider};
use cairn_attestation::simulator::{OsImage, SimHostConfig, SimPki, SimPkiConfig, SimTdx};
use cairn_attestation::{
    Collateral, EventLog, RaTlsCertBuilder, RaTlsClientVerifier, Tee, Usage, VerifiedQuote,
    Verifier,
};
use cairn_guest::BootConfig;
use cairn_kms::{AppKeys, MasterSecret, RootKeys};
use cairn_kms_client::KmsClient;
use cairn_protocol::api::{
    AppKeyResponse, ErrorBody, MetaResponse, Receipt, SignCertRequest, SignCertResponse,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The mock Intel PKI (collateral anchored at the wall clock: RA-TLS verifies "now").
pub fn pki() -> Arc<SimPki> {
    static PKI: OnceLock<Arc<SimPki>> = OnceLock::new();
    PKI.get_or_init(|| Arc::new(SimPki::new(SimPkiConfig::new([0x42; 32], unix_now())).unwrap()))
        .clone()
}

/// The real verifier trusting the simulator root.
pub fn verifier() -> Verifier {
    let pki = pki();
    Verifier::dangerous_with_simulator_root(pki.root_ca_der())
        .with_collateral(Collateral::new(pki.collateral()).unwrap())
}

pub fn guest_os() -> OsImage {
    OsImage::example("cairn-os", "1.0")
}

/// A fresh simulated guest TD.
pub fn guest_tee(host_seed: u8) -> Arc<SimTdx> {
    Arc::new(SimTdx::new(pki(), SimHostConfig::new([host_seed; 32], guest_os())).unwrap())
}

pub const MASTER: [u8; 32] = [0x5A; 32];

pub fn root_keys(master: [u8; 32]) -> RootKeys {
    RootKeys::derive(&MasterSecret::from_bytes(master)).unwrap()
}

/// How the stub KMS behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Releases keys.
    Honest,
    /// Presents a plain self-signed certificate (no evidence).
    PlainCert,
    /// Presents an RA-TLS certificate with usage `app:custom` instead of `kms:rpc`.
    WrongUsage,
    /// Refuses with 403 `denied.compose_hash`.
    Deny,
    /// Issues sign-cert leaves without the quote and event log (a KMS that does not copy the
    /// caller's evidence; the guest must refuse to hand such a leaf out as RA-TLS).
    LeafWithoutEvidence,
    /// Holds every sign-cert request until [`StubKms::release_sign_cert`], then answers
    /// honestly (to keep agent requests in flight).
    StallSignCert,
    /// Issues sign-cert leaves with the evidence but without the app id extension (the
    /// guest must refuse them for `GetTlsKey{with_app_info: true}`).
    LeafWithoutAppId,
    /// A fake KMS: a valid self-signed `kms:rpc` RA-TLS certificate (not issued by the root
    /// CA) that returns the genuine root CA certificate, which is public.
    SelfSignedTls,
    /// A rooted TLS certificate, but sign-cert chains issued by another KMS's app CA (with
    /// this KMS's genuine root CA appended).
    ForeignChain,
    /// Serves the manifest of another OS image than the one its quote shows in `meta`.
    WrongImage,
    /// In a rotation's transition window: generation 2 (from [`MASTER`]) and, when the
    /// request asks `previous_generation`, generation 1's keys (from [`PREVIOUS_MASTER`]).
    Rotated,
}

/// The previous generation's master of [`Mode::Rotated`].
pub const PREVIOUS_MASTER: [u8; 32] = [0x11; 32];
/// The end of [`Mode::Rotated`]'s window.
pub const PREVIOUS_VALID_UNTIL: u64 = 1_900_000_000;

pub struct StubKms {
    pub url: String,
    pub releases: Arc<AtomicU64>,
    /// sign-cert requests received (counted on arrival).
    pub sign_certs: Arc<AtomicU64>,
    stall: tokio::sync::watch::Sender<bool>,
    pub master: [u8; 32],
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StubKms {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Ctx {
    master: MasterSecret,
    root: RootKeys,
    mode: Mode,
    releases: Arc<AtomicU64>,
    sign_certs: Arc<AtomicU64>,
    stalled: tokio::sync::watch::Receiver<bool>,
}

/// The KMS's own CVM certificate: issued by `root`'s CA like the real KMS's
/// (kms/src/node.rs `own_cert`), or self-signed when `root` is `None`.
fn kms_cert(usage: Usage, root: Option<&RootKeys>) -> cairn_attestation::RaTlsCert {
    let tdx = SimTdx::new(pki(), SimHostConfig::new([0x0B; 32], guest_os())).unwrap();
    let compose_hash = ComposeHash::of_compose(br#"{"name":"kms"}"#);
    let app_id = AppId::from_compose_hash(&compose_hash);
    let mut log = EventLog::new();
    log.measure_boot(&tdx, &app_id, &compose_hash, &InstanceId::None)
        .unwrap();
    log.measure_system_ready(
        &tdx,
        &guest_os().os_image_hash(),
        &KeyProvider::kms(b"none"),
    )
    .unwrap();
    let builder = RaTlsCertBuilder::new(usage)
        .common_name("kms")
        .event_log(&log.to_json())
        .app_id(app_id.0);
    match root {
        Some(root) => builder.build_signed_by(&tdx, &root.ca().issuer()).unwrap(),
        None => builder.build(&tdx).unwrap(),
    }
}

impl StubKms {
    pub async fn start(mode: Mode) -> Self {
        Self::start_with(mode, MASTER).await
    }

    pub async fn start_with(mode: Mode, master: [u8; 32]) -> Self {
        let server_cert = match mode {
            Mode::PlainCert => {
                let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
                let cert = rcgen::CertificateParams::new(vec!["kms".to_owned()])
                    .unwrap()
                    .self_signed(&key)
                    .unwrap();
                cairn_attestation::RaTlsCert::from_parts(cert.der().clone(), key.serialize_der())
            }
            Mode::WrongUsage => kms_cert(Usage::AppCustom, Some(&root_keys(master))),
            Mode::SelfSignedTls => kms_cert(Usage::KmsRpc, None),
            _ => kms_cert(Usage::KmsRpc, Some(&root_keys(master))),
        };
        let client_verifier = Arc::new(RaTlsClientVerifier::new(verifier()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(client_verifier.clone())
            .with_single_cert(
                vec![server_cert.cert_der.clone()],
                server_cert.private_key_der(),
            )
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let releases = Arc::new(AtomicU64::new(0));
        let sign_certs = Arc::new(AtomicU64::new(0));
        let (stall, stalled) = tokio::sync::watch::channel(mode == Mode::StallSignCert);
        let ctx = Arc::new(Ctx {
            master: MasterSecret::from_bytes(master),
            root: root_keys(master),
            mode,
            releases: releases.clone(),
            sign_certs: sign_certs.clone(),
            stalled,
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let verifier = client_verifier.clone();
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(identity) = verifier.peer_identity(tls.get_ref().1) else {
                        return;
                    };
                    let peer_cert: Arc<Vec<u8>> = Arc::new(
                        tls.get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| c.to_vec())
                            .unwrap_or_default(),
                    );
                    let svc = hyper::service::service_fn(move |req| {
                        let ctx = ctx.clone();
                        let identity = identity.clone();
                        let peer_cert = peer_cert.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                handle(&ctx, &identity, &peer_cert, req).await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        StubKms {
            url: format!("https://127.0.0.1:{}", addr.port()),
            releases,
            sign_certs,
            stall,
            master,
            task,
        }
    }

    /// Let the held sign-cert requests ([`Mode::StallSignCert`]) through.
    pub fn release_sign_cert(&self) {
        let _ = self.stall.send(false);
    }

    /// The app keys this KMS derives for a guest.
    pub fn app_keys(&self, app_id: &AppId, instance_id: &InstanceId) -> AppKeys {
        let m = MasterSecret::from_bytes(self.master);
        AppKeys::derive(&m, &root_keys(self.master), app_id, instance_id).unwrap()
    }
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    json(
        status,
        serde_json::to_vec(&ErrorBody::new(code, message)).unwrap(),
    )
}

async fn handle(
    ctx: &Ctx,
    id: &VerifiedQuote,
    peer_cert: &[u8],
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let Ok(body) = Limited::new(req.into_body(), 64 * 1024).collect().await else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "body");
    };
    let body = body.to_bytes();
    if ctx.mode == Mode::Deny {
        return error(
            StatusCode::FORBIDDEN,
            "denied.compose_hash",
            "compose hash not allowed",
        );
    }
    let keys = AppKeys::derive(&ctx.master, &ctx.root, id.app_id(), id.instance_id()).unwrap();
    match path.as_str() {
        "/v1/meta" => {
            let image = match ctx.mode {
                Mode::WrongImage => OsImage::example("cairn-os", "0.9"),
                _ => guest_os(),
            };
            let meta = MetaResponse {
                chain_id: 31337,
                kms_auth: [0; 20],
                root_k256_public_key: ctx.root.k256_public(),
                root_ca_cert: ctx.root.ca().cert_pem().to_owned(),
                node_address: [0; 20],
                key_generation: 1,
                os_image_manifest: String::from_utf8(image.manifest().to_bytes()).unwrap(),
            };
            json(StatusCode::OK, serde_json::to_vec(&meta).unwrap())
        }
        "/v1/app-key" => {
            let n = ctx.releases.fetch_add(1, Ordering::SeqCst);
            let req: cairn_protocol::api::AppKeyRequest = serde_json::from_slice(&body).unwrap();
            let previous = match (ctx.mode, req.previous_generation) {
                (Mode::Rotated, Some(_)) => {
                    let root = root_keys(PREVIOUS_MASTER);
                    let old = AppKeys::derive(
                        &cairn_kms::MasterSecret::from_bytes(PREVIOUS_MASTER),
                        &root,
                        id.app_id(),
                        id.instance_id(),
                    )
                    .unwrap();
                    Some(cairn_protocol::api::PreviousAppKeys {
                        key_generation: 1,
                        valid_until: PREVIOUS_VALID_UNTIL,
                        app_key: old.k256_secret(),
                        kms_signature: *old.kms_signature(),
                        disk_key: Zeroizing::new(*old.disk_key().expose()),
                        env_secret: Zeroizing::new(old.env_secret().to_bytes()),
                        root_ca_cert: root.ca().cert_pem().to_owned(),
                        receipt: Receipt {
                            log_index: n,
                            checkpoint: "stub-kms\n1\nroot\n".to_owned(),
                            policy_block_number: 1,
                            policy_block_hash: [0; 32],
                        },
                    })
                }
                _ => None,
            };
            let resp = AppKeyResponse {
                app_key: keys.k256_secret(),
                kms_signature: *keys.kms_signature(),
                disk_key: Zeroizing::new(*keys.disk_key().expose()),
                env_secret: Zeroizing::new(keys.env_secret().to_bytes()),
                gateway_app_id: [0; 20],
                root_ca_cert: ctx.root.ca().cert_pem().to_owned(),
                os_image_hash: guest_os().os_image_hash().0,
                key_generation: if ctx.mode == Mode::Rotated { 2 } else { 0 },
                receipt: Receipt {
                    log_index: n,
                    checkpoint: "stub-kms\n1\nroot\n".to_owned(),
                    policy_block_number: 1,
                    policy_block_hash: [0; 32],
                },
                previous,
            };
            json(StatusCode::OK, serde_json::to_vec(&resp).unwrap())
        }
        "/v1/sign-cert" => {
            ctx.sign_certs.fetch_add(1, Ordering::SeqCst);
            let mut stalled = ctx.stalled.clone();
            let _ = stalled.wait_for(|held| !*held).await;
            let Ok(req) = serde_json::from_slice::<SignCertRequest>(&body) else {
                return error(StatusCode::BAD_REQUEST, "bad_request", "json");
            };
            let foreign;
            let issuing = if ctx.mode == Mode::ForeignChain {
                let other = [0x77; 32];
                foreign = AppKeys::derive(
                    &MasterSecret::from_bytes(other),
                    &root_keys(other),
                    id.app_id(),
                    id.instance_id(),
                )
                .unwrap();
                &foreign
            } else {
                &keys
            };
            match sign_csr(
                issuing,
                &ctx.root,
                peer_cert,
                &req.csr,
                ctx.mode != Mode::LeafWithoutEvidence,
                ctx.mode != Mode::LeafWithoutAppId,
            ) {
                Ok(chain) => json(
                    StatusCode::OK,
                    serde_json::to_vec(&SignCertResponse {
                        certificate_chain: chain,
                    })
                    .unwrap(),
                ),
                Err(e) => error(StatusCode::BAD_REQUEST, "bad_request", &e),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such path"),
    }
}

/// What the real KMS's sign-cert does (kms/src/node.rs): parse the CSR with rcgen (which
/// refuses unknown extensions), require the CSR key to be the attested client
/// certificate's key, copy subject and SANs, add app id and usage `app:custom`, sign with
/// the app CA. In addition — the behaviour `GetTlsKey{usage_ra_tls}` needs, proposed for
/// the real KMS in docs/guest-agent.md — copy the client certificate's quote and event log
/// (they bind the same key, so the leaf is a valid RA-TLS certificate).
fn sign_csr(
    keys: &AppKeys,
    root: &RootKeys,
    peer_cert: &[u8],
    csr_der: &[u8],
    copy_evidence: bool,
    add_app_id: bool,
) -> Result<Vec<String>, String> {
    let der = rustls_pki_types::CertificateSigningRequestDer::from(csr_der);
    let csr = rcgen::CertificateSigningRequestParams::from_der(&der).map_err(|e| e.to_string())?;
    let (_, client) = x509_parser::parse_x509_certificate(peer_cert).map_err(|e| e.to_string())?;
    use rcgen::PublicKeyData;
    if csr.public_key.der_bytes() != client.public_key().subject_public_key.data.as_ref() {
        return Err("the CSR key is not the key of the attested client certificate".to_owned());
    }
    let evidence =
        cairn_attestation::parse_ra_tls_extensions(peer_cert).map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = csr.params.distinguished_name.clone();
    params.subject_alt_names = csr.params.subject_alt_names.clone();
    params.extended_key_usages = csr.params.extended_key_usages.clone();
    let app_id = evidence.app_id.ok_or("no app id")?;
    params.custom_extensions =
        cairn_attestation::ra_tls_extensions(cairn_attestation::ExtensionValues {
            quote: copy_evidence.then_some(evidence.quote.as_slice()),
            event_log: copy_evidence.then_some(evidence.event_log.as_slice()),
            app_id: add_app_id.then_some(&app_id),
            usage: Some(Usage::AppCustom),
        });
    let cert = params
        .signed_by(&csr.public_key, &keys.ca().issuer())
        .map_err(|e| e.to_string())?;
    Ok(vec![
        cert.pem(),
        keys.ca().cert_pem().to_owned(),
        root.ca().cert_pem().to_owned(),
    ])
}

/// What the stub KMS's quote says about it (its identities, measurements, device), as
/// any client verifies it.
pub async fn stub_kms_identity() -> VerifiedQuote {
    let cert = kms_cert(Usage::KmsRpc, Some(&root_keys(MASTER)));
    verifier()
        .verify_ra_tls_cert(&cert.cert_der, Some(Usage::KmsRpc), None, unix_now())
        .await
        .unwrap()
}

/// A host share in a temp dir with a `process` compose.
pub struct Share {
    pub dir: tempfile::TempDir,
    pub compose: String,
}

impl Share {
    pub fn share_dir(&self) -> PathBuf {
        self.dir.path().join("share")
    }
    pub fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }
    pub fn out(&self) -> PathBuf {
        self.dir.path().join("app-out")
    }
    pub fn config(&self) -> BootConfig {
        BootConfig {
            share_dir: self.share_dir(),
            keys_dir: self.keys_dir(),
            work_dir: self.dir.path().join("work"),
            agent_socket: Some(self.dir.path().join("agent.sock")),
            device_id: None,
            start_app: true,
            docker: "docker".into(),
        }
    }
    pub fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.share_dir().join(name), bytes).unwrap();
    }
    /// Rewrite sys-config.json with `kms_urls` and a `chain` section.
    pub fn set_chain(&self, kms_urls: &[&str], chain: serde_json::Value) {
        self.write(
            "sys-config.json",
            &serde_json::to_vec(&serde_json::json!({"kms_urls": kms_urls, "chain": chain}))
                .unwrap(),
        );
    }
    pub fn compose_hash(&self) -> ComposeHash {
        ComposeHash::of_compose(self.compose.as_bytes())
    }
    pub fn app_id(&self) -> AppId {
        AppId::from_compose_hash(&self.compose_hash())
    }
    pub fn instance_id(&self) -> InstanceId {
        InstanceId::derive(b"seed-1", &self.app_id())
    }
}

/// A share whose app writes `API_KEY|MODE|DROPPED|CAIRN_KEYS_DIR` to `app-out`.
pub fn share(kms_urls: &[&str], extra: &str) -> Share {
    let dir = tempfile::tempdir().unwrap();
    let share_dir = dir.path().join("share");
    std::fs::create_dir(&share_dir).unwrap();
    let out = dir.path().join("app-out");
    let script = format!(
        "printf '%s|%s|%s|%s' \"$API_KEY\" \"$MODE\" \"$DROPPED\" \"$CAIRN_KEYS_DIR\" > {}",
        out.display()
    );
    let compose = format!(
        r#"{{"manifest_version":2,"name":"demo","runner":"process","process":{{"command":["/bin/sh","-c",{}],"env":{{"MODE":"dev"}}}},"kms_enabled":true,"allowed_envs":["API_KEY"]{extra}}}"#,
        serde_json::to_string(&script).unwrap()
    );
    std::fs::write(share_dir.join("app-compose.json"), &compose).unwrap();
    std::fs::write(
        share_dir.join("sys-config.json"),
        serde_json::to_vec(&serde_json::json!({"kms_urls": kms_urls, "vm_config": "{\"cpus\":1}"}))
            .unwrap(),
    )
    .unwrap();
    std::fs::write(
        share_dir.join(".instance-info"),
        format!(r#"{{"instance_id_seed":"{}"}}"#, hex::encode(b"seed-1")),
    )
    .unwrap();
    Share { dir, compose }
}

pub fn kms_client() -> KmsClient {
    KmsClient::new(verifier())
        .with_timeouts(cairn_kms_client::Timeouts::uniform(Duration::from_secs(20)))
}

pub fn is_empty_or_missing(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

pub fn as_tee(t: &Arc<SimTdx>) -> Arc<dyn Tee> {
    t.clone()
}
