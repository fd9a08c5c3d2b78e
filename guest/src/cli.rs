//! The `cairn-guest` command line (the binary is a thin wrapper around [`run`]).
//!
//! ```text
//! cairn-guest boot [--share DIR] [--keys DIR] [--work DIR]
//!                  [--agent-socket PATH] [--agent-tcp ADDR] [--no-agent]
//!                  [--tee tdx|simulator] [--kms-timeout SECS]
//!                  [--kms-trust intel|simulator] [--kms-collateral FILE]
//!                  [--sim-pki-seed HEX32] [--sim-pki-now SECS] [--sim-host-seed HEX32]
//!                  [--sim-os NAME:VERSION] [--docker PATH]
//! ```
//!
//! Every option can also come from the environment as `CAIRN_GUEST_<OPTION>` (upper case,
//! `-` → `_`, e.g. `CAIRN_GUEST_TEE=simulator`); `TEE` is honoured too. The command line
//! wins. `boot` runs the boot flow, then serves the guest agent until SIGTERM/Ctrl-C or
//! until the app exits.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cairn_attestation::simulator::{OsImage, SimHostConfig, SimPki, SimPkiConfig, SimTdx};
use cairn_attestation::{Collateral, TdxTee, Tee, Verifier};

use crate::{agent, boot, BootConfig, KmsClient};

/// Default host share directory.
pub const DEFAULT_SHARE: &str = "/var/lib/cairn/share";
/// Default keys directory.
pub const DEFAULT_KEYS: &str = "/run/cairn/keys";
/// Default runner work directory.
pub const DEFAULT_WORK: &str = "/run/cairn/app";
/// Default agent socket (dstack's).
pub const DEFAULT_AGENT_SOCKET: &str = "/var/run/dstack.sock";

const OPTIONS: &[&str] = &[
    "share",
    "keys",
    "work",
    "agent-socket",
    "agent-tcp",
    "no-agent",
    "tee",
    "kms-timeout",
    "kms-trust",
    "kms-collateral",
    "sim-pki-seed",
    "sim-pki-now",
    "sim-host-seed",
    "sim-os",
];

struct Opts(HashMap<String, String>);

impl Opts {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut map = HashMap::new();
        for opt in OPTIONS {
            let var = format!("CAIRN_GUEST_{}", opt.to_ascii_uppercase().replace('-', "_"));
            if let Ok(v) = std::env::var(&var) {
                map.insert((*opt).to_owned(), v);
            }
        }
        if !map.contains_key("tee") {
            if let Ok(v) = std::env::var("TEE") {
                map.insert("tee".to_owned(), v);
            }
        }
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let name = a
                .strip_prefix("--")
                .filter(|n| OPTIONS.contains(n))
                .ok_or_else(|| format!("unknown argument {a:?}"))?;
            if name == "no-agent" {
                map.insert(name.to_owned(), "1".to_owned());
                continue;
            }
            let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            map.insert(name.to_owned(), v.clone());
        }
        Ok(Opts(map))
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    fn path(&self, k: &str, default: &str) -> PathBuf {
        PathBuf::from(self.get(k).unwrap_or(default))
    }

    fn hex32(&self, k: &str, default: [u8; 32]) -> Result<[u8; 32], String> {
        match self.get(k) {
            None => Ok(default),
            Some(h) => hex::decode(h.trim_start_matches("0x"))
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("--{k} must be 32 bytes of hex")),
        }
    }
}

