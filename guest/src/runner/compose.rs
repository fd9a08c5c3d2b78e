//! The `docker-compose` runner: dstack's way of running an app, with either Compose CLI.
//!
//! ```text
//! probe: `docker compose version` (v2 plugin) else `docker-compose version` (v1)
//! work dir (0700):  docker-compose.yaml      the compose file, byte-exact (0600)
//!                   .decrypted-env           the decrypted env, dstack's format (0600)
//!                   .cairn-agent.json        override: the agent socket for the services
//!                                            that mount /var/run/dstack.sock (0600)
//! `config`  → which services mount the agent socket (and: the file is valid)
//! task:     wait until the agent socket answers → `up -d --remove-orphans`
//! wait:     poll `docker ps -a --filter label=com.docker.compose.project=<project>`
//! stop:     `down --remove-orphans -t <grace>`, then no container of the project remains
//! ```
//!
//! Like dstack (whose `app-compose.service` loads `.decrypted-env` as its
//! `EnvironmentFile=` and runs `docker compose up`), the decrypted env vars are the
//! environment of the Compose CLI: a service sees a secret only through `${NAME}`
//! substitution in its own `environment:` (or an explicit `env_file: .decrypted-env`),
//! never implicitly. The agent socket reaches exactly the services whose compose mounts
//! `/var/run/dstack.sock` (or the legacy `/var/run/tappd.sock`), whatever host path the
//! compose names there: on a host that runs many CVMs the literal `/var/run/dstack.sock`
//! would be someone else's agent.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_protocol::env::EnvVar;
use tokio::process::Command;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use super::exec::{self, Captured};
use super::{AppEnv, ContainerState, RunnerError};

/// The compose file in the work dir (the project directory, like dstack's `/dstack`).
pub const COMPOSE_FILE: &str = "docker-compose.yaml";
/// The decrypted env in the work dir, in dstack's `.decrypted-env` format.
pub const DECRYPTED_ENV_FILE: &str = ".decrypted-env";
/// The override file that points the agent mounts at this CVM's agent socket (JSON,
/// which Compose reads as YAML).
pub const AGENT_OVERRIDE_FILE: &str = ".cairn-agent.json";
/// Container paths where dstack apps mount the guest agent socket.
pub const AGENT_MOUNT_TARGETS: [&str; 2] = ["/var/run/dstack.sock", "/var/run/tappd.sock"];
/// The Compose v1 CLI looked up on `PATH` when the docker CLI has no `compose` plugin.
pub const DEFAULT_DOCKER_COMPOSE: &str = "docker-compose";

/// How long a `version` probe of a Compose CLI may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `config` may take.
pub const CONFIG_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `up -d` may take (it may build or pull images).
pub const UP_TIMEOUT: Duration = Duration::from_secs(600);
/// How long `down` may take beyond the containers' stop grace.
pub const DOWN_EXTRA: Duration = Duration::from_secs(60);
/// How long one `docker ps` may take.
pub const PS_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `up` waits for the guest agent's socket to accept connections.
pub const AGENT_WAIT: Duration = Duration::from_secs(60);
/// How often [`ComposeApp::wait`] looks at the containers.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Output kept from one CLI run (the rest is read and dropped).
pub const MAX_CLI_OUTPUT: usize = 1024 * 1024;
/// How much of a failing command's stderr an error carries.
pub const MAX_ERROR_TAIL: usize = 4096;
/// Most services one compose may have.
pub const MAX_SERVICES: usize = 256;
/// Longest agent socket path accepted (it goes into a bind-mount spec).
pub const MAX_SOCKET_PATH: usize = 1024;
/// Env values shorter than this are not redacted from CLI messages (they would mangle
/// every message and are no secret worth the name).
const MIN_REDACTED_LEN: usize = 4;

/// Guest environment variables the Compose CLI keeps (everything else is cleared).
const PASSTHROUGH_ENV: [&str; 7] = [
    "PATH",
    "HOME",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "DOCKER_CONTEXT",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
];

