//! `cairn audit`: the auditing light client (DESIGN.md §6, "Audit") over every KMS node in
//! KmsAuth's node list, on the exact-audit library (`cairn_onchain::audit_all`,
//! `cairn_onchain::Auditor`; docs/auditor.md).
//!
//! Each node is read through one of the `--kms-url`s (its RA-TLS evidence verified against
//! `--kms-trust`; which node a URL serves, and that it serves our chain and KmsAuth, comes
//! from its `/v1/meta`). The library proves every log whole against the node's anchors and
//! served checkpoint, and checks each release (`--app`'s, or every one with `--all`)
//! against the chain at its recorded policy block. Nothing the KMS serves is trusted.
//!
//! Exit codes (`AuditOutcome::exit_code`): 0 clean, 1 findings, 2 could not audit (chain
//! unreadable, a KMS URL unreachable or not verified, a registered node with no URL serving
//! it: the library's `no_source`). `--follow` polls a monitor (`Auditor::monitor`) every
//! `--interval` and prints each new release and finding once; it runs until Ctrl-C and then
//! exits as above for everything it saw.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use cairn_kms_client::{KmsClient, KmsConnection};
use cairn_onchain::alloy::primitives::Address;
use cairn_onchain::{
    audit_all, AuditOptions, AuditOutcome, AuditReport, AuditedRelease, Auditor, ChainClient,
    ChainConfig, Finding, Staleness,
};
use clap::Args;
use serde::Serialize;

use crate::common::{kms_client, outln, KmsTrust, DEFAULT_PCCS_URL, DEFAULT_SIM_PKI_SEED};

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
    /// Check every release in every node's log.
    #[arg(long)]
    all: bool,
    /// Audit from block N on: read events from N, and each node's log from the size it
    /// anchored before N (what an earlier audit covered is not read again).
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
    kms_trust: KmsTrust,
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
    /// No findings and nothing unaudited (exit 0).
    clean: bool,
    /// `clean`, `findings` or `could_not_audit` (exit 0, 1, 2).
    outcome: &'static str,
    chain_id: u64,
    kms_auth: String,
    /// The app whose releases were checked (`--app`); `null` with `--all`.
    app_id: Option<String>,
    /// The first block whose events were read (`--from-block`).
    from_block: u64,
    /// The last block whose events the audit read (the chain head).
    head_block: u64,
    nodes: Vec<NodeReport>,
    /// Findings about no node (none today: the command passes no receipts).
    findings: Vec<FindingRow>,
    /// Why parts could not be audited: `--kms-url`s unreachable, not verified, or serving
    /// another chain (exit 2 unless there are findings).
    errors: Vec<String>,
    stats: Stats,
    /// Every finding, for the outcome.
    #[serde(skip)]
    findings_all: Vec<Finding>,
}

#[derive(Debug, Serialize)]
struct NodeReport {
    node: String,
    /// The `--kms-url` serving it (`null`: none did, a `no_source` finding).
    url: Option<String>,
    /// In KmsAuth's node list at the head.
    registered: bool,
    /// `CheckpointAnchored` events of the node read.
    anchors: usize,
    /// First log index audited (0, or the size anchored before `--from-block`).
    start: u64,
    /// Size of the largest tree head the entries were proven against.
    verified_size: Option<u64>,
    /// Entries read from the log.
    entries: u64,
    releases: Vec<ReleaseRow>,
    findings: Vec<FindingRow>,
}

#[derive(Debug, Clone, Serialize)]
struct ReleaseRow {
    index: u64,
    kind: String,
    app_id: String,
    compose_hash: String,
    instance_id: String,
    policy_block: u64,
    timestamp: u64,
    logged: bool,
    allowed: bool,
    /// Re-evaluated with exactly the boot info the KMS evaluated (a version-2 record).
    exact: bool,
    /// A release, not an onboarding receipt (the text report counts them apart).
    #[serde(skip)]
    is_release: bool,
}

