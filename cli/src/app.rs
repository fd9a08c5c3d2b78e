//! `cairn app`: an app's compose hash and its on-chain policy (AppAuth through KmsAuth).
//!
//! ```text
//! cairn app compose-hash FILE [--write OUT]
//! cairn app deploy [--owner ADDR] [--compose FILE | --compose-hash H] [--device D]
//!                  [--devices-listed] [--disable-upgrades]
//! cairn app deploy --existing ADDR          register an IAppAuth contract (e.g. dstack's)
//! cairn app allow|revoke HASH --app ADDR
//! cairn app schedule HASH --at TIME --app ADDR
//! cairn app devices allow|remove DEVICE --app ADDR | cairn app devices any on|off --app ADDR
//! cairn app images check HASH
//! cairn app status [ADDR] [--from-block N]
//! ```
//!
//! Transactions go through `cairn_onchain` (gas estimated first: a revert is reported,
//! decoded, and nothing is sent). Before sending, the app is checked to be registered in
//! KmsAuth, so a typo in an address fails with "unknown app" and no transaction.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use cairn_onchain::alloy::primitives::{Address, B256};
use cairn_onchain::alloy::rpc::types::TransactionReceipt;
use cairn_onchain::{AppAuth, AppAuthClient, AppParams, BlockRange, ChainClient};
use cairn_protocol::compose::AppCompose;
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use crate::common::{
    fail, outln, parse_address, read_bounded, ChainArgs, Global, Out, Resolved, TrustArgs,
};

/// Largest app-compose.json read.
const MAX_COMPOSE: u64 = 1024 * 1024;
/// Blocks of history `status` reads by default (from the head back).
const DEFAULT_HISTORY_BLOCKS: u64 = 100_000;

/// `cairn app`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  cairn app compose-hash app-compose.json
  cairn app deploy --compose app-compose.json
  cairn app allow 0x9c…e1 --app 0x5FbD…0aa3
  cairn app schedule 0x9c…e1 --at +1d --app 0x5FbD…0aa3
  cairn app status 0x5FbD…0aa3 --json")]
pub struct AppArgs {
    #[command(flatten)]
    chain: ChainArgs,
    #[command(flatten)]
    trust: TrustArgs,
    /// The app (its AppAuth address).
    #[arg(long, env = "CAIRN_APP", global = true)]
    app: Option<String>,
    #[command(subcommand)]
    cmd: AppCommand,
}

#[derive(Debug, Subcommand)]
enum AppCommand {
    /// The compose hash of an app-compose.json (SHA-256 of its exact bytes); --write
    /// writes dstack's deterministic form (keys sorted, compact), the form dstack's SDKs
    /// hash.
    ComposeHash {
        /// The app-compose.json.
        file: PathBuf,
        /// Write the deterministic JSON here (and print its hash).
        #[arg(long, value_name = "OUT")]
        write: Option<PathBuf>,
    },
    /// Deploy an AppAuth through the KmsAuth factory, or register an existing one.
    Deploy(DeployArgs),
    /// Allow a compose hash now.
    Allow {
        /// The compose hash (0x + 64 hex).
        hash: String,
    },
    /// Remove a compose hash (allowed or scheduled).
    Revoke {
        /// The compose hash.
        hash: String,
    },
    /// Allow a compose hash from a time on (an announced upgrade).
    Schedule {
        /// The compose hash.
        hash: String,
        /// Unix seconds, or +N[s|m|h|d] from the chain's head time.
        #[arg(long)]
        at: String,
    },
    /// The devices that may run the app.
    Devices {
        #[command(subcommand)]
        cmd: DevicesCommand,
    },
    /// OS images (KmsAuth's allowlist, which every app shares).
    Images {
        #[command(subcommand)]
        cmd: ImagesCommand,
    },
    /// Secrets for the app: encrypted here for its KMS env key.
    Env {
        #[command(subcommand)]
        cmd: EnvCommand,
    },
    /// Registration, owner, compose hashes (allowed / scheduled, with activation times),
    /// devices and settings, from the chain's events.
    Status {
        /// The app (default: --app).
        #[arg(value_name = "APP")]
        app_id: Option<String>,
        /// First block of the history read (default: the head minus 100000).
        #[arg(long)]
        from_block: Option<u64>,
        /// How many recent key releases to show from the KMS log (needs --kms-url; 0: none).
        #[arg(long, default_value_t = 10)]
        releases: usize,
    },
}

