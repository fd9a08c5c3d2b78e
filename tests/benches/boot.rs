//! Boot to app start against the real KMS: `cairn_guest::boot()` on a fresh simulated TD,
//! from its first instruction until the app process is spawned, with the real KMS
//! in-process (`cairn_kms` served on loopback by the e2e harness, anvil behind it): both
//! sides of mutual RA-TLS verified, the chain policy read at the pinned block, an fsynced
//! transparency-log append before the answer. Each iteration boots a new CVM (fresh
//! share, keys and work dirs, fresh TD, new TLS connection) of one app whose compose is
//! allowed on chain. `boot_to_app_start` reuses one KMS client (its verifier caches the
//! KMS's verified evidence); `…_cold_verifier` builds a new client per boot, inside the
//! timed part, as a real boot does. Results: `docs/benchmarks.md`.
//!
//! Run: `scripts/bench.sh boot` (`cargo bench -p cairn-e2e --bench boot`).
#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_attestation::Tee;
use cairn_e2e::{kms_client, wait_for_file, Cvm, Devnet, Kms};
use cairn_kms_client::KmsClient;
use cairn_onchain::alloy::primitives::Address;
use criterion::{criterion_group, criterion_main, Criterion};
use tokio::runtime::Runtime;

/// A `process` app that writes one line beside the keys dir and exits: the same compose
/// (so the same hash on chain) for every CVM.
const COMPOSE: &str = r#"{"manifest_version":2,"name":"bench","runner":"process","process":{"command":["/bin/sh","-c","echo started > \"$CAIRN_KEYS_DIR/../app-out\""]},"kms_enabled":true}"#;

/// The devnet, its KMS and the app every CVM boots.
struct Bench {
    rt: Runtime,
    _net: Devnet,
    kms: Kms,
    app_id: Address,
    next_host: u8,
}

impl Bench {
    fn new() -> Bench {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (net, kms, app_id) = rt.block_on(async {
            let net = Devnet::new().await;
            let kms = net.start_kms().await;
            let app = net.deploy_app(net.owner, Some(COMPOSE.as_bytes())).await;
            (net, kms, app.app_id())
        });
        Bench {
            rt,
            _net: net,
            kms,
            app_id,
            next_host: 0,
        }
    }

    /// Boot a new CVM with `client` (a new one per boot when `None`); the time from the
    /// client's creation (or `boot()`'s start) until the app was spawned.
    fn boot_once(&mut self, client: Option<&KmsClient>) -> Duration {
        self.next_host = self.next_host.wrapping_add(1);
        let cvm = Cvm::with_compose(
            &self.kms.url(),
            self.app_id,
            self.next_host,
            COMPOSE.to_owned(),
        );
        let tdx = cvm.fresh_tee();
        let config = cvm.config(&tdx);
        let tee: Arc<dyn Tee> = tdx;
        let start = Instant::now();
        let client = client.cloned().unwrap_or_else(kms_client);
        let mut booted = self
            .rt
            .block_on(cairn_guest::boot(tee, client, &config))
            .expect("boot");
        let elapsed = start.elapsed();
        if let Some(mut app) = booted.app.take() {
            let _ = self.rt.block_on(app.wait());
        }
        assert!(
            self.rt.block_on(wait_for_file(&cvm.app_out())).is_some(),
            "the app did not run"
        );
        elapsed
    }
}

fn boot_to_app_start(c: &mut Criterion) {
    let mut bench = Bench::new();
    let warm = kms_client();
    let mut group = c.benchmark_group("e2e");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("boot_to_app_start", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| bench.boot_once(Some(&warm))).sum())
    });
    group.bench_function("boot_to_app_start_cold_verifier", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| bench.boot_once(None)).sum())
    });
    group.finish();
    let Bench { rt, kms, .. } = bench;
    rt.block_on(kms.stop());
}

criterion_group!(benches, boot_to_app_start);
criterion_main!(benches);
