//! The `cairn-guest` command line (the binary is a thin wrapper around [`run`]).
//!
//! ```text
//! cairn-guest boot [--share DIR] [--keys DIR] [--work DIR]
//!                  [--agent-socket PATH] [--agent-tcp ADDR] [--no-agent]
//!                  [--tee tdx|simulator] [--kms-timeout SECS]
//!                  [--kms-trust intel|simulator] [--kms-collateral FILE] [--pccs-url URL]
//!                  [--sim-pki-seed HEX32] [--sim-pki-now SECS] [--sim-host-seed HEX32]
//!                  [--sim-os NAME:VERSION] [--docker PATH]
//! ```
//!
//! Every option can also come from the environment as `CAIRN_GUEST_<OPTION>` (upper case,
//! `-` → `_`); the TEE is `TEE=tdx|simulator`. The command line wins. `boot` runs the boot
//! flow, then serves the guest agent until SIGTERM/Ctrl-C or until the app exits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cairn_attestation::simulator::{OsImage, SimHostConfig, SimPki, SimPkiConfig, SimTdx};
use cairn_attestation::{Collateral, PccsClient, TdxTee, Tee, Verifier};
use clap::{Args, Parser, Subcommand, ValueEnum};

use cairn_kms_client::{KmsClient, Timeouts};
use cairn_protocol::hostapi::EVENT_APP_EXITED;

use crate::{agent, boot, runner, BootConfig};

/// Default host share directory.
pub const DEFAULT_SHARE: &str = "/var/lib/cairn/share";
/// Default keys directory.
pub const DEFAULT_KEYS: &str = "/run/cairn/keys";
/// Default runner work directory.
pub const DEFAULT_WORK: &str = "/run/cairn/app";
/// Default agent socket (dstack's).
pub const DEFAULT_AGENT_SOCKET: &str = "/var/run/dstack.sock";
/// Intel's PCS, the default source of collateral.
pub const DEFAULT_PCCS_URL: &str = "https://api.trustedservices.intel.com";
/// Default seed of the simulator's mock Intel PKI.
pub const DEFAULT_SIM_PKI_SEED: &str =
    "4242424242424242424242424242424242424242424242424242424242424242";
/// Default seed of the simulated host.
pub const DEFAULT_SIM_HOST_SEED: &str =
    "0101010101010101010101010101010101010101010101010101010101010101";

/// `cairn-guest`: the in-CVM boot flow and guest agent.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Cairn guest: measured boot, keys from the KMS, guest agent"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Boot the app from the host share, then serve the guest agent until SIGTERM/Ctrl-C
    /// or until the app exits.
    Boot(BootArgs),
}

/// Which TEE backend measures and quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TeeKind {
    /// Intel TDX: configfs-tsm quotes, tdx_guest sysfs RTMR extension.
    Tdx,
    /// The in-process TDX simulator (development and tests only).
    Simulator,
}

/// Which root the verifier of the KMS's evidence trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KmsTrust {
    /// Intel's SGX root CA.
    Intel,
    /// The simulator's mock Intel root (logs a WARN: proves nothing about hardware).
    Simulator,
}

