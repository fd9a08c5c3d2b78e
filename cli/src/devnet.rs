//! `cairn devnet up|down|status`: a local Cairn (anvil, contracts, KMS node(s), a VMM
//! running the gateway and the demo app as CVMs on the TDX simulator, the demo app reached
//! through the gateway, an unapproved compose refused) in the background.
//!
//! `up` runs `scripts/devnet.sh` (which does the work, step by step, with its timeouts)
//! in its own process group, its output in `<dir>/up.log`, and waits until the script
//! writes `<dir>/state.json` (the devnet is up) or exits (it failed: the log's tail is
//! shown). `--foreground` runs the script attached instead (Ctrl-C stops it). `status`
//! reads the state file and checks every process and port. `down` stops the script (its
//! trap removes the CVMs through the VMM and stops what it started) and then makes sure
//! every recorded process is gone, killing survivors, so nothing is left behind.
//!
//! A pid from the state file is signalled only while `/proc/<pid>/cmdline` still names
//! the program it was recorded for (a reused pid is never killed). A CVM's guest leads a
//! session of its own (the VMM starts it with `setsid`) and its app runs in that session
//! in a process group of its own: `down` sweeps the session, killing only its processes
//! whose working directory is inside the devnet's directory.

use std::io::{BufRead as _, Read as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Subcommand};
use rustix::process::{kill_process, kill_process_group, Pid, Signal};
use serde::{Deserialize, Serialize};

use crate::common::{out, outln};

/// Largest state file read.
const MAX_STATE_LEN: u64 = 64 * 1024;
/// How long `down` waits for the script's own cleanup before killing survivors.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// How often waits poll.
const POLL: Duration = Duration::from_millis(100);

/// `cairn devnet` options.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cairn devnet up && source .devnet/devnet.env\n  \
    cairn devnet status --json\n  \
    cairn devnet down")]
pub struct DevnetArgs {
    /// The devnet's directory (state, logs, keys).
    #[arg(
        long,
        env = "CAIRN_DEVNET_DIR",
        default_value = ".devnet",
        global = true
    )]
    dir: PathBuf,
    /// Print JSON (the global `--json`).
    #[arg(skip)]
    pub json: bool,
    #[command(subcommand)]
    cmd: DevnetCommand,
}

#[derive(Debug, Subcommand)]
enum DevnetCommand {
    /// Start the devnet in the background and wait until the demo app has its keys.
    Up(UpArgs),
    /// Show what runs: processes, ports, URLs (exit 1 when not running or a part died).
    Status,
    /// Stop everything the devnet started.
    Down,
    /// Encrypt env vars for an app with Cairn's code (the KMS's env key, its signature
    /// checked against the root key on chain): what `scripts/devnet.sh` gives its demo app.
    #[command(hide = true)]
    EncryptEnv(Box<EncryptEnvArgs>),
}

#[derive(Debug, Args)]
struct EncryptEnvArgs {
    /// The app the env is for.
    #[arg(long)]
    app_id: String,
    /// Where to write the ciphertext (the share's `.encrypted-env`).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    env: crate::vm::env::EnvArgs,
}

#[derive(Debug, Args)]
struct UpArgs {
    /// anvil's port.
    #[arg(long, env = "CAIRN_DEVNET_PORT", default_value_t = 8545)]
    port: u16,
    /// The KMS node's port.
    #[arg(long, env = "CAIRN_DEVNET_KMS_PORT")]
    kms_port: Option<u16>,
    /// How many KMS nodes: the first bootstraps, the others onboard from it and are
    /// registered on chain.
    #[arg(long, env = "CAIRN_DEVNET_KMS_NODES", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=9))]
    kms_nodes: u16,
    /// Run attached to this terminal (Ctrl-C stops the devnet).
    #[arg(long)]
    foreground: bool,
    /// Give up (and stop everything) when not up within this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// The Cairn source tree (holds scripts/devnet.sh); default: found from the current
    /// directory upwards, else the tree this binary was built from.
    #[arg(long, env = "CAIRN_ROOT")]
    root: Option<PathBuf>,
}

