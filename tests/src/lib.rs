//! cairn-e2e — scenario plumbing shared by the end-to-end tests (`tests/it/`).
//!
//! Every scenario runs the real parts, in-process and hermetic:
//!
//! ```text
//!  anvil (own process, free port) ◄── cairn-onchain: deploy KmsAuth + AppAuth factory,
//!    ▲                                 root keys, KMS MR/device/node, OS image, apps, DAO
//!    │ policy reads (head − confirmations)
//!  cairn-kms Node + server (127.0.0.1:0, RA-TLS, simulator TEE, sled + tlog in a tempdir)
//!    ▲ mutual RA-TLS: POST /v1/app-key, /v1/sign-cert; GET /v1/env-pubkey, /v1/log/*
//!  cairn_guest::boot (SimTdx host, process runner, share/keys/work in a tempdir)
//!    └─► app process ; guest agent on a unix socket ◄── the test (or the Python SDK)
//! ```
//!
//! This is a test-only crate: its helpers panic (with a message) when the plumbing
//! itself fails, because that is a failed test. What it does *not* do: mock anything that
//! runs here — the chain is anvil, the KMS is `cairn_kms::run`, the guest is
//! `cairn_guest::boot`, and quotes are the simulator's real TDX v4 quotes.
//!
//! # Layout
//! - [`Devnet`] — the test cluster of `cairn_kms::testing` (anvil with the Cairn system
//!   deployed and the cluster's root keys; mining lets the KMS nodes' policy heads see
//!   the new blocks), re-exported here with the cluster's constants, PKI and verifier.
//! - [`Kms`] — a registered KMS node serving on a free port (a `RunningKms` and its
//!   simulated host); [`Kms::stop`] keeps its data directory for
//!   [`Devnet::restart_kms`] on the same address.
//! - `cluster` — N nodes, the first holding the test master and the others onboarded
//!   from it over mutual RA-TLS: in-process ([`Cluster`], [`Devnet::start_cluster`]) or
//!   as `cairn-kms` processes ([`ProcessCluster`], [`Devnet::start_process_cluster`];
//!   [`KmsProcess::kill9`], [`KmsProcess::restart`]).
//! - [`Cvm`] — a host share + keys + work dir for one guest, and its boot.
//! - [`chain_root_k256`] — the root key registered on chain, what deploy-time env
//!   encryption (`cairn_protocol::env::encrypt_env_for_app`) checks the KMS's signed env
//!   key (`KmsConnection::env_pubkey`) against.
//! - [`denial_code`] — the KMS's status and code behind a refused boot;
//!   [`assert_findings!`] — an audit report's findings match a pattern.
//! - [`Agent`] — the guest agent served on a unix socket, and a client for it.
//! - [`gateway`] — gateway scenarios: the gateway app and its CVM, in-process gateway
//!   nodes, app CVMs running `cairn-echo-app` (`src/bin/`), clients through the gateway.
//! - [`vmm`] — a real VMM (`cairn_vmm::run`) whose process backend runs the real
//!   `cairn-guest` binary against the scenario's KMS and chain.
//! - `docker` — the Docker engine of the docker-compose scenarios: [`require_docker`],
//!   [`agent_app_image`] (busybox + a static agent client), [`agent_app_compose`],
//!   [`project_containers`] and [`ProjectGuard`] (independent looks at the engine).
//!
//! Receipts are checked with `cairn_onchain::verify_receipt`, the auditor's verifier.

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_attestation::simulator::{SimHostConfig, SimTdx};
use cairn_attestation::Tee;
use cairn_kms::NodeOptions;
use cairn_onchain::alloy::primitives::{Address, B256};
use cairn_onchain::ChainClient;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes as HttpBytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use cairn_kms::testing::{
    checked_get_key, image, install_master, kms_client, pki, root_keys, verifier, RunningKms,
    TestNet, CONFIRMATIONS, DEADLINE, HEAD_POLL, MASTER, PKI_SEED,
};