#[derive(Debug, Args)]
struct DeployArgs {
    /// Register this existing IAppAuth contract instead of deploying one.
    #[arg(long, conflicts_with_all = ["owner", "compose", "compose_hash", "device", "devices_listed", "disable_upgrades"])]
    existing: Option<String>,
    /// The AppAuth owner (default: the signer).
    #[arg(long)]
    owner: Option<String>,
    /// Allow this app-compose.json's hash at once.
    #[arg(long, conflicts_with = "compose_hash")]
    compose: Option<PathBuf>,
    /// Allow this compose hash at once.
    #[arg(long)]
    compose_hash: Option<String>,
    /// Allow this device at once (implies --devices-listed).
    #[arg(long)]
    device: Option<String>,
    /// Only listed devices may run the app (default: any device).
    #[arg(long)]
    devices_listed: bool,
    /// Make the AppAuth non-upgradeable, for ever.
    #[arg(long)]
    disable_upgrades: bool,
}

#[derive(Debug, Subcommand)]
enum DevicesCommand {
    /// Allow a device id.
    Allow {
        /// The device id (0x + 64 hex).
        device: String,
    },
    /// Remove a device id.
    Remove {
        /// The device id.
        device: String,
    },
    /// Allow any device (on) or only listed ones (off).
    Any {
        /// on or off.
        value: OnOff,
    },
    /// Whether a device id is listed.
    Check {
        /// The device id.
        device: String,
    },
}

#[derive(Debug, Subcommand)]
enum EnvCommand {
    /// Fetch the app's env public key from the KMS, check its signature against the root
    /// key registered on chain, and encrypt the variables to it.
    Encrypt(EncryptArgs),
}

#[derive(Debug, Args)]
struct EncryptArgs {
    /// Variables, NAME=VALUE.
    #[arg(value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// A .env-style file (NAME=VALUE lines, `#` comments, optional `export`, quotes).
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// Where to write the ciphertext (the VMM's `--encrypted-env`).
    #[arg(long, short)]
    out: PathBuf,
    /// dstack's legacy format (for dstack guests) instead of Cairn's.
    #[arg(long)]
    legacy: bool,
}

