//! Time from `boot()` start to the app process being spawned, on the TDX simulator against
//! the stub KMS of the integration tests (real RA-TLS on loopback, real KDF), with a
//! `process` app (a `/bin/sh` one-liner). Each iteration uses a fresh share, a fresh
//! simulated TD and a new TLS connection; `boot_to_app_start` reuses one KMS client (its
//! verifier caches the KMS's verified evidence), `…_cold_verifier` builds a new one each
//! time, as a real boot does. Results: `docs/benchmarks.md`.
//!
//! Run: `cargo bench -p cairn-guest --bench boot`
#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

// Shared with the integration tests; the bench uses only part of it.
#[path = "../tests/it/world.rs"]
#[allow(dead_code)]
mod world;

fn boot_to_app_start(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let kms = rt.block_on(world::StubKms::start(world::Mode::Honest));
    let client = world::kms_client();
    let mut group = c.benchmark_group("guest");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("boot_to_app_start", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let s = world::share(&[&kms.url], "");
                let tee = world::guest_tee(1);
                let cfg = s.config();
                let start = Instant::now();
                let mut booted = rt
                    .block_on(cairn_guest::boot(world::as_tee(&tee), client.clone(), &cfg))
                    .expect("boot");
                total += start.elapsed();
                if let Some(mut child) = booted.app.take() {
                    let _ = rt.block_on(child.wait());
                }
            }
            total
        })
    });
    // A real boot verifies the KMS once, with an empty verifier cache: a fresh client
    // (fresh Verifier, collateral parsed) per iteration, created inside the timed part.
    group.bench_function("boot_to_app_start_cold_verifier", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let s = world::share(&[&kms.url], "");
                let tee = world::guest_tee(1);
                let cfg = s.config();
                let start = Instant::now();
                let client = world::kms_client();
                let mut booted = rt
                    .block_on(cairn_guest::boot(world::as_tee(&tee), client, &cfg))
                    .expect("boot");
                total += start.elapsed();
                if let Some(mut child) = booted.app.take() {
                    let _ = rt.block_on(child.wait());
                }
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, boot_to_app_start);
criterion_main!(benches);
