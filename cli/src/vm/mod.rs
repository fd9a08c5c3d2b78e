//! `cairn vm`: the VMM's client (`cairn_vmm::VmmClient`) on the command line.
//!
//! ```text
//! cairn vm [--vmm unix:/run/cairn-vmm.sock | http://HOST:PORT] [--token-file F] [--json]
//!   list
//!   deploy  --name N --compose FILE --image NAME:VERSION [--app-id 0x…] [--port G[:H]]…
//!           [--vcpus N] [--memory-mb N] [--encrypted-env FILE] [--kms-url URL]… [--no-start]
//!   upgrade ID --compose FILE [--image I] [--encrypted-env FILE] [--wait [--timeout SECS]]
//!   stop ID | start ID | rm ID | status ID
//!   logs ID [--tail N] [--follow]
//! ```
//!
//! `ID` is a CVM id or name. The env is sent as ciphertext only (`--encrypted-env`, made
//! for the app's KMS env key); the VMM never sees plaintext.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) mod env;

use anyhow::{anyhow, bail, Context as _};
use cairn_protocol::vmm::{
    CreateCvmRequest, CvmInfo, CvmList, CvmState, PortRequest, UpgradeRequest, UpgradeState,
};
use cairn_vmm::{ClientError, Endpoint, VmmClient};
use clap::{Args, Subcommand};

use crate::common::{outln, refuse, unavailable, write_stdout_report};

/// Default VMM endpoint.
const DEFAULT_VMM: &str = "unix:/run/cairn-vmm.sock";
/// How often `upgrade --wait` looks at the CVM.
const WAIT_POLL: Duration = Duration::from_millis(500);
/// Largest file read for `--compose` / `--encrypted-env` (the VMM has its own limits).
const MAX_FILE: u64 = 4 * 1024 * 1024;

/// `cairn vm`.
#[derive(Debug, Args)]
pub struct VmArgs {
    /// The VMM: `unix:/path` or `http://HOST:PORT`.
    #[arg(long, env = "CAIRN_VMM", default_value = DEFAULT_VMM, global = true)]
    vmm: String,
    /// A file holding the VMM's bearer token (for TCP).
    #[arg(long, env = "CAIRN_VMM_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// `--json` (the global flag; JSON is the API's own types).
    #[arg(skip)]
    pub json: bool,
    #[command(subcommand)]
    cmd: VmCommand,
}

#[derive(Debug, Subcommand)]
enum VmCommand {
    /// List the CVMs.
    List,
    /// Deploy a CVM (the VMM asks the chain first).
    Deploy(DeployArgs),
    /// Replace a CVM's compose (the chain must allow the new hash; --wait for a vote).
    Upgrade(UpgradeArgs),
    /// Stop a CVM.
    Stop {
        /// CVM id or name.
        id: String,
    },
    /// Start a stopped CVM (the VMM asks the chain first).
    Start {
        /// CVM id or name.
        id: String,
    },
    /// Stop and remove a CVM.
    Rm {
        /// CVM id or name.
        id: String,
    },
    /// Show a CVM's console log.
    Logs {
        /// CVM id or name.
        id: String,
        /// Lines from the end.
        #[arg(long, default_value_t = 200)]
        tail: u32,
        /// Keep printing new output until the CVM stops.
        #[arg(long, short)]
        follow: bool,
    },
    /// Show one CVM: state, boot progress, upgrade.
    Status {
        /// CVM id or name.
        id: String,
    },
}

