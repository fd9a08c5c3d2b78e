//! Plumbing of the gateway scenarios: a gateway app on chain, the gateway's own CVM (its
//! identity comes from that CVM's guest agent), gateway nodes served in-process on free
//! ports, app CVMs running `cairn-echo-app` that register with the gateways, and clients
//! that reach them through a gateway.
//!
//! ```text
//!  Devnet::deploy_gateway_app ─► KmsAuth.setGatewayAppId
//!  GatewayCvm::boot (cairn_guest::boot + agent) ─► GatewayNode::start (cairn_gateway::run
//!     with that agent; a test CA's wildcard certificate for *.gw.cairn.test)
//!  echo_cvm ─► AppCvm::start (boot, agent, cairn_guest::gateway::spawn) ─► registered
//!  client ─► https_get / KeepAlive through the node's proxy port, by SNI
//! ```
//!
//! Like the rest of this crate, the helpers panic when the plumbing fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_attestation::testing::possession_client;
use cairn_attestation::{verify_app_chain, RootCa};
use cairn_gateway::{CertConfig, GatewayOptions, Listeners, ProxyLimits, RegistrationLimits};
use cairn_guest::gateway::{RegisterOptions, Registrations};
use cairn_onchain::alloy::primitives::Address;
use cairn_onchain::AppAuthClient;
use cairn_protocol::gateway::GatewayStatus;
use cairn_protocol::sysconfig::AppPort;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes as HttpBytes;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use tempfile::TempDir;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use crate::{image, verifier, Agent, Cvm, Devnet, Kms, CONFIRMATIONS, DEADLINE};

/// The domain the scenarios route under.
pub const BASE_DOMAIN: &str = "gw.cairn.test";

/// A CA of the test's own and a wildcard certificate for [`BASE_DOMAIN`] it issued,
/// written to files as an operator would provide them.
pub struct TestCa {
    _dir: TempDir,
    /// The PEM chain file (leaf, CA).
    pub cert_file: PathBuf,
    /// The PKCS#8 key file.
    pub key_file: PathBuf,
    ca_der: Vec<u8>,
}

impl TestCa {
    /// A fresh CA and `*.gw.cairn.test` + `gw.cairn.test` certificate.
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec![format!("*.{BASE_DOMAIN}"), BASE_DOMAIN.to_owned()])
            .expect("leaf params")
            .signed_by(&leaf_key, &Issuer::new(ca, ca_key))
            .expect("leaf cert");
        let dir = tempfile::tempdir().expect("tempdir");
        let cert_file = dir.path().join("cert.pem");
        let key_file = dir.path().join("key.pem");
        std::fs::write(&cert_file, format!("{}{}", leaf.pem(), ca_cert.pem())).expect("cert");
        std::fs::write(&key_file, leaf_key.serialize_pem()).expect("key");
        TestCa {
            _dir: dir,
            cert_file,
            key_file,
            ca_der: ca_cert.der().to_vec(),
        }
    }

    /// A client that trusts only this CA (WebPKI, names checked).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.ca_der.clone()))
            .expect("CA root");
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl Devnet {
    /// Deploy an app for the gateway, name it KmsAuth's `gatewayAppId`, mine past the
    /// confirmations.
    pub async fn deploy_gateway_app(&self) -> AppAuthClient {
        let app = self.deploy_app(self.owner, None).await;
        self.client
            .set_gateway_app_id(app.app_id())
            .await
            .expect("set gateway app id");
        self.mine(CONFIRMATIONS).await;
        app
    }
}

/// The SNI of `id` (an app or instance id) on `port`, terminated or passed through.
pub fn sni(id: &[u8; 20], port: Option<u16>, passthrough: bool) -> String {
    let port = port.map(|p| format!("-{p}")).unwrap_or_default();
    let s = if passthrough { "s" } else { "" };
    format!("{}{port}{s}.{BASE_DOMAIN}", hex::encode(id))
}

/// A booted CVM with its agent served (and, for apps, its gateway registrations).
pub struct Running {
    /// The CVM.
    pub cvm: Cvm,
    /// Its boot (state, app).
    pub booted: cairn_guest::Booted,
    agent: Option<Agent>,
    registrations: Option<Registrations>,
}

impl Running {
    /// Boot `cvm` (its compose must be allowed) and serve its agent.
    pub async fn boot(cvm: Cvm) -> Running {
        let booted = cvm.boot().await.expect("boot");
        let agent = Agent::serve(&cvm.agent_socket(), booted.state.clone());
        Running {
            cvm,
            booted,
            agent: Some(agent),
            registrations: None,
        }
    }

