//! The KMS test world: anvil with a deployed Cairn system, a simulated Intel PKI, KMS
//! nodes serving over real RA-TLS on free ports, and simulated guests.

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use cairn_attestation::ids::{AppId, ComposeHash, InstanceId};
use cairn_attestation::simulator::{
    OsImage, SimHostConfig, SimPki, SimPkiConfig, SimTcbStatus, SimTdx,
};
use cairn_attestation::{Collateral, EventLog, RaTlsCert, RaTlsCertBuilder, Tee, Usage, Verifier};
use cairn_kms::{
    unix_now, AnchorLimits, Clock, CollateralSource, MasterSecret, Node, NodeOptions, RootKeys,
    SecretStore, ServerLimits, SECRETS_DIR,
};
use cairn_kms_client::{KmsClient, KmsConnection};
use cairn_onchain::alloy::primitives::{Address, B256};
use cairn_onchain::testing::{AnvilChain, KmsNodeRegistration};
use cairn_onchain::{AppAuthClient, AppParams, ChainConfig};
use cairn_protocol::api::ErrorBody;
use hyper::StatusCode;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Policy is read this many blocks behind head.
pub const CONFIRMATIONS: u64 = 2;
/// How often a world node's policy head advances.
pub const HEAD_POLL: Duration = Duration::from_millis(50);
/// The OS image every KMS and guest boots unless a test says otherwise.
pub fn image() -> OsImage {
    OsImage::example("cairn-os", "1.0")
}
/// An image the nodes recognise but the chain does not allow.
pub fn unlisted_image() -> OsImage {
    OsImage::example("cairn-os", "0.9-unlisted")
}
/// The app compose every guest runs unless a test says otherwise.
pub const COMPOSE: &[u8] = br#"{"manifest_version":2,"name":"demo","runner":"process"}"#;
/// The shared master secret of the test cluster.
pub const MASTER: [u8; 32] = [0x5a; 32];

/// The simulated Intel PKI (collateral anchored at the wall clock: rustls and the
/// verifier check certificates at the current time).
pub fn pki() -> Arc<SimPki> {
    static PKI: OnceLock<Arc<SimPki>> = OnceLock::new();
    PKI.get_or_init(|| Arc::new(SimPki::new(SimPkiConfig::new([0x42; 32], unix_now())).unwrap()))
        .clone()
}

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

pub fn verifier_for(pki: &SimPki) -> Verifier {
    Verifier::dangerous_with_simulator_root(pki.root_ca_der())
        .with_collateral(Collateral::new(pki.collateral()).unwrap())
}

/// A booted guest CVM: its TEE, event log (up to `boot-mr-done`), app id.
pub struct Guest {
    pub tdx: Arc<SimTdx>,
    pub log: EventLog,
    pub app_id: AppId,
}

impl Guest {
    pub fn boot(
        pki: Arc<SimPki>,
        host_seed: u8,
        image: OsImage,
        app_id: AppId,
        compose: &[u8],
    ) -> Self {
        let tdx = Arc::new(SimTdx::new(pki, SimHostConfig::new([host_seed; 32], image)).unwrap());
        let compose_hash = ComposeHash::of_compose(compose);
        let instance_id = InstanceId::derive(&[host_seed; 8], &app_id);
        let mut log = EventLog::new();
        log.measure_boot(tdx.as_ref(), &app_id, &compose_hash, &instance_id)
            .unwrap();
        Guest { tdx, log, app_id }
    }

    /// A fresh RA-TLS client certificate (usage `app:custom`).
    pub fn cert(&self) -> RaTlsCert {
        self.cert_from(self.tdx.as_ref())
    }

    pub fn cert_from(&self, tee: &dyn Tee) -> RaTlsCert {
        RaTlsCertBuilder::new(Usage::AppCustom)
            .common_name("guest")
            .event_log(&self.log.to_json())
            .app_id(self.app_id.0)
            .build(tee)
            .unwrap()
    }
}

/// A KMS node serving on a free port.
pub struct Running {
    pub node: Arc<Node>,
    pub addr: SocketAddr,
    pub dir: Arc<TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<cairn_kms::Result<()>>>,
}

