//! A VMM in a temp dir, served in-process; its chain is an address nobody listens on, so
//! anything that reaches the chain fails closed with 503.

use std::path::PathBuf;
use std::time::Duration;

use cairn_vmm::{Config, Endpoint, Listeners, VmmClient};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Served {
    pub dir: TempDir,
    pub socket: PathBuf,
    pub tcp: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<cairn_vmm::Result<()>>>,
}

/// An address nothing listens on.
pub fn dead_rpc() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

/// A config for a VMM in `dir` (extra TOML appended at the top level or as sections).
pub fn config(dir: &std::path::Path, extra: &str) -> Config {
    let text = format!(
        r#"
state_dir = "{}"
[chain]
rpc_url = "{}"
chain_id = 31337
kms_auth = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
timeout_ms = 500
[[image]]
name = "cairn-os"
version = "1.0"
kind = "simulator"
{extra}
"#,
        dir.join("state").display(),
        dead_rpc()
    );
    Config::parse(&text, []).unwrap()
}

impl Served {
    pub async fn start(extra: &str) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), extra);
        Served::start_with(dir, config).await
    }

    pub async fn start_with(dir: TempDir, config: Config) -> Served {
        let socket = dir.path().join("vmm.sock");
        let unix = cairn_vmm::bind_unix(&socket).unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(cairn_vmm::run(
            Listeners {
                tcp: Some(tcp),
                unix: Some(unix),
            },
            config,
            async {
                let _ = stopped.await;
            },
        ));
        Served {
            dir,
            socket,
            tcp: addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn unix_client(&self) -> VmmClient {
        VmmClient::new(Endpoint::Unix(self.socket.clone()), None)
            .with_timeout(Duration::from_secs(20))
    }

    pub fn tcp_client(&self, token: Option<&str>) -> VmmClient {
        VmmClient::new(Endpoint::Tcp(self.tcp), token.map(str::to_owned))
            .with_timeout(Duration::from_secs(20))
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

/// A minimal valid process compose.
pub fn compose(tag: &str) -> String {
    format!(
        r#"{{"manifest_version":2,"name":"demo","runner":"process","process":{{"command":["/bin/true"],"env":{{"TAG":"{tag}"}}}},"kms_enabled":true}}"#
    )
}

pub fn request(name: &str) -> cairn_protocol::vmm::CreateCvmRequest {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "compose": compose("v1"),
        "image": "cairn-os:1.0",
        "kms_urls": ["https://127.0.0.1:1"],
    }))
    .unwrap()
}