    /// Start registering with the gateways of its sys-config (fast retries).
    pub fn register(&mut self) {
        self.registrations = cairn_guest::gateway::spawn(
            self.booted.state.clone(),
            RegisterOptions {
                retry_initial: Duration::from_millis(100),
                retry_max: Duration::from_millis(500),
                timeout: Duration::from_secs(10),
            },
        );
        assert!(
            self.registrations.is_some(),
            "the compose enables the gateway and sys-config lists gateways"
        );
    }

    /// The last registration outcome per gateway.
    pub fn registration_outcomes(&self) -> Vec<(String, Option<cairn_guest::gateway::Outcome>)> {
        self.registrations
            .as_ref()
            .map(|r| r.outcomes())
            .unwrap_or_default()
    }

    /// `POST /<method>` to its guest agent.
    pub async fn agent_call(
        &self,
        method: &str,
        body: serde_json::Value,
    ) -> (hyper::StatusCode, serde_json::Value) {
        self.agent
            .as_ref()
            .expect("agent served")
            .call(method, body)
            .await
    }

    /// The measured app id.
    pub fn app_id(&self) -> [u8; 20] {
        self.booted.state.app_id.0
    }

    /// The measured instance id (20 bytes).
    pub fn instance_id(&self) -> [u8; 20] {
        self.booted
            .state
            .instance_id
            .as_bytes()
            .try_into()
            .expect("a 20-byte instance id")
    }

    /// The KMS root CA the CVM booted with.
    pub fn root(&self) -> RootCa {
        RootCa::from_pem(&self.booted.state.secrets.root_ca_cert).expect("root CA")
    }

    /// Stop the registrations and the app process (kill it: "the backend is down").
    pub async fn stop_app(&mut self) {
        if let Some(app) = self.booted.app.as_mut() {
            app.stop(Duration::from_secs(5)).await.expect("stop app");
        }
    }

    /// Stop everything.
    pub async fn stop(mut self) {
        self.registrations = None;
        self.stop_app().await;
        if let Some(a) = self.agent.take() {
            a.stop().await;
        }
    }
}

/// A compose for the gateway's own CVM. Its process is a stand-in that only keeps the CVM
/// running: the gateway node itself runs in the test process, with this CVM's agent as
/// its identity (what `cairn-gateway` does as the CVM's app).
pub fn gateway_compose(tag: &str) -> String {
    format!(
        r#"{{"manifest_version":2,"name":"cairn-gateway","runner":"process","process":{{"command":["/bin/sleep","900"],"env":{{"TAG":{}}}}},"kms_enabled":true}}"#,
        serde_json::to_string(tag).expect("json")
    )
}

/// Boot the gateway's CVM on host `host_seed` (its compose allowed for `gateway_app`).
pub async fn boot_gateway_cvm(
    net: &Devnet,
    kms: &Kms,
    gateway_app: &AppAuthClient,
    host_seed: u8,
) -> Running {
    let cvm = Cvm::with_compose(
        &kms.url(),
        gateway_app.app_id(),
        host_seed,
        gateway_compose(&format!("{host_seed}")),
    );
    gateway_app
        .add_compose_hash(cvm.compose_hash())
        .await
        .expect("allow the gateway's compose");
    net.mine(CONFIRMATIONS).await;
    Running::boot(cvm).await
}

/// The options of a gateway node whose identity is the agent at `agent_socket`: the
/// devnet's chain, the simulator's verifier and OS image, the test CA's certificate,
/// a fast policy poll (200 ms) and re-registration (1 s).
pub fn gateway_options(net: &Devnet, agent_socket: &Path, ca: &TestCa) -> GatewayOptions {
    GatewayOptions {
        base_domain: BASE_DOMAIN.to_owned(),
        chain: net.chain_config(),
        poll_interval: Duration::from_millis(200),
        max_policy_age: Duration::from_secs(10),
        verifier: Arc::new(verifier()),
        pccs: None,
        os_images: vec![image().manifest()],
        agent: cairn_acme::AgentClient::new(cairn_acme::AgentEndpoint::Unix(
            agent_socket.to_owned(),
        )),
        agent_startup_timeout: DEADLINE,
        certs: CertConfig::File {
            cert_file: ca.cert_file.clone(),
            key_file: ca.key_file.clone(),
            reload_interval: Duration::from_secs(1),
        },
        registration: RegistrationLimits {
            ttl: Duration::from_secs(30),
            reregister_after: Duration::from_secs(1),
            ..RegistrationLimits::default()
        },
        proxy: ProxyLimits {
            connect_timeout: Duration::from_secs(2),
            ..ProxyLimits::default()
        },
        admin_token: None,
        apps: Default::default(),
    }
}

/// A gateway node served in-process.
pub struct GatewayNode {
    /// The public (SNI) listener.
    pub proxy: SocketAddr,
    /// The registration listener.
    pub registration: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<cairn_gateway::Result<()>>>,
}