/// Which Compose CLI runs the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComposeCli {
    /// `docker compose` (the v2 plugin of the docker CLI).
    V2 {
        /// The docker CLI.
        docker: PathBuf,
    },
    /// `docker-compose` (the v1 Python CLI).
    V1 {
        /// The `docker-compose` program.
        program: PathBuf,
    },
}

impl ComposeCli {
    fn command(&self) -> Command {
        match self {
            ComposeCli::V2 { docker } => {
                let mut c = Command::new(docker);
                c.arg("compose");
                c
            }
            ComposeCli::V1 { program } => Command::new(program),
        }
    }
}

impl std::fmt::Display for ComposeCli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComposeCli::V2 { docker } => write!(f, "{} compose (v2)", docker.display()),
            ComposeCli::V1 { program } => write!(f, "{} (v1)", program.display()),
        }
    }
}

/// A command with the guest's environment cleared but for [`PASSTHROUGH_ENV`].
fn clean_command(mut c: Command) -> Command {
    c.env_clear();
    for k in PASSTHROUGH_ENV {
        if let Some(v) = std::env::var_os(k) {
            c.env(k, v);
        }
    }
    c
}

/// Successful probes, by (docker CLI, docker-compose CLI): Compose v1 takes over a
/// second to print its version, and a boot probes twice (before measuring, then to run).
static PROBED: std::sync::Mutex<Vec<(PathBuf, PathBuf, ComposeCli)>> =
    std::sync::Mutex::new(Vec::new());

/// Find a Compose CLI: `<docker> compose version` (v2) first, then
/// `<docker_compose> version` (v1). A success is remembered for the process's lifetime
/// (a CLI that disappears later fails the next command instead).
pub async fn probe(docker: &Path, docker_compose: &Path) -> Result<ComposeCli, RunnerError> {
    let cached = PROBED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(d, c, _)| d == docker && c == docker_compose)
        .map(|(_, _, cli)| cli.clone());
    if let Some(cli) = cached {
        return Ok(cli);
    }
    let cli = probe_uncached(docker, docker_compose).await?;
    PROBED.lock().unwrap_or_else(|p| p.into_inner()).push((
        docker.to_owned(),
        docker_compose.to_owned(),
        cli.clone(),
    ));
    Ok(cli)
}

async fn probe_uncached(docker: &Path, docker_compose: &Path) -> Result<ComposeCli, RunnerError> {
    let v2 = ComposeCli::V2 {
        docker: docker.to_owned(),
    };
    let v2_err = match version(&v2).await {
        Ok(()) => return Ok(v2),
        Err(e) => e,
    };
    let v1 = ComposeCli::V1 {
        program: docker_compose.to_owned(),
    };
    match version(&v1).await {
        Ok(()) => Ok(v1),
        Err(v1_err) => Err(RunnerError::NoComposeCli {
            v2: Box::new(v2_err),
            v1: Box::new(v1_err),
        }),
    }
}

async fn version(cli: &ComposeCli) -> Result<(), RunnerError> {
    let mut c = clean_command(cli.command());
    c.arg("version");
    let out = exec::run(c, "compose version", PROBE_TIMEOUT, 64 * 1024).await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RunnerError::Command {
            what: "compose version",
            status: out.status.to_string(),
            stderr: tail(&String::from_utf8_lossy(&out.stderr)),
        })
    }
}

/// Refuse env vars that would steer the Compose CLI itself (its project, files, engine)
/// rather than the app, and values a process environment cannot carry.
pub fn check_env(env: &[EnvVar]) -> Result<(), RunnerError> {
    for v in env {
        let k = v.key.as_str();
        if k == "PATH" || k == "HOME" || k.starts_with("DOCKER_") || k.starts_with("COMPOSE_") {
            return Err(RunnerError::ReservedEnvName(v.key.clone()));
        }
        if v.value.contains('\0') {
            return Err(RunnerError::EnvValueHasNul(v.key.clone()));
        }
    }
    Ok(())
}

