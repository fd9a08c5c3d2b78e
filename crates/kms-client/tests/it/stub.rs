//! A scripted KMS for the client's tests: real rustls on a free loopback port, a real
//! simulator RA-TLS certificate (issued by a test root CA, or not), and a handler each
//! test writes. The real KMS is exercised by cairn-kms's and cairn-e2e's tests; this
//! one exists to misbehave on purpose.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_attestation::ids::{AppId, ComposeHash, InstanceId};
use cairn_attestation::simulator::{OsImage, SimHostConfig, SimTdx};
use cairn_attestation::{
    ra_tls_extensions, EventLog, ExtensionValues, PossessionClientVerifier, RaTlsCert,
    RaTlsCertBuilder, Usage,
};
use cairn_kms_client::{KmsClient, Timeouts};
use cairn_protocol::api::{AppKeyResponse, ErrorBody, Receipt};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::net::TcpListener;
use zeroize::Zeroizing;

/// How long a test waits for anything before it fails (never slept on).
pub const DEADLINE: Duration = Duration::from_secs(20);

// The mock Intel PKI (collateral anchored at the wall clock) and the real verifier
// trusting its root, with its collateral.
pub use cairn_attestation::testing::{sim_pki as pki, sim_verifier as verifier};

/// A client of the stubs with short timeouts.
pub fn client() -> KmsClient {
    KmsClient::new(verifier()).with_timeouts(Timeouts::uniform(Duration::from_secs(10)))
}

/// A booted simulated CVM: its TD and event log, for certificates with evidence.
pub struct Cvm {
    pub tdx: SimTdx,
    pub log: EventLog,
    pub app_id: AppId,
}

impl Cvm {
    pub fn boot(host_seed: u8, compose: &str) -> Cvm {
        let tdx = SimTdx::new(
            pki(),
            SimHostConfig::new([host_seed; 32], OsImage::example("cairn-os", "1.0")),
        )
        .unwrap();
        let compose_hash = ComposeHash::of_compose(compose.as_bytes());
        let app_id = AppId::from_compose_hash(&compose_hash);
        let mut log = EventLog::new();
        log.measure_boot(&tdx, &app_id, &compose_hash, &InstanceId::None)
            .unwrap();
        Cvm { tdx, log, app_id }
    }

    pub fn cert(&self, usage: Usage) -> RaTlsCert {
        self.builder(usage).build(&self.tdx).unwrap()
    }

    pub fn builder(&self, usage: Usage) -> RaTlsCertBuilder {
        RaTlsCertBuilder::new(usage)
            .common_name("cvm")
            .event_log(&self.log.to_json())
            .app_id(self.app_id.0)
    }
}

