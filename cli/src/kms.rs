//! `cairn kms`: a KMS node's state, checked against the chain.
//!
//! ```text
//! cairn kms status     node, key generation (node vs chain), log size, last anchor age,
//!                      registration; exit 1 when the node is not registered or its
//!                      generation differs from the chain's
//! cairn kms describe   status plus the node's attested identity and root keys
//! ```
//!
//! The KMS is reached over RA-TLS (its quote verified against `--kms-trust` before any
//! request), its checkpoint's signature is checked against the node address it claims,
//! and that address is looked up in KmsAuth.

use anyhow::Context as _;
use cairn_onchain::alloy::primitives::Address;
use cairn_protocol::api::{CheckpointResponse, PATH_LOG_CHECKPOINT};
use cairn_tlog::{CheckpointVerifier, SignedCheckpoint};
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::common::{outln, ChainArgs, Findings, Global, Out, Resolved, TrustArgs};

/// `cairn kms`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  cairn kms status --kms-url https://kms.example:8000
  cairn kms describe --json --kms-trust simulator")]
pub struct KmsArgs {
    #[command(flatten)]
    chain: ChainArgs,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(subcommand)]
    cmd: KmsCommand,
}

#[derive(Debug, Subcommand)]
enum KmsCommand {
    /// Key generation, log size, last anchor age, registration.
    Status,
    /// Status plus the node's attested identity and root keys.
    Describe,
}

/// `kms status|describe`'s JSON.
#[derive(Serialize)]
struct KmsOut {
    kms_url: String,
    node_address: String,
    /// The node is in KmsAuth's node list at the pinned block.
    registered: bool,
    chain_id: u64,
    kms_auth: String,
    key_generation: u64,
    chain_key_generation: u32,
    /// The root k256 key the node serves equals the one registered on chain.
    root_key_matches_chain: bool,
    /// Size of the node's signed checkpoint (its key-release log).
    log_size: u64,
    log_origin: String,
    anchored_size: Option<u64>,
    anchored_block: Option<u64>,
    /// Seconds between the anchoring block and the chain head.
    anchor_age_secs: Option<u64>,
    block: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<Identity>,
}

#[derive(Serialize)]
struct Identity {
    app_id: String,
    compose_hash: String,
    mr_aggregated: String,
    device_id: String,
    tcb_status: String,
    root_k256_public_key: String,
    root_ca_cert: String,
}

/// Run `cairn kms …`.
pub async fn run(global: &Global, args: KmsArgs, out: Out) -> anyhow::Result<()> {
    let cfg = Resolved::new(global, &args.chain)?;
    let url = cfg.kms_url()?;
    let chain = cfg.reader().await?;
    let now = cairn_onchain::unix_now();
    let client = args.trust.kms_client(now)?;
    let mut conn = client
        .connect(&url, None)
        .await
        .with_context(|| format!("connecting to the KMS at {url}"))?;
    let meta = conn.meta().await.context("GET /v1/meta")?;
    let cp: CheckpointResponse = conn
        .get(PATH_LOG_CHECKPOINT)
        .await
        .context("GET /v1/log/checkpoint")?;
    let node = Address::from(meta.node_address);
    let origin = SignedCheckpoint::parse(cp.checkpoint.as_bytes())
        .context("the node's checkpoint")?
        .checkpoint()
        .origin()
        .to_owned();
    let checkpoint = CheckpointVerifier::new(&origin, node)
        .and_then(|v| v.open(cp.checkpoint.as_bytes()))
        .context("the node's checkpoint signature (by its node address)")?;
    let at = chain
        .policy_block()
        .await
        .context("reading the chain head")?;
    let head = chain.head().await?;
    let registered = chain.is_kms_node(node, at).await?;
    let chain_generation = chain.key_generation(at).await?;
    let root_matches = chain
        .root_keys(at)
        .await?
        .is_some_and(|k| k.k256_pubkey.as_ref() == meta.root_k256_public_key.as_slice());
    let anchor = chain.latest_anchor(node, at).await?;
    let anchor_age = match &anchor {
        Some(a) => {
            let b = chain.block_at(a.block_number).await?;
            Some(
                head.timestamp
                    .saturating_sub(chain.block_timestamp(b).await?),
            )
        }
        None => None,
    };
    let identity = matches!(args.cmd, KmsCommand::Describe).then(|| {
        let q = conn.peer().identity();
        Identity {
            app_id: format!("0x{}", hex::encode(q.app_id().as_ref())),
            compose_hash: format!("0x{}", hex::encode(q.compose_hash().as_ref())),
            mr_aggregated: format!("0x{}", hex::encode(q.mr_aggregated().as_ref())),
            device_id: format!("0x{}", hex::encode(q.device_id().as_ref())),
            tcb_status: q.tcb_status().to_owned(),
            root_k256_public_key: format!("0x{}", hex::encode(meta.root_k256_public_key)),
            root_ca_cert: meta.root_ca_cert.clone(),
        }
    });
    let result = KmsOut {
        kms_url: url,
        node_address: node.to_string(),
        registered,
        chain_id: meta.chain_id,
        kms_auth: Address::from(meta.kms_auth).to_string(),
        key_generation: meta.key_generation,
        chain_key_generation: chain_generation,
        root_key_matches_chain: root_matches,
        log_size: checkpoint.size(),
        log_origin: origin,
        anchored_size: anchor.as_ref().map(|a| a.tree_size),
        anchored_block: anchor.as_ref().map(|a| a.block_number),
        anchor_age_secs: anchor_age,
        block: at.number,
        identity,
    };
    let healthy = result.registered
        && result.root_key_matches_chain
        && result.key_generation == u64::from(result.chain_key_generation);
    if out.json {
        out.json(&result)?;
    } else {
        print_kms(&out, &result);
    }
    if healthy {
        Ok(())
    } else {
        Err(anyhow::Error::new(Findings(format!(
            "KMS node {} is not in good standing on chain: registered {}, key generation {} (chain {}), root key matches {}",
            result.node_address,
            result.registered,
            result.key_generation,
            result.chain_key_generation,
            result.root_key_matches_chain
        ))))
    }
}

fn print_kms(out: &Out, r: &KmsOut) {
    let yes_no = |b: bool| if b { out.good("yes") } else { out.bad("no") };
    outln!("KMS {} (node {})", out.bold(&r.kms_url), r.node_address);
    outln!("  registered        {}", yes_no(r.registered));
    outln!(
        "  key generation    {} (chain {})",
        r.key_generation,
        r.chain_key_generation
    );
    outln!("  root key on chain {}", yes_no(r.root_key_matches_chain));
    outln!(
        "  log               {} entries ({})",
        r.log_size,
        r.log_origin
    );
    match (r.anchored_size, r.anchor_age_secs) {
        (Some(s), Some(age)) => outln!(
            "  last anchor       size {s}, {age}s ago (block {})",
            r.anchored_block.unwrap_or_default()
        ),
        _ => outln!("  last anchor       {}", out.warn("none")),
    }
    if let Some(i) = &r.identity {
        outln!("  app id            {}", i.app_id);
        outln!("  compose hash      {}", i.compose_hash);
        outln!("  mr_aggregated     {}", i.mr_aggregated);
        outln!("  device id         {}", i.device_id);
        outln!("  TCB status        {}", i.tcb_status);
        outln!("  root k256 key     {}", i.root_k256_public_key);
    }
}