/// The env vars in dstack's `.decrypted-env` format: `KEY=value`, the value in double
/// quotes with `\n`, `"`, `$` and `` ` `` escaped when it holds a blank or shell
/// character.
pub fn decrypted_env_file(env: &[EnvVar]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    for v in env {
        out.push_str(&v.key);
        out.push('=');
        let quote = v.value.chars().any(|c| " \t|&;<>()$`\\\"'\n".contains(c));
        if quote {
            out.push('"');
        }
        for c in v.value.chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '"' => out.push_str("\\\""),
                '$' => out.push_str("\\$"),
                '`' => out.push_str("\\`"),
                c => out.push(c),
            }
        }
        if quote {
            out.push('"');
        }
        out.push('\n');
    }
    out
}

/// The agent socket must be an absolute path without `:` or `,` (it goes into a
/// `source:target` bind-mount spec) and without control characters.
pub fn check_socket_path(path: &Path) -> Result<(), RunnerError> {
    let bad = |reason: &'static str| RunnerError::AgentSocketPath {
        path: path.to_owned(),
        reason,
    };
    let s = path.to_str().ok_or_else(|| bad("not UTF-8"))?;
    if !path.is_absolute() {
        return Err(bad("not absolute"));
    }
    if s.len() > MAX_SOCKET_PATH {
        return Err(bad("too long"));
    }
    if s.contains([':', ',']) || s.chars().any(char::is_control) {
        return Err(bad("contains ':', ',' or a control character"));
    }
    Ok(())
}

/// One service of the resolved compose (`config` output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The service name.
    pub name: String,
    /// The container paths among [`AGENT_MOUNT_TARGETS`] it mounts.
    pub agent_mounts: Vec<String>,
}

/// Parse the output of `compose config`: the services and which of them mount the guest
/// agent socket. Both CLIs' outputs are handled: v1 writes volumes as `src:dst[:mode]`
/// strings, v2 as `{type, source, target}` maps.
pub fn parse_config(yaml: &[u8]) -> Result<Vec<Service>, RunnerError> {
    let bad = |reason: String| RunnerError::BadOutput {
        what: "compose config",
        reason,
    };
    let doc: serde_norway::Value =
        serde_norway::from_slice(yaml).map_err(|e| bad(format!("not YAML: {e}")))?;
    let services = match doc.get("services") {
        None | Some(serde_norway::Value::Null) => return Ok(Vec::new()),
        Some(serde_norway::Value::Mapping(m)) => m,
        Some(_) => return Err(bad("`services` is not a mapping".to_owned())),
    };
    if services.len() > MAX_SERVICES {
        return Err(bad(format!(
            "{} services (at most {MAX_SERVICES})",
            services.len()
        )));
    }
    let mut out = Vec::with_capacity(services.len());
    for (name, svc) in services {
        let name = name
            .as_str()
            .filter(|n| valid_service_name(n))
            .ok_or_else(|| {
                bad(format!(
                    "service name {name:?} is not [A-Za-z0-9._-]{{1,64}}"
                ))
            })?;
        let mut agent_mounts = Vec::new();
        if let Some(volumes) = svc.get("volumes") {
            let volumes = volumes
                .as_sequence()
                .ok_or_else(|| bad(format!("{name}: `volumes` is not a list")))?;
            for v in volumes {
                let target = match v {
                    serde_norway::Value::String(s) => short_volume_target(s),
                    serde_norway::Value::Mapping(m) => {
                        m.get("target").and_then(|t| t.as_str()).map(str::to_owned)
                    }
                    _ => None,
                };
                if let Some(t) = target {
                    let t = t.trim_end_matches('/');
                    if AGENT_MOUNT_TARGETS.contains(&t) && !agent_mounts.iter().any(|m| m == t) {
                        agent_mounts.push(t.to_owned());
                    }
                }
            }
        }
        out.push(Service {
            name: name.to_owned(),
            agent_mounts,
        });
    }
    Ok(out)
}

fn valid_service_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The container path of a short-syntax volume: `dst`, `src:dst` or `src:dst:mode`.
fn short_volume_target(spec: &str) -> Option<String> {
    let parts: Vec<&str> = spec.split(':').collect();
    match parts.as_slice() {
        [dst] => Some((*dst).to_owned()),
        [_, dst] | [_, dst, _] => Some((*dst).to_owned()),
        _ => None,
    }
}

