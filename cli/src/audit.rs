//! `cairn audit`: the auditing light client (DESIGN.md §6, "Audit") over every KMS node in
//! KmsAuth's node list.
//!
//! For each node (reached through one of the `--kms-url`s, its RA-TLS evidence verified
//! against `--kms-trust`; which node a URL serves comes from its `/v1/meta`), and for each
//! audited app: the node's anchors read from chain events are pairwise consistent, its
//! served checkpoint is signed by it and extends the last anchor, every release of the app
//! is included in the verified head, and KmsAuth allowed it at its recorded (hash-checked)
//! policy block (`cairn_onchain::audit_app`). Nothing the KMS serves is trusted.
//!
//! `--all` audits every app with a release in a node's log: every entry index belongs to
//! one app, so every entry is proved by that app's audit (an entry replaced by another
//! app's record fails the other app's inclusion check).
//!
//! Exit codes: 0 clean, 1 findings, 2 could not audit (chain unreadable, a KMS URL
//! unreachable or not verified, a registered node with no URL serving it). `--follow`
//! audits again every `--interval` and prints each new finding the moment it appears; it
//! runs until Ctrl-C and then exits as above for everything it saw.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use cairn_attestation::simulator::{SimPki, SimPkiConfig};
use cairn_attestation::{Collateral, PccsClient, Verifier};
use cairn_kms_client::{KmsClient, KmsConnection};
use cairn_onchain::alloy::primitives::Address;
use cairn_onchain::{audit_app, AuditReport, ChainClient, ChainConfig, Finding, LogSource};
use cairn_protocol::api::MAX_LOG_ENTRIES_PER_RESPONSE;
use cairn_tlog::{ReleaseRecord, SignedCheckpoint};
use clap::{Args, ValueEnum};
use serde::Serialize;

/// Intel's PCS, the default collateral source for `--kms-trust intel`.
const DEFAULT_PCCS_URL: &str = "https://api.trustedservices.intel.com";
/// The simulator PKI seed the devnet uses.
const DEFAULT_SIM_PKI_SEED: &str =
    "4242424242424242424242424242424242424242424242424242424242424242";
/// Most entries `--all` reads from one node to find its apps (the audit itself bounds
/// its reads by `cairn_onchain::MAX_AUDIT_ENTRIES`).
const MAX_DISCOVERY_ENTRIES: u64 = 1 << 20;

/// Exit code: every audited release is logged and allowed, on unforked logs.
pub const EXIT_CLEAN: u8 = 0;
/// Exit code: the audit found at least one problem.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit code: the audit could not be completed (it proves nothing).
pub const EXIT_COULD_NOT_AUDIT: u8 = 2;

/// Which root a KMS's attestation is verified against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Trust {
    /// Intel's SGX root CA (collateral from `--pccs-url`).
    Intel,
    /// The TDX simulator's mock root (development only).
    Simulator,
}

/// `cairn audit` options.
#[derive(Debug, Args)]
#[command(
    group(clap::ArgGroup::new("what").required(true).args(["app", "all"])),
    after_help = "Examples:\n  \
        source .devnet/devnet.env && cairn audit --app $CAIRN_APP_ID --kms-trust simulator\n  \
        cairn audit --all --json --kms-url https://kms-1:8443 --kms-url https://kms-2:8443\n  \
        cairn audit --all --follow --interval 5\n\n\
        Exit codes: 0 clean, 1 findings, 2 could not audit."
)]
pub struct AuditArgs {
    /// The app to audit (its AppAuth address).
    #[arg(long)]
    app: Option<String>,
    /// Audit every app with a release in a node's log.
    #[arg(long)]
    all: bool,
    /// Report only releases whose policy block is at least N (anchors and checkpoints are
    /// always checked from the start).
    #[arg(long, value_name = "N", default_value_t = 0)]
    from_block: u64,
    /// Keep auditing: again every --interval seconds, printing each new finding at once.
    #[arg(long)]
    follow: bool,
    /// Seconds between audits with --follow.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    interval: u64,
    /// A KMS node's URL (repeatable, or comma-separated in CAIRN_KMS_URL): every node in
    /// KmsAuth's list must be served by one of them.
    #[arg(
        long = "kms-url",
        env = "CAIRN_KMS_URL",
        value_delimiter = ',',
        required = true
    )]
    kms_urls: Vec<String>,
    /// The chain's JSON-RPC URL.
    #[arg(long, env = "CAIRN_RPC_URL")]
    rpc_url: url::Url,
    /// The chain id (checked against the RPC's).
    #[arg(long, env = "CAIRN_CHAIN_ID")]
    chain_id: u64,
    /// The KmsAuth contract.
    #[arg(long, env = "CAIRN_KMS_AUTH")]
    kms_auth: String,
    /// The root the KMS's attestation is verified against.
    #[arg(long, env = "CAIRN_KMS_TRUST", value_enum, default_value = "intel")]
    kms_trust: Trust,
    /// Collateral source for --kms-trust intel.
    #[arg(long, env = "CAIRN_PCCS_URL", default_value = DEFAULT_PCCS_URL)]
    pccs_url: String,
    /// The simulator PKI seed for --kms-trust simulator (32 bytes hex).
    #[arg(long, env = "CAIRN_SIM_PKI_SEED", default_value = DEFAULT_SIM_PKI_SEED)]
    sim_pki_seed: String,
    /// Print the report as JSON (the global `--json`).
    #[arg(skip)]
    pub json: bool,
}

