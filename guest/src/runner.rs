//! Starting, watching and stopping the app: the `process` runner (a measured command
//! line) and the `docker-compose` runner (dstack's, where a Docker engine answers).
//!
//! [`start`] returns an [`App`]: [`App::wait`] resolves when the app exits (the process
//! exits; every container of the Compose project has stopped), [`App::stop`] stops it
//! (SIGTERM then SIGKILL to the process group; `docker compose down`). See `compose` for
//! what a docker-compose app's containers get and how the project is named.

mod compose;
mod exec;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cairn_protocol::compose::{ProcessSpec, Runner};
use cairn_protocol::env::EnvVar;
use sha2::{Digest, Sha256};
use tokio::process::{Child, Command};

use crate::error::{Error, Result};

pub use compose::{
    agent_override, check_env, check_socket_path, decrypted_env_file, parse_config, parse_ps,
    probe, ComposeApp, ComposeCli, Service, AGENT_MOUNT_TARGETS, AGENT_OVERRIDE_FILE, AGENT_WAIT,
    COMPOSE_FILE, CONFIG_TIMEOUT, DECRYPTED_ENV_FILE, DEFAULT_DOCKER_COMPOSE, DOWN_EXTRA,
    MAX_CLI_OUTPUT, MAX_ERROR_TAIL, MAX_SERVICES, MAX_SOCKET_PATH, POLL_INTERVAL, PROBE_TIMEOUT,
    PS_TIMEOUT, UP_TIMEOUT,
};

/// How long `docker info` may take to answer.
pub const DOCKER_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the app finds Cairn's things.
#[derive(Debug, Clone)]
pub struct AppEnv {
    /// The keys directory (exported as `CAIRN_KEYS_DIR`).
    pub keys_dir: PathBuf,
    /// The guest agent's unix socket, if served (exported as `DSTACK_SIMULATOR_ENDPOINT`,
    /// the variable the dstack SDKs read for a non-default endpoint, and `CAIRN_AGENT_SOCKET`;
    /// mounted into the containers that mount `/var/run/dstack.sock`).
    pub agent_socket: Option<PathBuf>,
    /// A private directory for runner files; the Compose project directory.
    pub work_dir: PathBuf,
    /// The docker CLI to run (`docker` from PATH by default).
    pub docker: PathBuf,
    /// The Compose project name ([`project_name`]), unique per instance.
    pub project: String,
}

/// The docker CLI used unless configured otherwise.
pub const DEFAULT_DOCKER: &str = "docker";

/// Why the runner could not start, watch or stop the app.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// A CLI could not be spawned.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading a CLI's output or waiting for a process failed.
    #[error("{what}: {source}")]
    Io {
        /// The step.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A CLI did not finish in time (it was killed).
    #[error("{what} did not finish within {after:?}")]
    Timeout {
        /// The step.
        what: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// A CLI exited unsuccessfully.
    #[error("{what} failed ({status}): {stderr}")]
    Command {
        /// The step.
        what: &'static str,
        /// Its exit status.
        status: String,
        /// The tail of its stderr, env values redacted.
        stderr: String,
    },
    /// A CLI's output is not what was expected (or too large).
    #[error("{what}: unexpected output: {reason}")]
    BadOutput {
        /// The step.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Neither `docker compose` (v2) nor `docker-compose` (v1) works here.
    #[error("no Compose CLI: docker compose (v2): {v2}; docker-compose (v1): {v1}")]
    NoComposeCli {
        /// Why the v2 plugin did not answer.
        v2: Box<RunnerError>,
        /// Why the v1 CLI did not answer.
        v1: Box<RunnerError>,
    },
    /// A decrypted env var would steer the Compose CLI itself (`PATH`, `HOME`,
    /// `DOCKER_*`, `COMPOSE_*`).
    #[error("env var {0} is reserved for the docker-compose runner (it would steer the Compose CLI, not the app)")]
    ReservedEnvName(String),
    /// A decrypted env value contains a NUL byte, which no process environment carries.
    #[error("env var {0} has a NUL byte")]
    EnvValueHasNul(String),
    /// The agent socket path cannot be put in a bind-mount spec.
    #[error("agent socket path {path:?}: {reason}")]
    AgentSocketPath {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// A service mounts the agent socket, but this guest serves no agent (`--no-agent`).
    #[error("service {0} mounts the guest agent socket, but the agent is not served")]
    NoAgentForMount(String),
    /// The agent socket did not accept connections in time, so `up` was not run.
    #[error("the guest agent socket {path:?} did not answer within {waited:?}")]
    AgentNotServed {
        /// The socket.
        path: PathBuf,
        /// How long `up` waited.
        waited: Duration,
    },
    /// A runner file or the work directory could not be written.
    #[error("{path:?}: {source}")]
    File {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `down` returned, yet containers of the project remain.
    #[error("containers left after compose down: {}", .0.join(", "))]
    ContainersLeft(Vec<String>),
    /// The task running `up` failed (panicked or was cancelled).
    #[error("compose up task: {0}")]
    Task(String),
}

/// One container of a Compose project, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    /// The container name.
    pub name: String,
    /// The Compose service it belongs to.
    pub service: String,
    /// Docker's state: `created`, `running`, `paused`, `restarting`, `removing`,
    /// `exited`, `dead`.
    pub state: String,
    /// The exit code, once exited.
    pub exit_code: Option<i32>,
}

impl ContainerState {
    /// Whether the container runs (or is about to run again).
    pub fn is_running(&self) -> bool {
        matches!(self.state.as_str(), "running" | "restarting" | "paused")
    }
}

/// How an app ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppExit {
    /// The process runner's child exited.
    Process(std::process::ExitStatus),
    /// Every container of the Compose project stopped (their last states).
    Compose(Vec<ContainerState>),
}

impl AppExit {
    /// The process exited 0, or every container exited 0.
    pub fn success(&self) -> bool {
        match self {
            AppExit::Process(s) => s.success(),
            AppExit::Compose(c) => c.iter().all(|c| c.exit_code == Some(0)),
        }
    }
}

impl std::fmt::Display for AppExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppExit::Process(s) => write!(f, "{s}"),
            AppExit::Compose(c) if c.is_empty() => write!(f, "no container left"),
            AppExit::Compose(c) => {
                let parts: Vec<String> = c
                    .iter()
                    .map(|c| match c.exit_code {
                        Some(code) => format!("{} exited {code}", c.name),
                        None => format!("{} {}", c.name, c.state),
                    })
                    .collect();
                write!(f, "{}", parts.join(", "))
            }
        }
    }
}