/// The override that mounts `socket` at each agent path a service mounts (Compose merges
/// volumes by container path, so the override replaces the compose's own source).
pub fn agent_override(services: &[Service], socket: &Path) -> Option<serde_json::Value> {
    let mut map = serde_json::Map::new();
    for s in services.iter().filter(|s| !s.agent_mounts.is_empty()) {
        let volumes: Vec<String> = s
            .agent_mounts
            .iter()
            .map(|t| format!("{}:{t}", socket.display()))
            .collect();
        map.insert(s.name.clone(), serde_json::json!({ "volumes": volumes }));
    }
    (!map.is_empty()).then(|| serde_json::json!({ "services": map }))
}

/// Keep the last [`MAX_ERROR_TAIL`] bytes of a message (on a char boundary).
fn tail(s: &str) -> String {
    let s = s.trim();
    if s.len() <= MAX_ERROR_TAIL {
        return s.to_owned();
    }
    let mut start = s.len() - MAX_ERROR_TAIL;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

/// Everything needed to run Compose commands for one project.
struct Project {
    cli: ComposeCli,
    docker: PathBuf,
    name: String,
    dir: PathBuf,
    with_override: bool,
    /// The decrypted env vars, then Cairn's variables: the CLI's environment.
    env: Zeroizing<Vec<(String, String)>>,
    /// How many of `env` (from the front) are decrypted, secret values.
    secrets: usize,
}

impl Project {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = clean_command(self.cli.command());
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c.current_dir(&self.dir);
        c.arg("-p").arg(&self.name);
        c.arg("-f").arg(self.dir.join(COMPOSE_FILE));
        if self.with_override {
            c.arg("-f").arg(self.dir.join(AGENT_OVERRIDE_FILE));
        }
        c.args(args);
        c
    }

    /// Remove every env value (of at least [`MIN_REDACTED_LEN`] bytes) from `s`.
    fn redact(&self, s: &str) -> String {
        let mut s = s.to_owned();
        for (_, v) in self.env.iter().take(self.secrets) {
            if v.len() >= MIN_REDACTED_LEN && s.contains(v.as_str()) {
                s = s.replace(v.as_str(), "<redacted>");
            }
        }
        s
    }

    /// Run a Compose command; a non-zero exit is [`RunnerError::Command`] with the
    /// (redacted) tail of its stderr.
    async fn run(
        &self,
        what: &'static str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Captured, RunnerError> {
        let out = exec::run(self.command(args), what, timeout, MAX_CLI_OUTPUT).await?;
        if !out.status.success() {
            return Err(RunnerError::Command {
                what,
                status: out.status.to_string(),
                stderr: tail(&self.redact(&String::from_utf8_lossy(&out.stderr))),
            });
        }
        Ok(out)
    }

    /// The project's containers, from the engine (the labels both CLIs set).
    async fn containers(&self) -> Result<Vec<ContainerState>, RunnerError> {
        let mut c = clean_command(Command::new(&self.docker));
        c.args(["ps", "-a", "--no-trunc", "--filter"])
            .arg(format!("label=com.docker.compose.project={}", self.name))
            .args([
                "--format",
                "{{.Names}}\t{{.State}}\t{{.Status}}\t{{.Label \"com.docker.compose.service\"}}",
            ]);
        let out = exec::run(c, "docker ps", PS_TIMEOUT, MAX_CLI_OUTPUT).await?;
        if !out.status.success() {
            return Err(RunnerError::Command {
                what: "docker ps",
                status: out.status.to_string(),
                stderr: tail(&String::from_utf8_lossy(&out.stderr)),
            });
        }
        if out.truncated {
            return Err(RunnerError::BadOutput {
                what: "docker ps",
                reason: format!("more than {MAX_CLI_OUTPUT} bytes"),
            });
        }
        parse_ps(&out.stdout)
    }
}