mod cluster;
mod docker;
pub mod gateway;
pub use cluster::{
    cluster_host_seed, kms_binary, poll_until, Cluster, KmsProcess, ProcessCluster,
    PROCESS_DEADLINE,
};
pub mod vmm;
pub use docker::{
    agent_app_compose, agent_app_compose_on, agent_app_image, free_port, http_get,
    project_containers, project_logs, projects_with_prefix, require_docker, wait_for_http,
    ProjectGuard, BUSYBOX_IMAGE,
};

/// The KMS node's simulated host.
pub const KMS_HOST_SEED: u8 = 0xE0;

/// The test cluster of `cairn_kms::testing` ([`TestNet`]: anvil with the Cairn system,
/// the root keys of [`MASTER`] registered as generation 1, [`image`] allowed; its fields
/// and methods — `client`, `owner`, `mine`, `deploy_app`, … — through `Deref`), from
/// which the scenarios start their KMS node.
pub struct Devnet {
    /// The test cluster.
    pub net: TestNet,
}

impl Deref for Devnet {
    type Target = TestNet;

    fn deref(&self) -> &TestNet {
        &self.net
    }
}

impl Devnet {
    /// Spawn anvil (the npm-pinned binary) and deploy.
    pub async fn new() -> Devnet {
        Devnet {
            net: TestNet::new(Path::new(env!("CARGO_MANIFEST_DIR"))).await,
        }
    }

    /// The start of most scenarios: a new devnet, its KMS ([`Devnet::start_kms`]) and an
    /// app of the owner deployed with `compose`'s hash allowed (nothing allowed for
    /// `None`).
    pub async fn with_kms_and_app(
        compose: Option<&[u8]>,
    ) -> (Devnet, Kms, cairn_onchain::AppAuthClient) {
        let net = Devnet::new().await;
        let kms = net.start_kms().await;
        let app = net.deploy_app(net.owner, compose).await;
        (net, kms, app)
    }

    /// Bootstrap a KMS node with [`MASTER`] on host [`KMS_HOST_SEED`], register its
    /// evidence (aggregated MR, device) and node address on chain, fund it, and serve it
    /// on `127.0.0.1:0`. Scenarios anchor by hand (`cairn_kms::anchor_once`): the node's
    /// own anchoring runs hourly and the anchoring bound only has to exceed that; chain
    /// calls time out after 5 s.
    pub async fn start_kms(&self) -> Kms {
        self.start_kms_on(KMS_HOST_SEED).await
    }

    /// [`Devnet::start_kms`] on the simulated host `host_seed` (another seed is another
    /// device, instance id and aggregated MR).
    pub async fn start_kms_on(&self, host_seed: u8) -> Kms {
        let (_, dir) = self.net.prepare(host_seed, &pki()).await;
        let opts = self.kms_options(dir.path(), host_seed);
        self.serve_kms(opts, dir, host_seed, 0).await
    }

    /// The options of a KMS node whose data lives in `data_dir`, on the simulated host
    /// `host_seed` (`TestNet::options` with the cluster's PKI): anchoring by hand
    /// (`anchor_once`; the interval is an hour), chain calls timing out after 5 s.
    pub fn kms_options(&self, data_dir: &Path, host_seed: u8) -> NodeOptions {
        let mut opts = self.net.options(data_dir, host_seed, &pki());
        opts.chain = opts.chain.with_call_timeout(Duration::from_secs(5));
        opts.anchor_interval = Duration::from_secs(3600);
        // Scenarios anchor by hand (`anchor_once`); the bound only has to exceed the
        // interval.
        opts.anchor_limits = cairn_kms::AnchorLimits {
            max_age: Duration::from_secs(7200),
            ..cairn_kms::AnchorLimits::default()
        };
        opts
    }

    /// Allow the KMS evidence of `opts` (its aggregated MR and device) on chain and, with
    /// an address, register and fund that node; then mine past the confirmations.
    pub async fn register_kms_evidence(&self, opts: &NodeOptions, node: Option<[u8; 20]>) {
        self.net.register_kms(opts, node).await;
    }

