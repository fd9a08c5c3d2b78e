//! Benchmark of the VMM (`scripts/bench.sh vmm`): deploy latency on the process backend
//! and one VMM managing many CVMs.
//!
//! anvil + the KMS in this process; `cairn-vmm` as its own process (its RSS is the
//! VMM's alone) with the real `cairn-guest` binary. N CVMs are deployed one after the
//! other; each deploy is timed until `POST /v1/cvms` returns (VMM: validation, chain
//! pre-flight, files, spawn) and until the CVM is `running` (the guest measured its
//! boot, got its keys over RA-TLS from the KMS and spawned its app — the app itself is
//! a `sleep`, so its own start-up is excluded). With all N running, `GET /v1/cvms` is
//! timed M times, and the VMM's RSS read from `/proc`.
//!
//! `CAIRN_GUEST_BIN=… CAIRN_VMM_BIN=… cargo run --release -p cairn-e2e --example vmm_bench -- [cvms] [lists]`

use std::time::{Duration, Instant};

use cairn_e2e::vmm::{sleeper_compose, VmmNode};
use cairn_e2e::Devnet;
use cairn_protocol::vmm::{CreateCvmRequest, CvmState};
use cairn_vmm::{Endpoint, VmmClient};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{name:<34} n={:<4} p50 {:>10}  p99 {:>10}  max {:>10}",
        v.len(),
        ms(percentile(&v, 0.5)),
        ms(percentile(&v, 0.99)),
        ms(v.last().copied().unwrap_or_default())
    );
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let cvms: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let lists: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let vmm_bin =
        std::env::var("CAIRN_VMM_BIN").unwrap_or_else(|_| "target/release/cairn-vmm".into());

    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let compose = sleeper_compose("bench");
    let app = net.deploy_app(net.owner, Some(compose.as_bytes())).await;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vmm.toml");
    let text = VmmNode::config_text(&net, &kms, dir.path(), "")
        .replace("[cvm]\n", &format!("[cvm]\nmax_cvms = {}\n", cvms.max(1)));
    std::fs::write(&config, text).unwrap();
    let socket = dir.path().join("vmm.sock");
    let mut vmm = tokio::process::Command::new(&vmm_bin)
        .arg("--config")
        .arg(&config)
        .arg("--unix-socket")
        .arg(&socket)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{vmm_bin}: {e}"));
    let vmm_pid = vmm.id().unwrap();
    let c = VmmClient::new(Endpoint::Unix(socket), None).with_timeout(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.list().await.is_err() {
        assert!(Instant::now() < deadline, "cairn-vmm did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let idle_rss = rss_kib(vmm_pid, "VmRSS:");

    let mut created = Vec::new();
    let mut running = Vec::new();
    let mut ids = Vec::new();
    for i in 0..cvms {
        let req = CreateCvmRequest {
            name: format!("bench-{i}"),
            app_id: Some(app.app_id().into_array()),
            compose: compose.clone(),
            image: "cairn-os:1.0".into(),
            vcpus: 1,
            memory_mb: 256,
            ports: vec![],
            encrypted_env: None,
            kms_urls: None,
            gateway_urls: None,
            start: true,
        };
        let t0 = Instant::now();
        let info = c.create(&req).await.unwrap();
        created.push(t0.elapsed());
        loop {
            let i = c.get(&info.id).await.unwrap();
            if i.state == CvmState::Running {
                break;
            }
            assert!(i.state.is_active(), "{i:?}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        running.push(t0.elapsed());
        ids.push(info.id);
    }

    let mut list_times = Vec::with_capacity(lists);
    for _ in 0..lists {
        let t0 = Instant::now();
        let l = c.list().await.unwrap();
        list_times.push(t0.elapsed());
        assert_eq!(l.cvms.len(), cvms);
    }
    let rss = rss_kib(vmm_pid, "VmRSS:");
    let hwm = rss_kib(vmm_pid, "VmHWM:");

    let mut removes = Vec::new();
    for id in &ids {
        let t0 = Instant::now();
        c.remove(id).await.unwrap();
        removes.push(t0.elapsed());
    }

    println!(
        "cairn-vmm benchmark: {cvms} CVMs on the process backend, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    summary("deploy: POST /v1/cvms returned", created);
    summary("deploy: CVM running (app spawned)", running);
    summary(&format!("GET /v1/cvms with {cvms} CVMs"), list_times);
    summary("DELETE /v1/cvms/{id} (stop + rm)", removes);
    println!(
        "VMM RSS: idle {} MiB, with {cvms} CVMs {} MiB (peak {} MiB)",
        idle_rss / 1024,
        rss / 1024,
        hwm / 1024
    );
    let _ = vmm.kill().await;
    kms.stop().await;
}