/// Parse `docker ps --format '{{.Names}}\t{{.State}}\t{{.Status}}\t<service>'`.
pub fn parse_ps(out: &[u8]) -> Result<Vec<ContainerState>, RunnerError> {
    let text = std::str::from_utf8(out).map_err(|_| RunnerError::BadOutput {
        what: "docker ps",
        reason: "not UTF-8".to_owned(),
    })?;
    let mut v = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split('\t');
        let (Some(name), Some(state), Some(status), Some(service)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            return Err(RunnerError::BadOutput {
                what: "docker ps",
                reason: format!("unexpected line {line:?}"),
            });
        };
        v.push(ContainerState {
            name: name.to_owned(),
            service: service.to_owned(),
            state: state.to_owned(),
            exit_code: exit_code(status),
        });
    }
    Ok(v)
}

/// The code in a `docker ps` status such as `Exited (137) 2 seconds ago`.
fn exit_code(status: &str) -> Option<i32> {
    let rest = status.strip_prefix("Exited (")?;
    rest.split(')').next()?.parse().ok()
}

/// Create (or tighten) `dir` as a real directory with mode 0700.
fn private_dir(dir: &Path) -> Result<(), RunnerError> {
    let err = |source| RunnerError::File {
        path: dir.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() || !m.is_dir() => {
            return Err(err(std::io::Error::other("not a real directory")))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?,
        Err(e) => return Err(err(e)),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)
}

/// Write `bytes` to `dir/name` with mode 0600: a fresh temporary file renamed into place.
fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), RunnerError> {
    use std::io::Write;
    let tmp = dir.join(format!(".{name}.tmp"));
    let dst = dir.join(name);
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| RunnerError::File { path, source }
    };
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(&tmp)(e)),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err(&tmp))?;
    f.write_all(bytes).map_err(err(&tmp))?;
    f.sync_all().map_err(err(&tmp))?;
    std::fs::rename(&tmp, &dst).map_err(err(&dst))
}