/// The whole audit, as printed by `--json`.
#[derive(Debug, Serialize)]
struct Report {
    /// No findings and nothing unaudited.
    clean: bool,
    chain_id: u64,
    kms_auth: String,
    /// The chain head the audit read anchors and the node list up to.
    head_block: u64,
    nodes: Vec<NodeReport>,
    /// Why parts could not be audited (exit code 2).
    errors: Vec<String>,
}

#[derive(Debug, Serialize)]
struct NodeReport {
    node: String,
    url: String,
    /// In KmsAuth's node list at the head.
    registered: bool,
    apps: Vec<AppReport>,
}

#[derive(Debug, Serialize)]
struct AppReport {
    app_id: String,
    anchors: usize,
    verified_size: Option<u64>,
    releases: Vec<ReleaseRow>,
    findings: Vec<FindingRow>,
}

#[derive(Debug, Serialize)]
struct ReleaseRow {
    index: u64,
    kind: String,
    compose_hash: String,
    instance_id: String,
    policy_block: u64,
    timestamp: u64,
    logged: bool,
    allowed: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
struct FindingRow {
    /// The finding's kind (`forked_anchors`, `not_allowed`, …).
    kind: &'static str,
    /// The log index it is about, if one.
    index: Option<u64>,
    /// What is wrong.
    detail: String,
}

/// Run `cairn audit`; the exit code says clean / findings / could not audit.
pub async fn run(args: AuditArgs) -> anyhow::Result<u8> {
    let ctx = Context::new(&args).await?;
    if !args.follow {
        let report = ctx.audit_once(&args).await?;
        print_report(&report, args.json)?;
        return Ok(exit_code(&report));
    }
    follow(&ctx, &args).await
}

fn exit_code(report: &Report) -> u8 {
    if !report.errors.is_empty() {
        EXIT_COULD_NOT_AUDIT
    } else if report
        .nodes
        .iter()
        .any(|n| n.apps.iter().any(|a| !a.findings.is_empty()))
    {
        EXIT_FINDINGS
    } else {
        EXIT_CLEAN
    }
}

/// `--follow`: audit every interval; print every finding (and audit error) not printed
/// before, and a line per new release; stop on Ctrl-C.
async fn follow(ctx: &Context, args: &AuditArgs) -> anyhow::Result<u8> {
    let mut seen_findings = BTreeSet::new();
    let mut seen_releases = BTreeSet::new();
    let mut seen_errors = BTreeSet::new();
    let mut worst = EXIT_CLEAN;
    let mut tick = tokio::time::interval(Duration::from_secs(args.interval));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(worst),
        }
        let report = match ctx.audit_once(args).await {
            Ok(r) => r,
            Err(e) => {
                // The chain went away: say so once per distinct error and keep trying.
                let line = format!("{e:#}");
                if seen_errors.insert(line.clone()) {
                    emit(args.json, "error", &serde_json::json!({ "error": line }));
                }
                worst = worst.max(EXIT_COULD_NOT_AUDIT);
                continue;
            }
        };
        for e in &report.errors {
            if seen_errors.insert(e.clone()) {
                emit(args.json, "error", &serde_json::json!({ "error": e }));
            }
        }
        worst = worst.max(exit_code(&report));
        for n in &report.nodes {
            for a in &n.apps {
                for r in &a.releases {
                    if seen_releases.insert((n.node.clone(), r.index)) {
                        emit(
                            args.json,
                            "release",
                            &serde_json::json!({"node": n.node, "app_id": a.app_id, "release": r}),
                        );
                    }
                }
                for f in &a.findings {
                    if seen_findings.insert((n.node.clone(), a.app_id.clone(), f.clone())) {
                        emit(
                            args.json,
                            "finding",
                            &serde_json::json!({"node": n.node, "app_id": a.app_id, "finding": f}),
                        );
                    }
                }
            }
        }
    }
}