/// A guest app's CVM and its RA-TLS client certificate.
pub fn guest() -> (Cvm, RaTlsCert) {
    let cvm = Cvm::boot(0x01, r#"{"name":"app"}"#);
    let cert = cvm.cert(Usage::AppCustom);
    (cvm, cert)
}

/// A test KMS root CA: a self-signed P-256 CA.
pub struct Root {
    pub issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

impl Root {
    pub fn new() -> Root {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "Cairn KMS Root CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).unwrap().pem();
        Root {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// An app CA for `app_id` under this root, as the KMS derives one.
    pub fn app_ca(&self, app_id: &[u8; 20]) -> (Issuer<'static, KeyPair>, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "app CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.custom_extensions = ra_tls_extensions(ExtensionValues {
            app_id: Some(app_id),
            usage: Some(Usage::AppCa),
            ..ExtensionValues::default()
        });
        let pem = params.signed_by(&key, &self.issuer).unwrap().pem();
        (Issuer::new(params, key), pem)
    }

    /// A leaf for the key of `csr_der` under a fresh app CA for `app_id`: the chain
    /// `[leaf, app CA, root]` a KMS answers `sign-cert` with.
    pub fn sign_csr(&self, csr_der: &[u8], app_id: &[u8; 20]) -> Vec<String> {
        let der = rustls_pki_types::CertificateSigningRequestDer::from(csr_der);
        let csr = rcgen::CertificateSigningRequestParams::from_der(&der).unwrap();
        let (ca, ca_pem) = self.app_ca(app_id);
        let mut params = CertificateParams::new(vec!["app.test".to_owned()]).unwrap();
        params.custom_extensions = ra_tls_extensions(ExtensionValues {
            app_id: Some(app_id),
            usage: Some(Usage::AppCustom),
            ..ExtensionValues::default()
        });
        let leaf = params.signed_by(&csr.public_key, &ca).unwrap().pem();
        vec![leaf, ca_pem, self.pem.clone()]
    }
}

/// The KMS CVM and its `kms:rpc` certificate issued by `root` (self-signed when `None`).
pub fn kms_cert(usage: Usage, root: Option<&Root>) -> RaTlsCert {
    let cvm = Cvm::boot(0x0B, r#"{"name":"kms"}"#);
    match root {
        Some(root) => cvm
            .builder(usage)
            .build_signed_by(&cvm.tdx, &root.issuer)
            .unwrap(),
        None => cvm.cert(usage),
    }
}

/// A plain self-signed certificate (no evidence).
pub fn plain_cert() -> RaTlsCert {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = CertificateParams::new(vec!["kms".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    RaTlsCert::from_parts(cert.der().clone(), key.serialize_der())
}

/// What the stub answers one request with.
pub enum Reply {
    /// A status and a body.
    Body(StatusCode, Vec<u8>),
    /// Nothing, ever (the request waits until the client gives up).
    Hang,
}

/// JSON `value` with `200 OK`.
pub fn ok(value: &impl serde::Serialize) -> Reply {
    Reply::Body(StatusCode::OK, serde_json::to_vec(value).unwrap())
}

/// The API's error shape.
pub fn error(status: StatusCode, code: &str, message: &str) -> Reply {
    Reply::Body(
        status,
        serde_json::to_vec(&ErrorBody::new(code, message)).unwrap(),
    )
}

/// An app-key answer with dummy keys and `root_pem` as the root CA.
pub fn app_key_response(root_pem: &str) -> AppKeyResponse {
    AppKeyResponse {
        app_key: Zeroizing::new([1; 32]),
        kms_signature: [2; 65],
        disk_key: Zeroizing::new([3; 32]),
        env_secret: Zeroizing::new([4; 32]),
        gateway_app_id: [0; 20],
        root_ca_cert: root_pem.to_owned(),
        os_image_hash: [5; 32],
        key_generation: 1,
        receipt: Receipt {
            log_index: 0,
            checkpoint: "stub\n1\nroot\n".to_owned(),
            policy_block_number: 1,
            policy_block_hash: [0; 32],
        },
        previous: None,
    }
}

/// A request as the handler sees it.
pub struct Seen<'a> {
    pub path: &'a str,
    pub body: &'a [u8],
}

type Handler = Arc<dyn Fn(&Seen<'_>) -> Reply + Send + Sync>;

/// A scripted KMS on `127.0.0.1:0`; stops when dropped.
pub struct StubKms {
    pub url: String,
    /// Requests that reached the handler (evidence checks happen before any is sent).
    pub requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StubKms {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StubKms {
    /// Serve `cert` and answer every request with `handler`.
    pub async fn start(
        cert: RaTlsCert,
        handler: impl Fn(&Seen<'_>) -> Reply + Send + Sync + 'static,
    ) -> StubKms {
        let handler: Handler = Arc::new(handler);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(Arc::new(PossessionClientVerifier::optional()))
            .with_single_cert(vec![cert.cert_der.clone()], cert.private_key_der())
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, handler, counter) =
                    (acceptor.clone(), handler.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let (handler, counter) = (handler.clone(), counter.clone());
                        async move {
                            Ok::<_, std::convert::Infallible>(serve(req, &handler, &counter).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        StubKms {
            url,
            requests,
            task,
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn serve(
    req: Request<Incoming>,
    handler: &Handler,
    counter: &AtomicU64,
) -> Response<Full<Bytes>> {
    counter.fetch_add(1, Ordering::SeqCst);
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    match handler(&Seen {
        path: &path,
        body: &body,
    }) {
        Reply::Body(status, body) => Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap(),
        Reply::Hang => std::future::pending().await,
    }
}

/// A TCP listener that accepts connections and never says a word; stops when dropped.
pub struct SilentServer {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SilentServer {
    pub async fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                held.push(tcp);
            }
        });
        SilentServer { url, task }
    }
}

/// `err` refuses a KMS whose server certificate the root it returned (or the caller's
/// root) did not sign.
#[track_caller]
pub fn assert_kms_not_rooted(err: &cairn_kms_client::Error) {
    assert!(
        matches!(
            err,
            cairn_kms_client::Error::NotRooted {
                source: cairn_attestation::ChainError::BadSignature {
                    role: cairn_attestation::CertRole::KmsServer
                },
                ..
            }
        ),
        "{err:?}"
    );
}
