//! [`TestNet`]: the chain fixture with the cluster's root keys, and the nodes it serves.

use std::ops::Deref;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use axum::Router;
use cairn_attestation::ids::ComposeHash;
use cairn_attestation::simulator::{SimHostConfig, SimPki, SimTdx};
use cairn_attestation::RaTlsCert;
use cairn_onchain::alloy::primitives::{Address, B256};
use cairn_onchain::testing::{AnvilChain, KmsNodeRegistration};
use cairn_onchain::{AppAuthClient, AppParams, ChainConfig};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use super::cluster::{
    image, pki, root_keys, unlisted_image, verifier_for, CONFIRMATIONS, HEAD_POLL, MASTER,
    MAX_HEAD_AGE, NODE_CALL_TIMEOUT,
};
use super::running::RunningKms;
use crate::anchor::AnchorLimits;
use crate::clock::Clock;
use crate::config::simulated_kms_boot;
use crate::evidence::CollateralSource;
use crate::kdf::MasterSecret;
use crate::lifecycle::own_evidence;
use crate::node::{
    certified_key, install_crypto_provider, CurrentCert, Node, NodeOptions, DEFAULT_HEAD_WAIT,
    SECRETS_DIR,
};
use crate::server::{self, ServerLimits};
use crate::store::SecretStore;

/// Anvil with the Cairn system deployed (`cairn_onchain::testing::AnvilChain`, its
/// fields and methods reachable through `Deref`), the root keys of [`MASTER`] registered
/// as generation 1 (unless built with [`TestNet::without_root_keys`]) and [`image`]
/// allowed; and the KMS nodes served from it, whose policy heads [`TestNet::mine`]
/// advances.
pub struct TestNet {
    /// The chain fixture (its own `mine` does not advance the nodes' heads).
    pub chain: AnvilChain,
    /// Nodes served from here (weak: a stopped node can be reopened).
    nodes: Mutex<Vec<Weak<Node>>>,
}

cairn_protocol::redacted_debug!(TestNet { chain, .. });

impl Deref for TestNet {
    type Target = AnvilChain;

    fn deref(&self) -> &AnvilChain {
        &self.chain
    }
}

impl TestNet {
    /// Spawn anvil (found from `start`, a crate directory: see
    /// `cairn_onchain::testing::spawn_anvil`), deploy, register the root keys of
    /// [`MASTER`], allow [`image`], mine past the confirmations.
    pub async fn new(start: &Path) -> TestNet {
        Self::build(start, true).await
    }

    /// [`TestNet::new`] without root keys on chain (for a real bootstrap).
    pub async fn without_root_keys(start: &Path) -> TestNet {
        Self::build(start, false).await
    }

    /// The latest anchor the node with address `node` posted, as the current policy block
    /// holds it (`None`: none yet).
    pub async fn latest_anchor_of(&self, node: [u8; 20]) -> Option<cairn_onchain::Anchor> {
        let at = self.client.policy_block().await.expect("policy block");
        self.client
            .latest_anchor(Address::from(node), at)
            .await
            .expect("latest anchor")
    }

    async fn build(start: &Path, register_root: bool) -> TestNet {
        install_crypto_provider();
        let net = AnvilChain::deploy(start, CONFIRMATIONS).await;
        if register_root {
            let root = root_keys();
            net.set_root_keys(1, &root.k256_public(), &root.ca().spki_der())
                .await;
        }
        net.allow_os_image(B256::from(image().os_image_hash().0))
            .await;
        let net = TestNet {
            chain: net,
            nodes: Mutex::new(Vec::new()),
        };
        net.mine(CONFIRMATIONS).await;
        net
    }

    /// Mine `blocks` blocks, then advance the policy head of every node served from here
    /// once (as its background poll would within [`HEAD_POLL`]), so the next request is
    /// judged at the new pinned block.
    pub async fn mine(&self, blocks: u64) {
        self.chain.mine(blocks).await;
        self.sync_heads().await;
    }

    /// Move the chain clock `secs` forward, mine a block and sync the heads as
    /// [`TestNet::mine`] does.
    pub async fn increase_time(&self, secs: u64) {
        self.chain.increase_time(secs).await;
        self.sync_heads().await;
    }

    /// Advance the policy head of every node served from here once. A failing head (a
    /// test that stopped the chain) stays failed: that is what such a test checks.
    pub async fn sync_heads(&self) {
        let nodes: Vec<Arc<Node>> = self
            .nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for node in nodes {
            let _ = node.policy_head().advance_now().await;
        }
    }