/// Wait until `socket` accepts a connection (a stale socket file refuses it).
async fn wait_for_agent(socket: &Path, within: Duration) -> Result<(), RunnerError> {
    let deadline = Instant::now() + within;
    loop {
        let is_socket = std::fs::symlink_metadata(socket)
            .map(|m| m.file_type().is_socket())
            .unwrap_or(false);
        if is_socket && tokio::net::UnixStream::connect(socket).await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(RunnerError::AgentNotServed {
                path: socket.to_owned(),
                waited: within,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A docker-compose app: the project, and the task that brings it up.
pub struct ComposeApp {
    project: Arc<Project>,
    up: Option<JoinHandle<Result<(), RunnerError>>>,
}

impl std::fmt::Debug for ComposeApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComposeApp")
            .field("project", &self.project.name)
            .field("cli", &self.project.cli)
            .field("dir", &self.project.dir)
            .finish_non_exhaustive()
    }
}

/// Prepare and start the app. Returns once the files are written and `config` accepted
/// the compose; `up` runs in a task (it waits for the agent socket when a service
/// mounts it, since the agent is served after the boot returns).
pub async fn start(
    file: &str,
    env: &[EnvVar],
    cairn_vars: Vec<(String, String)>,
    app: &AppEnv,
) -> Result<ComposeApp, RunnerError> {
    check_env(env)?;
    if let Some(s) = &app.agent_socket {
        check_socket_path(s)?;
    }
    let cli = probe(&app.docker, Path::new(DEFAULT_DOCKER_COMPOSE)).await?;
    private_dir(&app.work_dir)?;
    write_private(&app.work_dir, COMPOSE_FILE, file.as_bytes())?;
    write_private(
        &app.work_dir,
        DECRYPTED_ENV_FILE,
        decrypted_env_file(env).as_bytes(),
    )?;
    let mut vars: Vec<(String, String)> = env
        .iter()
        .map(|v| (v.key.clone(), v.value.clone()))
        .collect();
    // Cairn's variables win over decrypted ones of the same name, as in the process runner.
    vars.retain(|(k, _)| !cairn_vars.iter().any(|(c, _)| c == k));
    let secrets = vars.len();
    vars.extend(cairn_vars);
    let mut project = Project {
        cli,
        docker: app.docker.clone(),
        name: app.project.clone(),
        dir: app.work_dir.clone(),
        with_override: false,
        env: Zeroizing::new(vars),
        secrets,
    };
    let config = project
        .run("compose config", &["config"], CONFIG_TIMEOUT)
        .await?;
    // The resolved compose holds substituted secrets: parsed, then wiped.
    let config_out = Zeroizing::new(config.stdout);
    if config.truncated {
        return Err(RunnerError::BadOutput {
            what: "compose config",
            reason: format!("more than {MAX_CLI_OUTPUT} bytes"),
        });
    }
    let services = parse_config(&config_out)?;
    let mounting: Vec<&Service> = services
        .iter()
        .filter(|s| !s.agent_mounts.is_empty())
        .collect();
    let wait_socket = match (&app.agent_socket, mounting.first()) {
        (_, None) => None,
        (None, Some(s)) => return Err(RunnerError::NoAgentForMount(s.name.clone())),
        (Some(socket), Some(_)) => {
            let ov = agent_override(&services, socket).ok_or_else(|| RunnerError::BadOutput {
                what: "compose config",
                reason: "no agent mount after all".to_owned(),
            })?;
            let bytes = serde_json::to_vec_pretty(&ov).map_err(|e| RunnerError::BadOutput {
                what: "agent override",
                reason: e.to_string(),
            })?;
            write_private(&app.work_dir, AGENT_OVERRIDE_FILE, &bytes)?;
            project.with_override = true;
            Some(socket.clone())
        }
    };
    if !project.with_override {
        match std::fs::remove_file(app.work_dir.join(AGENT_OVERRIDE_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(RunnerError::File {
                    path: app.work_dir.join(AGENT_OVERRIDE_FILE),
                    source: e,
                })
            }
            _ => {}
        }
    }
    tracing::info!(
        project = %project.name,
        cli = %project.cli,
        services = services.len(),
        agent_mounts = mounting.len(),
        "starting docker-compose app"
    );
    let project = Arc::new(project);
    let p = project.clone();
    let up = tokio::spawn(async move {
        if let Some(socket) = wait_socket {
            wait_for_agent(&socket, AGENT_WAIT).await?;
        }
        p.run("compose up", &["up", "-d", "--remove-orphans"], UP_TIMEOUT)
            .await?;
        tracing::info!(project = %p.name, "docker-compose app is up");
        Ok(())
    });
    Ok(ComposeApp {
        project,
        up: Some(up),
    })
}

impl ComposeApp {
    /// The Compose project name (the `com.docker.compose.project` label of its containers).
    pub fn project(&self) -> &str {
        &self.project.name
    }

    /// The Compose CLI in use.
    pub fn cli(&self) -> &ComposeCli {
        &self.project.cli
    }

    /// Wait until `up -d` finished (Ok) or failed.
    pub async fn ready(&mut self) -> Result<(), RunnerError> {
        match self.up.as_mut() {
            None => Ok(()),
            Some(h) => {
                let r = h.await.map_err(|e| RunnerError::Task(e.to_string()));
                self.up = None;
                r?
            }
        }
    }

    /// The project's containers as the engine reports them.
    pub async fn containers(&self) -> Result<Vec<ContainerState>, RunnerError> {
        self.project.containers().await
    }

    /// Wait until the app has exited: `up` finished and no container of the project is
    /// running any more (a `restart:` policy keeps it running). Cancel-safe.
    pub async fn wait(&mut self) -> Result<Vec<ContainerState>, RunnerError> {
        self.ready().await?;
        loop {
            let containers = self.project.containers().await?;
            if containers.iter().all(|c| !c.is_running()) {
                return Ok(containers);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// `down --remove-orphans -t <grace>` (bounded by `grace` + [`DOWN_EXTRA`]), then
    /// check that no container of the project is left. A pending `up` is cancelled first.
    pub async fn stop(&mut self, grace: Duration) -> Result<(), RunnerError> {
        if let Some(up) = self.up.take() {
            up.abort();
            let _ = up.await;
        }
        let secs = grace.as_secs().to_string();
        self.project
            .run(
                "compose down",
                &["down", "--remove-orphans", "-t", &secs],
                grace + DOWN_EXTRA,
            )
            .await?;
        let left = self.project.containers().await?;
        if !left.is_empty() {
            return Err(RunnerError::ContainersLeft(
                left.into_iter().map(|c| c.name).collect(),
            ));
        }
        tracing::info!(project = %self.project.name, "docker-compose app is down");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(k: &str, v: &str) -> EnvVar {
        EnvVar {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn env_names_that_steer_compose_itself_are_refused() {
        for k in [
            "PATH",
            "HOME",
            "DOCKER_HOST",
            "COMPOSE_PROJECT_NAME",
            "COMPOSE_FILE",
        ] {
            let err = check_env(&[var("API_KEY", "x"), var(k, "y")]).unwrap_err();
            assert!(
                matches!(&err, RunnerError::ReservedEnvName(n) if n == k),
                "{k}: {err:?}"
            );
        }
        check_env(&[
            var("API_KEY", "x"),
            var("PATHS", "y"),
            var("MY_DOCKER_HOST", "z"),
        ])
        .unwrap();
    }

    #[test]
    fn a_nul_in_a_value_is_refused() {
        let err = check_env(&[var("A", "x\0y")]).unwrap_err();
        assert!(
            matches!(&err, RunnerError::EnvValueHasNul(n) if n == "A"),
            "{err:?}"
        );
    }

    #[test]
    fn decrypted_env_file_uses_dstacks_escaping() {
        let f = decrypted_env_file(&[
            var("PLAIN", "simple"),
            var("SPACE", "hello world"),
            var("QUOTE", "say \"hi\""),
            var("LINES", "a\nb"),
            var("DOLLAR", "price=$100"),
            var("TICK", "`date`"),
        ]);
        assert_eq!(
            f.as_str(),
            "PLAIN=simple\nSPACE=\"hello world\"\nQUOTE=\"say \\\"hi\\\"\"\n\
             LINES=\"a\\nb\"\nDOLLAR=\"price=\\$100\"\nTICK=\"\\`date\\`\"\n"
        );
    }

    #[test]
    fn socket_paths_that_break_a_mount_spec_are_refused() {
        check_socket_path(Path::new("/run/cairn/agent.sock")).unwrap();
        for (p, why) in [
            ("relative.sock", "not absolute"),
            ("/a:b/agent.sock", "contains"),
            ("/a,b/agent.sock", "contains"),
            ("/a\nb/agent.sock", "contains"),
        ] {
            let err = check_socket_path(Path::new(p)).unwrap_err();
            assert!(
                matches!(&err, RunnerError::AgentSocketPath { reason, .. } if reason.starts_with(why)),
                "{p:?}: {err:?}"
            );
        }
        let long = format!("/{}", "a".repeat(MAX_SOCKET_PATH));
        assert!(matches!(
            check_socket_path(Path::new(&long)),
            Err(RunnerError::AgentSocketPath {
                reason: "too long",
                ..
            })
        ));
    }

    #[test]
    fn config_output_of_v1_short_volume_syntax() {
        let yaml = br#"services:
  app:
    image: x
    volumes:
    - /var/run/dstack.sock:/var/run/dstack.sock:rw
    - data:/data
  legacy:
    image: x
    volumes:
    - /var/run/tappd.sock:/var/run/tappd.sock
  web:
    image: y
version: '3.8'
volumes:
  data: {}
"#;
        let s = parse_config(yaml).unwrap();
        assert_eq!(
            s,
            vec![
                Service {
                    name: "app".into(),
                    agent_mounts: vec!["/var/run/dstack.sock".into()]
                },
                Service {
                    name: "legacy".into(),
                    agent_mounts: vec!["/var/run/tappd.sock".into()]
                },
                Service {
                    name: "web".into(),
                    agent_mounts: vec![]
                },
            ]
        );
        let ov = agent_override(&s, Path::new("/tmp/x/agent.sock")).unwrap();
        assert_eq!(
            ov,
            serde_json::json!({"services": {
                "app": {"volumes": ["/tmp/x/agent.sock:/var/run/dstack.sock"]},
                "legacy": {"volumes": ["/tmp/x/agent.sock:/var/run/tappd.sock"]},
            }})
        );
    }

    #[test]
    fn config_output_of_v2_long_volume_syntax() {
        let yaml = br#"name: cairn-demo-0123456789ab
services:
  app:
    image: x
    volumes:
      - type: bind
        source: /somewhere/else.sock
        target: /var/run/dstack.sock
        bind:
          create_host_path: true
      - type: volume
        source: data
        target: /data
"#;
        let s = parse_config(yaml).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].agent_mounts, vec!["/var/run/dstack.sock".to_owned()]);
    }

    #[test]
    fn no_agent_mount_means_no_override() {
        let s = parse_config(b"services:\n  a:\n    image: x\n").unwrap();
        assert_eq!(agent_override(&s, Path::new("/x.sock")), None);
        assert!(parse_config(b"services: {}\n").unwrap().is_empty());
    }

    #[test]
    fn malformed_config_output_is_a_typed_error() {
        for (yaml, needle) in [
            (&b"services: [1, 2]\n"[..], "not a mapping"),
            (
                &b"services:\n  \"bad name\":\n    image: x\n"[..],
                "service name",
            ),
            (&b"services:\n  a:\n    volumes: 3\n"[..], "not a list"),
            (&b"services: {a: [\n"[..], "not YAML"),
        ] {
            let err = parse_config(yaml).unwrap_err();
            assert!(
                matches!(&err, RunnerError::BadOutput { reason, .. } if reason.contains(needle)),
                "{needle}: {err:?}"
            );
        }
        let many: String = (0..=MAX_SERVICES)
            .map(|i| format!("  s{i}:\n    image: x\n"))
            .collect();
        let err = parse_config(format!("services:\n{many}").as_bytes()).unwrap_err();
        assert!(
            matches!(&err, RunnerError::BadOutput { reason, .. } if reason.contains("services (at most")),
            "{err:?}"
        );
    }

    #[test]
    fn ps_lines_parse_with_exit_codes() {
        let out = b"p-app-1\texited\tExited (137) 2 seconds ago\tapp\np-web-1\trunning\tUp 3 seconds\tweb\n";
        let c = parse_ps(out).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].name.as_str(), c[0].service.as_str(), c[0].exit_code),
            ("p-app-1", "app", Some(137))
        );
        assert!(!c[0].is_running());
        assert_eq!(c[1].exit_code, None);
        assert!(c[1].is_running());
        assert!(parse_ps(b"").unwrap().is_empty());
        assert!(matches!(
            parse_ps(b"only-a-name\n"),
            Err(RunnerError::BadOutput { .. })
        ));
    }

    #[test]
    fn error_tails_are_bounded() {
        let long = "x".repeat(MAX_ERROR_TAIL * 3);
        let t = tail(&long);
        assert!(t.len() <= MAX_ERROR_TAIL + "…".len());
        assert_eq!(tail(" short \n"), "short");
    }

    #[tokio::test]
    async fn probe_prefers_the_v2_plugin_then_falls_back_to_v1() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        // A docker CLI with the compose plugin, one without, and a v1 CLI.
        let with_plugin = script("docker-v2", r#"[ "$1" = compose ] && [ "$2" = version ]"#);
        let without = script(
            "docker-none",
            "echo \"unknown command: docker $1\" >&2; exit 1",
        );
        let v1 = script("docker-compose", r#"[ "$1" = version ]"#);
        let missing = dir.path().join("no-docker-compose");

        assert_eq!(
            probe(&with_plugin, &v1).await.unwrap(),
            ComposeCli::V2 {
                docker: with_plugin.clone()
            }
        );
        assert_eq!(
            probe(&without, &v1).await.unwrap(),
            ComposeCli::V1 {
                program: v1.clone()
            }
        );
        let err = probe(&without, &missing).await.unwrap_err();
        match &err {
            RunnerError::NoComposeCli { v2, v1 } => {
                assert!(
                    matches!(&**v2, RunnerError::Command { stderr, .. } if stderr.contains("unknown command")),
                    "{v2:?}"
                );
                assert!(matches!(&**v1, RunnerError::Spawn { .. }), "{v1:?}");
            }
            other => panic!("expected NoComposeCli, got {other:?}"),
        }
    }
}
