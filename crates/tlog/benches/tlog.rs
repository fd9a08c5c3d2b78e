//! Benchmarks of `cairn-tlog`: durable appends per second (one fsync per
//! batch), group commit under concurrent appenders, and proof generation on
//! a log of 1M entries. Numbers are recorded in docs/benchmarks.md.
//!
//! Run: `cargo bench -p cairn-tlog --bench tlog`
#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256};
use cairn_tlog::{AppBootInfo, Log, RecordVersion, ReleaseKind, ReleaseRecord};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// A realistic entry: an encoded version-2 release record (960 bytes, two advisory ids).
fn record(i: u64) -> Vec<u8> {
    ReleaseRecord {
        version: RecordVersion::V2,
        kind: ReleaseKind::AppKey,
        boot: AppBootInfo {
            app_id: Address::repeat_byte(0xa1),
            compose_hash: B256::repeat_byte(0xc0),
            instance_id: Address::repeat_byte(0x1d),
            device_id: B256::repeat_byte(0xde),
            mr_aggregated: B256::repeat_byte(0x3a),
            mr_system: B256::repeat_byte(0x5e),
            os_image_hash: B256::repeat_byte(0x05),
            tcb_status: "SWHardeningNeeded".into(),
            advisory_ids: vec!["INTEL-SA-00615".into(), "INTEL-SA-00837".into()],
        },
        key_generation: 1,
        chain_id: 31337,
        policy_block_number: i,
        policy_block_hash: B256::repeat_byte(0xb1),
        quote_hash: B256::repeat_byte(0x9e),
        client_key_hash: B256::repeat_byte(0xcc),
        kms_node: Address::repeat_byte(0x4b),
        timestamp: 1_767_225_600 + i,
    }
    .encode()
    .expect("encodes")
}

fn durable_appends(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_durable");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    for batch_len in [1u64, 16, 256] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path()).expect("open");
        let batch: Vec<Vec<u8>> = (0..batch_len).map(record).collect();
        group.throughput(Throughput::Elements(batch_len));
        group.bench_with_input(
            BenchmarkId::from_parameter(batch_len),
            &batch,
            |b, batch| b.iter(|| log.append_batch(batch).expect("append")),
        );
    }
    group.finish();
}

fn group_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_group_commit");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6))
        .throughput(Throughput::Elements(1));
    for threads in [16u64, 64] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path()).expect("open");
        let entry = record(0);
        group.bench_function(BenchmarkId::new("threads", threads), |b| {
            // One iteration = one durable single-entry append by one of
            // `threads` concurrent callers.
            b.iter_custom(|iters| {
                let per_thread = iters.div_ceil(threads);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(|| {
                            for _ in 0..per_thread {
                                log.append(entry.clone()).expect("append");
                            }
                        });
                    }
                });
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per_thread * threads) as f64)
            })
        });
    }
    group.finish();
}

const PROOF_LOG_SIZE: u64 = 1 << 20;

fn proofs(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path()).expect("open");
    let built = Instant::now();
    let chunk = 4096u64;
    for start in (0..PROOF_LOG_SIZE).step_by(chunk as usize) {
        // Small entries: proof cost depends on stored hashes, not entry size.
        let batch: Vec<[u8; 8]> = (start..start + chunk).map(u64::to_be_bytes).collect();
        log.append_batch(&batch).expect("append");
    }
    eprintln!(
        "built a log of {PROOF_LOG_SIZE} entries in {:.1?}",
        built.elapsed()
    );
    let size = log.size();
    let mut group = c.benchmark_group("proofs_1m");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    group.bench_function("inclusion", |b| {
        b.iter(|| log.inclusion_proof(next() % size, size).expect("proof"))
    });
    group.bench_function("consistency", |b| {
        b.iter(|| {
            log.consistency_proof(1 + next() % (size - 1), size)
                .expect("proof")
        })
    });
    group.bench_function("entry_read", |b| {
        b.iter(|| log.entry(next() % size).expect("entry"))
    });
    group.bench_function("root_at", |b| {
        b.iter(|| log.root_at(1 + next() % (size - 1)).expect("root"))
    });
    group.finish();
}

criterion_group!(
    name = benches;
    config = Criterion::default();
    targets = durable_appends, group_commit, proofs
);
criterion_main!(benches);