/// `<dir>/state.json`, written by `scripts/devnet.sh` once the devnet is up.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    version: u32,
    dir: String,
    script_pid: u32,
    processes: Vec<Process>,
    rpc_url: String,
    chain_id: u64,
    kms_auth: String,
    kms_urls: Vec<String>,
    kms_nodes: Vec<String>,
    app_id: String,
    compose_hash: String,
    agent_socket: String,
    env_file: String,
    /// The VMM's HTTP API (its web page at `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vmm_url: Option<String>,
    /// The VMM's unix socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vmm_socket: Option<String>,
    /// The gateway's public TLS listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway_url: Option<String>,
    /// The gateway's admin endpoint (`cairn gateway status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway_admin: Option<String>,
    /// KmsAuth's `gatewayAppId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway_app_id: Option<String>,
    /// The gateway's base domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base_domain: Option<String>,
    /// A curl command that reaches the demo app through the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    curl: Option<String>,
    up_secs: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Process {
    name: String,
    pid: u32,
    /// Leads its own process group and session (a CVM's guest; its app is in the
    /// session): stopped as a group, its session swept.
    group: bool,
    port: Option<u16>,
}

/// `status --json`.
#[derive(Debug, Serialize)]
struct Status {
    running: bool,
    dir: String,
    state: Option<State>,
    processes: Vec<ProcessStatus>,
}

#[derive(Debug, Serialize)]
struct ProcessStatus {
    name: String,
    pid: u32,
    alive: bool,
    /// The loopback port it serves on, if any.
    port: Option<u16>,
    /// `Some(true)` when its port accepts a connection.
    listening: Option<bool>,
}

/// Run `cairn devnet …`; the exit code.
pub async fn run(args: DevnetArgs) -> anyhow::Result<u8> {
    let dir = &args.dir;
    match args.cmd {
        DevnetCommand::Up(up) => self::up(dir, &up, args.json).await,
        DevnetCommand::Status => {
            let s = status(dir)?;
            let healthy = s.running && s.processes.iter().all(|p| p.alive);
            print_status(&s, args.json)?;
            Ok(u8::from(!healthy))
        }
        DevnetCommand::Down => down(dir, args.json).await,
        DevnetCommand::EncryptEnv(e) => {
            let mut app_id = [0u8; 20];
            hex::decode_to_slice(e.app_id.trim_start_matches("0x"), &mut app_id)
                .with_context(|| format!("--app-id {:?}: 20 bytes of hex", e.app_id))?;
            let blob = e
                .env
                .encrypt(Some(app_id), &[])
                .await?
                .ok_or_else(|| anyhow!("nothing to encrypt: give --env NAME=VALUE"))?;
            std::fs::write(&e.out, blob).with_context(|| format!("writing {}", e.out.display()))?;
            Ok(0)
        }
    }
}

fn script_path(root: Option<&Path>) -> anyhow::Result<PathBuf> {
    const SCRIPT: &str = "scripts/devnet.sh";
    if let Some(root) = root {
        let p = root.join(SCRIPT);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(anyhow!("--root {}: no {SCRIPT}", root.display()))
        };
    }
    let cwd = std::env::current_dir().context("the current directory")?;
    for d in cwd.ancestors() {
        if d.join(SCRIPT).is_file() && d.join("cli/Cargo.toml").is_file() {
            return Ok(d.join(SCRIPT));
        }
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(SCRIPT);
    if built.is_file() {
        return Ok(built);
    }
    bail!("no {SCRIPT} found: run from the Cairn tree or pass --root")
}

