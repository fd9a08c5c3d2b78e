//! [`ProcCluster`]: a cluster of real `cairn-kms` processes for fault tests and the soak
//! benchmark: each node is the binary with its own TOML config, data directory and fixed
//! port, so a test can `kill -9` it and start it again at the same URL. The first node
//! holds the test cluster's master secret ([`MASTER`]); the others onboard from it with
//! `cairn-kms onboard` (mutual RA-TLS, both sides chain-checked). Every node's evidence
//! is allowed and its address registered and funded on chain (a [`TestNet`]) before it
//! serves.
//!
//! Also here: [`FailoverClient`], a caller that asks each KMS URL in turn for one release,
//! as the guest's boot does (`cairn_guest`'s `KmsTrust::request_keys`), and keeps every
//! receipt it got.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_attestation::{Collateral, RaTlsCert};
use cairn_kms_client::{KmsClient, KmsConnection, Timeouts};
use cairn_onchain::alloy::primitives::Address;
use cairn_protocol::api::Receipt;
use hyper::StatusCode;
use tempfile::TempDir;

use super::cluster::{pki, verifier_for, CONFIRMATIONS, MASTER};
use super::net::TestNet;
use crate::config::Config;
use crate::kdf::MasterSecret;
use crate::node::{LOG_DIR, SECRETS_DIR};
use crate::store::SecretStore;

/// How long a node may take to answer `/healthz` after it was started.
pub const READY_DEADLINE: Duration = Duration::from_secs(60);

/// A free TCP port on 127.0.0.1 (bound, then released: the node binds it next).
pub fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// How the nodes of a [`ProcCluster`] are configured.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// The JSON-RPC endpoint the nodes read (default: the [`TestNet`]'s anvil; a proxy in front
    /// of it for chain faults).
    pub rpc_url: Option<url::Url>,
    /// `chain.timeout_ms`.
    pub rpc_timeout_ms: u64,
    /// `chain.poll_interval_ms`.
    pub poll_interval_ms: u64,
    /// `log.anchor_interval_secs`.
    pub anchor_interval_secs: u64,
    /// `RUST_LOG` of the node processes.
    pub rust_log: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            rpc_url: None,
            rpc_timeout_ms: 2000,
            poll_interval_ms: 50,
            anchor_interval_secs: 1,
            rust_log: std::env::var("CAIRN_FAULT_RUST_LOG").unwrap_or_else(|_| "warn".into()),
        }
    }
}

/// One `cairn-kms serve` process (maybe not running right now).
#[derive(Debug)]
pub struct ProcNode {
    /// `node-<i>`.
    pub name: String,
    /// The simulated host of its TD.
    pub host_seed: u8,
    /// Where it listens (fixed across restarts).
    pub addr: SocketAddr,
    /// Its directory: `config.toml`, `data/`, `stderr.log`.
    pub dir: PathBuf,
    /// Its node address (log signer, anchoring sender).
    pub address: [u8; 20],
    bin: PathBuf,
    rust_log: String,
    child: Option<Child>,
    /// Times it was started.
    pub starts: u32,
}

impl ProcNode {
    /// Its URL, as a guest's `sys-config.json` lists it.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// The data directory (`secrets/`, `log/`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running (it has not exited by itself).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Start `cairn-kms serve` (stderr appended to `stderr.log`).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stderr.log"))
            .expect("stderr log");
        let child = Command::new(&self.bin)
            .arg("--config")
            .arg(self.config_path())
            .arg("serve")
            .env("RUST_LOG", &self.rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        self.child = Some(child);
        self.starts += 1;
    }

    /// `kill -9`: SIGKILL, then reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (graceful: stop accepting, drain), then wait until it exited.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// Its resident set size (`VmRSS`), KiB, while it runs.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Bytes under its data directory's `log/` (the transparency log's sled files).
    pub fn log_bytes(&self) -> u64 {
        dir_bytes(&self.data_dir().join(LOG_DIR))
    }

    /// The last `n` lines of its stderr (for failure messages).
    pub fn stderr_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// A connection without a client certificate (public endpoints), the node's evidence
    /// verified.
    pub async fn public_client(&self) -> Result<KmsConnection, cairn_kms_client::Error> {
        proc_client().connect(&self.url(), None).await
    }

