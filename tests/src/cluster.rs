//! A KMS cluster on one [`Devnet`]: the first node holds the test master ([`MASTER`],
//! generation 1, registered by [`Devnet::new`]); every other node is onboarded from it
//! over mutual RA-TLS with both sides chain-checked (the real `cairn_kms::onboard`),
//! then registered (`addKmsNode`), funded and served. Each node runs on its own
//! simulated host, so each has its own device id, instance id and aggregated MR, each
//! allowed on chain.
//!
//! Two forms, the same steps: [`Cluster`] runs the nodes in-process (their policy heads
//! follow [`Devnet::mine`]); [`ProcessCluster`] runs each node as a `cairn-kms` process
//! (`describe`, `onboard`, `serve` through the binary; a node can be killed with SIGKILL
//! and restarted on its data directory).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_kms::OnboardReport;
use cairn_onchain::alloy::primitives::{Address, B256};
use cairn_onchain::testing::KmsNodeRegistration;
use tempfile::TempDir;

use crate::{
    free_port, install_master, Devnet, Kms, CONFIRMATIONS, DEADLINE, KMS_HOST_SEED, PKI_SEED,
};

/// The simulated host of node `i` of a cluster (node 0 is [`KMS_HOST_SEED`]).
pub fn cluster_host_seed(i: usize) -> u8 {
    let i = u8::try_from(i).expect("at most 16 nodes");
    assert!(i < 16, "at most 16 nodes");
    KMS_HOST_SEED + i
}

/// KMS nodes serving in-process, node 0 first.
pub struct Cluster {
    /// The nodes (index = order of creation; node 0 holds the master from the start).
    pub nodes: Vec<Kms>,
}

impl Cluster {
    /// The URL of every node, in order (what a guest's `sys-config.json` lists).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|k| k.url()).collect()
    }
}

impl Devnet {
    /// A cluster of `n ≥ 1` in-process nodes (see the module docs).
    pub async fn start_cluster(&self, n: usize) -> Cluster {
        assert!(n >= 1, "a cluster has at least one node");
        let first = self.start_kms_on(cluster_host_seed(0)).await;
        let mut nodes = vec![first];
        for i in 1..n {
            let node = self.onboard_kms(&nodes[0], cluster_host_seed(i)).await;
            nodes.push(node);
        }
        Cluster { nodes }
    }

    /// A new node on host `host_seed` onboarded from `source`: its evidence allowed on
    /// chain, `cairn_kms::onboard` (mutual RA-TLS, `isKmsAllowed` both ways, the secret
    /// checked against the root keys on chain), its address added and funded, served.
    pub async fn onboard_kms(&self, source: &Kms, host_seed: u8) -> Kms {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let report = self.onboard_into(dir.path(), source, host_seed).await;
        self.add_kms_node(report.node_address).await;
        let opts = self.kms_options(dir.path(), host_seed);
        self.serve_kms(opts, dir, host_seed, 0).await
    }

    /// Allow the evidence of a node on `host_seed` whose data lives in `data_dir` and
    /// onboard it from `source` (nothing is registered but its MR and device).
    pub async fn onboard_into(
        &self,
        data_dir: &Path,
        source: &Kms,
        host_seed: u8,
    ) -> OnboardReport {
        let opts = self.kms_options(data_dir, host_seed);
        self.register_kms_evidence(&opts, None).await;
        cairn_kms::onboard(&opts, source.addr)
            .await
            .expect("onboard a KMS node")
    }
}

/// The `cairn-kms` binary the process nodes run: `$CAIRN_KMS_BIN`, else `cairn-kms`
/// beside the test binary's directory (`target/<profile>/`), which `cargo test
/// --workspace` (and `scripts/test.sh`) builds.
///
/// # Panics
///
/// When neither exists: build it with `cargo build -p cairn-kms`.
pub fn kms_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_KMS_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let found = exe
        .ancestors()
        .skip(1)
        .take(3)
        .map(|d| d.join("cairn-kms"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "the cairn-kms binary was not found near {}: run `cargo build -p cairn-kms` \
             (or set CAIRN_KMS_BIN)",
            exe.display()
        )
    })
}

/// A `cairn-kms` process: its data directory, config and log; killed on drop.
pub struct KmsProcess {
    /// Where it listens (fixed across restarts).
    pub addr: std::net::SocketAddr,
    /// Its simulated host.
    pub host_seed: u8,
    /// Its node address (registered on chain).
    pub node_address: [u8; 20],
    dir: TempDir,
    child: Option<tokio::process::Child>,
    restarts: u32,
}