async fn up(dir: &Path, args: &UpArgs, json: bool) -> anyhow::Result<u8> {
    if let Some(state) = read_state(dir)? {
        if process_matches(state.script_pid, "devnet.sh") {
            return Err(crate::common::refuse(format!(
                "a devnet already runs from {} (pid {}): `cairn devnet down` first",
                dir.display(),
                state.script_pid
            )));
        }
        // A stale file from a devnet killed without its cleanup.
        std::fs::remove_file(dir.join("state.json")).context("removing the stale state")?;
    }
    let script = script_path(args.root.as_deref())?;
    let root = script
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("{}: no source tree", script.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("{}", dir.display()))?;
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(&script)
        .current_dir(root)
        .env("CAIRN_DEVNET_DIR", &dir)
        .env("CAIRN_DEVNET_PORT", args.port.to_string())
        .env("CAIRN_DEVNET_KMS_NODES", args.kms_nodes.to_string())
        .env_remove("CAIRN_DEVNET_EXIT");
    if let Some(p) = args.kms_port {
        cmd.env("CAIRN_DEVNET_KMS_PORT", p.to_string());
    }
    if args.foreground {
        let status = cmd.status().context("running scripts/devnet.sh")?;
        return Ok(if status.success() { 0 } else { 1 });
    }
    let log_path = dir.join("up.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().context("log file")?)
        .stderr(log)
        // Its own group: `down` signals the script and everything it started at once.
        .process_group(0)
        .spawn()
        .context("starting scripts/devnet.sh")?;
    if !json {
        eprintln!(
            "starting the devnet in {} (log: {})",
            dir.display(),
            log_path.display()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let state = loop {
        if let Some(s) = read_state(&dir)? {
            break s;
        }
        if let Some(status) = child.try_wait().context("watching scripts/devnet.sh")? {
            eprintln!("{}", tail(&log_path, 25));
            bail!(
                "the devnet did not come up (scripts/devnet.sh {status}); see {}",
                log_path.display()
            );
        }
        if Instant::now() >= deadline {
            signal_group(child.id(), Signal::TERM);
            eprintln!("{}", tail(&log_path, 25));
            bail!(
                "the devnet was not up within {} s; stopped it",
                args.timeout
            );
        }
        tokio::time::sleep(POLL).await;
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&state)?);
    } else {
        // The script's own summary: where everything runs and what to try next.
        let text = read_bounded(&log_path, 1 << 20).unwrap_or_default();
        if let Some(at) = text.find("Cairn devnet is up") {
            out!("{}", &text[at..]);
        }
        print_status(&status(&dir)?, false)?;
    }
    Ok(0)
}

fn read_bounded(path: &Path, max: u64) -> std::io::Result<String> {
    let mut s = String::new();
    std::fs::File::open(path)?
        .take(max)
        .read_to_string(&mut s)?;
    Ok(s)
}

fn tail(path: &Path, lines: usize) -> String {
    let Ok(f) = std::fs::File::open(path) else {
        return String::new();
    };
    let all: Vec<String> = std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn read_state(dir: &Path) -> anyhow::Result<Option<State>> {
    let path = dir.join("state.json");
    match read_bounded(&path, MAX_STATE_LEN) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("{}: not a devnet state file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Whether `pid` is a live (non-zombie) process whose command line mentions `name`.
fn process_matches(pid: u32, name: &str) -> bool {
    let proc = Path::new("/proc").join(pid.to_string());
    let stat = read_bounded(&proc.join("stat"), 4096).unwrap_or_default();
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_ascii_whitespace().next());
    if matches!(state, None | Some("Z") | Some("X")) {
        return false;
    }
    let cmdline = read_bounded(&proc.join("cmdline"), 64 * 1024).unwrap_or_default();
    cmdline.contains(name)
}

/// The program name a recorded process's command line must mention.
fn program(p: &Process) -> &str {
    p.name.split_whitespace().next().unwrap_or(&p.name)
}

fn status(dir: &Path) -> anyhow::Result<Status> {
    let state = read_state(dir)?;
    let processes = state
        .iter()
        .flat_map(|s| s.processes.iter())
        .map(|p| ProcessStatus {
            name: p.name.clone(),
            pid: p.pid,
            alive: process_matches(p.pid, program(p)),
            port: p.port,
            listening: p.port.map(|port| {
                std::net::TcpStream::connect_timeout(
                    &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                    Duration::from_secs(1),
                )
                .is_ok()
            }),
        })
        .collect();
    Ok(Status {
        running: state
            .as_ref()
            .is_some_and(|s| process_matches(s.script_pid, "devnet.sh")),
        dir: dir.display().to_string(),
        state,
        processes,
    })
}

fn print_status(s: &Status, json: bool) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(s)?);
        return Ok(());
    }
    let Some(state) = &s.state else {
        outln!("no devnet runs from {} (cairn devnet up)", s.dir);
        return Ok(());
    };
    outln!(
        "\ndevnet in {} — {}",
        s.dir,
        if s.running { "running" } else { "NOT running" }
    );
    outln!(
        "  {:<28} {:>8}  {:<6} {:>6}  LISTENING",
        "PROCESS",
        "PID",
        "ALIVE",
        "PORT"
    );
    for p in &s.processes {
        outln!(
            "  {:<28} {:>8}  {:<6} {:>6}  {}",
            p.name,
            p.pid,
            if p.alive { "yes" } else { "NO" },
            p.port
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".to_owned()),
            match p.listening {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            }
        );
    }
    outln!(
        "  RPC        {} (chain id {})",
        state.rpc_url,
        state.chain_id
    );
    outln!("  KmsAuth    {}", state.kms_auth);
    outln!("  KMS        {}", state.kms_urls.join(", "));
    if let Some(vmm) = &state.vmm_url {
        outln!("  VMM        {vmm} (web page {vmm}/; cairn vm list)");
    }
    if let Some(gw) = &state.gateway_url {
        outln!(
            "  gateway    {gw} (*.{}; app {}; admin {})",
            state.base_domain.as_deref().unwrap_or("?"),
            state.gateway_app_id.as_deref().unwrap_or("?"),
            state.gateway_admin.as_deref().unwrap_or("?"),
        );
    }
    outln!(
        "  demo app   {} (compose {})",
        state.app_id,
        state.compose_hash
    );
    if let Some(curl) = &state.curl {
        outln!("  try        {curl}");
    }
    outln!("  env file   source {}", state.env_file);
    Ok(())
}