/// Options of `cairn-guest boot`.
#[derive(Debug, Args)]
pub struct BootArgs {
    /// The host share directory.
    #[arg(long, env = "CAIRN_GUEST_SHARE", default_value = DEFAULT_SHARE)]
    pub share: PathBuf,
    /// Where the keys are written (0700 directory, 0600 files).
    #[arg(long, env = "CAIRN_GUEST_KEYS", default_value = DEFAULT_KEYS)]
    pub keys: PathBuf,
    /// A private directory for runner files.
    #[arg(long, env = "CAIRN_GUEST_WORK", default_value = DEFAULT_WORK)]
    pub work: PathBuf,
    /// The guest agent's unix socket.
    #[arg(long, env = "CAIRN_GUEST_AGENT_SOCKET", default_value = DEFAULT_AGENT_SOCKET)]
    pub agent_socket: PathBuf,
    /// Also serve the agent on this TCP address (development only).
    #[arg(long, env = "CAIRN_GUEST_AGENT_TCP")]
    pub agent_tcp: Option<String>,
    /// Do not serve the guest agent.
    #[arg(long, env = "CAIRN_GUEST_NO_AGENT")]
    pub no_agent: bool,
    /// The TEE backend.
    #[arg(long, env = "TEE", value_enum, default_value = "tdx")]
    pub tee: TeeKind,
    /// Timeout of each stage of a KMS exchange (connect, handshake, attestation, each
    /// request), in seconds.
    #[arg(long, env = "CAIRN_GUEST_KMS_TIMEOUT", default_value_t = cairn_kms_client::DEFAULT_REQUEST_TIMEOUT.as_secs())]
    pub kms_timeout: u64,
    /// The root the KMS's attestation is verified against.
    #[arg(
        long,
        env = "CAIRN_GUEST_KMS_TRUST",
        value_enum,
        default_value = "intel"
    )]
    pub kms_trust: KmsTrust,
    /// Collateral (JSON file) for verifying the KMS's quote. Without it, collateral is
    /// fetched from `--pccs-url` (with `--kms-trust simulator`: the simulator's own,
    /// unless `--pccs-url` is given).
    #[arg(long, env = "CAIRN_GUEST_KMS_COLLATERAL")]
    pub kms_collateral: Option<PathBuf>,
    /// PCCS (Intel PCS v4 API) for the KMS quote's collateral; default Intel's PCS.
    #[arg(long, env = "CAIRN_GUEST_PCCS_URL")]
    pub pccs_url: Option<String>,
    /// Seed of the simulator's mock Intel PKI (32 bytes hex; must match the KMS's).
    #[arg(long, env = "CAIRN_GUEST_SIM_PKI_SEED", default_value = DEFAULT_SIM_PKI_SEED)]
    pub sim_pki_seed: String,
    /// Time the simulator PKI's validity windows are anchored at (unix seconds; must
    /// match the KMS's). Default: now.
    #[arg(long, env = "CAIRN_GUEST_SIM_PKI_NOW")]
    pub sim_pki_now: Option<u64>,
    /// Seed of the simulated host (32 bytes hex; gives the device id).
    #[arg(long, env = "CAIRN_GUEST_SIM_HOST_SEED", default_value = DEFAULT_SIM_HOST_SEED)]
    pub sim_host_seed: String,
    /// The simulated OS image, NAME:VERSION.
    #[arg(long, env = "CAIRN_GUEST_SIM_OS", default_value = "cairn-os:1.0")]
    pub sim_os: String,
    /// The docker CLI for the docker-compose runner.
    #[arg(long, env = "CAIRN_GUEST_DOCKER", default_value = crate::runner::DEFAULT_DOCKER)]
    pub docker: PathBuf,
}

fn hex32(name: &str, h: &str) -> Result<[u8; 32], String> {
    hex::decode(h.trim_start_matches("0x"))
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("--{name} must be 32 bytes of hex"))
}

