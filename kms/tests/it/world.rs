//! The KMS test world: the test cluster of `cairn_kms::testing` (anvil with a deployed
//! Cairn system and the cluster's root keys, the simulated Intel PKI, KMS nodes serving
//! over real RA-TLS on free ports) with one app deployed, simulated guests of it, and
//! the PKIs and proxies of the negative tests.

use std::ops::Deref;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cairn_attestation::ids::AppId;
use cairn_attestation::simulator::{SimPki, SimPkiConfig, SimTcbStatus};
use cairn_attestation::RaTlsCert;
use cairn_kms::{unix_now, NodeOptions};
use cairn_kms_client::KmsConnection;
use cairn_onchain::AppAuthClient;
use cairn_protocol::api::{AppKeyRequest, AppKeyResponse, ErrorBody, PATH_APP_KEY};
use hyper::{Method, StatusCode};
use tempfile::TempDir;
use tokio::net::TcpListener;

pub use cairn_kms::testing::{
    image, pki, unlisted_image, verifier_for, Guest, RunningKms as Running, TestNet, CONFIRMATIONS,
    MASTER,
};

/// The app compose every guest runs unless a test says otherwise.
pub const COMPOSE: &[u8] = br#"{"manifest_version":2,"name":"demo","runner":"process"}"#;

/// The same PKI (same keys and certificates) whose TCB info rates the platform OutOfDate.
pub fn out_of_date_pki() -> Arc<SimPki> {
    static PKI: OnceLock<Arc<SimPki>> = OnceLock::new();
    PKI.get_or_init(|| {
        let mut c = pki().config().clone();
        c.tcb_status = SimTcbStatus::OutOfDate;
        Arc::new(SimPki::new(c).unwrap())
    })
    .clone()
}

/// Another vendor root entirely.
pub fn rogue_pki() -> Arc<SimPki> {
    static PKI: OnceLock<Arc<SimPki>> = OnceLock::new();
    PKI.get_or_init(|| Arc::new(SimPki::new(SimPkiConfig::new([0x66; 32], unix_now())).unwrap()))
        .clone()
}

/// The test cluster (`TestNet`: its chain, nodes and methods through `Deref`) with an
/// app whose [`COMPOSE`] is allowed on any device.
pub struct World {
    pub net: TestNet,
    pub app: AppAuthClient,
    pub app_id: AppId,
}

impl Deref for World {
    type Target = TestNet;

    fn deref(&self) -> &TestNet {
        &self.net
    }
}

impl World {
    /// The cluster with root keys registered, image 1.0 allowed, and the app.
    pub async fn new() -> World {
        Self::with(TestNet::new(Path::new(env!("CARGO_MANIFEST_DIR"))).await).await
    }

    /// [`World::new`] and a node on `host_seed` serving it ([`TestNet::start`]).
    pub async fn serving(host_seed: u8) -> (World, Running) {
        let w = World::new().await;
        let kms = w.start(host_seed).await;
        (w, kms)
    }

    /// [`World::new`] without root keys registered (for a real bootstrap).
    pub async fn without_root_keys() -> World {
        Self::with(TestNet::without_root_keys(Path::new(env!("CARGO_MANIFEST_DIR"))).await).await
    }

    async fn with(net: TestNet) -> World {
        let app = net.deploy_app(net.owner, Some(COMPOSE)).await;
        let app_id = AppId(app.app_id().into_array());
        World { net, app, app_id }
    }

    /// A guest of the world's app on host `host_seed`.
    pub fn guest(&self, host_seed: u8) -> Guest {
        Guest::boot(pki(), host_seed, image(), self.app_id, COMPOSE)
    }

    /// [`World::serving`] with a guest on host `guest_seed`, its RA-TLS certificate and a
    /// mutual RA-TLS connection to the node with that certificate.
    pub async fn serving_guest(
        node_seed: u8,
        guest_seed: u8,
    ) -> (World, Running, Guest, RaTlsCert, KmsConnection) {
        let (w, kms) = World::serving(node_seed).await;
        let guest = w.guest(guest_seed);
        let cert = guest.cert();
        let client = kms.client(Some(&cert)).await;
        (w, kms, guest, cert, client)
    }

    /// [`World::serving`] on `host_seed`, and the options of another node on
    /// `candidate_seed` with its fresh data dir: a node to onboard (not served yet).
    pub async fn with_candidate(
        host_seed: u8,
        candidate_seed: u8,
    ) -> (World, Running, NodeOptions, Arc<TempDir>) {
        let (w, kms) = World::serving(host_seed).await;
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let opts = w.options(dir.path(), candidate_seed, &pki());
        (w, kms, opts, dir)
    }

