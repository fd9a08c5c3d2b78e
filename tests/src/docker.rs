//! Docker plumbing of the docker-compose scenarios: the engine `scripts/setup.sh`
//! guarantees, an app image that talks to the guest agent, and independent looks at the
//! engine (the containers of a Compose project) that do not go through the runner.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::DEADLINE;

/// The FROM-scratch busybox image `scripts/setup.sh` builds.
pub const BUSYBOX_IMAGE: &str = "cairn/busybox:local";

/// Panic (the test fails, never skips) unless a Docker engine answers and the base image
/// exists: `scripts/setup.sh` provides both.
pub fn require_docker() {
    let info = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output();
    match info {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "no Docker engine answers `docker info` ({}): run scripts/setup.sh as root",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("no docker CLI ({e}): run scripts/setup.sh as root"),
    }
    let image = Command::new("docker")
        .args(["image", "inspect", BUSYBOX_IMAGE])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("docker image inspect");
    assert!(
        image.success(),
        "no image {BUSYBOX_IMAGE}: run scripts/setup.sh"
    );
}

fn run(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    crate::stdout_of_success(what, out)
}

/// An image with busybox and `agent-call` (`tests/docker/agent-call.rs`, compiled here
/// into a static binary): an app that reaches the guest agent over
/// `/var/run/dstack.sock` as the dstack SDKs do. Built once per test process; the tag
/// is the binary's hash, so concurrent test processes build the same image.
pub fn agent_app_image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            require_docker();
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/agent-call.rs");
            let ctx = tempfile::tempdir().expect("tempdir");
            let bin = ctx.path().join("agent-call");
            let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
            run(
                Command::new(rustc)
                    .args([
                        "--edition",
                        "2021",
                        "-O",
                        "-C",
                        "target-feature=+crt-static",
                    ])
                    .args(["-C", "strip=symbols", "-o"])
                    .arg(&bin)
                    .arg(&src),
                "compiling tests/docker/agent-call.rs into a static binary",
            );
            let digest = Sha256::digest(std::fs::read(&bin).expect("read agent-call"));
            let tag = format!("cairn-e2e/agent-app:{}", &hex::encode(digest)[..16]);
            let exists = Command::new("docker")
                .args(["image", "inspect", &tag])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !exists {
                std::fs::write(
                    ctx.path().join("Dockerfile"),
                    format!("FROM {BUSYBOX_IMAGE}\nCOPY agent-call /bin/agent-call\n"),
                )
                .expect("write Dockerfile");
                run(
                    Command::new("docker")
                        .env("DOCKER_BUILDKIT", "0")
                        .args(["build", "-q", "-t", &tag])
                        .arg(ctx.path()),
                    "docker build of the agent-app image",
                );
            }
            tag
        })
        .clone()
}

/// The containers of Compose project `project`, from the engine: `(name, state)`.
pub fn project_containers(project: &str) -> Vec<(String, String)> {
    let out = run(
        Command::new("docker")
            .args(["ps", "-a", "--filter"])
            .arg(format!("label=com.docker.compose.project={project}"))
            .args(["--format", "{{.Names}}\t{{.State}}"]),
        "docker ps",
    );
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, s)| (n.to_owned(), s.to_owned()))
        .collect()
}

/// The logs of every container of `project` (for failure messages).
pub fn project_logs(project: &str) -> String {
    let mut all = String::new();
    for (name, state) in project_containers(project) {
        let out = Command::new("docker")
            .args(["logs", "--tail", "50", &name])
            .stdin(Stdio::null())
            .output();
        let text = out
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_else(|e| e.to_string());
        all.push_str(&format!("--- {name} ({state})\n{text}\n"));
    }
    all
}

/// The Compose projects on the engine whose name starts with `prefix` (containers of
/// every state), e.g. `cairn-<compose name>-` for the CVMs of one compose.
pub fn projects_with_prefix(prefix: &str) -> Vec<String> {
    let out = run(
        Command::new("docker")
            .args(["ps", "-a", "--filter", "label=com.docker.compose.project"])
            .args(["--format", "{{.Label \"com.docker.compose.project\"}}"]),
        "docker ps",
    );
    let mut projects: Vec<String> = String::from_utf8_lossy(&out)
        .lines()
        .filter(|p| p.starts_with(prefix))
        .map(str::to_owned)
        .collect();
    projects.sort();
    projects.dedup();
    projects
}

/// Removes every container of a Compose project when dropped, so a failing test leaves
/// nothing running on the shared engine.
pub struct ProjectGuard(pub String);

impl Drop for ProjectGuard {
    fn drop(&mut self) {
        let names: Vec<String> = project_containers_quiet(&self.0);
        if !names.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&names)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn project_containers_quiet(project: &str) -> Vec<String> {
    Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=com.docker.compose.project={project}"))
        .stdin(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `GET path` from `127.0.0.1:port` (HTTP/1.0): the status and the body, or `None` when
/// nothing answers.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, Vec<u8>)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp))
        .await
        .ok()?
        .ok()?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = std::str::from_utf8(&resp[..split])
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((status, resp[split + 4..].to_vec()))
}

/// Poll `GET path` until it answers 200, up to [`DEADLINE`]; on timeout, panic with the
/// project's container logs.
pub async fn wait_for_http(port: u16, path: &str, project: &str) -> Vec<u8> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some((200, body)) = http_get(port, path).await {
            return body;
        }
        if Instant::now() > deadline {
            panic!(
                "nothing served {path} on 127.0.0.1:{port} within {DEADLINE:?}; containers:\n{}",
                project_logs(project)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An `app-compose.json` (runner `docker-compose`, `allowed_envs` `API_KEY` and `PORT`)
/// whose one service, on the host network, mounts the agent socket where dstack apps do
/// and serves with busybox httpd on `$PORT`: `/env` (the decrypted `API_KEY`, passed by
/// `${API_KEY}` substitution), `/getkey.json` (a `GetKey` answer fetched over the agent
/// socket) and `/info.json` (`Info`).
pub fn agent_app_compose(name: &str, image: &str) -> String {
    agent_app_compose_on(name, image, "${PORT}")
}

/// [`agent_app_compose`] serving on the port `port` substitutes to: `"${PORT}"` (the
/// deployer's env), or `"${CAIRN_PORT_8080}"` (the host port a VMM mapped to the app's
/// port 8080, which the guest passes to the app).
pub fn agent_app_compose_on(name: &str, image: &str, port: &str) -> String {
    let compose = format!(
        r#"services:
  app:
    image: {image}
    network_mode: host
    environment:
      API_KEY: ${{API_KEY}}
      PORT: {port}
    volumes:
      - /var/run/dstack.sock:/var/run/dstack.sock
    command:
      - /bin/sh
      - -c
      - |
        set -e
        mkdir -p /www
        printf '%s' "$$API_KEY" > /www/env
        agent-call GetKey '{{"path":"e2e/docker","purpose":"signing"}}' > /www/getkey.json
        agent-call Info '{{}}' > /www/info.json
        exec httpd -f -p 127.0.0.1:$$PORT -h /www
"#
    );
    serde_json::json!({
        "manifest_version": 2,
        "name": name,
        "runner": "docker-compose",
        "docker_compose_file": compose,
        "kms_enabled": true,
        "allowed_envs": ["API_KEY", "PORT"],
    })
    .to_string()
}