impl Running {
    /// Signal shutdown (as SIGTERM would) without waiting.
    pub fn signal_stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Shut down and wait until every handle on the node is gone (so it can reopen).
    pub async fn stop(mut self) -> Arc<TempDir> {
        self.signal_stop();
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Arc::strong_count(&self.node) > 1 {
            assert!(
                Instant::now() < deadline,
                "node handles still alive after shutdown"
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.dir.clone()
    }

    /// The node's URL.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A connection presenting `cert` (or none); the node's evidence verified.
    pub async fn client(&self, cert: Option<&RaTlsCert>) -> KmsConnection {
        KmsClient::new(verifier_for(&pki()))
            .connect(&self.url(), cert)
            .await
            .unwrap()
    }
}

/// The chain fixture (`cairn_onchain::testing::AnvilChain`: fields and methods through
/// `Deref`), with the root keys of [`MASTER`] registered, image 1.0 allowed and an app
/// with [`COMPOSE`] allowed on any device.
pub struct World {
    pub net: AnvilChain,
    pub app: AppAuthClient,
    pub app_id: AppId,
    /// Nodes this world serves; [`World::mine`] lets their policy heads see new blocks.
    nodes: Mutex<Vec<Weak<Node>>>,
}

impl Deref for World {
    type Target = AnvilChain;

    fn deref(&self) -> &AnvilChain {
        &self.net
    }
}

/// Head age bound of the world's nodes. Tests move a node's clock by days to cross
/// collateral windows; head freshness is tested on its own (`chain_head.rs`).
pub const WORLD_MAX_HEAD_AGE: Duration = Duration::from_secs(365 * 24 * 3600);

impl World {
    /// Anvil, the system deployed, the root keys of [`MASTER`] registered, image 1.0
    /// allowed, an app with [`COMPOSE`] allowed on any device.
    pub async fn new() -> World {
        Self::build(true).await
    }

    /// [`World::new`] without root keys registered (for a real bootstrap).
    pub async fn without_root_keys() -> World {
        Self::build(false).await
    }

    async fn build(register_root: bool) -> World {
        cairn_kms::install_crypto_provider();
        let net = AnvilChain::deploy(Path::new(env!("CARGO_MANIFEST_DIR")), CONFIRMATIONS).await;
        if register_root {
            let root = RootKeys::derive(&MasterSecret::from_bytes(MASTER)).unwrap();
            net.set_root_keys(1, &root.k256_public(), &root.ca().spki_der())
                .await;
        }
        net.allow_os_image(B256::from(image().os_image_hash().0))
            .await;
        let params = AppParams {
            initial_compose_hash: Some(B256::from(ComposeHash::of_compose(COMPOSE).0)),
            ..AppParams::new(net.owner)
        };
        let app = net.deploy_app(&params).await;
        let app_id = AppId(app.app_id().into_array());
        net.mine(CONFIRMATIONS).await;
        World {
            net,
            app,
            app_id,
            nodes: Mutex::new(Vec::new()),
        }
    }

    /// Mines `blocks` blocks, then advances the policy head of every node this world
    /// serves once (as its background poll would within [`HEAD_POLL`]), so the next
    /// request is judged at the new pinned block. Tests of the background advance itself
    /// wait on the head instead (`chain_head.rs`).
    pub async fn mine(&self, blocks: u64) {
        self.net.mine(blocks).await;
        self.sync_heads().await;
    }

    /// Advances the policy head of every node this world serves once. A failing head
    /// (a test that killed the chain) stays failed; that is what such a test checks.
    pub async fn sync_heads(&self) {
        let nodes: Vec<Arc<Node>> = self
            .nodes
            .lock()
            .unwrap()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for node in nodes {
            let _ = node.policy_head().advance_now().await;
        }
    }

    /// A node's chain config: this chain, [`CONFIRMATIONS`], a 2 s call timeout,
    /// [`WORLD_MAX_HEAD_AGE`], a 50 ms head poll.
    pub fn chain_config(&self) -> ChainConfig {
        self.net
            .chain_config(CONFIRMATIONS)
            .with_call_timeout(Duration::from_secs(2))
            .with_max_head_age(WORLD_MAX_HEAD_AGE)
            .with_head_poll_interval(HEAD_POLL)
    }

    /// Options of a KMS node on host `host_seed`, verifying with `pki`'s collateral.
    pub fn options(&self, dir: &Path, host_seed: u8, collateral_pki: &SimPki) -> NodeOptions {
        let tdx = SimTdx::new(pki(), SimHostConfig::new([host_seed; 32], image())).unwrap();
        let event_log = cairn_kms::simulated_kms_boot(&tdx, &[host_seed; 32]).unwrap();
        NodeOptions {
            data_dir: dir.to_owned(),
            chain: self.chain_config(),
            verifier: Arc::new(verifier_for(collateral_pki)),
            collateral: CollateralSource::Configured,
            os_images: vec![image().manifest(), unlisted_image().manifest()],
            tee: Arc::new(tdx),
            event_log,
            log_origin: None,
            anchor_interval: Duration::from_millis(200),
            anchor_limits: AnchorLimits::default(),
            clock: Clock::system(),
        }
    }

    /// Allow a KMS node's own evidence on chain (MR, device), register and fund its
    /// address, and mine past the confirmations (running nodes see it).
    pub async fn register_kms(&self, opts: &NodeOptions, address: Option<[u8; 20]>) {
        let own = cairn_kms::own_evidence(opts).await.unwrap();
        self.net
            .register_kms_node(&KmsNodeRegistration {
                mr_aggregated: own.boot.mrAggregated,
                device_id: own.boot.deviceId,
                node: address.map(Address::from),
            })
            .await;
        self.mine(CONFIRMATIONS).await;
    }

    /// A bootstrapped (with [`MASTER`]), registered node on host `host_seed`, serving.
    pub async fn start(&self, host_seed: u8) -> Running {
        self.start_with(host_seed, &pki()).await
    }

    pub async fn start_with(&self, host_seed: u8, collateral_pki: &SimPki) -> Running {
        let (opts, dir) = self.prepare(host_seed, collateral_pki).await;
        self.serve(opts, dir).await
    }

    /// A bootstrapped (with [`MASTER`]), registered node's options and directory.
    pub async fn prepare(
        &self,
        host_seed: u8,
        collateral_pki: &SimPki,
    ) -> (NodeOptions, Arc<TempDir>) {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let address = {
            let store = SecretStore::open(dir.path().join(SECRETS_DIR)).unwrap();
            store
                .install(MasterSecret::from_bytes(MASTER), 1)
                .unwrap()
                .node_key
                .address()
        };
        let opts = self.options(dir.path(), host_seed, &pki());
        self.register_kms(&opts, Some(address)).await;
        let opts = self.options(dir.path(), host_seed, collateral_pki);
        (opts, dir)
    }

    /// Open and serve a node from `opts`.
    pub async fn serve(&self, opts: NodeOptions, dir: Arc<TempDir>) -> Running {
        let node = Node::open(opts).await.unwrap();
        self.serve_node(node, dir).await
    }

    /// Serve an opened node (its head is synced by [`World::mine`] from now on).
    pub async fn serve_node(&self, node: Arc<Node>, dir: Arc<TempDir>) -> Running {
        self.serve_node_with(node, dir, ServerLimits::default())
            .await
    }

    /// Serve an opened node with explicit server limits.
    pub async fn serve_node_with(
        &self,
        node: Arc<Node>,
        dir: Arc<TempDir>,
        limits: ServerLimits,
    ) -> Running {
        self.nodes.lock().unwrap().push(Arc::downgrade(&node));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(cairn_kms::run_with(listener, node.clone(), limits, async {
            let _ = rx.await;
        }));
        Running {
            node,
            addr,
            dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// A guest of the world's app on host `host_seed`.
    pub fn guest(&self, host_seed: u8) -> Guest {
        Guest::boot(pki(), host_seed, image(), self.app_id, COMPOSE)
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
