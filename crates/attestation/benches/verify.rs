//! Quote verification cost: a first verification (dcap-qvl: 9 ECDSA verifications) and a
//! repeat presentation served by the verified-result cache.
//!
//! Run: `cargo bench -p cairn-attestation --bench verify`

use std::sync::Arc;

use cairn_attestation::ids::{AppId, ComposeHash, InstanceId, KeyProvider};
use cairn_attestation::simulator::{OsImage, SimHostConfig, SimPki, SimPkiConfig, SimTdx};
use cairn_attestation::{Collateral, EventLog, Tee, Verifier};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

const NOW: u64 = 1_790_000_000;

fn setup() -> (Arc<SimPki>, Vec<u8>, Vec<u8>, [u8; 64]) {
    let pki = Arc::new(SimPki::new(SimPkiConfig::new([7u8; 32], NOW)).expect("pki"));
    let tdx = SimTdx::new(
        Arc::clone(&pki),
        SimHostConfig::new([1u8; 32], OsImage::example("cairn-os", "0.1.0")),
    )
    .expect("tdx");
    let ch = ComposeHash::of_compose(b"{}");
    let app = AppId::from_compose_hash(&ch);
    let mut log = EventLog::new();
    log.measure_boot(&tdx, &app, &ch, &InstanceId::derive(b"seed", &app))
        .expect("boot");
    log.measure_system_ready(
        &tdx,
        &tdx.os_image().os_image_hash(),
        &KeyProvider::kms(&[1; 91]),
    )
    .expect("ready");
    let rd = [1u8; 64];
    let quote = tdx.quote(&rd).expect("quote");
    (pki, quote, log.to_json(), rd)
}

fn bench(c: &mut Criterion) {
    let (pki, quote, log, rd) = setup();
    let collateral = Collateral::new(pki.collateral()).expect("collateral");

    let mut g = c.benchmark_group("verify");
    g.bench_function("first", |b| {
        b.iter_batched(
            || {
                Verifier::dangerous_with_simulator_root(pki.root_ca_der())
                    .with_collateral(collateral.clone())
            },
            |v| {
                black_box(v.verify(&quote, &log, &rd, NOW).expect("verifies"));
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let v = Verifier::dangerous_with_simulator_root(pki.root_ca_der())
        .with_collateral(collateral.clone());
    v.verify(&quote, &log, &rd, NOW).expect("verifies");
    g.bench_function("repeat_cached", |b| {
        b.iter(|| black_box(v.verify(&quote, &log, &rd, NOW).expect("cached")))
    });
    g.finish();
}

// criterion's macro generates an undocumented `benches` fn.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, bench);
}
use group::benches;
criterion_main!(benches);