#[derive(Debug, Clone, Serialize)]
struct FindingRow {
    /// The finding's snake_case code (`forked_anchors`, `not_allowed`, …).
    code: &'static str,
    /// Evidences misbehaviour (`false`: only something could not be audited).
    violation: bool,
    /// The log index it is about, if one.
    index: Option<u64>,
    /// What is wrong.
    detail: String,
}

#[derive(Debug, Serialize)]
struct Stats {
    entries: u64,
    releases: u64,
    /// Onboarding receipts checked (kind `kms-onboard-receipt`), not in `releases`.
    receipts: u64,
    approximate: u64,
    policy_calls: u64,
    registration_calls: u64,
    header_reads: u64,
    entry_pages: u64,
    proofs: u64,
    elapsed_ms: u128,
}

/// Run `cairn audit`; the exit code says clean / findings / could not audit.
pub async fn run(args: AuditArgs) -> anyhow::Result<u8> {
    let ctx = Context::new(&args).await?;
    let (mut sources, urls, errors) = ctx.connect_all(&args).await;
    if args.follow {
        return follow(&ctx, &args, &mut sources, &errors).await;
    }
    let report = audit_all(&ctx.chain, &mut sources, ctx.options(&args))
        .await
        .context("reading the chain")?;
    let report = ctx.report(&args, &report, &urls, errors);
    print_report(&report, args.json)?;
    Ok(outcome(&report.findings_all, &report.errors).exit_code())
}

/// The outcome of a report: the library's, and could not audit when a `--kms-url` failed
/// and nothing worse was found.
fn outcome(findings: &[Finding], errors: &[String]) -> AuditOutcome {
    let report = AuditReport {
        findings: findings.to_vec(),
        ..AuditReport::default()
    };
    match report.outcome() {
        AuditOutcome::Clean if !errors.is_empty() => AuditOutcome::CouldNotAudit,
        o => o,
    }
}

fn outcome_name(o: AuditOutcome) -> &'static str {
    match o {
        AuditOutcome::Clean => "clean",
        AuditOutcome::Findings => "findings",
        AuditOutcome::CouldNotAudit => "could_not_audit",
    }
}

/// `--follow`: a monitor ([`Auditor::monitor`]) polled every interval; prints each new
/// finding, each new release and each distinct error once; stops on Ctrl-C.
///
/// `Auditor::follow` hands its callback findings only, so the loop is written out here
/// (the same one: a retryable chain error is reported and retried at the next tick, any
/// other ends the command) to print releases as well.
async fn follow(
    ctx: &Context,
    args: &AuditArgs,
    sources: &mut HashMap<Address, KmsConnection>,
    errors: &[String],
) -> anyhow::Result<u8> {
    let mut auditor = Auditor::monitor(&ctx.chain, ctx.options(args));
    let mut seen_errors = BTreeSet::new();
    for e in errors {
        seen_errors.insert(e.clone());
        emit(args.json, "error", &serde_json::json!({ "error": e }));
    }
    let mut worst = outcome(&[], errors);
    let mut printed = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(args.interval));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = tokio::signal::ctrl_c() => return Ok(worst.exit_code()),
            _ = tick.tick() => {}
        }
        let new = match auditor.poll(sources).await {
            Ok(new) => new,
            Err(e) if e.is_retryable() => {
                let line = format!("reading the chain: {e}");
                if seen_errors.insert(line.clone()) {
                    emit(args.json, "error", &serde_json::json!({ "error": line }));
                }
                worst = worse(worst, AuditOutcome::CouldNotAudit);
                continue;
            }
            Err(e) => return Err(e).context("reading the chain"),
        };
        let releases = auditor.releases();
        for r in &releases[printed..] {
            emit(
                args.json,
                "release",
                &serde_json::json!({"node": r.node.to_string(), "release": release_row(r)}),
            );
        }
        printed = releases.len();
        for f in &new {
            emit(
                args.json,
                "finding",
                &serde_json::json!({
                    "node": f.node().map(|n| n.to_string()),
                    "finding": finding_row(f),
                }),
            );
            worst = worse(worst, outcome(std::slice::from_ref(f), &[]));
        }
    }
}

