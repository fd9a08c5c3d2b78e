//! Starting the app: the `process` runner (a measured command line) and the
//! `docker-compose` runner (only where a Docker engine answers).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cairn_protocol::compose::{ProcessSpec, Runner};
use cairn_protocol::env::EnvVar;
use tokio::process::{Child, Command};

use crate::error::{Error, Result};
use crate::keydir;

/// How long `docker info` may take to answer.
pub const DOCKER_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the app finds Cairn's things.
#[derive(Debug, Clone)]
pub struct AppEnv {
    /// The keys directory (exported as `CAIRN_KEYS_DIR`).
    pub keys_dir: PathBuf,
    /// The guest agent's unix socket, if served (exported as `DSTACK_SIMULATOR_ENDPOINT`,
    /// the variable the dstack SDKs read for a non-default endpoint, and `CAIRN_AGENT_SOCKET`).
    pub agent_socket: Option<PathBuf>,
    /// A private directory for runner files (docker-compose file, env file).
    pub work_dir: PathBuf,
    /// The docker CLI to run (`docker` from PATH by default).
    pub docker: PathBuf,
}

/// The docker CLI used unless configured otherwise.
pub const DEFAULT_DOCKER: &str = "docker";

/// Start the app. `env` holds the decrypted, allowed variables.
pub async fn start(runner: Runner<'_>, name: &str, env: &[EnvVar], app: &AppEnv) -> Result<Child> {
    match runner {
        Runner::Process(spec) => start_process(spec, env, app),
        Runner::DockerCompose(file) => start_docker_compose(file, name, env, app).await,
    }
}

fn cairn_env(app: &AppEnv) -> Vec<(String, String)> {
    let mut v = vec![(
        "CAIRN_KEYS_DIR".to_owned(),
        app.keys_dir.display().to_string(),
    )];
    if let Some(s) = &app.agent_socket {
        v.push(("CAIRN_AGENT_SOCKET".to_owned(), s.display().to_string()));
        v.push((
            "DSTACK_SIMULATOR_ENDPOINT".to_owned(),
            s.display().to_string(),
        ));
    }
    v
}

fn start_process(spec: &ProcessSpec, env: &[EnvVar], app: &AppEnv) -> Result<Child> {
    let (program, args) = spec
        .command
        .split_first()
        .ok_or_else(|| Error::Start("empty command".to_owned()))?;
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(spec.env.iter());
    cmd.envs(env.iter().map(|v| (v.key.as_str(), v.value.as_str())));
    cmd.envs(cairn_env(app));
    cmd.stdin(Stdio::null());
    // Its own process group, so stopping the app reaches everything it started.
    cmd.process_group(0);
    cmd.spawn()
        .map_err(|e| Error::Start(format!("spawning {program:?}: {e}")))
}

/// How long [`stop`] waits after SIGTERM before it sends SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Stop the app started by the `process` runner: SIGTERM to its whole process group,
/// then SIGKILL if it has not exited within `grace`. Signals are sent with the
/// system's `kill` command (no `unsafe` here).
pub async fn stop(child: &mut Child, grace: Duration) -> Result<()> {
    let Some(pid) = child.id() else {
        return Ok(()); // already reaped
    };
    signal_group(pid, "TERM").await;
    if tokio::time::timeout(grace, child.wait()).await.is_ok() {
        signal_group(pid, "KILL").await; // stragglers of the group, if any
        return Ok(());
    }
    signal_group(pid, "KILL").await;
    child
        .wait()
        .await
        .map(|_| ())
        .map_err(|e| Error::Start(format!("waiting for the stopped app: {e}")))
}

async fn signal_group(pgid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if let Err(e) = status {
        tracing::warn!(error = %e, "could not run kill to stop the app");
    }
}

/// Whether a Docker engine answers `<docker> info`.
pub async fn docker_available(docker: &Path) -> std::result::Result<(), String> {
    let probe = Command::new(docker)
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(DOCKER_PROBE_TIMEOUT, probe).await {
        Err(_) => Err("docker info timed out".to_owned()),
        Ok(Err(e)) => Err(format!("docker: {e}")),
        Ok(Ok(s)) if !s.success() => Err(format!("docker info exited with {s}")),
        Ok(Ok(_)) => Ok(()),
    }
}

async fn start_docker_compose(
    file: &str,
    name: &str,
    env: &[EnvVar],
    app: &AppEnv,
) -> Result<Child> {
    docker_available(&app.docker)
        .await
        .map_err(Error::DockerUnavailable)?;
    keydir::ensure_private_dir(&app.work_dir)?;
    keydir::write_private(&app.work_dir, "docker-compose.yaml", file.as_bytes())?;
    let mut env_file = String::new();
    for (k, v) in cairn_env(app) {
        env_file.push_str(&format!("{k}={v}\n"));
    }
    for v in env {
        // docker's env-file format has no quoting: one line per variable.
        if v.value.contains('\n') {
            return Err(Error::Start(format!(
                "env var {} has a newline, which docker env files cannot carry",
                v.key
            )));
        }
        env_file.push_str(&format!("{}={}\n", v.key, v.value));
    }
    keydir::write_private(&app.work_dir, ".env", env_file.as_bytes())?;
    let compose_path: &Path = &app.work_dir.join("docker-compose.yaml");
    let mut cmd = Command::new(&app.docker);
    cmd.args(["compose", "-p", &name.to_ascii_lowercase(), "-f"])
        .arg(compose_path)
        .arg("--env-file")
        .arg(app.work_dir.join(".env"))
        .args(["up", "-d"])
        .stdin(Stdio::null());
    cmd.spawn()
        .map_err(|e| Error::Start(format!("docker compose: {e}")))
}