    /// Register (and fund) a KMS node address on chain, then mine past the confirmations.
    pub async fn add_kms_node(&self, node: [u8; 20]) {
        self.net
            .client
            .add_kms_node(Address::from(node))
            .await
            .expect("addKmsNode");
        self.net.fund(Address::from(node)).await;
        self.mine(CONFIRMATIONS).await;
    }

    /// Open the node of `opts` (its store in `dir` holds an identity) and serve it on
    /// `127.0.0.1:port` (0: a free port); its policy head follows [`Devnet::mine`].
    pub async fn serve_kms(
        &self,
        opts: NodeOptions,
        dir: Arc<TempDir>,
        host_seed: u8,
        port: u16,
    ) -> Kms {
        Kms {
            running: self.net.serve_on(opts, dir, port).await,
            host_seed,
        }
    }

    /// Restart a stopped node (see [`Kms::stop`]) from its data directory, on the same
    /// host and the same address (so the URLs guests list stay valid).
    pub async fn restart_kms(&self, stopped: StoppedKms) -> Kms {
        let opts = self.kms_options(stopped.dir.path(), stopped.host_seed);
        self.serve_kms(opts, stopped.dir, stopped.host_seed, stopped.addr.port())
            .await
    }

    /// An app of the owner with one CVM of [`app_compose`] `tag` per host seed pointed at
    /// `kms`, each CVM's compose hash allowed and mined past the confirmations.
    pub async fn allowed_cvms(
        &self,
        kms: &Kms,
        host_seeds: impl IntoIterator<Item = u8>,
        tag: &str,
    ) -> (cairn_onchain::AppAuthClient, Vec<Cvm>) {
        let app = self.deploy_app(self.owner, None).await;
        let cvms: Vec<Cvm> = host_seeds
            .into_iter()
            .map(|seed| Cvm::new(&kms.url(), app.app_id(), seed, tag))
            .collect();
        for cvm in &cvms {
            app.add_compose_hash(cvm.compose_hash())
                .await
                .expect("add compose hash");
        }
        self.mine(CONFIRMATIONS).await;
        (app, cvms)
    }

    /// [`Devnet::allowed_cvms`] with one CVM.
    pub async fn allowed_cvm(
        &self,
        kms: &Kms,
        host_seed: u8,
        tag: &str,
    ) -> (cairn_onchain::AppAuthClient, Cvm) {
        let (app, mut cvms) = self.allowed_cvms(kms, [host_seed], tag).await;
        let cvm = cvms.pop().expect("one CVM");
        (app, cvm)
    }

    /// [`Devnet::allowed_cvms`] of `"v1"`, each CVM booted once (the boots are dropped:
    /// their releases are logged).
    pub async fn booted_app(
        &self,
        kms: &Kms,
        host_seeds: impl IntoIterator<Item = u8>,
    ) -> (cairn_onchain::AppAuthClient, Vec<Cvm>) {
        let (app, cvms) = self.allowed_cvms(kms, host_seeds, "v1").await;
        for cvm in &cvms {
            cvm.boot().await.expect("boot an allowed CVM");
        }
        (app, cvms)
    }

    /// An app owned by `owner` (an address or a DAO's timelock) deployed with its first
    /// version allowed, and two CVMs of it on host `host_seed` pointed at `kms`: `v1`
    /// (allowed) and `v2` (another compose hash, not allowed).
    pub async fn app_v1_v2(
        &self,
        kms: &Kms,
        owner: Address,
        host_seed: u8,
    ) -> (cairn_onchain::AppAuthClient, Cvm, Cvm) {
        let v1 = Cvm::new(&kms.url(), Address::ZERO, host_seed, "v1");
        let app = self.deploy_app(owner, Some(v1.compose.as_bytes())).await;
        v1.set_app_id(app.app_id());
        let v2 = Cvm::new(&kms.url(), app.app_id(), host_seed, "v2");
        (app, v1, v2)
    }