/// One `--follow` event: a JSON line, or a human line.
fn emit(json: bool, event: &str, body: &serde_json::Value) {
    if json {
        let mut line = body.clone();
        if let Some(o) = line.as_object_mut() {
            o.insert("event".into(), event.into());
        }
        println!("{line}");
    } else {
        match event {
            "finding" => println!(
                "FINDING node {} app {}: {} {}",
                body["node"].as_str().unwrap_or("?"),
                body["app_id"].as_str().unwrap_or("?"),
                body["finding"]["kind"].as_str().unwrap_or("?"),
                body["finding"]["detail"].as_str().unwrap_or("")
            ),
            "release" => println!(
                "release  node {} app {}: index {} compose {} policy block {} logged {} allowed {}",
                body["node"].as_str().unwrap_or("?"),
                body["app_id"].as_str().unwrap_or("?"),
                body["release"]["index"],
                body["release"]["compose_hash"].as_str().unwrap_or("?"),
                body["release"]["policy_block"],
                body["release"]["logged"],
                body["release"]["allowed"],
            ),
            _ => println!("ERROR {}", body["error"].as_str().unwrap_or("?")),
        }
    }
}

/// What every audit round needs: the chain and a KMS client.
struct Context {
    chain: ChainClient,
    kms: KmsClient,
    chain_id: u64,
    kms_auth: Address,
    app: Option<Address>,
}

impl Context {
    async fn new(args: &AuditArgs) -> anyhow::Result<Context> {
        let kms_auth: Address = args
            .kms_auth
            .parse()
            .with_context(|| format!("--kms-auth {:?} is not an address", args.kms_auth))?;
        let app = args
            .app
            .as_deref()
            .map(|a| {
                a.parse::<Address>()
                    .with_context(|| format!("--app {a:?} is not an address"))
            })
            .transpose()?;
        let config = ChainConfig::new(args.rpc_url.clone(), args.chain_id, kms_auth)
            .with_call_timeout(Duration::from_secs(10));
        let chain = ChainClient::connect(&config, None)
            .await
            .with_context(|| format!("connecting to the chain at {}", args.rpc_url))?;
        Ok(Context {
            chain,
            kms: kms_client(args)?,
            chain_id: args.chain_id,
            kms_auth,
            app,
        })
    }

    /// One full audit. Errors only when the chain cannot be read; a KMS that cannot be
    /// reached is a report error (exit 2) and the other nodes are still audited.
    async fn audit_once(&self, args: &AuditArgs) -> anyhow::Result<Report> {
        let head = self
            .chain
            .policy_block()
            .await
            .context("reading the chain head")?;
        let registered = self
            .chain
            .kms_nodes(head)
            .await
            .context("reading KmsAuth's node list")?;
        let mut errors = Vec::new();
        let mut nodes = Vec::new();
        let mut served = BTreeMap::new();
        for url in &args.kms_urls {
            let (node, mut conn) = match self.connect(url).await {
                Ok(c) => c,
                Err(e) => {
                    errors.push(format!("{url}: {e:#}"));
                    continue;
                }
            };
            if served.insert(node, url.clone()).is_some() {
                continue; // Two URLs of one node: audited once.
            }
            let apps = match self.app {
                Some(app) => vec![app],
                None => match discover_apps(&mut conn).await {
                    Ok(apps) => apps,
                    Err(e) => {
                        errors.push(format!("{url}: listing the log's apps: {e:#}"));
                        continue;
                    }
                },
            };
            let mut app_reports = Vec::new();
            for app in apps {
                let report = audit_app(&self.chain, &mut conn, node, app)
                    .await
                    .with_context(|| format!("auditing app {app} on node {node}"))?;
                app_reports.push(app_report(&report, args.from_block));
            }
            nodes.push(NodeReport {
                node: node.to_string(),
                url: url.clone(),
                registered: registered.contains(&node),
                apps: app_reports,
            });
        }
        for node in &registered {
            if !served.contains_key(node) {
                errors.push(format!(
                    "KMS node {node} is in KmsAuth's node list but no --kms-url serves it"
                ));
            }
        }
        let clean = errors.is_empty()
            && nodes
                .iter()
                .all(|n| n.apps.iter().all(|a| a.findings.is_empty()));
        Ok(Report {
            clean,
            chain_id: self.chain_id,
            kms_auth: self.kms_auth.to_string(),
            head_block: head.number,
            nodes,
            errors,
        })
    }

