//! Audit rate on a large log (`scripts/bench.sh audit`; docs/benchmarks.md, "Audit").
//!
//! One anvil with the contracts deployed, one real KMS node serving its log over RA-TLS,
//! a handful of apps whose CVMs boot for real (so the log holds real version-2 records
//! with real boot infos). The log is then grown to N releases the way the node writes
//! them: copies of those records, judged at successive policy blocks (as a KMS whose
//! pinned head moves with the chain), appended in batches to the node's own log and
//! anchored on chain every N/10 entries. Then the whole cluster is audited once
//! (`audit_all`, every release re-evaluated) and one app alone (`audit_app`), and the
//! rate printed.
//!
//! `cargo run --release -p cairn-e2e --example audit_bench -- [entries] [policy blocks]`
//! (defaults 100000 and 100).

use std::collections::HashMap;
use std::time::Instant;

use cairn_e2e::*;
use cairn_onchain::alloy::primitives::Address;
use cairn_onchain::{audit_all, audit_app, AuditOptions, AuditOutcome, AuditReport, LogSource};
use cairn_protocol::api::MAX_LOG_ENTRIES_PER_RESPONSE;
use cairn_tlog::ReleaseRecord;

/// Apps, and CVMs (distinct hosts, so distinct instances and devices) per app.
const APPS: u8 = 4;
const CVMS_PER_APP: u8 = 2;
/// Records appended to the log per write.
const APPEND_BATCH: usize = 1000;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let entries: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let blocks: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let blocks = blocks.clamp(1, entries.max(1));

    let setup = Instant::now();
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let node = Address::from(kms.node.address());

    // Real boots: every CVM of every app gets its keys once.
    let mut apps = Vec::new();
    let mut cvms = Vec::new();
    for a in 0..APPS {
        let app = net.deploy_app(net.owner, None).await;
        for c in 0..CVMS_PER_APP {
            let cvm = Cvm::new(&kms.url(), app.app_id(), 0x20 + a * CVMS_PER_APP + c, "v1");
            app.add_compose_hash(cvm.compose_hash())
                .await
                .expect("allow");
            cvms.push(cvm);
        }
        apps.push(app);
    }
    net.mine(CONFIRMATIONS).await;
    for cvm in &cvms {
        cvm.boot().await.expect("boot");
    }
    let log = kms.node.log();
    let real: Vec<ReleaseRecord> = (0..log.size())
        .map(|i| ReleaseRecord::decode(&log.entry(i).expect("entry")).expect("record"))
        .collect();
    let first_block = real
        .iter()
        .map(|r| r.policy_block_number)
        .max()
        .expect("a release");

    // Policy blocks after the boots' (everything was allowed there already).
    net.mine(blocks + CONFIRMATIONS).await;
    let mut headers = Vec::new();
    for n in first_block..first_block + blocks {
        headers.push(
            net.client
                .block_header(n)
                .await
                .expect("header")
                .expect("block exists"),
        );
    }

    // Grow the log: copies of the real records at successive policy blocks, anchored
    // every tenth of the way.
    let already = log.size();
    let per_block = (entries - already.min(entries)).div_ceil(blocks).max(1);
    let anchor_every = (entries / 10).max(1);
    let mut anchored = 0;
    let mut batch = Vec::with_capacity(APPEND_BATCH);
    let mut i = already;
    while i < entries {
        let header = headers[((i - already) / per_block).min(blocks - 1) as usize];
        let mut record = real[(i as usize) % real.len()].clone();
        record.policy_block_number = header.number;
        record.policy_block_hash = header.hash;
        record.timestamp = header.timestamp;
        batch.push(record.encode().expect("encode"));
        i += 1;
        if batch.len() == APPEND_BATCH || i == entries {
            let node = kms.node.clone();
            let b = std::mem::take(&mut batch);
            tokio::task::spawn_blocking(move || node.log().append_batch(&b))
                .await
                .expect("append task")
                .expect("append");
        }
        if i % anchor_every == 0 || i == entries {
            anchored = cairn_kms::anchor_once(&kms.node, anchored)
                .await
                .expect("anchor");
        }
    }
    assert_eq!(log.size(), entries.max(already));
    println!(
        "setup: {} entries ({} real boots, {} apps), {} policy blocks, anchored at {anchored}, {:.1} s",
        log.size(),
        real.len(),
        APPS,
        blocks,
        setup.elapsed().as_secs_f64()
    );

    // The floor: reading the log's pages over RA-TLS, nothing checked.
    let mut source = kms.client(None).await;
    let t = Instant::now();
    let mut start = 0;
    while start < log.size() {
        let end = (start + MAX_LOG_ENTRIES_PER_RESPONSE).min(log.size());
        let page = source.entries(start, end).await.expect("entries");
        start += page.entries.len() as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "read only: {start} entries in {secs:.2} s = {:.0} entries/s",
        start as f64 / secs
    );

    // The whole cluster: every node KmsAuth names, every release re-evaluated.
    let mut sources = HashMap::from([(node, kms.client(None).await)]);
    let report = audit_all(&net.client, &mut sources, AuditOptions::default())
        .await
        .expect("audit");
    print_report("audit_all (every release)", &report);

    // One app: the log is still read and proven whole; a quarter of the releases are
    // re-evaluated.
    let mut source = kms.client(None).await;
    let report = audit_app(&net.client, &mut source, node, apps[0].app_id())
        .await
        .expect("audit");
    print_report("audit_app (one app of four)", &report);
    kms.stop().await;
}

fn print_report(what: &str, report: &AuditReport) {
    let s = report.stats;
    let secs = report.elapsed.as_secs_f64();
    println!(
        "{what}: outcome {:?}, {} findings; {} entries in {:.2} s = {:.0} entries/s; \
         {} releases checked; {} entry pages, {} proofs; {} policy calls, {} isKmsNode calls, \
         {} headers",
        report.outcome(),
        report.findings.len(),
        s.entries,
        secs,
        s.entries as f64 / secs,
        s.releases,
        s.entry_pages,
        s.proofs,
        s.policy_calls,
        s.registration_calls,
        s.header_reads,
    );
    assert_eq!(
        report.outcome(),
        AuditOutcome::Clean,
        "{:?}",
        report.findings.first()
    );
}
