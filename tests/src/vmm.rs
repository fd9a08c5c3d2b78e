//! A real VMM for the scenarios: `cairn_vmm::run` in-process on a temp unix socket and a
//! loopback port, its process backend running the real `cairn-guest` binary on the
//! simulator against the scenario's KMS, its pre-flight reading the scenario's anvil.
//!
//! Guests are separate processes in their own sessions: they outlive a VMM restart (that
//! is the point) and would outlive the test, so dropping a [`VmmNode`] kills every guest
//! its state directory records ([`cairn_vmm::kill_all_guests`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cairn_onchain::alloy::primitives::Address;
use cairn_protocol::env::{EnvVar, EnvVars};
use cairn_protocol::vmm::{CreateCvmRequest, CvmInfo, CvmState};
use cairn_vmm::{Config, Endpoint, Listeners, VmmClient};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{kms_client, Devnet, Kms, CONFIRMATIONS, DEADLINE, PKI_SEED};

/// A scenario's devnet with a KMS, an app of the owner deployed with `compose` allowed,
/// and a VMM with the default images.
pub async fn vmm_world(compose: &str) -> (Devnet, Kms, cairn_onchain::AppAuthClient, VmmNode) {
    let (net, kms, app) = Devnet::with_kms_and_app(Some(compose.as_bytes())).await;
    let vmm = VmmNode::start(&net, &kms, "").await;
    (net, kms, app, vmm)
}

/// An env of one variable: `API_KEY` = `value`.
pub fn api_key_env(value: &str) -> EnvVars {
    EnvVars::new(vec![EnvVar {
        key: "API_KEY".into(),
        value: value.into(),
    }])
    .expect("a valid env")
}

/// The VMM client's deploy-time env encryption (`cairn_vmm::encrypt_env`) of `vars` for
/// `app_id`, asking `kms` for the app's env key and checking it against `net`'s chain as
/// of `now`.
pub async fn encrypt_env(
    net: &Devnet,
    kms: &Kms,
    app_id: Address,
    vars: &EnvVars,
    now: u64,
) -> Result<Vec<u8>, cairn_vmm::EnvError> {
    cairn_vmm::encrypt_env(
        &kms_client(),
        &kms.url(),
        &net.client,
        app_id.into_array(),
        vars,
        now,
    )
    .await
}

/// The `cairn-guest` binary the process backend runs: `$CAIRN_GUEST_BIN`, or built
/// (once per test process) with the cargo that runs the tests.
pub fn guest_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("CAIRN_GUEST_BIN") {
            return PathBuf::from(p);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let mut cmd = Command::new(cargo);
        // Cargo gives a test process its package's variables (CARGO_PKG_NAME,
        // CARGO_MANIFEST_DIR, OUT_DIR, …). Some build scripts (ring's) track exactly those:
        // passed on, they would make this build and every build from a shell invalidate
        // each other's artifacts (ring, then everything above it) over and over.
        for (k, _) in std::env::vars_os() {
            let name = k.to_string_lossy();
            if [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
            ]
            .iter()
            .any(|p| name.starts_with(p))
                || [
                    "OUT_DIR",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                ]
                .contains(&name.as_ref())
            {
                cmd.env_remove(&k);
            }
        }
        let out = cmd
            .args([
                "build",
                "-p",
                "cairn-guest",
                "--bin",
                "cairn-guest",
                "--message-format=json-render-diagnostics",
            ])
            .current_dir(root)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run cargo build -p cairn-guest");
        assert!(out.status.success(), "cargo build -p cairn-guest failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "cairn-guest")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported the cairn-guest executable")
    })
    .clone()
}

/// The simulated host every guest of these VMMs runs on.
pub const VMM_HOST_SEED: u8 = 0x0A;

/// A VMM serving on a temp unix socket and a loopback port.
pub struct VmmNode {
    /// Holds `state/`, `vmm.sock`.
    pub dir: TempDir,
    /// Its configuration (reused by [`VmmNode::restart`]).
    pub config: Config,
    /// The unix socket.
    pub socket: PathBuf,
    /// The TCP address.
    pub tcp: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<cairn_vmm::Result<()>>>,
}

impl VmmNode {
    /// The configuration of a VMM for `net` and `kms`, with `extra` TOML appended (e.g.
    /// more `[[image]]`s), in `dir`.
    pub fn config(net: &Devnet, kms: &Kms, dir: &Path, extra: &str) -> Config {
        Config::parse(&VmmNode::config_text(net, kms, dir, extra), []).expect("VMM config")
    }