impl KmsProcess {
    /// The URL guests list.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Its data directory (`secrets/`, `log/`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Its config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("kms.toml")
    }

    /// The log file of its current (or last) run.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("kms-{}.log", self.restarts))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(tokio::process::Child::id)
    }

    /// SIGKILL the process and reap it (nothing flushed, nothing drained).
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// SIGTERM the process and wait for it to exit (it drains in-flight requests).
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the KMS process is not running");
        let pid = child.id().expect("pid");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM {pid}");
        tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("the KMS did not exit within 60 s of SIGTERM")
            .expect("wait")
    }

    /// Start `serve` again on the same data directory, config and address; returns once
    /// `/healthz` answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the KMS process still runs");
        self.restarts += 1;
        self.child = Some(spawn(&self.config_path(), &["serve"], &self.log_path()));
        self.wait_serving().await;
    }

    /// The text of the current run's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Poll `GET /healthz` until it answers (any status: the node serves), up to
    /// [`PROCESS_DEADLINE`].
    pub async fn wait_serving(&mut self) {
        let deadline = Instant::now() + PROCESS_DEADLINE;
        loop {
            if self.public_get("/healthz").await.is_some() {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("cairn-kms exited with {status}:\n{}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "cairn-kms not serving on {} within {PROCESS_DEADLINE:?}:\n{}",
                self.addr,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Poll until the node's policy head has read block `number` (its `/metrics`
    /// `cairn_kms_chain_policy_block`), up to [`PROCESS_DEADLINE`].
    pub async fn wait_policy_block(&self, number: u64) {
        if !wait_policy_block_at(self.addr, number).await {
            panic!(
                "cairn-kms on {} did not reach policy block {number}:\n{}",
                self.addr,
                self.log()
            );
        }
    }

    /// `GET path` over TLS without a client certificate (the KMS's evidence verified):
    /// the status and body, or `None` when the node does not answer.
    pub async fn public_get(&self, path: &str) -> Option<(u16, Vec<u8>)> {
        public_get_at(self.addr, path).await
    }
}

/// `GET path` of the KMS node at `addr` (see [`KmsProcess::public_get`]).
async fn public_get_at(addr: std::net::SocketAddr, path: &str) -> Option<(u16, Vec<u8>)> {
    let mut conn = crate::kms_client()
        .connect(&format!("https://{addr}"), None)
        .await
        .ok()?;
    let (status, body) = conn.request(hyper::Method::GET, path, None).await.ok()?;
    Some((status.as_u16(), body.to_vec()))
}

/// Poll until the node at `addr` says (its `/metrics` `cairn_kms_chain_policy_block`)
/// that its policy head has read block `number`; `false` after [`PROCESS_DEADLINE`].
async fn wait_policy_block_at(addr: std::net::SocketAddr, number: u64) -> bool {
    let deadline = Instant::now() + PROCESS_DEADLINE;
    loop {
        if let Some((200, body)) = public_get_at(addr, "/metrics").await {
            let at = String::from_utf8_lossy(&body)
                .lines()
                .find_map(|l| l.strip_prefix("cairn_kms_chain_policy_block "))
                .and_then(|v| v.trim().parse::<u64>().ok());
            if at.is_some_and(|at| at >= number) {
                return true;
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for KmsProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// How long a process node may take to start or to follow the chain.
pub const PROCESS_DEADLINE: Duration = Duration::from_secs(60);

fn spawn(config: &Path, args: &[&str], log: &Path) -> tokio::process::Child {
    let out = std::fs::File::create(log).expect("KMS log file");
    let err = out.try_clone().expect("KMS log file");
    tokio::process::Command::new(kms_binary())
        .arg("--config")
        .arg(config)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn cairn-kms")
}

/// Run a `cairn-kms` command to completion; its stdout, or a panic with its log.
async fn run_command(config: &Path, args: &[&str], log: &Path) -> Vec<u8> {
    let out = tokio::time::timeout(
        PROCESS_DEADLINE,
        tokio::process::Command::new(kms_binary())
            .arg("--config")
            .arg(config)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("cairn-kms command timed out")
    .expect("run cairn-kms");
    std::fs::write(log, &out.stderr).expect("write command log");
    crate::stdout_of_success(&format!("cairn-kms {args:?}"), out)
}

/// KMS nodes running as `cairn-kms` processes, node 0 first.
pub struct ProcessCluster {
    /// The nodes.
    pub nodes: Vec<KmsProcess>,
}

impl ProcessCluster {
    /// The URL of every node, in order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(KmsProcess::url).collect()
    }

    /// Poll until every running node's policy head has read block `number`.
    pub async fn wait_policy_block(&self, number: u64) {
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            node.wait_policy_block(number).await;
        }
    }
}

impl Devnet {
    /// The config of a process node on `host_seed` listening on `port` with its data in
    /// `data_dir`: this devnet's chain (the same confirmations, a 50 ms policy head, the
    /// fixture's head age bound: anvil mines only when asked), the simulator trust root
    /// and TEE, anchoring every second. `extra` is appended (more `[log]`/`[server]`
    /// keys, for instance).
    pub fn kms_process_config(
        &self,
        data_dir: &Path,
        host_seed: u8,
        port: u16,
        extra: &str,
    ) -> String {
        format!(
            r#"listen = "127.0.0.1:{port}"
data_dir = "{data}"

[chain]
rpc_url = "{rpc}"
chain_id = {chain_id}
kms_auth = "{kms_auth:#x}"
confirmations = {CONFIRMATIONS}
timeout_ms = 5000
poll_interval_ms = 50
max_head_age_secs = {max_age}

[attestation]
trust = "simulator"
simulator_seed = "0x{pki}"

[tee]
kind = "simulator"
simulator_host_seed = "0x{host}"
{extra}"#,
            data = data_dir.display(),
            rpc = self.net.endpoint(),
            chain_id = self.net.chain_id(),
            kms_auth = self.net.kms_auth(),
            max_age = cairn_onchain::testing::FIXTURE_MAX_HEAD_AGE.as_secs(),
            pki = hex::encode(PKI_SEED),
            host = hex::encode([host_seed; 32]),
        )
    }

    /// A cluster of `n ≥ 1` `cairn-kms` processes (see the module docs); `extra` is
    /// appended to every node's config (e.g. `"[log]\nanchor_interval_secs = 1\n"`).
    pub async fn start_process_cluster(&self, n: usize, extra: &str) -> ProcessCluster {
        assert!(n >= 1, "a cluster has at least one node");
        let mut nodes = vec![
            self.spawn_kms_process(cluster_host_seed(0), None, extra)
                .await,
        ];
        for i in 1..n {
            let node = self
                .spawn_kms_process(cluster_host_seed(i), Some(nodes[0].addr), extra)
                .await;
            nodes.push(node);
        }
        ProcessCluster { nodes }
    }

    /// One process node on `host_seed`: `cairn-kms describe` → its MR and device allowed
    /// on chain → (first node) the test master installed, or (`source`) `cairn-kms
    /// onboard <source>` → its address added and funded → `cairn-kms serve`, returned once
    /// it answers and its policy head has read the registration.
    pub async fn spawn_kms_process(
        &self,
        host_seed: u8,
        source: Option<std::net::SocketAddr>,
        extra: &str,
    ) -> KmsProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let port = free_port();
        let config = dir.path().join("kms.toml");
        std::fs::write(
            &config,
            self.kms_process_config(&data, host_seed, port, extra),
        )
        .expect("write KMS config");

        let described: serde_json::Value = serde_json::from_slice(
            &run_command(&config, &["describe"], &dir.path().join("describe.log")).await,
        )
        .expect("describe JSON");
        let b256 = |k: &str| -> B256 {
            described[k]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("describe: no {k}: {described}"))
        };
        self.net
            .register_kms_node(&KmsNodeRegistration {
                mr_aggregated: b256("mr_aggregated"),
                device_id: b256("device_id"),
                node: None,
            })
            .await;
        self.mine(CONFIRMATIONS).await;
        // The block that allowed the newcomer's MR and device is now the policy block;
        // the source judges onboarding at its own policy head, which polls the chain: wait
        // until it has read that block (else a loaded machine sees `denied.kms_mr`).
        let allowed_at = self.net.head_number().await.saturating_sub(CONFIRMATIONS);

        let node_address = match source {
            None => install_master(&data, 1),
            Some(source) => {
                assert!(
                    wait_policy_block_at(source, allowed_at).await,
                    "the source KMS {source} did not reach policy block {allowed_at}"
                );
                let out: serde_json::Value = serde_json::from_slice(
                    &run_command(
                        &config,
                        &["onboard", &source.to_string()],
                        &dir.path().join("onboard.log"),
                    )
                    .await,
                )
                .expect("onboard JSON");
                let address: Address = out["node_address"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("onboard: no node_address: {out}"));
                address.into_array()
            }
        };
        self.add_kms_node(node_address).await;
        let registered_at = self.net.head_number().await;

        let mut node = KmsProcess {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            host_seed,
            node_address,
            dir,
            child: None,
            restarts: 0,
        };
        node.child = Some(spawn(&config, &["serve"], &node.log_path()));
        node.wait_serving().await;
        node.wait_policy_block(registered_at.saturating_sub(CONFIRMATIONS))
            .await;
        node
    }
}

/// Poll `check` until it returns `Some`, up to [`DEADLINE`]; panics with `what`.
pub async fn poll_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