/// The worse of two outcomes (findings over could not audit over clean).
fn worse(a: AuditOutcome, b: AuditOutcome) -> AuditOutcome {
    let rank = |o| match o {
        AuditOutcome::Clean => 0,
        AuditOutcome::CouldNotAudit => 1,
        _ => 2,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// One `--follow` event: a JSON line, or a human line.
fn emit(json: bool, event: &str, body: &serde_json::Value) {
    if json {
        let mut line = body.clone();
        if let Some(o) = line.as_object_mut() {
            o.insert("event".into(), event.into());
        }
        outln!("{line}");
    } else {
        match event {
            "finding" => outln!(
                "FINDING node {}: {} {}",
                body["node"].as_str().unwrap_or("-"),
                body["finding"]["code"].as_str().unwrap_or("?"),
                body["finding"]["detail"].as_str().unwrap_or("")
            ),
            "release" => outln!(
                "release  node {} app {}: index {} compose {} policy block {} logged {} allowed {}",
                body["node"].as_str().unwrap_or("?"),
                body["release"]["app_id"].as_str().unwrap_or("?"),
                body["release"]["index"],
                body["release"]["compose_hash"].as_str().unwrap_or("?"),
                body["release"]["policy_block"],
                body["release"]["logged"],
                body["release"]["allowed"],
            ),
            _ => outln!("ERROR {}", body["error"].as_str().unwrap_or("?")),
        }
    }
}

/// What the audit needs: the chain and a KMS client.
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
            kms: audit_kms_client(args)?,
            chain_id: args.chain_id,
            kms_auth,
            app,
        })
    }

    /// The library's options: the app (or every release), the start block, every
    /// checked release kept for the output.
    fn options(&self, args: &AuditArgs) -> AuditOptions {
        let options = AuditOptions::default()
            .from_block(args.from_block)
            .collecting_releases();
        match self.app {
            Some(app) => options.with_app(app),
            None => options,
        }
    }

    /// Connects to every `--kms-url` (RA-TLS evidence verified, `/v1/meta` checked): the
    /// log sources by node address, the URL of each node, and the URLs that failed. A
    /// node the chain names that no URL serves is the library's `no_source` finding.
    async fn connect_all(
        &self,
        args: &AuditArgs,
    ) -> (
        HashMap<Address, KmsConnection>,
        BTreeMap<Address, String>,
        Vec<String>,
    ) {
        let mut sources = HashMap::new();
        let mut urls = BTreeMap::new();
        let mut errors = Vec::new();
        for url in &args.kms_urls {
            match self.connect(url).await {
                Ok((node, conn)) => {
                    // Two URLs of one node: the first is audited.
                    if let std::collections::btree_map::Entry::Vacant(v) = urls.entry(node) {
                        v.insert(url.clone());
                        sources.insert(node, conn);
                    }
                }
                Err(e) => errors.push(format!("{url}: {e:#}")),
            }
        }
        (sources, urls, errors)
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

    /// The printed report of the library's.
    fn report(
        &self,
        args: &AuditArgs,
        r: &AuditReport,
        urls: &BTreeMap<Address, String>,
        errors: Vec<String>,
    ) -> Report {
        let nodes: Vec<NodeReport> = r
            .nodes
            .iter()
            .map(|n| NodeReport {
                node: n.node.to_string(),
                url: urls.get(&n.node).cloned(),
                registered: n.registered,
                anchors: n.anchors,
                start: n.start,
                verified_size: n.verified_size,
                entries: n.entries,
                releases: r
                    .releases
                    .iter()
                    .filter(|x| x.node == n.node)
                    .map(release_row)
                    .collect(),
                findings: r
                    .findings
                    .iter()
                    .filter(|f| f.node() == Some(n.node))
                    .map(finding_row)
                    .collect(),
            })
            .collect();
        let o = outcome(&r.findings, &errors);
        Report {
            clean: o == AuditOutcome::Clean,
            outcome: outcome_name(o),
            chain_id: self.chain_id,
            kms_auth: self.kms_auth.to_string(),
            app_id: self.app.map(|a| a.to_string()),
            from_block: args.from_block,
            head_block: r.stats.block,
            nodes,
            findings: r
                .findings
                .iter()
                .filter(|f| f.node().is_none())
                .map(finding_row)
                .collect(),
            errors,
            stats: Stats {
                entries: r.stats.entries,
                releases: r.stats.releases,
                receipts: r.stats.receipts,
                approximate: r.stats.approximate,
                policy_calls: r.stats.policy_calls,
                registration_calls: r.stats.registration_calls,
                header_reads: r.stats.header_reads,
                entry_pages: r.stats.entry_pages,
                proofs: r.stats.proofs,
                elapsed_ms: r.elapsed.as_millis(),
            },
            findings_all: r.findings.clone(),
        }
    }
}