    /// Registers the root keys of another master secret as generation 2 and mines past
    /// the confirmations: the chain then names a root the running KMS nodes do not hold.
    pub async fn register_other_root(&self) {
        let other = cairn_kms::RootKeys::derive(&cairn_kms::MasterSecret::from_bytes([0x77; 32]))
            .expect("derive root keys");
        self.client
            .set_kms_root_keys(
                2,
                other.k256_public().to_vec().into(),
                other.ca().spki_der().into(),
            )
            .await
            .expect("set root keys");
        self.mine(CONFIRMATIONS).await;
    }

    /// The cluster's secp256k1 root key as the chain holds it at the policy block (what a
    /// relying party checks signature chains against, not the KMS's word for it).
    pub async fn chain_k256_root(&self) -> k256::ecdsa::VerifyingKey {
        k256::ecdsa::VerifyingKey::from_sec1_bytes(&chain_root_k256(&self.client).await)
            .expect("a k256 root key")
    }
}

/// A KMS node of the scenarios serving on a free port: a `RunningKms` (its node, address,
/// URL and clients through `Deref`) on the simulated host `host_seed`.
pub struct Kms {
    /// The running node.
    pub running: RunningKms,
    /// Its simulated host.
    pub host_seed: u8,
}

impl Deref for Kms {
    type Target = RunningKms;

    fn deref(&self) -> &RunningKms {
        &self.running
    }
}

impl std::ops::DerefMut for Kms {
    fn deref_mut(&mut self) -> &mut RunningKms {
        &mut self.running
    }
}

/// A KMS node that was stopped: its data directory, host and address, to restart it
/// ([`Devnet::restart_kms`]).
pub struct StoppedKms {
    /// The data directory (`secrets/`, `log/`).
    pub dir: Arc<TempDir>,
    /// Its simulated host.
    pub host_seed: u8,
    /// The address it listened on.
    pub addr: SocketAddr,
}

impl Kms {
    /// The node's data directory.
    pub fn data_dir(&self) -> &Path {
        self.running.dir.path()
    }

    /// Stop serving, wait for the server task and for every handle on the node to go
    /// (so its stores can be opened again); keeps its data directory.
    pub async fn stop(self) -> StoppedKms {
        let addr = self.running.addr;
        let dir = self.running.stop().await;
        StoppedKms {
            dir,
            host_seed: self.host_seed,
            addr,
        }
    }
}

/// The stdout of a command (`what`) that ran to completion; a panic with its exit
/// status and stderr when it failed.
pub fn stdout_of_success(what: &str, out: std::process::Output) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// SHA-256 of the exact compose bytes, as the chain stores it.
pub fn compose_hash(compose: &[u8]) -> B256 {
    B256::from(cairn_attestation::ids::ComposeHash::of_compose(compose).0)
}

/// The root k256 public key registered on chain at the pinned block (SEC1 bytes): the
/// deployer's reference for `cairn_protocol::env::encrypt_env_for_app`, never the KMS's
/// word for it.
pub async fn chain_root_k256(chain: &ChainClient) -> Vec<u8> {
    let at = chain.policy_block().await.expect("policy block");
    chain
        .root_keys(at)
        .await
        .expect("root keys")
        .expect("root keys registered")
        .k256_pubkey
        .to_vec()
}

/// One guest CVM: its host share, keys and work dirs in a tempdir, and its TD.
pub struct Cvm {
    /// Holds `share/`, `keys/`, `work/`, `agent.sock`, `app-out`.
    pub dir: TempDir,
    /// The exact `app-compose.json` bytes.
    pub compose: String,
    /// The simulated host; every boot gets a fresh TD on it (a reboot resets RTMR3).
    pub host_seed: u8,
}

/// A `process` compose whose app writes `started:$API_KEY` to `out` (`allowed_envs: API_KEY`).
/// `tag` makes different versions (different compose hashes) of the same app.
pub fn app_compose(out: &Path, tag: &str) -> String {
    let script = format!("printf 'started:%s' \"$API_KEY\" > {}", out.display());
    format!(
        r#"{{"manifest_version":2,"name":"demo","runner":"process","process":{{"command":["/bin/sh","-c",{}],"env":{{"VERSION":{}}}}},"kms_enabled":true,"allowed_envs":["API_KEY"]}}"#,
        serde_json::to_string(&script).expect("json string"),
        serde_json::to_string(tag).expect("json string"),
    )
}