    /// Deploy and register an app owned by `owner` (any device), with `compose`'s hash
    /// allowed when given; mine past the confirmations.
    pub async fn deploy_app(&self, owner: Address, compose: Option<&[u8]>) -> AppAuthClient {
        let params = AppParams {
            initial_compose_hash: compose.map(|c| B256::from(ComposeHash::of_compose(c).0)),
            ..AppParams::new(owner)
        };
        let app = self.chain.deploy_app(&params).await;
        self.mine(CONFIRMATIONS).await;
        app
    }

    /// Allow `compose`'s hash on `app` and mine past the confirmations.
    pub async fn allow_compose(&self, app: &AppAuthClient, compose: &[u8]) {
        app.add_compose_hash(B256::from(ComposeHash::of_compose(compose).0))
            .await
            .expect("allow compose hash");
        self.mine(CONFIRMATIONS).await;
    }

    /// A node's chain config: this chain, [`CONFIRMATIONS`], [`NODE_CALL_TIMEOUT`],
    /// [`MAX_HEAD_AGE`], a [`HEAD_POLL`] head.
    pub fn chain_config(&self) -> ChainConfig {
        self.chain
            .chain_config(CONFIRMATIONS)
            .with_call_timeout(NODE_CALL_TIMEOUT)
            .with_max_head_age(MAX_HEAD_AGE)
            .with_head_poll_interval(HEAD_POLL)
    }

    /// Options of a node in `dir` on host `host_seed` (a TD of [`pki`] booted with
    /// [`image`]), verifying with `collateral_pki`'s collateral; it knows the manifests of
    /// [`image`] and [`unlisted_image`], anchors every 200 ms, reads the system clock.
    pub fn options(&self, dir: &Path, host_seed: u8, collateral_pki: &SimPki) -> NodeOptions {
        let tdx = SimTdx::new(pki(), SimHostConfig::new([host_seed; 32], image())).expect("KMS TD");
        let event_log = simulated_kms_boot(&tdx, &[host_seed; 32]).expect("KMS boot log");
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
            head_wait: DEFAULT_HEAD_WAIT,
        }
    }

    /// Allow a node's own evidence on chain (aggregated MR, device), register and fund
    /// `address` when given, and mine past the confirmations.
    pub async fn register_kms(&self, opts: &NodeOptions, address: Option<[u8; 20]>) {
        let own = own_evidence(opts).await.expect("KMS evidence");
        self.chain
            .register_kms_node(&KmsNodeRegistration {
                mr_aggregated: own.boot.mrAggregated,
                device_id: own.boot.deviceId,
                node: address.map(Address::from),
            })
            .await;
        self.mine(CONFIRMATIONS).await;
    }

    /// A node on host `host_seed` bootstrapped with [`MASTER`] (generation 1) in a fresh
    /// directory and registered on chain: its options (collateral of `collateral_pki`)
    /// and directory, ready for [`TestNet::serve`] after any change a test makes.
    pub async fn prepare(
        &self,
        host_seed: u8,
        collateral_pki: &SimPki,
    ) -> (NodeOptions, Arc<TempDir>) {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let address = install_master(dir.path(), 1);
        let opts = self.options(dir.path(), host_seed, &pki());
        self.register_kms(&opts, Some(address)).await;
        (self.options(dir.path(), host_seed, collateral_pki), dir)
    }

    /// [`TestNet::prepare`] a node on host `host_seed` and serve it.
    pub async fn start(&self, host_seed: u8) -> RunningKms {
        self.start_with(host_seed, &pki()).await
    }

    /// [`TestNet::start`] verifying with `collateral_pki`'s collateral.
    pub async fn start_with(&self, host_seed: u8, collateral_pki: &SimPki) -> RunningKms {
        let (opts, dir) = self.prepare(host_seed, collateral_pki).await;
        self.serve(opts, dir).await
    }

    /// Open a node from `opts` and serve it.
    pub async fn serve(&self, opts: NodeOptions, dir: Arc<TempDir>) -> RunningKms {
        self.serve_on(opts, dir, 0).await
    }

    /// Open a node from `opts` and serve it on `127.0.0.1:port` (0: a free port; a
    /// stopped node's port: a restart at the address guests already list).
    pub async fn serve_on(&self, opts: NodeOptions, dir: Arc<TempDir>, port: u16) -> RunningKms {
        let node = Node::open(opts).await.expect("open the KMS node");
        self.serve_node_on(node, dir, ServerLimits::default(), port)
            .await
    }

    /// Serve an opened node with `limits` on `127.0.0.1:port`, under its own current
    /// certificate (resolved per handshake, as `cairn_kms::run_with` does).
    async fn serve_node_on(
        &self,
        node: Arc<Node>,
        dir: Arc<TempDir>,
        limits: ServerLimits,
        port: u16,
    ) -> RunningKms {
        let acceptor = tls_acceptor(Arc::new(CurrentCert(Arc::clone(&node))));
        let app = crate::server::router(Arc::clone(&node));
        self.spawn(node, dir, app, acceptor, limits, port).await
    }

    /// Serve an opened node with the default [`ServerLimits`].
    pub async fn serve_node(&self, node: Arc<Node>, dir: Arc<TempDir>) -> RunningKms {
        self.serve_node_with(node, dir, ServerLimits::default())
            .await
    }

    /// Serve an opened node with `limits` (`cairn_kms::run_with`).
    pub async fn serve_node_with(
        &self,
        node: Arc<Node>,
        dir: Arc<TempDir>,
        limits: ServerLimits,
    ) -> RunningKms {
        self.serve_node_on(node, dir, limits, 0).await
    }

    /// Serve an opened node *in disguise*: the real accept loop and anchoring task, but
    /// presenting `cert` in the TLS handshake instead of the node's own certificate, and
    /// answering with `app` — normally `cairn_kms::router(node)` behind a layer that
    /// rewrites one answer. A hostile KMS for a client's negative tests that is the real
    /// KMS with exactly one thing changed.
    pub async fn serve_disguised(
        &self,
        node: Arc<Node>,
        dir: Arc<TempDir>,
        cert: &RaTlsCert,
        app: Router,
    ) -> RunningKms {
        let fixed = FixedCert(certified_key(cert).expect("certified key"));
        self.spawn(
            node,
            dir,
            app,
            tls_acceptor(Arc::new(fixed)),
            ServerLimits::default(),
            0,
        )
        .await
    }

    async fn spawn(
        &self,
        node: Arc<Node>,
        dir: Arc<TempDir>,
        app: Router,
        acceptor: TlsAcceptor,
        limits: ServerLimits,
        port: u16,
    ) -> RunningKms {
        self.nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&node));
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(
            listener,
            Arc::clone(&node),
            app,
            acceptor,
            limits,
            async {
                let _ = stopped.await;
            },
        ));
        RunningKms::new(node, addr, dir, stop, task)
    }
}