    /// [`VmmNode::config`] as TOML text (for a `cairn-vmm` process).
    pub fn config_text(net: &Devnet, kms: &Kms, dir: &Path, extra: &str) -> String {
        VmmNode::config_text_via(
            net,
            kms,
            dir,
            extra,
            net.anvil.endpoint_url().as_str(),
            5000,
        )
    }

    /// [`VmmNode::config_text`] with the chain read through `rpc` (e.g. a
    /// `cairn_onchain::testing::RpcProxy` in front of the devnet's anvil) and an RPC
    /// timeout of `timeout_ms`.
    pub fn config_text_via(
        net: &Devnet,
        kms: &Kms,
        dir: &Path,
        extra: &str,
        rpc: &str,
        timeout_ms: u64,
    ) -> String {
        // A port range of its own, so VMMs of concurrent tests never hand out each
        // other's ports: 16 ports from a port the kernel just found free.
        let lo = crate::free_port().min(u16::MAX - 16);
        let ports = [lo, lo + 15];
        format!(
            r#"
state_dir = "{state}"
[chain]
rpc_url = "{rpc}"
chain_id = {chain_id}
kms_auth = "{kms_auth}"
confirmations = {CONFIRMATIONS}
timeout_ms = {timeout_ms}
[cvm]
kms_urls = ["{kms_url}"]
port_range = [{port_lo}, {port_hi}]
approval_poll_ms = 100
stop_grace_ms = 10000
[backend]
env = {{ RUST_LOG = "info" }}
[backend.process]
guest_bin = "{guest}"
guest_args = ["--kms-trust", "simulator", "--sim-pki-seed", "{pki}", "--sim-host-seed", "{host}"]
[logs]
check_ms = 200
[[image]]
name = "cairn-os"
version = "1.0"
kind = "simulator"
{extra}
"#,
            state = dir.join("state").display(),
            rpc = rpc,
            chain_id = net.anvil.chain_id(),
            kms_auth = net.kms_auth(),
            kms_url = kms.url(),
            guest = guest_bin().display(),
            pki = hex::encode(PKI_SEED),
            host = hex::encode([VMM_HOST_SEED; 32]),
            port_lo = ports[0],
            port_hi = ports[1],
        )
    }