fn signal_pid(pid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        // ESRCH (already gone) is the outcome we want.
        let _ = kill_process(pid, sig);
    }
}

fn signal_group(pgid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) {
        let _ = kill_process_group(pid, sig);
    }
}

/// The live processes whose working directory is inside `dir` (of session `sid` only, when
/// given): a CVM's guest and app work in its directory, an unrelated process that reused
/// an id does not.
fn working_in(dir: &Path, sid: Option<u32>) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat =
                read_bounded(Path::new(&format!("/proc/{pid}/stat")), 4096).unwrap_or_default();
            // After the command's `)`: state, ppid, pgrp, session.
            let fields: Vec<&str> = stat
                .rfind(')')
                .map(|i| stat[i + 1..].split_ascii_whitespace().collect())
                .unwrap_or_default();
            let in_session = sid
                .is_none_or(|sid| fields.get(3).and_then(|s| s.parse::<u32>().ok()) == Some(sid));
            let live = !matches!(fields.first(), None | Some(&"Z") | Some(&"X"));
            in_session
                && live
                && std::fs::read_link(format!("/proc/{pid}/cwd"))
                    .is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}

async fn down(dir: &Path, json: bool) -> anyhow::Result<u8> {
    let Some(state) = read_state(dir)? else {
        if json {
            outln!("{}", serde_json::json!({"stopped": [], "running": false}));
        } else {
            outln!("no devnet runs from {}", dir.display());
        }
        return Ok(0);
    };
    // The script's trap stops the guests, the KMS and anvil, in that order.
    if process_matches(state.script_pid, "devnet.sh") {
        signal_pid(state.script_pid, Signal::TERM);
    }
    let alive = |p: &Process| process_matches(p.pid, program(p));
    let deadline = Instant::now() + STOP_GRACE;
    while (process_matches(state.script_pid, "devnet.sh") || state.processes.iter().any(alive))
        && Instant::now() < deadline
    {
        tokio::time::sleep(POLL).await;
    }
    let mut killed = Vec::new();
    for p in state.processes.iter().filter(|p| alive(p)) {
        if p.group {
            signal_group(p.pid, Signal::KILL);
        }
        signal_pid(p.pid, Signal::KILL);
        killed.push(p.name.clone());
    }
    if process_matches(state.script_pid, "devnet.sh") {
        signal_pid(state.script_pid, Signal::KILL);
    }
    // A guest's app lives in the guest's session: sweep it even when the guest went first.
    for p in state.processes.iter().filter(|p| p.group) {
        signal_group(p.pid, Signal::KILL);
        for member in working_in(Path::new(&state.dir), Some(p.pid)) {
            signal_pid(member, Signal::KILL);
            killed.push(format!("pid {member} (session of {})", p.name));
        }
    }
    // CVMs a user deployed through the devnet's VMM: their guests and apps work in its CVM
    // directories (the script's trap removes them through the VMM; this is the backstop).
    let cvms = Path::new(&state.dir).join("vmm/state/cvms");
    for member in working_in(&cvms, None) {
        signal_pid(member, Signal::KILL);
        killed.push(format!("pid {member} (a CVM in {})", cvms.display()));
    }
    let path = dir.join("state.json");
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
    }
    let stopped: Vec<&str> = state.processes.iter().map(|p| p.name.as_str()).collect();
    if json {
        outln!(
            "{}",
            serde_json::json!({"stopped": stopped, "killed": killed, "running": false})
        );
    } else {
        outln!(
            "stopped the devnet in {}: {}",
            dir.display(),
            stopped.join(", ")
        );
        if !killed.is_empty() {
            outln!(
                "  (killed after {} s: {})",
                STOP_GRACE.as_secs(),
                killed.join(", ")
            );
        }
    }
    Ok(0)
}