/// Run `cairn-guest boot`.
pub async fn run(args: BootArgs) -> Result<(), String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let pki_seed = hex32("sim-pki-seed", &args.sim_pki_seed)?;
    let sim_pki = || -> Result<Arc<SimPki>, String> {
        let mut cfg = SimPkiConfig::new(pki_seed, now);
        if let Some(t) = args.sim_pki_now {
            cfg.now = t;
        }
        SimPki::new(cfg).map(Arc::new).map_err(|e| e.to_string())
    };
    let mut device_id = None;
    let tee: Arc<dyn Tee> = match args.tee {
        TeeKind::Tdx => Arc::new(TdxTee::new()),
        TeeKind::Simulator => {
            let (name, version) = args
                .sim_os
                .split_once(':')
                .ok_or("--sim-os must be NAME:VERSION")?;
            let host = SimHostConfig::new(
                hex32("sim-host-seed", &args.sim_host_seed)?,
                OsImage::example(name, version),
            );
            let tdx = SimTdx::new(sim_pki()?, host).map_err(|e| e.to_string())?;
            device_id = Some(tdx.device_id().0);
            Arc::new(tdx)
        }
    };
    let timeout = Duration::from_secs(args.kms_timeout);
    let sim_root = match args.kms_trust {
        KmsTrust::Intel => None,
        KmsTrust::Simulator => Some(sim_pki()?.root_ca_der().to_vec()),
    };
    let make_verifier = move || match &sim_root {
        None => Verifier::intel(),
        Some(root) => Verifier::dangerous_with_simulator_root(root),
    };
    let kms = match (&args.kms_collateral, &args.pccs_url, args.kms_trust) {
        (Some(f), _, _) => {
            let c = Collateral::from_file(f).map_err(|e| format!("--kms-collateral: {e}"))?;
            KmsClient::new(make_verifier().with_collateral(c))
        }
        (None, None, KmsTrust::Simulator) => {
            let c = Collateral::new(sim_pki()?.collateral()).map_err(|e| e.to_string())?;
            KmsClient::new(make_verifier().with_collateral(c))
        }
        (None, url, _) => {
            let url = url.as_deref().unwrap_or(DEFAULT_PCCS_URL);
            let pccs = PccsClient::new(url).map_err(|e| format!("--pccs-url: {e}"))?;
            KmsClient::with_pccs(make_verifier(), pccs)
        }
    }
    .with_timeouts(Timeouts::uniform(timeout));
    let serve_agent = !args.no_agent;
    let socket = serve_agent.then(|| args.agent_socket.clone());
    let config = BootConfig {
        share_dir: args.share.clone(),
        keys_dir: args.keys.clone(),
        work_dir: args.work.clone(),
        agent_socket: socket.clone(),
        device_id,
        start_app: true,
        docker: args.docker.clone(),
    };
    let mut booted = boot(tee, kms, &config)
        .await
        .map_err(|e| format!("boot failed: {e}"))?;
    tracing::info!(
        elapsed_ms = u64::try_from(booted.elapsed.as_millis()).unwrap_or(u64::MAX),
        "boot complete"
    );

    // With gateway_enabled, register with every gateway of sys-config, again and again
    // (stopped when this returns).
    let _registrations = crate::gateway::spawn(
        booted.state.clone(),
        crate::gateway::RegisterOptions::default(),
    );

    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut servers = Vec::new();
    // One router for every listener: its clones share one concurrency limit.
    let agent_router = agent::router(booted.state.clone());
    if let Some(path) = &socket {
        let listener = agent::bind_unix(path).map_err(|e| e.to_string())?;
        servers.push(serve_until_stopped(
            listener,
            agent_router.clone(),
            stop_tx.subscribe(),
        ));
        tracing::info!(socket = %path.display(), "guest agent listening");
    }
    if let Some(addr) = args.agent_tcp.as_deref().filter(|_| serve_agent) {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("--agent-tcp {addr}: {e}"))?;
        servers.push(serve_until_stopped(
            listener,
            agent_router.clone(),
            stop_tx.subscribe(),
        ));
        tracing::info!(%addr, "guest agent listening on TCP (development)");
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let app_exit = async {
        match booted.app.as_mut() {
            Some(app) => app.wait().await.map(|s| s.to_string()),
            None => std::future::pending().await,
        }
    };
    let exit = tokio::select! {
        _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted"); None }
        _ = term.recv() => { tracing::info!("terminated"); None }
        status = app_exit => { tracing::info!(status = ?status, "app exited"); Some(status) }
    };
    let reporter = booted.reporter.clone();
    match exit {
        None => {
            if let Some(app) = booted.app.as_mut() {
                if let Err(e) = app.stop(runner::STOP_GRACE).await {
                    tracing::warn!(error = %e, "stopping the app");
                }
            }
            reporter.report(EVENT_APP_EXITED, "stopped by the guest on a signal");
        }
        Some(Ok(status)) => reporter.report(EVENT_APP_EXITED, status),
        Some(Err(e)) => reporter.report(EVENT_APP_EXITED, format!("unknown: {e}")),
    }
    reporter.flush(crate::boot::ERROR_REPORT_FLUSH).await;
    let _ = stop_tx.send(());
    for s in servers {
        let _ = s.await;
    }
    Ok(())
}

/// Serve `router` on `listener` on a task until `stop` fires (then gracefully).
fn serve_until_stopped<L>(
    listener: L,
    router: axum::Router,
    mut stop: tokio::sync::broadcast::Receiver<()>,
) -> tokio::task::JoinHandle<std::io::Result<()>>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.recv().await;
            })
            .await
    })
}