fn release_row(x: &AuditedRelease) -> ReleaseRow {
    ReleaseRow {
        index: x.index,
        kind: format!("{:?}", x.record.kind).to_lowercase(),
        app_id: x.record.boot.app_id.to_string(),
        compose_hash: x.record.boot.compose_hash.to_string(),
        instance_id: x.record.boot.instance_id.to_string(),
        policy_block: x.record.policy_block_number,
        timestamp: x.record.timestamp,
        logged: x.logged,
        allowed: x.allowed,
        exact: x.exact,
        is_release: x.record.kind.is_release(),
    }
}

fn finding_row(f: &Finding) -> FindingRow {
    let detail = match f {
        Finding::AnchorRollback {
            block,
            previous,
            anchored,
            ..
        } => format!(
            "the anchor at block {block} (size {}, root {}) goes back from size {} (root {})",
            anchored.size, anchored.root, previous.size, previous.root
        ),
        Finding::ForkedAnchors {
            first,
            second,
            detail,
            ..
        } => format!("anchors at sizes {first} and {second} are not consistent: {detail}"),
        Finding::BadCheckpoint { detail, .. }
        | Finding::NotLogged { detail, .. }
        | Finding::UndecodableEntry { detail, .. }
        | Finding::WrongOrigin { detail, .. }
        | Finding::SourceUnavailable { detail, .. } => detail.clone(),
        Finding::CheckpointNotConsistent {
            anchor_size,
            checkpoint_size,
            detail,
            ..
        } => format!(
            "the served checkpoint (size {checkpoint_size}) does not extend the last anchor (size {anchor_size}): {detail}"
        ),
        Finding::MissingEntry {
            checkpoint_size,
            detail,
            ..
        } => format!("a receipt's checkpoint (size {checkpoint_size}): {detail}"),
        Finding::PolicyBlockMismatch {
            number,
            recorded,
            actual,
            ..
        } => match actual {
            Some(a) => format!("block {number}: recorded hash {recorded}, chain has {a}"),
            None => format!("block {number} (recorded hash {recorded}) does not exist"),
        },
        Finding::StalePolicyBlock {
            block, staleness, ..
        } => match staleness {
            Staleness::BehindPrevious { previous, depth } => format!(
                "policy block {block} is more than {depth} blocks behind an earlier release's {previous}"
            ),
            Staleness::TimeGap {
                block_timestamp,
                record_timestamp,
                max_secs,
            } => format!(
                "policy block {block} (time {block_timestamp}) is more than {max_secs} s from the release (time {record_timestamp})"
            ),
        },
        Finding::UnregisteredNode { block, .. } => {
            format!("the node was not a registered KMS node at policy block {block}")
        }
        Finding::NotAllowed {
            block,
            check,
            reason,
            ..
        } => format!("KmsAuth refuses it at policy block {block} ({check}): {reason}"),
        Finding::NoSource { .. } => {
            "in KmsAuth's node list, but no --kms-url serves it: its log was not audited"
                .to_owned()
        }
        Finding::EntriesUnavailable { start, detail, .. } => {
            format!("entries from {start} not served: {detail}")
        }
        Finding::Truncated { size, .. } => {
            format!("only the first {size} entries were audited")
        }
        Finding::NoVerifiedHead { .. } => "neither a valid checkpoint nor an anchor".to_owned(),
        Finding::UnknownReceipt { origin, .. } => {
            format!("a receipt whose checkpoint ({origin}) no audited node signed")
        }
        other => format!("{other:?}"),
    };
    FindingRow {
        code: f.code(),
        violation: f.is_violation(),
        index: f.index(),
        detail,
    }
}