    /// Start a VMM for `net` and `kms`.
    pub async fn start(net: &Devnet, kms: &Kms, extra: &str) -> VmmNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = VmmNode::config(net, kms, dir.path(), extra);
        VmmNode::start_with(dir, config).await
    }

    /// Start a VMM for `net` and `kms` reading the chain through `rpc` with an RPC
    /// timeout of `timeout_ms` (see [`VmmNode::config_text_via`]).
    pub async fn start_via(
        net: &Devnet,
        kms: &Kms,
        extra: &str,
        rpc: &str,
        timeout_ms: u64,
    ) -> VmmNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = VmmNode::config_text_via(net, kms, dir.path(), extra, rpc, timeout_ms);
        let config = Config::parse(&text, []).expect("VMM config");
        VmmNode::start_with(dir, config).await
    }

    async fn start_with(dir: TempDir, config: Config) -> VmmNode {
        let socket = dir.path().join("vmm.sock");
        let mut node = VmmNode {
            dir,
            config,
            socket,
            tcp: "127.0.0.1:0".parse().expect("addr"),
            stop: None,
            task: None,
        };
        node.serve().await;
        node
    }

    async fn serve(&mut self) {
        let unix = cairn_vmm::bind_unix(&self.socket).expect("bind VMM socket");
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind VMM port");
        self.tcp = tcp.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(cairn_vmm::run(
            Listeners {
                tcp: Some(tcp),
                unix: Some(unix),
            },
            self.config.clone(),
            async {
                let _ = stopped.await;
            },
        )));
        // Serving once the socket answers.
        let deadline = Instant::now() + DEADLINE;
        while self.client().list().await.is_err() {
            assert!(Instant::now() < deadline, "the VMM did not start serving");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stop serving (the guests keep running) and wait for the server to return.
    pub async fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("VMM task").expect("VMM server");
        }
    }

    /// Stop this VMM and start a new one on the same state directory and config (the
    /// guests keep running across it).
    pub async fn restart(&mut self) {
        self.shutdown().await;
        self.serve().await;
    }

    /// A client on the unix socket.
    pub fn client(&self) -> VmmClient {
        VmmClient::new(Endpoint::Unix(self.socket.clone()), None)
            .with_timeout(Duration::from_secs(60))
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.config.state_dir.clone()
    }

    /// Poll `GET /v1/cvms/{id}` until `done` holds, up to `within`.
    pub async fn wait_until(
        &self,
        id: &str,
        within: Duration,
        done: impl Fn(&CvmInfo) -> bool,
    ) -> CvmInfo {
        let deadline = Instant::now() + within;
        let c = self.client();
        loop {
            let info = c.get(id).await.expect("GET cvm");
            if done(&info) {
                return info;
            }
            assert!(
                Instant::now() < deadline,
                "CVM {id} did not get there in {within:?}; last: {info:#?}\nconsole:\n{}",
                String::from_utf8_lossy(&c.logs(id, 40).await.unwrap_or_default())
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Poll until CVM `id` is `state`.
    pub async fn wait_state(&self, id: &str, state: CvmState) -> CvmInfo {
        self.wait_until(id, DEADLINE, |i| i.state == state).await
    }

    /// Create `req` and poll until it runs; the running CVM.
    pub async fn create_running(&self, req: &CreateCvmRequest) -> CvmInfo {
        let created = self.client().create(req).await.expect("create the CVM");
        self.wait_state(&created.id, CvmState::Running).await
    }
}

impl Drop for VmmNode {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        cairn_vmm::kill_all_guests(&self.config.state_dir);
    }
}

/// A `process` compose whose app serves `API_KEY=<value>;log_index=<n>` over HTTP on
/// the host port mapped to its port 8080 (it reads its release receipt from the keys
/// directory). `tag` makes distinct versions.
pub fn web_compose(tag: &str) -> String {
    let script = r#"
import http.server, json, os
port = int(os.environ["CAIRN_PORT_8080"])
receipt = json.load(open(os.path.join(os.environ["CAIRN_KEYS_DIR"], "receipt.json")))
body = ("API_KEY=%s;log_index=%d;version=%s" % (os.environ.get("API_KEY", ""), receipt["log_index"], os.environ["VERSION"])).encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
print("web app listening on", port, flush=True)
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"#;
    serde_json::json!({
        "manifest_version": 2,
        "name": "web",
        "runner": "process",
        "process": {"command": ["python3", "-c", script], "env": {"VERSION": tag}},
        "kms_enabled": true,
        "allowed_envs": ["API_KEY"],
    })
    .to_string()
}

/// A `process` compose that runs until stopped, with a child of its own (so stopping
/// must reach more than the guest).
pub fn sleeper_compose(tag: &str) -> String {
    serde_json::json!({
        "manifest_version": 2,
        "name": "sleeper",
        "runner": "process",
        "process": {
            "command": ["/bin/sh", "-c", "echo sleeper up; sleep 3600 & wait"],
            "env": {"VERSION": tag}
        },
        "kms_enabled": true,
    })
    .to_string()
}

/// `GET http://127.0.0.1:<port>/` polled until it answers 200 (up to [`DEADLINE`]): the
/// body.
pub async fn app_answer(port: u16) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some((200, body)) = crate::http_get(port, "/").await {
            return String::from_utf8_lossy(&body).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "nothing answered on 127.0.0.1:{port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Live processes whose working directory is inside `dir` and whose command name is
/// `comm` (e.g. every `cairn-guest` of one CVM).
pub fn processes_in(dir: &Path, comm: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let proc = Path::new("/proc").join(pid.to_string());
            let alive = std::fs::read_to_string(proc.join("stat"))
                .ok()
                .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with(|c| c != 'Z')))
                .unwrap_or(false);
            alive
                && std::fs::read_to_string(proc.join("comm")).is_ok_and(|c| c.trim() == comm)
                && std::fs::read_link(proc.join("cwd")).is_ok_and(|c| c.starts_with(dir))
        })
        .collect()
}

/// Whether process `pid` is alive (not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with(|c| c != 'Z')))
        .unwrap_or(false)
}

/// The session members of `sid` that are alive.
pub fn session(sid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 2..];
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    Some(f.first()? != &"Z" && f.get(3)?.parse::<u32>().ok()? == sid)
                })
                .unwrap_or(false)
        })
        .collect()
}