    /// A mutual RA-TLS connection to `kms` as [`World::guest`] on host `host_seed`.
    pub async fn guest_client(&self, kms: &Running, host_seed: u8) -> KmsConnection {
        kms.client(Some(&self.guest(host_seed).cert())).await
    }

    /// [`World::guest_client`] whose first `app-key` request has been released.
    pub async fn released_client(&self, kms: &Running, host_seed: u8) -> KmsConnection {
        let mut client = self.guest_client(kms, host_seed).await;
        app_key(&mut client).await.unwrap();
        client
    }
}

/// A TCP proxy in front of anvil whose gate can hold every byte sent to the chain:
/// requests stay in flight, deterministically, until the gate opens again.
pub struct GateProxy {
    pub url: url::Url,
    open: tokio::sync::watch::Sender<bool>,
    /// Receives one message each time a request is held at the closed gate.
    pub held: tokio::sync::mpsc::UnboundedReceiver<()>,
}

impl GateProxy {
    pub async fn start(target: &url::Url) -> GateProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = format!(
            "{}:{}",
            target.host_str().unwrap(),
            target.port_or_known_default().unwrap()
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let (open, gate) = tokio::sync::watch::channel(true);
        let (held_tx, held) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let mut gate = gate.clone();
                let held_tx = held_tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if !*gate.borrow() {
                            let _ = held_tx.send(());
                            if gate.wait_for(|open| *open).await.is_err() {
                                return;
                            }
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
            }
        });
        GateProxy { url, open, held }
    }

    pub fn close(&self) {
        let _ = self.open.send(false);
    }

    pub fn open(&self) {
        let _ = self.open.send(true);
    }
}

/// An error answer of the KMS: its status and error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorAnswer {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ErrorAnswer {
    /// Asserts the answer's HTTP status and error code.
    #[track_caller]
    pub fn assert_code(&self, status: StatusCode, code: &str) {
        assert_eq!(
            (self.status, self.body.error.code.as_str()),
            (status, code),
            "{self:?}"
        );
    }
}

/// The KMS's error answer in `err`; a transport failure fails the test.
pub fn answer(err: cairn_kms_client::Error) -> ErrorAnswer {
    match err {
        cairn_kms_client::Error::Status {
            status,
            code,
            message,
            ..
        } => ErrorAnswer {
            status: StatusCode::from_u16(status).unwrap(),
            body: ErrorBody::new(code, message),
        },
        other => panic!("expected an error answer from the KMS, got {other:?}"),
    }
}

/// `GET path` on a fresh public connection (no client certificate).
pub async fn get(kms: &Running, path: &str) -> (StatusCode, hyper::body::Bytes) {
    kms.client(None)
        .await
        .request(Method::GET, path, None)
        .await
        .unwrap()
}

/// `GET /healthz` on a fresh public connection: `Ok(())` (200 `ok`) or the status and
/// error body of a node that is not ready.
pub async fn health(kms: &Running) -> Result<(), (StatusCode, ErrorBody)> {
    let (status, body) = get(kms, "/healthz").await;
    if status == StatusCode::OK {
        assert_eq!(&body[..], b"ok");
        return Ok(());
    }
    let err: ErrorBody =
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {body:?} ({status})"));
    Err((status, err))
}

/// `GET /metrics` on a fresh public connection: the exposition text (200 asserted).
pub async fn metrics_text(kms: &Running) -> String {
    let (status, text) = get(kms, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    String::from_utf8(text.to_vec()).unwrap()
}

/// The value of the unlabelled metric `name` in `/metrics`.
pub async fn metric(kms: &Running, name: &str) -> f64 {
    let text = metrics_text(kms).await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not in {text}"))
        .parse()
        .unwrap()
}

/// Poll `cond` until it holds (deadline 60 s); `what` names what did not happen.
pub async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `POST /v1/app-key` (the default request) on `client`: the response or the KMS's
/// error answer.
pub async fn app_key(client: &mut KmsConnection) -> Result<AppKeyResponse, ErrorAnswer> {
    client
        .call(Method::POST, PATH_APP_KEY, Some(&AppKeyRequest::default()))
        .await
        .map_err(answer)
}

/// `client`'s next `app-key` request, which `kms` must refuse with `status` and `code`
/// and without a log entry: the refusal.
pub async fn refused_app_key(
    kms: &Running,
    client: &mut KmsConnection,
    status: StatusCode,
    code: &str,
) -> ErrorAnswer {
    let size = kms.node.log().size();
    let err = app_key(client).await.unwrap_err();
    err.assert_code(status, code);
    assert_eq!(
        kms.node.log().size(),
        size,
        "a refused release was logged: {err:?}"
    );
    err
}