fn print_report(r: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    outln!(
        "audit of chain {} KmsAuth {} from block {} to {}{}",
        r.chain_id,
        r.kms_auth,
        r.from_block,
        r.head_block,
        r.app_id
            .as_ref()
            .map_or(String::new(), |a| format!(", releases of app {a}"))
    );
    for n in &r.nodes {
        outln!(
            "\nnode {} ({}){}",
            n.node,
            n.url.as_deref().unwrap_or("no --kms-url"),
            if n.registered {
                ""
            } else {
                "  NOT in KmsAuth's node list"
            }
        );
        outln!(
            "  {} anchors, entries {}..{} read, verified size {}, {} releases{}, {} findings",
            n.anchors,
            n.start,
            n.start + n.entries,
            n.verified_size.map_or("none".to_owned(), |s| s.to_string()),
            n.releases.iter().filter(|x| x.is_release).count(),
            match n.releases.iter().filter(|x| !x.is_release).count() {
                0 => String::new(),
                k => format!(
                    " (and {k} onboarding receipt{})",
                    if k == 1 { "" } else { "s" }
                ),
            },
            n.findings.len()
        );
        if !n.releases.is_empty() {
            outln!(
                "    {:>6}  {:<10} {:<20} {:<20} {:>12}  {:<6} {:<7}",
                "INDEX",
                "KIND",
                "APP",
                "COMPOSE",
                "POLICY BLOCK",
                "LOGGED",
                "ALLOWED"
            );
        }
        for x in &n.releases {
            outln!(
                "    {:>6}  {:<10} {:<20} {:<20} {:>12}  {:<6} {:<7}",
                x.index,
                x.kind,
                format!("{}…", &x.app_id[..x.app_id.len().min(18)]),
                format!("{}…", &x.compose_hash[..x.compose_hash.len().min(18)]),
                x.policy_block,
                yes(x.logged),
                yes(x.allowed)
            );
        }
        for f in &n.findings {
            outln!("    FINDING {}: {}", f.code, f.detail);
        }
    }
    for f in &r.findings {
        outln!("\nFINDING {}: {}", f.code, f.detail);
    }
    for e in &r.errors {
        outln!("\nCOULD NOT AUDIT: {e}");
    }
    outln!(
        "\n{}",
        match outcome(&r.findings_all, &r.errors) {
            AuditOutcome::Clean => "clean: every release logged and allowed, logs unforked",
            AuditOutcome::Findings => "FINDINGS (exit 1)",
            AuditOutcome::CouldNotAudit => "INCOMPLETE: could not audit everything (exit 2)",
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

/// The KMS client the audit verifies each node's attestation with (`--kms-trust`).
fn audit_kms_client(args: &AuditArgs) -> anyhow::Result<KmsClient> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| anyhow!("the system clock is before 1970"))?;
    kms_client(args.kms_trust, &args.pccs_url, &args.sim_pki_seed, now)
}