    /// Connect to a KMS (evidence verified) and learn which node it is; it must serve
    /// our chain and KmsAuth.
    async fn connect(&self, url: &str) -> anyhow::Result<(Address, KmsConnection)> {
        let mut conn = self
            .kms
            .connect(url, None)
            .await
            .context("connecting (RA-TLS)")?;
        let meta = conn.meta().await.context("GET /v1/meta")?;
        if meta.chain_id != self.chain_id || Address::from(meta.kms_auth) != self.kms_auth {
            bail!(
                "serves chain {} KmsAuth {}, not chain {} KmsAuth {}",
                meta.chain_id,
                Address::from(meta.kms_auth),
                self.chain_id,
                self.kms_auth
            );
        }
        Ok((Address::from(meta.node_address), conn))
    }
}

/// The apps with a release in the node's log, read up to its served checkpoint's size.
/// Nothing here is trusted: the audit of each app proves its entries.
async fn discover_apps(conn: &mut KmsConnection) -> anyhow::Result<Vec<Address>> {
    let text = conn.checkpoint().await?;
    let size = SignedCheckpoint::parse(text.as_bytes())
        .context("the served checkpoint")?
        .checkpoint()
        .size()
        .min(MAX_DISCOVERY_ENTRIES);
    let mut apps = BTreeSet::new();
    let mut start = 0;
    while start < size {
        let end = size.min(start + MAX_LOG_ENTRIES_PER_RESPONSE);
        let page = conn.entries(start, end).await?;
        if page.start != start || page.entries.is_empty() {
            bail!("entries {start}..{end}: the node served none from {start}");
        }
        for e in &page.entries {
            // An undecodable entry is an app's finding in the audit; skip it here.
            if let Ok(r) = ReleaseRecord::decode(&e.0) {
                apps.insert(r.app_id);
            }
        }
        start += page.entries.len() as u64;
    }
    Ok(apps.into_iter().collect())
}

fn app_report(r: &AuditReport, from_block: u64) -> AppReport {
    let shown: BTreeSet<u64> = r
        .releases
        .iter()
        .filter(|x| x.record.policy_block_number >= from_block)
        .map(|x| x.index)
        .collect();
    AppReport {
        app_id: r.app_id.to_string(),
        anchors: r.anchors,
        verified_size: r.verified_size,
        releases: r
            .releases
            .iter()
            .filter(|x| shown.contains(&x.index))
            .map(|x| ReleaseRow {
                index: x.index,
                kind: format!("{:?}", x.record.kind).to_lowercase(),
                compose_hash: x.record.compose_hash.to_string(),
                instance_id: x.record.instance_id.to_string(),
                policy_block: x.record.policy_block_number,
                timestamp: x.record.timestamp,
                logged: x.logged,
                allowed: x.allowed,
            })
            .collect(),
        findings: r
            .findings
            .iter()
            .map(finding_row)
            // A finding about a release outside --from-block is not reported.
            .filter(|f| {
                f.index
                    .is_none_or(|i| shown.contains(&i) || !r.releases.iter().any(|x| x.index == i))
            })
            .collect(),
    }
}