    /// Poll `/healthz` until the node answers 200, up to [`READY_DEADLINE`]; panics with
    /// its stderr when it does not (or exits).
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if !self.is_running() {
                panic!(
                    "{} exited while starting:\n{}",
                    self.name,
                    self.stderr_tail(40)
                );
            }
            if let Ok(mut c) = self.public_client().await {
                if let Ok((StatusCode::OK, _)) =
                    c.request(hyper::Method::GET, "/healthz", None).await
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within {READY_DEADLINE:?}:\n{}",
                self.name,
                self.stderr_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ProcNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// The KMS client of the cluster's callers: the cluster's [`verifier_for`] [`pki`], 20 s per stage (a hang
/// detector; a killed node fails at once with a refused or reset connection).
pub fn proc_client() -> KmsClient {
    KmsClient::new(verifier_for(&pki())).with_timeouts(Timeouts::uniform(Duration::from_secs(20)))
}

/// `cairn-kms` processes on a [`TestNet`]'s chain.
pub struct ProcCluster {
    /// The nodes, in start order (node 0 bootstrapped, the others onboarded from it).
    pub nodes: Vec<ProcNode>,
    /// Holds every node's directory and the shared collateral file.
    _dir: TempDir,
}

impl ProcCluster {
    /// Start `n` nodes on hosts `first_host_seed..`: node 0 with [`MASTER`], the others
    /// onboarded from node 0 with `cairn-kms onboard`; each registered on chain (evidence,
    /// address, gas) and serving before this returns.
    pub async fn start(
        w: &TestNet,
        bin: &Path,
        n: usize,
        first_host_seed: u8,
        opts: &ClusterOptions,
    ) -> ProcCluster {
        assert!(n >= 1);
        let dir = tempfile::tempdir().expect("cluster dir");
        let collateral = dir.path().join("collateral.json");
        std::fs::write(
            &collateral,
            Collateral::new(pki().collateral())
                .expect("collateral")
                .to_json(),
        )
        .expect("write collateral");
        let rpc = opts.rpc_url.clone().unwrap_or_else(|| w.endpoint());
        let mut nodes: Vec<ProcNode> = Vec::new();
        for i in 0..n {
            let host_seed = first_host_seed.wrapping_add(i as u8);
            let node_dir = dir.path().join(format!("node-{i}"));
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let text = config_text(w, &rpc, opts, addr, &node_dir, &collateral, host_seed);
            std::fs::write(node_dir.join("config.toml"), &text).expect("write config");
            let config = Config::parse(&text, []).expect("node config");
            let node_opts = config.node_options().expect("node options");
            let address = if i == 0 {
                let address = SecretStore::open(node_dir.join("data").join(SECRETS_DIR))
                    .expect("secret store")
                    .install(MasterSecret::from_bytes(MASTER), 1)
                    .expect("install master")
                    .node_key
                    .address();
                w.register_kms(&node_opts, Some(address)).await;
                address
            } else {
                // Evidence allowed first: the source checks isKmsAllowed(new node).
                w.register_kms(&node_opts, None).await;
                // The source judges the newcomer at its policy head, which reaches the
                // block that allowed the newcomer's evidence within a poll interval:
                // until then the source answers 403 denied.kms_mr, so that one
                // refusal is retried (polling, to a deadline).
                let deadline = Instant::now() + READY_DEADLINE;
                let out = loop {
                    let out = Command::new(bin)
                        .arg("--config")
                        .arg(node_dir.join("config.toml"))
                        .args(["onboard", &nodes[0].addr.to_string()])
                        .env("RUST_LOG", &opts.rust_log)
                        .output()
                        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    if out.status.success()
                        || !stderr.contains("denied.kms_mr")
                        || Instant::now() >= deadline
                    {
                        break out;
                    }
                    tokio::time::sleep(Duration::from_millis(opts.poll_interval_ms)).await;
                };
                assert!(
                    out.status.success(),
                    "cairn-kms onboard failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let report: serde_json::Value =
                    serde_json::from_slice(&out.stdout).expect("onboard output is JSON");
                let address: [u8; 20] = report["node_address"]
                    .as_str()
                    .and_then(|s| hex::decode(s.trim_start_matches("0x")).ok())
                    .and_then(|b| b.try_into().ok())
                    .expect("onboard output names the node address");
                w.client
                    .add_kms_node(Address::from(address))
                    .await
                    .expect("addKmsNode");
                w.fund(Address::from(address)).await;
                w.mine(CONFIRMATIONS).await;
                address
            };
            let mut node = ProcNode {
                name: format!("node-{i}"),
                host_seed,
                addr,
                dir: node_dir,
                address,
                bin: bin.to_owned(),
                rust_log: opts.rust_log.clone(),
                child: None,
                starts: 0,
            };
            node.spawn();
            node.wait_ready().await;
            nodes.push(node);
        }
        ProcCluster { nodes, _dir: dir }
    }

    /// Every node's URL, in order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(ProcNode::url).collect()
    }

    /// The index of the node listening at `url`.
    pub fn index_of(&self, url: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.url() == url)
    }
}

fn config_text(
    w: &TestNet,
    rpc: &url::Url,
    opts: &ClusterOptions,
    addr: SocketAddr,
    node_dir: &Path,
    collateral: &Path,
    host_seed: u8,
) -> String {
    format!(
        r#"listen = "{addr}"
data_dir = "{data}"
[chain]
rpc_url = "{rpc}"
chain_id = {chain_id}
kms_auth = "{kms_auth}"
confirmations = {conf}
timeout_ms = {timeout}
poll_interval_ms = {poll}
max_head_age_secs = 3600
[attestation]
trust = "simulator"
simulator_seed = "0x{pki_seed}"
collateral_file = "{collateral}"
[tee]
kind = "simulator"
simulator_host_seed = "0x{host}"
[log]
anchor_interval_secs = {anchor}
max_anchor_age_secs = 600
"#,
        data = node_dir.join("data").display(),
        chain_id = w.chain_id(),
        kms_auth = w.kms_auth(),
        conf = CONFIRMATIONS,
        timeout = opts.rpc_timeout_ms,
        poll = opts.poll_interval_ms,
        pki_seed = "42".repeat(32),
        collateral = collateral.display(),
        host = hex::encode([host_seed; 32]),
        anchor = opts.anchor_interval_secs,
    )
}

/// One release a caller holds: which URL released it, the receipt.
#[derive(Clone, Debug)]
pub struct Held {
    /// The URL that answered.
    pub url: String,
    /// The receipt with the keys.
    pub receipt: Receipt,
    /// The app key released (to compare across nodes).
    pub app_key: [u8; 32],
}

/// Why one release failed from the caller's point of view: every URL failed.
#[derive(Debug)]
pub struct AllFailed(pub Vec<(String, cairn_kms_client::Error)>);

/// A caller that, for each release, asks each KMS URL in turn (starting at its own
/// offset, so callers spread over the nodes) over a fresh mutual RA-TLS connection, as a
/// booting guest does; the first that releases wins.
pub struct FailoverClient {
    client: KmsClient,
    urls: Vec<String>,
    cert: Arc<RaTlsCert>,
    /// Every release this caller got.
    pub held: Vec<Held>,
    /// Attempts that failed on one URL and were retried on the next.
    pub failovers: u64,
}

impl FailoverClient {
    /// A caller presenting `cert`, trying `urls` starting at `offset`.
    pub fn new(urls: &[String], offset: usize, cert: Arc<RaTlsCert>) -> Self {
        let mut urls = urls.to_vec();
        if !urls.is_empty() {
            let k = offset % urls.len();
            urls.rotate_left(k);
        }
        Self {
            client: proc_client(),
            urls,
            cert,
            held: Vec::new(),
            failovers: 0,
        }
    }

    /// One release: each URL in turn until one answers with keys. A non-retryable error
    /// (a denial, bad evidence) stops at once, as it stops a guest's boot; so does every
    /// URL failing.
    pub async fn release(&mut self) -> Result<&Held, AllFailed> {
        let mut failures = Vec::new();
        for url in &self.urls {
            match self.client.app_key(url, &self.cert).await {
                Ok(r) => {
                    self.held.push(Held {
                        url: url.clone(),
                        receipt: r.keys.receipt.clone(),
                        app_key: *r.keys.app_key,
                    });
                    return Ok(self.held.last().expect("just pushed"));
                }
                Err(e) => {
                    let retry = e.is_retryable();
                    failures.push((url.clone(), e));
                    if !retry {
                        return Err(AllFailed(failures));
                    }
                    self.failovers += 1;
                }
            }
        }
        Err(AllFailed(failures))
    }
}
