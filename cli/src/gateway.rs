//! `cairn gateway`: a gateway node's admin endpoint on the command line.
//!
//! ```text
//! cairn gateway [--admin http://127.0.0.1:8090] [--token-file F] [--json]
//!   status        admitted instances per app, with the block the chain allowed each at,
//!                 and the most recent refusals and revocations with their reasons
//! ```
//!
//! The admin endpoint is plain HTTP on loopback, or requires a bearer token
//! (`--token-file`); every request has a timeout and a bounded answer.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use cairn_protocol::api::ErrorBody;

use crate::common::{out, unavailable, write_stdout_report, Exit};
use cairn_protocol::gateway::{GatewayStatus, PATH_STATUS};
use clap::{Args, Subcommand};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// The admin endpoint's default address (the gateway's default `admin_listen`).
const DEFAULT_ADMIN: &str = "http://127.0.0.1:8090";
/// Timeout of one request.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read.
const MAX_ANSWER: usize = 8 * 1024 * 1024;
/// Largest token file read.
const MAX_TOKEN_FILE: u64 = 4096;

/// `cairn gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// The gateway node's admin endpoint, `http://HOST:PORT`.
    #[arg(long, env = "CAIRN_GATEWAY_ADMIN", default_value = DEFAULT_ADMIN, global = true)]
    admin: String,
    /// A file holding the admin bearer token (when the node requires one).
    #[arg(long, env = "CAIRN_GATEWAY_ADMIN_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// `--json` (the global flag; JSON is the API's own types).
    #[arg(skip)]
    pub json: bool,
    #[command(subcommand)]
    cmd: GatewayCommand,
}

#[derive(Debug, Subcommand)]
enum GatewayCommand {
    /// Admitted instances per app with their on-chain verdicts; recent refusals.
    Status,
}

/// Run `cairn gateway …`.
pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let result = match args.cmd {
        GatewayCommand::Status => status(&args).await,
    };
    match (result, args.json) {
        (Ok(text), _) => {
            out!("{text}");
            Ok(())
        }
        (Err(e), true) => {
            let body = ErrorBody::new("cli", format!("{e:#}"));
            write_stdout_report(&serde_json::to_string(&body).unwrap_or_default());
            Err(e)
        }
        (Err(e), false) => Err(e),
    }
}

fn token(args: &GatewayArgs) -> anyhow::Result<Option<String>> {
    let Some(path) = &args.token_file else {
        return Ok(None);
    };
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)
        .with_context(|| format!("--token-file {}", path.display()))?
        .take(MAX_TOKEN_FILE)
        .read_to_string(&mut text)
        .with_context(|| format!("--token-file {}", path.display()))?;
    Ok(Some(text.trim().to_owned()))
}

/// `GET path` on the admin endpoint: the status and the body.
async fn get(args: &GatewayArgs, path: &str) -> anyhow::Result<(u16, Bytes)> {
    let url = url::Url::parse(&args.admin).with_context(|| format!("--admin {}", args.admin))?;
    if url.scheme() != "http" {
        bail!(
            "--admin {}: the admin endpoint is plain HTTP (http://HOST:PORT)",
            args.admin
        );
    }
    let host = url
        .host_str()
        .ok_or_else(|| anyhow!("--admin {}: no host", args.admin))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port().unwrap_or(80);
    let token = token(args)?;
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .with_context(|| format!("connecting to {}", args.admin))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        let driver = tokio::spawn(conn);
        let mut req =
            hyper::Request::get(path).header(hyper::header::HOST, format!("{host}:{port}"));
        if let Some(t) = &token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = sender
            .send_request(req.body(Empty::<Bytes>::new())?)
            .await?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| anyhow!("reading the answer: {e}"))?
            .to_bytes();
        driver.abort();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| unavailable(format!("{} did not answer within {TIMEOUT:?}", args.admin)))?
        .map_err(|e| unavailable(format!("the gateway at {}: {e:#}", args.admin)))
}

async fn status(args: &GatewayArgs) -> anyhow::Result<String> {
    let (code, body) = get(args, PATH_STATUS).await?;
    if code != 200 {
        let msg = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| format!("{}: {}", b.error.code, b.error.message))
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
        return Err(Exit::of_status(code).error(format!("the gateway answered {code}: {msg}")));
    }
    let s: GatewayStatus = serde_json::from_slice(&body)
        .map_err(|e| unavailable(format!("the status answer is not the API's: {e}")))?;
    if args.json {
        return Ok(format!("{}\n", serde_json::to_string_pretty(&s)?));
    }
    Ok(render(&s))
}

fn hex0x(b: &[u8]) -> String {
    if b.is_empty() {
        "-".to_owned()
    } else {
        format!("0x{}", hex::encode(b))
    }
}

/// The status as text.
fn render(s: &GatewayStatus) -> String {
    let mut out = String::new();
    let block = s.policy_block.map_or_else(
        || "none yet".to_owned(),
        |b| format!("#{} {}", b.number, hex0x(&b.hash)),
    );
    let age = s.policy_age_ms.map_or_else(String::new, |ms| {
        format!(" (checked {:.1} s ago)", ms as f64 / 1000.0)
    });
    let _ = writeln!(
        out,
        "gateway app {}  base domain {}  policy block {block}{age}",
        hex0x(&s.gateway_app_id),
        s.base_domain
    );
    if s.apps.is_empty() {
        let _ = writeln!(out, "no admitted instances");
    }
    for app in &s.apps {
        let _ = writeln!(
            out,
            "app {}  {} instance(s), {} open connection(s)",
            hex0x(&app.app_id),
            app.instances.len(),
            app.open_connections
        );
        for i in &app.instances {
            let ports: Vec<String> = i
                .port_map
                .iter()
                .map(|p| format!("{}→{}", p.guest_port, p.host_port))
                .collect();
            let _ = writeln!(
                out,
                "  instance {}  {}{}  allowed at #{}  compose {}  image {}  device {}  tcb {}  {}  registered {} s ago, expires in {} s  {} connection(s)",
                hex0x(&i.instance_id),
                i.address,
                if ports.is_empty() { String::new() } else { format!(" [{}]", ports.join(", ")) },
                i.allowed_at.number,
                hex0x(&i.compose_hash),
                hex0x(&i.os_image_hash),
                hex0x(&i.device_id),
                i.tcb_status,
                if i.healthy { "healthy" } else { "unhealthy" },
                i.registered_secs_ago,
                i.expires_in_secs,
                i.open_connections,
            );
        }
    }
    if !s.recent_denials.is_empty() {
        let _ = writeln!(out, "recent refusals and revocations:");
        for d in &s.recent_denials {
            let at = d
                .block
                .map(|b| format!(" (block #{})", b.number))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {} s ago  {}  app {}  instance {}  {}{at}",
                d.secs_ago,
                d.code,
                hex0x(&d.app_id),
                hex0x(&d.instance_id),
                d.reason
            );
        }
    }
    out
}