impl Cvm {
    /// A CVM of `app_id` on host `host_seed`, running [`app_compose`] with `tag`, pointed
    /// at `kms_url`.
    pub fn new(kms_url: &str, app_id: Address, host_seed: u8, tag: &str) -> Cvm {
        let dir = tempfile::tempdir().expect("tempdir");
        let compose = app_compose(&dir.path().join("app-out"), tag);
        Cvm::in_dir(dir, kms_url, app_id, host_seed, compose)
    }

    /// A CVM of `app_id` on host `host_seed` running the given `app-compose.json`,
    /// pointed at `kms_url`.
    pub fn with_compose(kms_url: &str, app_id: Address, host_seed: u8, compose: String) -> Cvm {
        Cvm::in_dir(
            tempfile::tempdir().expect("tempdir"),
            kms_url,
            app_id,
            host_seed,
            compose,
        )
    }

    fn in_dir(dir: TempDir, kms_url: &str, app_id: Address, host_seed: u8, compose: String) -> Cvm {
        let share = dir.path().join("share");
        std::fs::create_dir(&share).expect("share dir");
        std::fs::write(share.join("app-compose.json"), &compose).expect("write compose");
        std::fs::write(
            share.join("sys-config.json"),
            serde_json::to_vec(&serde_json::json!({"kms_urls": [kms_url]})).expect("json"),
        )
        .expect("write sys-config");
        let cvm = Cvm {
            dir,
            compose,
            host_seed,
        };
        cvm.set_app_id(app_id);
        cvm
    }

    /// Point the share's `.instance-info` at `app_id` (the compose is unaffected, so a
    /// CVM can be built before its app is deployed with the CVM's compose hash).
    pub fn set_app_id(&self, app_id: Address) {
        std::fs::write(
            self.dir.path().join("share/.instance-info"),
            serde_json::to_vec(&serde_json::json!({
                "instance_id_seed": hex::encode([self.host_seed; 8]),
                "app_id": hex::encode(app_id),
            }))
            .expect("json"),
        )
        .expect("write instance info");
    }

    /// List `urls` as the share's KMS URLs (tried in this order), keeping the rest of
    /// `sys-config.json`.
    pub fn set_kms_urls(&self, urls: &[String]) {
        let path = self.dir.path().join("share/sys-config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read sys-config"))
                .expect("sys-config JSON");
        config["kms_urls"] = serde_json::json!(urls);
        std::fs::write(&path, serde_json::to_vec(&config).expect("json"))
            .expect("write sys-config");
    }

    /// Have the guest check its KMS against KmsAuth on `net` (sys-config's `chain`
    /// section) before trusting it.
    pub fn check_kms_on_chain(&self, net: &Devnet) {
        let path = self.dir.path().join("share/sys-config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read sys-config"))
                .expect("sys-config JSON");
        config["chain"] = serde_json::json!({
            "rpc_url": net.anvil.endpoint(),
            "chain_id": net.anvil.chain_id(),
            "kms_auth": format!("{:#x}", net.kms_auth()),
            "confirmations": CONFIRMATIONS,
        });
        std::fs::write(&path, serde_json::to_vec(&config).expect("json"))
            .expect("write sys-config");
    }

    /// The compose hash of this CVM's compose.
    pub fn compose_hash(&self) -> B256 {
        compose_hash(self.compose.as_bytes())
    }

    /// Put `.encrypted-env` into the share.
    pub fn set_encrypted_env(&self, blob: &[u8]) {
        std::fs::write(self.dir.path().join("share/.encrypted-env"), blob).expect("write env");
    }

    /// The keys directory.
    pub fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    /// The file the app writes.
    pub fn app_out(&self) -> PathBuf {
        self.dir.path().join("app-out")
    }

    /// The agent socket path.
    pub fn agent_socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }

    /// A freshly started TD on this CVM's host.
    pub fn fresh_tee(&self) -> Arc<SimTdx> {
        Arc::new(
            SimTdx::new(pki(), SimHostConfig::new([self.host_seed; 32], image()))
                .expect("guest TD"),
        )
    }

    /// The boot configuration (app started, agent socket announced) for `tee`.
    pub fn config(&self, tee: &SimTdx) -> cairn_guest::BootConfig {
        cairn_guest::BootConfig {
            share_dir: self.dir.path().join("share"),
            keys_dir: self.keys_dir(),
            work_dir: self.dir.path().join("work"),
            agent_socket: Some(self.agent_socket()),
            device_id: Some(tee.device_id().0),
            start_app: true,
            docker: "docker".into(),
        }
    }

    /// (Re)boot: the real boot flow on a fresh TD against the KMS URLs of the share.
    pub async fn boot(&self) -> cairn_guest::Result<cairn_guest::Booted> {
        let tdx = self.fresh_tee();
        let config = self.config(&tdx);
        let tee: Arc<dyn Tee> = tdx;
        cairn_guest::boot(tee, kms_client(), &config).await
    }
}