#[derive(Debug, Args)]
struct DeployArgs {
    /// Name (`[a-z0-9-]`).
    #[arg(long)]
    name: String,
    /// The app-compose.json file (sent byte for byte: its SHA-256 is the compose hash).
    #[arg(long)]
    compose: PathBuf,
    /// OS image, NAME:VERSION.
    #[arg(long, default_value = "cairn-os:1.0")]
    image: String,
    /// The app id (its AppAuth address, 0x…).
    #[arg(long)]
    app_id: Option<String>,
    /// A port to map: GUEST or GUEST:HOST (repeatable).
    #[arg(long = "port")]
    ports: Vec<String>,
    /// Virtual CPUs.
    #[arg(long, default_value_t = 1)]
    vcpus: u32,
    /// Memory in MiB.
    #[arg(long, default_value_t = 1024)]
    memory_mb: u32,
    /// The encrypted env (binary ciphertext for the app's KMS env key).
    #[arg(long, conflicts_with_all = ["env", "env_file"])]
    encrypted_env: Option<PathBuf>,
    #[command(flatten)]
    env: env::EnvArgs,
    /// KMS URL (repeatable; default: the VMM's).
    #[arg(long = "kms-url")]
    kms_urls: Vec<String>,
    /// Gateway URL (repeatable; default: the VMM's).
    #[arg(long = "gateway-url")]
    gateway_urls: Vec<String>,
    /// Create without starting.
    #[arg(long)]
    no_start: bool,
}

#[derive(Debug, Args)]
struct UpgradeArgs {
    /// CVM id or name.
    id: String,
    /// The new app-compose.json.
    #[arg(long)]
    compose: PathBuf,
    /// A new OS image NAME:VERSION.
    #[arg(long)]
    image: Option<String>,
    /// A new encrypted env (binary ciphertext).
    #[arg(long, conflicts_with_all = ["env", "env_file"])]
    encrypted_env: Option<PathBuf>,
    /// The app id the new env is for (required with --env: it must be the CVM's).
    #[arg(long)]
    app_id: Option<String>,
    #[command(flatten)]
    env: env::EnvArgs,
    /// If the chain does not allow the new compose yet, wait for a vote/timelock.
    #[arg(long)]
    wait: bool,
    /// How long to wait, seconds.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
}

fn read_file(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_FILE + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {}", path.display()))?;
    if buf.len() as u64 > MAX_FILE {
        bail!("{} is larger than {MAX_FILE} bytes", path.display());
    }
    Ok(buf)
}

pub(crate) fn read_text(path: &PathBuf) -> anyhow::Result<String> {
    String::from_utf8(read_file(path)?).map_err(|_| anyhow!("{} is not UTF-8", path.display()))
}

fn parse_port(s: &str) -> anyhow::Result<PortRequest> {
    let (guest, host) = match s.split_once(':') {
        Some((g, h)) => (g, Some(h)),
        None => (s, None),
    };
    Ok(PortRequest {
        guest_port: guest
            .parse()
            .with_context(|| format!("--port {s}: guest port"))?,
        host_port: host
            .map(|h| h.parse().with_context(|| format!("--port {s}: host port")))
            .transpose()?,
    })
}

fn parse_app_id(s: &str) -> anyhow::Result<[u8; 20]> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    let mut out = [0u8; 20];
    hex::decode_to_slice(digits, &mut out)
        .with_context(|| format!("--app-id {s}: need 20 bytes of hex"))?;
    Ok(out)
}

/// Run `cairn vm …`.
pub async fn run(args: VmArgs) -> anyhow::Result<()> {
    let token = match &args.token_file {
        Some(p) => Some(read_text(p)?.trim().to_owned()),
        None => None,
    };
    let endpoint = Endpoint::parse(&args.vmm)?;
    let client = VmmClient::new(endpoint, token);
    let json = args.json;
    match execute(&client, args.cmd, json).await {
        Err(e) if json => {
            // Scripts get the API's error shape on stdout, and a non-zero exit.
            if let Some(ClientError::Api { body, .. }) = e.downcast_ref::<ClientError>() {
                write_stdout_report(&serde_json::to_string(body)?);
            } else {
                write_stdout_report(
                    &serde_json::json!({"error": {"code": "client", "message": format!("{e:#}")}})
                        .to_string(),
                );
            }
            Err(e)
        }
        r => r,
    }
}

