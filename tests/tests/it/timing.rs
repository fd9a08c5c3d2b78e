//! Time from `boot` start to app start against the real KMS (RA-TLS both ways, chain
//! policy read, log append + fsync). Measured and printed, never asserted (run with
//! `--nocapture` to see it; recorded in docs/benchmarks.md).

use std::time::{Duration, Instant};

use cairn_e2e::*;

const RUNS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_to_app_start_against_the_real_kms_is_measured() {
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let app = net.deploy_app(net.owner, None).await;
    let mut times: Vec<Duration> = Vec::with_capacity(RUNS);
    let mut cvms = Vec::with_capacity(RUNS);
    for i in 0..RUNS {
        let cvm = Cvm::new(&kms.url(), app.app_id(), 0x30 + i as u8, "v1");
        if i == 0 {
            app.add_compose_hash(cvm.compose_hash()).await.unwrap();
            net.mine(CONFIRMATIONS).await;
        }
        cvms.push(cvm);
    }
    // Every CVM runs the same compose only if the compose is independent of the dir:
    // it is not (the app's output path), so allow each one.
    for cvm in &cvms[1..] {
        app.add_compose_hash(cvm.compose_hash()).await.unwrap();
    }
    net.mine(CONFIRMATIONS).await;
    let mut walls: Vec<Duration> = Vec::with_capacity(RUNS);
    for cvm in &cvms {
        let t = Instant::now();
        let booted = cvm.boot().await.unwrap();
        // Wall clock around the whole call, including the fresh TD and KMS client.
        walls.push(t.elapsed());
        times.push(booted.elapsed);
        assert!(wait_for_file(&cvm.app_out()).await.is_some());
    }
    times.sort();
    walls.sort();
    eprintln!(
        "boot → app start against the real KMS, {RUNS} runs: min {:?}, median {:?}, max {:?} \
         (wall incl. TD + client setup: median {:?})",
        times[0],
        times[RUNS / 2],
        times[RUNS - 1],
        walls[RUNS / 2]
    );
    kms.stop().await;
}