/// A started app.
#[derive(Debug)]
pub struct App {
    inner: AppInner,
}

#[derive(Debug)]
enum AppInner {
    Process(Child),
    Compose(ComposeApp),
}

impl App {
    /// The process id (`process` runner, until reaped).
    pub fn pid(&self) -> Option<u32> {
        match &self.inner {
            AppInner::Process(c) => c.id(),
            AppInner::Compose(_) => None,
        }
    }

    /// The docker-compose app (`docker-compose` runner).
    pub fn compose(&self) -> Option<&ComposeApp> {
        match &self.inner {
            AppInner::Process(_) => None,
            AppInner::Compose(c) => Some(c),
        }
    }

    /// The docker-compose app, mutably (to await [`ComposeApp::ready`]).
    pub fn compose_mut(&mut self) -> Option<&mut ComposeApp> {
        match &mut self.inner {
            AppInner::Process(_) => None,
            AppInner::Compose(c) => Some(c),
        }
    }

    /// Wait until the app exits. Cancel-safe.
    pub async fn wait(&mut self) -> Result<AppExit> {
        match &mut self.inner {
            AppInner::Process(c) => c.wait().await.map(AppExit::Process).map_err(|source| {
                Error::Runner(RunnerError::Io {
                    what: "waiting for the app",
                    source,
                })
            }),
            AppInner::Compose(c) => Ok(AppExit::Compose(c.wait().await?)),
        }
    }

    /// Stop the app: the process runner's whole process group gets SIGTERM, then SIGKILL
    /// after `grace`; a docker-compose app is taken `down` (containers get `grace` to stop).
    pub async fn stop(&mut self, grace: Duration) -> Result<()> {
        match &mut self.inner {
            AppInner::Process(c) => stop_process(c, grace).await,
            AppInner::Compose(c) => Ok(c.stop(grace).await?),
        }
    }
}

/// The Compose project name of an instance: `cairn-<name>-<12 hex>`, where the hex is
/// the start of the instance id or, without one (`no_instance_id`), of
/// SHA-256(app id ‖ work dir). Lower case `[a-z0-9_-]`, at most 59 characters, so both
/// Compose CLIs take it as is; two CVMs on one host never share a project.
pub fn project_name(app_name: &str, app_id: &[u8], instance_id: &[u8], work_dir: &Path) -> String {
    let tag = if instance_id.len() >= 6 {
        hex::encode(&instance_id[..6])
    } else {
        let d = Sha256::new()
            .chain_update(app_id)
            .chain_update(work_dir.as_os_str().as_encoded_bytes())
            .finalize();
        hex::encode(&d[..6])
    };
    let name: String = app_name
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '_' | '-' => Some(c),
            'A'..='Z' => Some(c.to_ascii_lowercase()),
            '.' => Some('-'),
            _ => None,
        })
        .take(40)
        .collect();
    if name.is_empty() {
        format!("cairn-{tag}")
    } else {
        format!("cairn-{name}-{tag}")
    }
}