impl GatewayNode {
    /// Start a node with `options`; its registration listener on `registration` (a
    /// restarted node keeps its URL) or a free port. Returns once its admin endpoint
    /// answers (start-up checks passed).
    pub async fn start(options: GatewayOptions, registration: Option<SocketAddr>) -> GatewayNode {
        let bind = |a: &str| std::net::TcpListener::bind(a).expect("bind");
        let registration = match registration {
            Some(addr) => {
                let deadline = Instant::now() + DEADLINE;
                loop {
                    match std::net::TcpListener::bind(addr) {
                        Ok(l) => break l,
                        Err(e) if Instant::now() > deadline => panic!("rebind {addr}: {e}"),
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }
            None => bind("127.0.0.1:0"),
        };
        let to_tokio = |l: std::net::TcpListener| {
            l.set_nonblocking(true).expect("nonblocking");
            TcpListener::from_std(l).expect("tokio listener")
        };
        let listeners = Listeners {
            proxy: to_tokio(bind("127.0.0.1:0")),
            registration: to_tokio(registration),
            admin: to_tokio(bind("127.0.0.1:0")),
        };
        let proxy = listeners.proxy.local_addr().expect("addr");
        let registration = listeners.registration.local_addr().expect("addr");
        let admin = listeners.admin.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(cairn_gateway::run(listeners, options, async {
            let _ = stopped.await;
        }));
        let mut node = GatewayNode {
            proxy,
            registration,
            admin,
            stop: Some(stop),
            task: Some(task),
        };
        let deadline = Instant::now() + DEADLINE;
        while crate::http_get(admin.port(), "/healthz").await.is_none() {
            if node.task.as_ref().is_some_and(|t| t.is_finished()) {
                let task = node.task.take().expect("task");
                panic!("the gateway did not start: {:?}", task.await);
            }
            assert!(Instant::now() < deadline, "the gateway did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        node
    }

    /// The URL a CVM's sys-config lists.
    pub fn registration_url(&self) -> String {
        format!("https://{}", self.registration)
    }

    /// `GET /v1/status` from the admin endpoint.
    pub async fn status(&self) -> GatewayStatus {
        let (code, body) = crate::http_get(self.admin.port(), "/v1/status")
            .await
            .expect("admin answers");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("status JSON")
    }

    /// `GET /metrics` from the admin endpoint.
    pub async fn metrics(&self) -> String {
        let (_, body) = crate::http_get(self.admin.port(), "/metrics")
            .await
            .expect("admin answers");
        String::from_utf8(body).expect("text")
    }

    /// Poll the status until `pred` holds (up to [`DEADLINE`]).
    pub async fn wait_for(
        &self,
        what: &str,
        pred: impl Fn(&GatewayStatus) -> bool,
    ) -> GatewayStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let s = self.status().await;
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {s:#?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Poll the status until `running`'s instance is admitted (up to [`DEADLINE`]);
    /// `what` names the wait.
    pub async fn wait_admitting(&self, what: &str, running: &Running) -> GatewayStatus {
        let (app, instance) = (running.app_id(), running.instance_id());
        self.wait_for(what, |s| Self::admits(s, &app, &instance))
            .await
    }

    /// Whether `instance` of `app` is admitted.
    pub fn admits(s: &GatewayStatus, app: &[u8; 20], instance: &[u8; 20]) -> bool {
        s.apps.iter().any(|a| {
            a.app_id == *app
                && a.instances
                    .iter()
                    .any(|i| i.instance_id == instance.as_slice())
        })
    }

    /// Stop the node and wait for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("gateway task").expect("gateway");
        }
    }
}

impl Drop for GatewayNode {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// A `process` compose running `cairn-echo-app` (at `echo_bin`) on `127.0.0.1:listen`
/// with the gateway enabled; `plain` serves without TLS; `port_policy` is inserted as
/// the compose's `port_policy` value when given.
pub fn echo_compose(echo_bin: &str, listen: u16, plain: bool, port_policy: Option<&str>) -> String {
    let mut command = vec![
        echo_bin.to_owned(),
        "--listen".to_owned(),
        format!("127.0.0.1:{listen}"),
    ];
    if plain {
        command.push("--plain".to_owned());
    }
    let policy = port_policy
        .map(|p| format!(r#","port_policy":{p}"#))
        .unwrap_or_default();
    format!(
        r#"{{"manifest_version":2,"name":"echo","runner":"process","process":{{"command":{}}},"kms_enabled":true,"gateway_enabled":true{policy}}}"#,
        serde_json::to_string(&command).expect("json")
    )
}

impl Cvm {
    /// List `gateways` and `port_map` in the share's sys-config.
    pub fn set_gateways(&self, gateways: &[String], port_map: &[AppPort]) {
        let path = self.dir.path().join("share/sys-config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read sys-config"))
                .expect("sys-config JSON");
        config["gateway_urls"] = serde_json::json!(gateways);
        config["port_map"] = serde_json::to_value(port_map).expect("json");
        std::fs::write(&path, serde_json::to_vec(&config).expect("json"))
            .expect("write sys-config");
    }
}

/// How an echo app serves.
#[derive(Clone, Copy, Debug, Default)]
pub struct EchoOptions<'a> {
    /// Plain HTTP instead of TLS.
    pub plain: bool,
    /// The compose's `port_policy` (JSON), if any.
    pub port_policy: Option<&'a str>,
}

/// An app CVM of `app_id` on host `host_seed` running `cairn-echo-app` on a free host
/// port mapped to app port `app_port`, registering with `gateways`.
pub fn echo_cvm(
    kms: &Kms,
    app_id: Address,
    host_seed: u8,
    echo_bin: &str,
    app_port: u16,
    gateways: &[String],
    options: EchoOptions<'_>,
) -> Cvm {
    let host_port = crate::free_port();
    let cvm = Cvm::with_compose(
        &kms.url(),
        app_id,
        host_seed,
        echo_compose(echo_bin, host_port, options.plain, options.port_policy),
    );
    cvm.set_gateways(
        gateways,
        &[AppPort {
            guest_port: app_port,
            host_port,
        }],
    );
    cvm
}

/// A client of the gateway's own certificate (terminating mode).
pub fn terminating_client(ca: &TestCa) -> TlsConnector {
    TlsConnector::from(ca.client_config())
}

/// A TLS connection through the gateway at `gateway` with SNI `name`, and an HTTP/1.1
/// connection over it (kept alive).
pub struct KeepAlive {
    sender: hyper::client::conn::http1::SendRequest<Empty<HttpBytes>>,
    conn: JoinHandle<()>,
    /// The server's certificate chain, as presented (the gateway's, or the app's in
    /// passthrough).
    pub server_chain: Vec<CertificateDer<'static>>,
}

/// Why a connection through the gateway failed.
#[derive(Debug)]
pub enum ClientError {
    /// The TLS handshake failed (alerts surface here: `rustls::Error::AlertReceived`).
    Tls(std::io::Error),
    /// HTTP failed after the handshake.
    Http(String),
}

impl ClientError {
    /// The TLS alert the gateway sent, if that is what ended the handshake.
    pub fn alert(&self) -> Option<rustls::AlertDescription> {
        match self {
            ClientError::Tls(e) => e
                .get_ref()
                .and_then(|i| i.downcast_ref::<rustls::Error>())
                .and_then(|r| match r {
                    rustls::Error::AlertReceived(a) => Some(*a),
                    _ => None,
                }),
            ClientError::Http(_) => None,
        }
    }
}

impl KeepAlive {
    /// Connect with `connector` (its trust decides which server it accepts).
    pub async fn open(
        gateway: SocketAddr,
        name: &str,
        connector: &TlsConnector,
    ) -> Result<KeepAlive, ClientError> {
        let tcp = TcpStream::connect(gateway)
            .await
            .map_err(ClientError::Tls)?;
        let server = ServerName::try_from(name.to_owned()).expect("server name");
        let tls = connector
            .connect(server, tcp)
            .await
            .map_err(ClientError::Tls)?;
        let server_chain = tls
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(KeepAlive {
            sender,
            conn,
            server_chain,
        })
    }

    /// `GET path`: status and body.
    pub async fn get(&mut self, path: &str) -> Result<(u16, String), ClientError> {
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, BASE_DOMAIN)
            .body(Empty::new())
            .expect("request");
        self.sender
            .ready()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Whether the connection has been closed (by the other side).
    pub fn is_closed(&self) -> bool {
        self.conn.is_finished()
    }

    /// Poll until the connection is closed; how long that took, or `None` past the
    /// deadline.
    pub async fn wait_closed(&self, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        while !self.is_closed() {
            if start.elapsed() > within {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Some(start.elapsed())
    }
}

/// One `GET path` through the gateway on a fresh connection.
pub async fn get_once(
    gateway: SocketAddr,
    name: &str,
    connector: &TlsConnector,
    path: &str,
) -> Result<(u16, String), ClientError> {
    KeepAlive::open(gateway, name, connector)
        .await?
        .get(path)
        .await
}

/// A client for passthrough: it accepts whatever certificate the server proves it holds
/// (the caller then checks [`KeepAlive::server_chain`] with [`check_app_chain`]).
pub fn passthrough_client() -> TlsConnector {
    let mut config = possession_client().with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// The chain an app served is the KMS-issued chain of `app_id` under `root`.
pub fn check_app_chain(
    root: &RootCa,
    chain: &[CertificateDer<'static>],
    app_id: &[u8; 20],
) -> Result<(), cairn_attestation::ChainError> {
    verify_app_chain(root, chain, app_id, cairn_kms::unix_now()).map(|_| ())
}