/// Run the command line `args` (without the program name).
pub async fn run(args: Vec<String>) -> Result<(), String> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err("usage: cairn-guest boot [options] (see docs/guest.md)".to_owned());
    };
    if cmd != "boot" {
        return Err(format!("unknown command {cmd:?}: expected \"boot\""));
    }
    let o = Opts::parse(rest)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let sim_pki = || -> Result<Arc<SimPki>, String> {
        let mut cfg = SimPkiConfig::new(o.hex32("sim-pki-seed", [0x42; 32])?, now);
        if let Some(t) = o.get("sim-pki-now") {
            cfg.now = t
                .parse()
                .map_err(|_| "--sim-pki-now must be unix seconds")?;
        }
        SimPki::new(cfg).map(Arc::new).map_err(|e| e.to_string())
    };
    let mut device_id = None;
    let tee: Arc<dyn Tee> = match o.get("tee").unwrap_or("tdx") {
        "tdx" => Arc::new(TdxTee::new()),
        "simulator" => {
            let (name, version) = o
                .get("sim-os")
                .unwrap_or("cairn-os:1.0")
                .split_once(':')
                .ok_or("--sim-os must be NAME:VERSION")?;
            let host = SimHostConfig::new(
                o.hex32("sim-host-seed", [0x01; 32])?,
                OsImage::example(name, version),
            );
            let tdx = SimTdx::new(sim_pki()?, host).map_err(|e| e.to_string())?;
            device_id = Some(tdx.device_id().0);
            Arc::new(tdx)
        }
        other => return Err(format!("--tee must be tdx or simulator, not {other:?}")),
    };
    let verifier = match o.get("kms-trust").unwrap_or("intel") {
        "intel" => Verifier::intel(),
        "simulator" => Verifier::dangerous_with_simulator_root(sim_pki()?.root_ca_der()),
        other => {
            return Err(format!(
                "--kms-trust must be intel or simulator, not {other:?}"
            ))
        }
    };
    let collateral = match o.get("kms-collateral") {
        Some(f) => Collateral::from_file(f).map_err(|e| format!("--kms-collateral: {e}"))?,
        None if o.get("kms-trust") == Some("simulator") => {
            Collateral::new(sim_pki()?.collateral()).map_err(|e| e.to_string())?
        }
        None => {
            return Err(
                "--kms-collateral FILE is required to verify a KMS on Intel's root".to_owned(),
            )
        }
    };
    let timeout = match o.get("kms-timeout") {
        Some(t) => Duration::from_secs(t.parse().map_err(|_| "--kms-timeout must be seconds")?),
        None => crate::kms_client::DEFAULT_TIMEOUT,
    };
    let serve_agent = o.get("no-agent").is_none();
    let socket = serve_agent.then(|| o.path("agent-socket", DEFAULT_AGENT_SOCKET));
    let config = BootConfig {
        share_dir: o.path("share", DEFAULT_SHARE),
        keys_dir: o.path("keys", DEFAULT_KEYS),
        work_dir: o.path("work", DEFAULT_WORK),
        agent_socket: socket.clone(),
        device_id,
        start_app: true,
        docker: o.path("docker", crate::runner::DEFAULT_DOCKER),
    };
    let kms = KmsClient::new(verifier.with_collateral(collateral), timeout);
    let mut booted = boot(tee, kms, &config)
        .await
        .map_err(|e| format!("boot failed: {e}"))?;
    tracing::info!(
        elapsed_ms = u64::try_from(booted.elapsed.as_millis()).unwrap_or(u64::MAX),
        "boot complete"
    );

    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut servers = Vec::new();
    if let Some(path) = &socket {
        let listener = agent::bind_unix(path).map_err(|e| e.to_string())?;
        let mut rx = stop_tx.subscribe();
        let router = agent::router(booted.state.clone());
        servers.push(tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.recv().await;
                })
                .await
        }));
        tracing::info!(socket = %path.display(), "guest agent listening");
    }
    if let Some(addr) = o.get("agent-tcp").filter(|_| serve_agent) {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("--agent-tcp {addr}: {e}"))?;
        let mut rx = stop_tx.subscribe();
        let router = agent::router(booted.state.clone());
        servers.push(tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.recv().await;
                })
                .await
        }));
        tracing::info!(%addr, "guest agent listening on TCP (development)");
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let app_exit = async {
        match booted.app.as_mut() {
            Some(child) => child.wait().await.map(|s| s.to_string()),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
        _ = term.recv() => tracing::info!("terminated"),
        status = app_exit => tracing::info!(status = ?status, "app exited"),
    }
    let _ = stop_tx.send(());
    for s in servers {
        let _ = s.await;
    }
    Ok(())
}