fn finding_row(f: &Finding) -> FindingRow {
    let (kind, index, detail) = match f {
        Finding::ForkedAnchors {
            first,
            second,
            detail,
        } => (
            "forked_anchors",
            None,
            format!("anchors at sizes {first} and {second} are not consistent: {detail}"),
        ),
        Finding::BadCheckpoint { detail } => ("bad_checkpoint", None, detail.clone()),
        Finding::CheckpointNotConsistent {
            anchor_size,
            checkpoint_size,
            detail,
        } => (
            "checkpoint_not_consistent",
            None,
            format!(
                "the served checkpoint (size {checkpoint_size}) does not extend the last anchor (size {anchor_size}): {detail}"
            ),
        ),
        Finding::NoVerifiedHead => (
            "no_verified_head",
            None,
            "neither a valid checkpoint nor an anchor".to_owned(),
        ),
        Finding::EntriesUnavailable { start, detail } => (
            "entries_unavailable",
            Some(*start),
            format!("entries from {start} not served: {detail}"),
        ),
        Finding::Truncated { size } => (
            "truncated",
            None,
            format!("the verified head has {size} entries; only a prefix was audited"),
        ),
        Finding::UndecodableEntry { index, detail } => {
            ("undecodable_entry", Some(*index), detail.clone())
        }
        Finding::NotLogged { index, detail } => ("not_logged", Some(*index), detail.clone()),
        Finding::PolicyBlockMismatch {
            index,
            number,
            recorded,
            actual,
        } => (
            "policy_block_mismatch",
            Some(*index),
            match actual {
                Some(a) => format!("block {number}: recorded hash {recorded}, chain has {a}"),
                None => format!("block {number} (recorded hash {recorded}) does not exist"),
            },
        ),
        Finding::NotAllowed { index, reason } => (
            "not_allowed",
            Some(*index),
            format!("KmsAuth refuses it at its policy block: {reason}"),
        ),
        Finding::WrongOrigin { index, detail } => ("wrong_origin", Some(*index), detail.clone()),
    };
    FindingRow {
        kind,
        index,
        detail,
    }
}

fn print_report(r: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    println!(
        "audit of chain {} KmsAuth {} at block {}",
        r.chain_id, r.kms_auth, r.head_block
    );
    for n in &r.nodes {
        println!(
            "\nnode {} ({}){}",
            n.node,
            n.url,
            if n.registered {
                ""
            } else {
                "  NOT in KmsAuth's node list"
            }
        );
        if n.apps.is_empty() {
            println!("  no releases");
        }
        for a in &n.apps {
            println!(
                "  app {}: {} anchors, verified size {}, {} releases, {} findings",
                a.app_id,
                a.anchors,
                a.verified_size.map_or("none".to_owned(), |s| s.to_string()),
                a.releases.len(),
                a.findings.len()
            );
            if !a.releases.is_empty() {
                println!(
                    "    {:>6}  {:<10} {:<20} {:>12}  {:<6} {:<7}",
                    "INDEX", "KIND", "COMPOSE", "POLICY BLOCK", "LOGGED", "ALLOWED"
                );
            }
            for x in &a.releases {
                println!(
                    "    {:>6}  {:<10} {:<20} {:>12}  {:<6} {:<7}",
                    x.index,
                    x.kind,
                    format!("{}…", &x.compose_hash[..x.compose_hash.len().min(18)]),
                    x.policy_block,
                    yes(x.logged),
                    yes(x.allowed)
                );
            }
            for f in &a.findings {
                println!("    FINDING {}: {}", f.kind, f.detail);
            }
        }
    }
    for e in &r.errors {
        println!("\nCOULD NOT AUDIT: {e}");
    }
    println!(
        "\n{}",
        match exit_code(r) {
            EXIT_CLEAN => "clean: every release logged and allowed, logs unforked",
            EXIT_FINDINGS => "FINDINGS (exit 1)",
            _ => "INCOMPLETE: could not audit everything (exit 2)",
        }
    );
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "NO"
    }
}

fn kms_client(args: &AuditArgs) -> anyhow::Result<KmsClient> {
    Ok(match args.kms_trust {
        Trust::Intel => {
            let pccs = PccsClient::new(&args.pccs_url).context("--pccs-url")?;
            KmsClient::with_pccs(Verifier::intel(), pccs)
        }
        Trust::Simulator => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .map_err(|_| anyhow!("the system clock is before 1970"))?;
            let mut seed = [0u8; 32];
            hex::decode_to_slice(args.sim_pki_seed.trim_start_matches("0x"), &mut seed)
                .context("--sim-pki-seed: 32 bytes of hex")?;
            let pki = SimPki::new(SimPkiConfig::new(seed, now)).context("simulator PKI")?;
            let collateral = Collateral::new(pki.collateral()).context("simulator collateral")?;
            KmsClient::new(Arc::new(
                Verifier::dangerous_with_simulator_root(pki.root_ca_der())
                    .with_collateral(collateral),
            ))
        }
    })
}