/// Start the app. `env` holds the decrypted, allowed variables.
pub async fn start(runner: Runner<'_>, env: &[EnvVar], app: &AppEnv) -> Result<App> {
    let inner = match runner {
        Runner::Process(spec) => AppInner::Process(start_process(spec, env, app)?),
        Runner::DockerCompose(file) => {
            AppInner::Compose(compose::start(file, env, cairn_compose_vars(app), app).await?)
        }
    };
    Ok(App { inner })
}

/// The variables a process app gets besides the decrypted env: the compose variables,
/// and the agent socket again as `DSTACK_SIMULATOR_ENDPOINT` (where the dstack SDKs look
/// for it).
fn cairn_env(app: &AppEnv) -> Vec<(String, String)> {
    let mut v = cairn_compose_vars(app);
    if let Some(s) = &app.agent_socket {
        v.push((
            "DSTACK_SIMULATOR_ENDPOINT".to_owned(),
            s.display().to_string(),
        ));
    }
    v
}

/// The variables a compose file may substitute besides the decrypted env: the keys dir
/// and the agent socket's host path (containers get neither unless the compose mounts
/// them; the agent socket reaches `/var/run/dstack.sock` mounts by itself).
fn cairn_compose_vars(app: &AppEnv) -> Vec<(String, String)> {
    let mut v = vec![(
        "CAIRN_KEYS_DIR".to_owned(),
        app.keys_dir.display().to_string(),
    )];
    if let Some(s) = &app.agent_socket {
        v.push(("CAIRN_AGENT_SOCKET".to_owned(), s.display().to_string()));
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

/// How long [`App::stop`] lets the app stop before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Stop the app started by the `process` runner: SIGTERM to its whole process group,
/// then SIGKILL if it has not exited within `grace`. Signals are sent with the
/// system's `kill` command (no `unsafe` here).
async fn stop_process(child: &mut Child, grace: Duration) -> Result<()> {
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

/// Whether a Docker engine answers `<docker> info` and a Compose CLI (`docker compose`
/// or `docker-compose`) runs.
pub async fn docker_available(docker: &Path) -> std::result::Result<(), String> {
    let probe_engine = Command::new(docker)
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(DOCKER_PROBE_TIMEOUT, probe_engine).await {
        Err(_) => return Err("docker info timed out".to_owned()),
        Ok(Err(e)) => return Err(format!("docker: {e}")),
        Ok(Ok(s)) if !s.success() => return Err(format!("docker info exited with {s}")),
        Ok(Ok(_)) => {}
    }
    compose::probe(docker, Path::new(DEFAULT_DOCKER_COMPOSE))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_per_instance_and_valid_for_both_clis() {
        let id_a = [0xab; 20];
        let id_b = [0xcd; 20];
        let a = project_name("My.App_1", &[1; 20], &id_a, Path::new("/w/a"));
        let b = project_name("My.App_1", &[1; 20], &id_b, Path::new("/w/a"));
        assert_eq!(a, "cairn-my-app_1-abababababab");
        assert_ne!(a, b);
        // Without an instance id, the work dir tells two CVMs of one app apart.
        let c = project_name("app", &[1; 20], &[], Path::new("/w/c"));
        let d = project_name("app", &[1; 20], &[], Path::new("/w/d"));
        assert_ne!(c, d);
        assert_eq!(c, project_name("app", &[1; 20], &[], Path::new("/w/c")));
        let long = project_name(&"X".repeat(64), &[1; 20], &id_a, Path::new("/w"));
        for p in [&a, &b, &c, &d, &long] {
            assert!(p.len() <= 59, "{p}");
            assert!(
                p.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'-'
                    || b == b'_'),
                "{p}"
            );
        }
        assert_eq!(
            project_name("...", &[1; 20], &id_a, Path::new("/w")),
            "cairn-----abababababab"
        );
    }

    #[test]
    fn compose_exit_success_needs_every_container_to_exit_zero() {
        let c = |code| ContainerState {
            name: "p-a-1".into(),
            service: "a".into(),
            state: "exited".into(),
            exit_code: code,
        };
        assert!(AppExit::Compose(vec![c(Some(0)), c(Some(0))]).success());
        assert!(!AppExit::Compose(vec![c(Some(0)), c(Some(1))]).success());
        assert!(!AppExit::Compose(vec![c(None)]).success());
        assert_eq!(
            AppExit::Compose(vec![c(Some(3))]).to_string(),
            "p-a-1 exited 3"
        );
    }
}