async fn execute(client: &VmmClient, cmd: VmCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        VmCommand::List => {
            let list = client.list().await?;
            if json {
                print_json(&list)
            } else {
                print_list(&list);
                Ok(())
            }
        }
        VmCommand::Deploy(d) => {
            let app_id = d.app_id.as_deref().map(parse_app_id).transpose()?;
            let encrypted_env = match d.env.encrypt(app_id, &d.kms_urls).await? {
                Some(blob) => Some(blob),
                None => d.encrypted_env.as_ref().map(read_file).transpose()?,
            };
            let req = CreateCvmRequest {
                name: d.name,
                app_id,
                compose: read_text(&d.compose)?,
                image: d.image,
                vcpus: d.vcpus,
                memory_mb: d.memory_mb,
                ports: d
                    .ports
                    .iter()
                    .map(|p| parse_port(p))
                    .collect::<anyhow::Result<_>>()?,
                encrypted_env,
                kms_urls: (!d.kms_urls.is_empty()).then_some(d.kms_urls),
                gateway_urls: (!d.gateway_urls.is_empty()).then_some(d.gateway_urls),
                start: !d.no_start,
            };
            let info = client.create(&req).await?;
            show(&info, json, "deployed")
        }
        VmCommand::Upgrade(u) => upgrade(client, u, json).await,
        VmCommand::Stop { id } => show(&client.stop(&id).await?, json, "stopped"),
        VmCommand::Start { id } => show(&client.start(&id).await?, json, "started"),
        VmCommand::Rm { id } => {
            let info = client.get(&id).await?;
            client.remove(&id).await?;
            if json {
                print_json(&serde_json::json!({"removed": info.id, "name": info.name}))
            } else {
                outln!("removed {} ({})", info.name, info.id);
                Ok(())
            }
        }
        VmCommand::Logs { id, tail, follow } => logs(client, &id, tail, follow, json).await,
        VmCommand::Status { id } => show(&client.get(&id).await?, json, ""),
    }
}

async fn upgrade(client: &VmmClient, u: UpgradeArgs, json: bool) -> anyhow::Result<()> {
    let app_id = u.app_id.as_deref().map(parse_app_id).transpose()?;
    let mut encrypted_env = u.encrypted_env.as_ref().map(read_file).transpose()?;
    if !u.env.env.is_empty() || u.env.env_file.is_some() {
        // The env is encrypted for the app id given here, never for one a VMM reports
        // (a VMM naming an app it controls would get the plaintext to it); the CVM must
        // be that app's.
        let current = client.get(&u.id).await?;
        if app_id.is_some_and(|a| a != current.app_id) {
            bail!(
                "--app-id does not match the CVM's app 0x{}",
                hex::encode(current.app_id)
            );
        }
        encrypted_env = u.env.encrypt(app_id, &current.kms_urls).await?;
    }
    let req = UpgradeRequest {
        compose: read_text(&u.compose)?,
        encrypted_env,
        image: u.image,
        wait_for_approval: u.wait,
        approval_timeout_secs: Some(u.timeout),
    };
    let (waiting, mut info) = client.upgrade(&u.id, &req).await?;
    if !waiting {
        return show(&info, json, "upgraded");
    }
    // Poll the status, one progress line per change (on stderr in --json mode).
    let mut last = String::new();
    loop {
        let Some(status) = info.upgrade.clone() else {
            return Err(unavailable(format!(
                "the VMM dropped the upgrade of {}",
                info.id
            )));
        };
        let line = format!("{}: {}", state_name(status.state), status.detail);
        if line != last {
            if json {
                eprintln!("{line}");
            } else {
                outln!("{line}");
            }
            last = line;
        }
        match status.state {
            UpgradeState::Done => return show(&info, json, "upgraded"),
            UpgradeState::Failed | UpgradeState::TimedOut => {
                if json {
                    print_json(&info)?;
                }
                // The chain did not allow it (in time), or applying it failed: "no".
                return Err(refuse(format!(
                    "upgrade of {} {}: {}",
                    info.name,
                    state_name(status.state),
                    status.detail
                )));
            }
            UpgradeState::WaitingForApproval | UpgradeState::Applying => {}
        }
        tokio::time::sleep(WAIT_POLL).await;
        info = client.get(&info.id).await?;
    }
}