fn tls_acceptor(certs: Arc<dyn rustls::server::ResolvesServerCert>) -> TlsAcceptor {
    TlsAcceptor::from(server::tls::server_config(certs).expect("TLS server config"))
}

/// One certificate for every handshake (a disguised node's).
#[derive(Debug)]
struct FixedCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for FixedCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// Install [`MASTER`] as key generation `generation` in the secret store of a node whose
/// data directory is `dir`; the node's address.
pub fn install_master(dir: &Path, generation: u64) -> [u8; 20] {
    SecretStore::open(dir.join(SECRETS_DIR))
        .expect("secret store")
        .install(MasterSecret::from_bytes(MASTER), generation)
        .expect("install the master secret")
        .node_key
        .address()
}

/// Open the secret store of a node whose data directory is `dir` while the node may be
/// running: its background key-generation sync opens the same store now and then (and
/// sled keeps its file lock a moment after a handle is dropped), so a refused open is
/// retried until it succeeds, for up to 30 s.
///
/// # Panics
///
/// When the store cannot be opened within 30 s.
pub fn open_live_store(dir: &Path) -> SecretStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match SecretStore::open(dir.join(SECRETS_DIR)) {
            Ok(store) => return store,
            Err(e) if std::time::Instant::now() >= deadline => {
                panic!(
                    "the secret store in {} did not open within 30 s: {e}",
                    dir.display()
                )
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

/// The key generations the secret store of a node whose data directory is `dir` holds, in
/// order (what a node erased is gone from here); see [`open_live_store`].
pub fn held_generations(dir: &Path) -> Vec<u64> {
    open_live_store(dir)
        .held()
        .expect("held secrets")
        .masters
        .keys()
        .copied()
        .collect()
}