/// Poll until `path` exists and is non-empty, up to [`DEADLINE`].
pub async fn wait_for_file(path: &Path) -> Option<Vec<u8>> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(b) = std::fs::read(path) {
            if !b.is_empty() {
                return Some(b);
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The first KMS's refusal of a failed boot: its HTTP status and error code (`None` when
/// the boot failed another way).
pub fn denial_code(err: &cairn_guest::Error) -> Option<(u16, String)> {
    match err {
        cairn_guest::Error::AllKmsFailed(v) => match &v.first()?.1 {
            cairn_kms_client::Error::Status { status, code, .. } => Some((*status, code.clone())),
            _ => None,
        },
        _ => None,
    }
}

/// Asserts that a boot failed because the KMS refused it (403) by the compose-hash check.
#[track_caller]
pub fn assert_compose_hash_denied(err: &cairn_guest::Error) {
    assert_eq!(
        denial_code(err),
        Some((403, "denied.compose_hash".into())),
        "{err}"
    );
}

/// Asserts that an audit report's findings (`report.findings`, a `Vec<Finding>`) match a
/// slice pattern (with an optional guard), printing them when they do not.
#[macro_export]
macro_rules! assert_findings {
    ($report:expr, $($pattern:tt)+) => {{
        let findings = &$report.findings;
        assert!(matches!(findings.as_slice(), $($pattern)+), "{findings:?}");
    }};
}

/// The guest agent served on a unix socket until dropped.
pub struct Agent {
    /// The socket path.
    pub socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<cairn_guest::Result<()>>,
}

impl Agent {
    /// Serve the agent for `state` at `socket`.
    pub fn serve(socket: &Path, state: Arc<cairn_guest::GuestState>) -> Agent {
        let (stop, stopped) = oneshot::channel::<()>();
        let path = socket.to_owned();
        let task = tokio::spawn(async move {
            cairn_guest::agent::serve_unix(&path, state, async {
                let _ = stopped.await;
            })
            .await
        });
        Agent {
            socket: socket.to_owned(),
            stop: Some(stop),
            task,
        }
    }

    /// `POST /<method>` with a JSON body over the unix socket, as an app would; polls
    /// until the socket accepts (up to [`DEADLINE`]).
    pub async fn call(
        &self,
        method: &str,
        body: serde_json::Value,
    ) -> (StatusCode, serde_json::Value) {
        let deadline = Instant::now() + DEADLINE;
        let stream = loop {
            match tokio::net::UnixStream::connect(&self.socket).await {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => panic!("agent socket: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("agent handshake");
        tokio::spawn(conn);
        let req = Request::post(format!("/{method}"))
            .header(hyper::header::HOST, "localhost")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(HttpBytes::from(body.to_string())))
            .expect("request");
        let resp = sender.send_request(req).await.expect("agent request");
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .expect("agent body")
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Stop serving.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.expect("agent task").expect("agent server");
    }
}