fn state_name(s: UpgradeState) -> &'static str {
    match s {
        UpgradeState::WaitingForApproval => "waiting for approval",
        UpgradeState::Applying => "applying",
        UpgradeState::Done => "done",
        UpgradeState::Failed => "failed",
        UpgradeState::TimedOut => "timed out",
    }
}

async fn logs(
    client: &VmmClient,
    id: &str,
    tail: u32,
    follow: bool,
    json: bool,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if !follow {
        let text = client.logs(id, tail).await?;
        if json {
            writeln!(
                out,
                "{}",
                serde_json::json!({"id": id, "log": String::from_utf8_lossy(&text)})
            )?;
        } else {
            out.write_all(&text)?;
        }
        return Ok(());
    }
    drop(out);
    let mut stream = client.follow_logs(id, tail).await?;
    while let Some(chunk) = stream.next().await? {
        let mut out = std::io::stdout().lock();
        if json {
            writeln!(
                out,
                "{}",
                serde_json::json!({"chunk": String::from_utf8_lossy(&chunk)})
            )?;
        } else {
            out.write_all(&chunk)?;
        }
        out.flush()?;
    }
    Ok(())
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn show(info: &CvmInfo, json: bool, verb: &str) -> anyhow::Result<()> {
    if json {
        return print_json(info);
    }
    if !verb.is_empty() {
        outln!("{verb} {} ({})", info.name, info.id);
    }
    print_info(info);
    Ok(())
}

fn ports(p: &[cairn_protocol::vmm::PortMapping]) -> String {
    p.iter()
        .map(|p| format!("127.0.0.1:{}->{}", p.host_port, p.guest_port))
        .collect::<Vec<_>>()
        .join(",")
}

fn state_text(state: CvmState, reason: Option<&str>) -> String {
    match reason {
        Some(r) => format!("{state} ({r})"),
        None => state.to_string(),
    }
}

fn print_list(list: &CvmList) {
    outln!(
        "{:<20} {:<16} {:<9} {:<16} {:<28} LAST EVENT",
        "NAME",
        "ID",
        "STATE",
        "IMAGE",
        "PORTS"
    );
    for c in &list.cvms {
        let last = c
            .last_event
            .as_ref()
            .map(|e| format!("{} {}", e.event, e.payload))
            .unwrap_or_default();
        outln!(
            "{:<20} {:<16} {:<9} {:<16} {:<28} {}",
            c.name,
            c.id,
            c.state,
            c.image,
            ports(&c.ports),
            last
        );
        if let Some(r) = &c.reason {
            outln!("  reason: {r}");
        }
    }
}

fn print_info(i: &CvmInfo) {
    outln!("  state     {}", state_text(i.state, i.reason.as_deref()));
    outln!("  app id    0x{}", hex::encode(i.app_id));
    outln!("  compose   0x{}", hex::encode(i.compose_hash));
    outln!(
        "  image     {} (0x{})",
        i.image,
        hex::encode(i.os_image_hash)
    );
    outln!(
        "  backend   {} ({} vCPU, {} MiB)",
        i.backend,
        i.vcpus,
        i.memory_mb
    );
    if !i.ports.is_empty() {
        outln!("  ports     {}", ports(&i.ports));
    }
    if let Some(pid) = i.pid {
        outln!("  pid       {pid}");
    }
    if let Some(u) = &i.upgrade {
        outln!(
            "  upgrade   to 0x{}: {}: {}",
            hex::encode(u.compose_hash),
            state_name(u.state),
            u.detail
        );
    }
    if !i.events.is_empty() {
        outln!("  boot progress (reported by the guest):");
        for e in &i.events {
            outln!("    {} {} {}", e.at, e.event, e.payload);
        }
    }
}