#[derive(Debug, Subcommand)]
enum ImagesCommand {
    /// Whether KmsAuth allows an OS image hash.
    Check {
        /// The OS image hash (0x + 64 hex).
        hash: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnOff {
    On,
    Off,
}

/// Run `cairn app …`.
pub async fn run(global: &Global, args: AppArgs, out: Out) -> anyhow::Result<()> {
    let cfg = Resolved::new(global, &args.chain)?;
    // A spinner while transactions are sent and mined (stderr, terminals only).
    let sends = matches!(
        &args.cmd,
        AppCommand::Deploy(_)
            | AppCommand::Allow { .. }
            | AppCommand::Revoke { .. }
            | AppCommand::Schedule { .. }
            | AppCommand::Devices { .. }
    );
    let _spinner = sends.then(|| out.progress(None, "waiting for the chain"));
    match args.cmd {
        AppCommand::ComposeHash { file, write } => compose_hash(&file, write.as_ref(), out),
        AppCommand::Deploy(d) => deploy(&cfg, d, out).await,
        AppCommand::Allow { hash } => {
            allow_or_revoke(&cfg, args.app.as_deref(), &hash, true, out).await
        }
        AppCommand::Revoke { hash } => {
            allow_or_revoke(&cfg, args.app.as_deref(), &hash, false, out).await
        }
        AppCommand::Schedule { hash, at } => {
            let hash = parse_b256("compose hash", &hash)?;
            let (chain, app) = owned_app(&cfg, args.app.as_deref()).await?;
            let at = parse_time(&chain, &at).await?;
            let r = app
                .schedule_compose_hash(hash, at)
                .await
                .context("scheduling the compose hash")?;
            report_tx(
                out,
                "schedule",
                &chain,
                app.app_id(),
                Some(hash),
                Some(at),
                &r,
            )
        }
        AppCommand::Devices { cmd } => devices(&cfg, args.app.as_deref(), cmd, out).await,
        AppCommand::Images { cmd } => images(&cfg, cmd, out).await,
        AppCommand::Env {
            cmd: EnvCommand::Encrypt(e),
        } => env_encrypt(&cfg, &args.trust, args.app.as_deref(), e, out).await,
        AppCommand::Status {
            app_id,
            from_block,
            releases,
        } => {
            let app = app_id.or(args.app);
            status(&cfg, &args.trust, app.as_deref(), from_block, releases, out).await
        }
    }
}

/// `compose-hash`'s JSON.
#[derive(Serialize)]
struct ComposeHashOut {
    file: String,
    /// SHA-256 of the file's exact bytes: what a CVM booting this file measures.
    compose_hash: String,
    /// True when the file is already dstack's deterministic JSON.
    deterministic: bool,
    /// The hash of the deterministic form (what dstack's SDKs compute).
    deterministic_hash: String,
    /// Where the deterministic form was written (`--write`).
    #[serde(skip_serializing_if = "Option::is_none")]
    written: Option<String>,
}

fn compose_hash(file: &Path, write: Option<&PathBuf>, out: Out) -> anyhow::Result<()> {
    let bytes = read_bounded(file, MAX_COMPOSE)?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| fail(format!("{}: not JSON: {e}", file.display())))?;
    AppCompose::parse(&bytes)
        .map_err(|e| fail(format!("{}: not an app compose: {e}", file.display())))?;
    let canonical = deterministic_json(&value)?;
    let hash = cairn_protocol::compose::compose_hash(&bytes);
    let canonical_hash = cairn_protocol::compose::compose_hash(canonical.as_bytes());
    if let Some(path) = write {
        std::fs::write(path, canonical.as_bytes())
            .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    }
    let result = ComposeHashOut {
        file: file.display().to_string(),
        compose_hash: hex0x(&hash),
        deterministic: canonical.as_bytes() == bytes.as_slice(),
        deterministic_hash: hex0x(&canonical_hash),
        written: write.map(|p| p.display().to_string()),
    };
    if out.json {
        return out.json(&result);
    }
    if let Some(w) = &result.written {
        outln!("{}", result.deterministic_hash);
        eprintln!("wrote {w} (deterministic JSON; dstack's SDKs compute the same hash)");
    } else {
        outln!("{}", result.compose_hash);
        if !result.deterministic {
            eprintln!(
                "{}: not dstack's deterministic JSON; dstack's getComposeHash gives {} (use --write to normalise)",
                out.warn("note"),
                result.deterministic_hash
            );
        }
    }
    Ok(())
}

/// dstack's deterministic JSON (`to_deterministic_json` / `getComposeHash`): object keys
/// sorted recursively, compact separators, non-ASCII as UTF-8; top-level `null` fields
/// dropped (dstack's SDKs omit unset fields).
pub fn deterministic_json(value: &serde_json::Value) -> anyhow::Result<String> {
    use serde_json::Value;
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sort(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    let Value::Object(top) = value else {
        return Err(fail("an app compose must be a JSON object"));
    };
    let kept: serde_json::Map<String, Value> = top
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(serde_json::to_string(&sort(&Value::Object(kept)))?)
}

#[derive(Serialize)]
struct DeployOut {
    app_id: String,
    owner: Option<String>,
    registered: bool,
    /// "deployed" (a new AppAuth from the factory) or "registered" (an existing contract).
    how: &'static str,
    initial_compose_hash: Option<String>,
}

async fn deploy(cfg: &Resolved, d: DeployArgs, out: Out) -> anyhow::Result<()> {
    if let Some(existing) = d.existing {
        let app_id = parse_address("--existing", &existing)?;
        let chain = cfg.writer().await?;
        chain
            .register_app(app_id)
            .await
            .context("registering the app in KmsAuth")?;
        let result = DeployOut {
            app_id: app_id.to_string(),
            owner: None,
            registered: true,
            how: "registered",
            initial_compose_hash: None,
        };
        return deploy_report(out, &result);
    }
    let initial_compose_hash = match (&d.compose, &d.compose_hash) {
        (Some(file), _) => {
            let bytes = read_bounded(file, MAX_COMPOSE)?;
            AppCompose::parse(&bytes)
                .map_err(|e| fail(format!("{}: not an app compose: {e}", file.display())))?;
            Some(B256::from(cairn_protocol::compose::compose_hash(&bytes)))
        }
        (None, Some(h)) => Some(parse_b256("--compose-hash", h)?),
        (None, None) => None,
    };
    let initial_device = d
        .device
        .as_deref()
        .map(|s| parse_b256("--device", s))
        .transpose()?;
    let chain = cfg.writer().await?;
    let owner = match &d.owner {
        Some(o) => parse_address("--owner", o)?,
        None => chain
            .connection()
            .sender()
            .ok_or_else(|| fail("no signer address"))?,
    };
    let params = AppParams {
        owner,
        upgrades_disabled: d.disable_upgrades,
        allow_any_device: !(d.devices_listed || initial_device.is_some()),
        initial_device,
        initial_compose_hash,
    };
    let app = chain
        .deploy_app(&params)
        .await
        .context("deploying the app through KmsAuth")?;
    let result = DeployOut {
        app_id: app.app_id().to_string(),
        owner: Some(owner.to_string()),
        registered: true,
        how: "deployed",
        initial_compose_hash: initial_compose_hash.map(|h| h.to_string()),
    };
    deploy_report(out, &result)
}

fn deploy_report(out: Out, r: &DeployOut) -> anyhow::Result<()> {
    if out.json {
        return out.json(r);
    }
    outln!("{} app {}", r.how, out.bold(&r.app_id));
    if let Some(o) = &r.owner {
        outln!("  owner         {o}");
    }
    if let Some(h) = &r.initial_compose_hash {
        outln!("  compose hash  {h} (allowed)");
    }
    Ok(())
}

/// `addComposeHash` (`allow`) or `removeComposeHash` of `hash`, reported.
async fn allow_or_revoke(
    cfg: &Resolved,
    app: Option<&str>,
    hash: &str,
    allow: bool,
    out: Out,
) -> anyhow::Result<()> {
    let hash = parse_b256("compose hash", hash)?;
    let (chain, app) = owned_app(cfg, app).await?;
    let (action, r) = if allow {
        let r = app.add_compose_hash(hash).await;
        ("allow", r.context("allowing the compose hash")?)
    } else {
        let r = app.remove_compose_hash(hash).await;
        ("revoke", r.context("revoking the compose hash")?)
    };
    report_tx(out, action, &chain, app.app_id(), Some(hash), None, &r)
}

/// The app named by `--app`, checked to be registered in KmsAuth, with a writer.
async fn owned_app(
    cfg: &Resolved,
    app: Option<&str>,
) -> anyhow::Result<(ChainClient, AppAuthClient)> {
    let app_id = app_id(app)?;
    let chain = cfg.writer().await?;
    // The head block, not the pinned one: an app deployed a block ago is there to manage.
    let head = chain.head().await.context("reading the chain head")?;
    let at = chain
        .block_at(head.number)
        .await
        .context("reading the chain head")?;
    if !chain
        .is_app_registered(app_id, at)
        .await
        .context("reading KmsAuth's app registry")?
    {
        return Err(fail(format!(
            "unknown app {app_id}: not registered in KmsAuth {} (check --app and --kms-auth)",
            chain.kms_auth()
        )));
    }
    let app = chain.app(app_id);
    Ok((chain, app))
}

fn app_id(app: Option<&str>) -> anyhow::Result<Address> {
    let s = app.ok_or_else(|| fail("missing the app: pass --app ADDR or set CAIRN_APP"))?;
    parse_address("--app", s)
}

#[derive(Serialize)]
struct TxOut {
    action: &'static str,
    app_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    compose_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    activates_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_id: Option<String>,
    tx_hash: String,
    block_number: Option<u64>,
}

fn report_tx(
    out: Out,
    action: &'static str,
    _chain: &ChainClient,
    app_id: Address,
    hash: Option<B256>,
    at: Option<u64>,
    r: &TransactionReceipt,
) -> anyhow::Result<()> {
    print_tx(
        out,
        TxOut {
            action,
            app_id: app_id.to_string(),
            compose_hash: hash.map(|h| h.to_string()),
            activates_at: at,
            device_id: None,
            tx_hash: r.transaction_hash.to_string(),
            block_number: r.block_number,
        },
    )
}

fn print_tx(out: Out, t: TxOut) -> anyhow::Result<()> {
    if out.json {
        return out.json(&t);
    }
    let what = t
        .compose_hash
        .as_deref()
        .or(t.device_id.as_deref())
        .unwrap_or("");
    outln!("{} {what} for app {}", out.good(t.action), t.app_id);
    if let Some(at) = t.activates_at {
        outln!("  activates at  {at} (unix)");
    }
    outln!(
        "  tx            {} (block {})",
        t.tx_hash,
        t.block_number.map(|b| b.to_string()).unwrap_or_default()
    );
    Ok(())
}

async fn devices(
    cfg: &Resolved,
    app: Option<&str>,
    cmd: DevicesCommand,
    out: Out,
) -> anyhow::Result<()> {
    let (action, device, app_id, r) = match cmd {
        DevicesCommand::Check { device } => {
            let device = parse_b256("device id", &device)?;
            let app_id = app_id(app)?;
            let chain = cfg.reader().await?;
            let at = chain.policy_block().await?;
            let listed = chain.app(app_id).is_device_allowed(device, at).await?;
            if out.json {
                return out.json(&serde_json::json!({
                    "app_id": app_id.to_string(), "device_id": device.to_string(),
                    "listed": listed, "block": at.number,
                }));
            }
            let verdict = if listed {
                out.good("listed")
            } else {
                out.bad("not listed")
            };
            outln!("device {device}: {verdict}");
            return Ok(());
        }
        DevicesCommand::Allow { device } => {
            let d = parse_b256("device id", &device)?;
            let (_chain, app) = owned_app(cfg, app).await?;
            let r = app.add_device(d).await.context("allowing the device")?;
            ("device-allow", Some(d), app.app_id(), r)
        }
        DevicesCommand::Remove { device } => {
            let d = parse_b256("device id", &device)?;
            let (_chain, app) = owned_app(cfg, app).await?;
            let r = app.remove_device(d).await.context("removing the device")?;
            ("device-remove", Some(d), app.app_id(), r)
        }
        DevicesCommand::Any { value } => {
            let on = matches!(value, OnOff::On);
            let (_chain, app) = owned_app(cfg, app).await?;
            let r = app
                .set_allow_any_device(on)
                .await
                .context("setting allow-any-device")?;
            let action = if on {
                "any-device-on"
            } else {
                "any-device-off"
            };
            (action, None, app.app_id(), r)
        }
    };
    print_tx(
        out,
        TxOut {
            action,
            app_id: app_id.to_string(),
            compose_hash: None,
            activates_at: None,
            device_id: device.map(|d| d.to_string()),
            tx_hash: r.transaction_hash.to_string(),
            block_number: r.block_number,
        },
    )
}

async fn images(cfg: &Resolved, cmd: ImagesCommand, out: Out) -> anyhow::Result<()> {
    let ImagesCommand::Check { hash } = cmd;
    let hash = parse_b256("OS image hash", &hash)?;
    let chain = cfg.reader().await?;
    let at = chain.policy_block().await?;
    let allowed = chain.is_os_image_allowed(hash, at).await?;
    if out.json {
        return out.json(&serde_json::json!({
            "os_image_hash": hash.to_string(), "allowed": allowed, "block": at.number,
        }));
    }
    outln!(
        "OS image {hash}: {}",
        if allowed {
            out.good("allowed")
        } else {
            out.bad("not allowed")
        }
    );
    Ok(())
}

/// `status`'s JSON.
#[derive(Serialize)]
struct StatusOut {
    app_id: String,
    registered: bool,
    owner: Option<String>,
    block: u64,
    /// Head time, unix seconds (activation times are judged against it).
    block_timestamp: u64,
    compose_hashes: Vec<HashOut>,
    allow_any_device: Option<bool>,
    devices: Vec<String>,
    require_tcb_up_to_date: Option<bool>,
    upgrades_disabled: bool,
    history_from_block: u64,
    /// The app's most recent key releases in the KMS node's log (with --kms-url).
    #[serde(skip_serializing_if = "Option::is_none")]
    releases: Option<Releases>,
}

/// Recent releases as the node serves them (signature-checked checkpoint; inclusion is
/// what `cairn audit` proves).
#[derive(Serialize)]
struct Releases {
    kms_url: String,
    log_size: u64,
    /// Entries read from the end of the log.
    scanned: u64,
    entries: Vec<ReleaseOut>,
}

#[derive(Serialize)]
struct ReleaseOut {
    index: u64,
    kind: String,
    compose_hash: String,
    instance_id: String,
    device_id: String,
    tcb_status: String,
    policy_block: u64,
    timestamp: u64,
    kms_node: String,
}

/// Most entries `status` reads from the end of a log.
const MAX_RELEASE_SCAN: u64 = 4096;

async fn recent_releases(
    trust: &TrustArgs,
    url: &str,
    app_id: Address,
    want: usize,
) -> anyhow::Result<Releases> {
    use cairn_onchain::LogSource as _;
    use cairn_tlog::{CheckpointVerifier, ReleaseRecord, SignedCheckpoint};
    let mut conn = trust
        .kms_client(cairn_onchain::unix_now())?
        .connect(url, None)
        .await
        .with_context(|| format!("connecting to the KMS at {url}"))?;
    let meta = conn.meta().await.context("GET /v1/meta")?;
    let text = conn.checkpoint().await.context("the KMS's checkpoint")?;
    let origin = SignedCheckpoint::parse(text.as_bytes())
        .context("the KMS's checkpoint")?
        .checkpoint()
        .origin()
        .to_owned();
    let size = CheckpointVerifier::new(&origin, Address::from(meta.node_address))
        .and_then(|v| v.open(text.as_bytes()))
        .context("the KMS's checkpoint signature")?
        .size();
    let floor = size.saturating_sub(MAX_RELEASE_SCAN);
    let mut end = size;
    let mut entries = Vec::new();
    while end > floor && entries.len() < want {
        let start = end
            .saturating_sub(cairn_protocol::api::MAX_LOG_ENTRIES_PER_RESPONSE)
            .max(floor);
        let batch = conn
            .entries(start, end)
            .await
            .context("the KMS's log entries")?;
        if batch.start != start || batch.entries.len() as u64 != end - start {
            return Err(anyhow::anyhow!(
                "the KMS answered {} entries from {} for {start}..{end}",
                batch.entries.len(),
                batch.start
            ));
        }
        for (i, e) in batch.entries.iter().enumerate().rev() {
            let r = ReleaseRecord::decode(&e.0).context("a log entry")?;
            if r.boot.app_id == app_id && entries.len() < want {
                entries.push(ReleaseOut {
                    index: start + i as u64,
                    kind: format!("{:?}", r.kind),
                    compose_hash: r.boot.compose_hash.to_string(),
                    instance_id: r.boot.instance_id.to_string(),
                    device_id: r.boot.device_id.to_string(),
                    tcb_status: r.boot.tcb_status,
                    policy_block: r.policy_block_number,
                    timestamp: r.timestamp,
                    kms_node: r.kms_node.to_string(),
                });
            }
        }
        end = start;
    }
    Ok(Releases {
        kms_url: url.to_owned(),
        log_size: size,
        scanned: size - end,
        entries,
    })
}

#[derive(Serialize)]
struct HashOut {
    compose_hash: String,
    activates_at: u64,
    /// "allowed" (active now) or "scheduled" (activates later).
    state: &'static str,
}

async fn status(
    cfg: &Resolved,
    trust: &TrustArgs,
    app: Option<&str>,
    from_block: Option<u64>,
    want_releases: usize,
    out: Out,
) -> anyhow::Result<()> {
    let app_id = app_id(app)?;
    let chain = cfg.reader().await?;
    let at = chain
        .policy_block()
        .await
        .context("reading the chain head")?;
    let now = chain.block_timestamp(at).await?;
    let registered = chain.is_app_registered(app_id, at).await?;
    if !registered {
        return Err(fail(format!(
            "unknown app {app_id}: not registered in KmsAuth {} (check the address and --kms-auth)",
            chain.kms_auth()
        )));
    }
    let app = chain.app(app_id);
    let owner = app.owner(at).await.ok();
    let from = from_block.unwrap_or_else(|| at.number.saturating_sub(DEFAULT_HISTORY_BLOCKS));
    let history = app
        .policy_history(BlockRange::new(from, at.number))
        .await
        .context("reading the app's policy events")?;
    let mut hashes: Vec<B256> = Vec::new();
    let mut devices: Vec<B256> = Vec::new();
    let (mut any_device, mut tcb, mut disabled) = (None, None, false);
    for e in history {
        use AppAuth::AppAuthEvents as Ev;
        match e.event {
            Ev::ComposeHashAdded(a) if !hashes.contains(&a.hash) => hashes.push(a.hash),
            Ev::DeviceAdded(d) if !devices.contains(&d.deviceId) => devices.push(d.deviceId),
            Ev::DeviceRemoved(d) => devices.retain(|x| *x != d.deviceId),
            Ev::AllowAnyDeviceSet(s) => any_device = Some(s.allowAnyDevice),
            Ev::RequireTcbUpToDateSet(s) => tcb = Some(s.requireTcbUpToDate),
            Ev::UpgradesDisabled(_) => disabled = true,
            _ => {}
        }
    }
    // The events name candidates; the contract's current state decides.
    let mut compose_hashes = Vec::new();
    for h in hashes {
        if let Some(a) = app.compose_hash_activation(h, at).await? {
            compose_hashes.push(HashOut {
                compose_hash: h.to_string(),
                activates_at: a.activates_at,
                state: if a.activates_at <= now {
                    "allowed"
                } else {
                    "scheduled"
                },
            });
        }
    }
    let result = StatusOut {
        app_id: app_id.to_string(),
        registered,
        owner: owner.map(|o| o.to_string()),
        block: at.number,
        block_timestamp: now,
        compose_hashes,
        allow_any_device: any_device,
        devices: devices.iter().map(|d| d.to_string()).collect(),
        require_tcb_up_to_date: tcb,
        upgrades_disabled: disabled,
        history_from_block: from,
        releases: match (want_releases, cfg.kms_url().ok()) {
            (n, Some(url)) if n > 0 => Some(recent_releases(trust, &url, app_id, n).await?),
            _ => None,
        },
    };
    if out.json {
        return out.json(&result);
    }
    outln!("app {} at block {}", out.bold(&result.app_id), result.block);
    outln!("  registered    {}", out.good("yes"));
    outln!("  owner         {}", result.owner.as_deref().unwrap_or("?"));
    if result.compose_hashes.is_empty() {
        outln!("  compose       {}", out.warn("none allowed"));
    }
    for h in &result.compose_hashes {
        let state = if h.state == "allowed" {
            out.good(h.state)
        } else {
            out.warn(h.state)
        };
        outln!(
            "  compose       {} {state} (activates at {})",
            h.compose_hash,
            h.activates_at
        );
    }
    match result.allow_any_device {
        Some(true) | None if result.devices.is_empty() => {
            outln!(
                "  devices       any ({})",
                if result.allow_any_device.is_some() {
                    "set"
                } else {
                    "default at deploy"
                }
            )
        }
        _ => {
            for d in &result.devices {
                outln!("  device        {d}");
            }
        }
    }
    if result.upgrades_disabled {
        outln!("  upgrades      disabled");
    }
    if let Some(r) = &result.releases {
        outln!(
            "  releases      {} of the last {} log entries at {}",
            r.entries.len(),
            r.scanned,
            r.kms_url
        );
        for e in &r.entries {
            outln!(
                "    #{} {} {} at {} (block {})",
                e.index,
                e.kind,
                e.compose_hash,
                e.timestamp,
                e.policy_block
            );
        }
    }
    Ok(())
}

/// Largest .env file read.
const MAX_ENV_FILE: u64 = 256 * 1024;

#[derive(Serialize)]
struct EnvOut {
    app_id: String,
    out: String,
    /// "cairn" or "dstack-legacy".
    format: &'static str,
    bytes: usize,
    /// The variable names (never the values).
    names: Vec<String>,
}

async fn env_encrypt(
    cfg: &Resolved,
    trust: &TrustArgs,
    app: Option<&str>,
    e: EncryptArgs,
    out: Out,
) -> anyhow::Result<()> {
    use cairn_protocol::env::{encrypt_env_for_app, EnvEncryption, EnvFormat, EnvVar, EnvVars};
    let app_id = app_id(app)?;
    let id: [u8; 20] = app_id.into();
    let mut lines: Vec<(String, String)> = Vec::new();
    if let Some(f) = &e.env_file {
        let bytes = zeroize::Zeroizing::new(read_bounded(f, MAX_ENV_FILE)?);
        let text =
            std::str::from_utf8(&bytes).map_err(|_| fail(format!("{}: not UTF-8", f.display())))?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let where_ = format!("{} line {}", f.display(), i + 1);
            lines.push(env_pair(
                line.strip_prefix("export ").unwrap_or(line),
                &where_,
            )?);
        }
    }
    for v in &e.vars {
        lines.push(env_pair(v, "argument")?);
    }
    if lines.is_empty() {
        return Err(fail(
            "no variables: give NAME=VALUE arguments or --env-file FILE",
        ));
    }
    let names: Vec<String> = lines.iter().map(|(k, _)| k.clone()).collect();
    let vars = EnvVars::new(
        lines
            .into_iter()
            .map(|(key, value)| EnvVar { key, value })
            .collect(),
    )
    .map_err(|err| fail(format!("the variables: {err}")))?;
    let url = cfg.kms_url()?;
    let chain = cfg.reader().await?;
    let at = chain
        .policy_block()
        .await
        .context("reading the chain head")?;
    let root = chain
        .root_keys(at)
        .await
        .context("reading the KMS root key from KmsAuth")?
        .ok_or_else(|| {
            fail("KmsAuth has no KMS root key registered: nothing to check the KMS against")
        })?;
    let now = cairn_onchain::unix_now();
    let mut conn = trust
        .kms_client(now)?
        .connect(&url, None)
        .await
        .with_context(|| format!("connecting to the KMS at {url}"))?;
    let pubkey = conn
        .env_pubkey(&id)
        .await
        .context("fetching the app's env public key")?;
    let format = if e.legacy {
        EnvFormat::DstackLegacy
    } else {
        EnvFormat::Cairn
    };
    let blob = encrypt_env_for_app(
        &pubkey,
        &root.k256_pubkey,
        &id,
        &vars,
        EnvEncryption::new(now).with_format(format),
    )
    .map_err(|err| {
        crate::common::refuse(format!(
            "the KMS's env key for {app_id} is not vouched for by the on-chain root key: {err}"
        ))
    })?;
    std::fs::write(&e.out, &blob).map_err(|err| fail(format!("{}: {err}", e.out.display())))?;
    let result = EnvOut {
        app_id: app_id.to_string(),
        out: e.out.display().to_string(),
        format: if e.legacy { "dstack-legacy" } else { "cairn" },
        bytes: blob.len(),
        names,
    };
    if out.json {
        return out.json(&result);
    }
    outln!(
        "encrypted {} variable(s) for app {} ({}, {} bytes) -> {}",
        result.names.len(),
        result.app_id,
        result.format,
        result.bytes,
        result.out
    );
    Ok(())
}

/// `NAME=VALUE` (a quoted value loses its quotes). Errors name where, never the value.
fn env_pair(s: &str, where_: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s.split_once('=').ok_or_else(|| {
        let name: String = s.chars().take_while(|c| *c != '=').take(64).collect();
        fail(format!("{where_}: {name:?} is not NAME=VALUE"))
    })?;
    let v = v.trim();
    let v = [('"', '"'), ('\'', '\'')]
        .iter()
        .find_map(|(a, b)| v.strip_prefix(*a).and_then(|x| x.strip_suffix(*b)))
        .unwrap_or(v);
    Ok((k.trim().to_owned(), v.to_owned()))
}

/// A `0x…` 32-byte value; a usage error naming `what` otherwise.
pub fn parse_b256(what: &str, s: &str) -> anyhow::Result<B256> {
    s.trim()
        .parse()
        .map_err(|_| fail(format!("{what} {s:?}: not 0x + 64 hex digits")))
}

/// Unix seconds, or `+N[s|m|h|d]` from the chain head's timestamp.
async fn parse_time(chain: &ChainClient, s: &str) -> anyhow::Result<u64> {
    let bad = || fail(format!("--at {s:?}: give unix seconds or +N[s|m|h|d]"));
    if let Some(rel) = s.strip_prefix('+') {
        let (num, unit) =
            rel.split_at(rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len()));
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mult = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        let head = chain.head().await.context("reading the chain head")?;
        return head
            .timestamp
            .checked_add(n.checked_mul(mult).ok_or_else(bad)?)
            .ok_or_else(bad);
    }
    s.parse().map_err(|_| bad())
}

fn hex0x(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}
