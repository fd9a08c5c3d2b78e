//! The gateway benchmark (`scripts/bench.sh gateway`, numbers in docs/benchmarks.md):
//! wrk on loopback against the same app server, direct and through a gateway node, in
//! one run, reported as ratios; then the revocation latency.
//!
//! The world is the e2e one (anvil, the real KMS, guests on the simulator): a gateway
//! node whose identity is its own CVM's, and one CVM running `cairn-echo-app` (release
//! build, next to this example) that registered with it.
//!
//! ```text
//! cargo build --release -p cairn-e2e --bin cairn-echo-app
//! cargo run --release -p cairn-e2e --example gateway_bench -- [SECS] [CONNECTIONS] [REVOCATIONS]
//! ```
//!
//! Cases: HTTP keep-alive and a new connection per request (`Connection: close`), each
//! direct to the app (TLS with its KMS-issued certificate), through the gateway
//! terminating TLS (TLS again to the app, its chain checked), through the gateway
//! terminating with the plain-TCP opt-in, and in passthrough. wrk reaches the gateway by
//! SNI through a Lua `wrk.resolve` that points every name at 127.0.0.1.
//!
//! Revocation: the compose hash is removed on chain, the confirmations are mined at
//! once, and the time from the removal's receipt to the moment an open connection
//! through the gateway is closed is measured (default poll interval, 3 s); then the hash
//! is allowed again and the CVM re-registers, `REVOCATIONS` times.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_e2e::gateway::*;
use cairn_e2e::*;
use cairn_gateway::{AppOptions, DEFAULT_POLL_INTERVAL};

/// One wrk run's numbers.
#[derive(Clone, Copy, Debug, Default)]
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn millis(v: &str) -> f64 {
    let v = v.trim();
    let (num, unit) = v
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| v.split_at(i))
        .unwrap_or((v, "ms"));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => f64::NAN,
    }
}

/// Run wrk and parse requests/s, p50, p99 and socket/HTTP errors.
fn wrk(url: &str, secs: u64, conns: u32, close: bool, lua: &Path) -> Run {
    let mut cmd = std::process::Command::new("wrk");
    cmd.args([
        "-t",
        "2",
        "-c",
        &conns.to_string(),
        "-d",
        &format!("{secs}s"),
        "--latency",
    ])
    .arg("-s")
    .arg(lua);
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("run wrk (Debian's wrk package)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut run = Run::default();
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            run.rps = v.trim().parse().unwrap_or(f64::NAN);
        } else if let Some(v) = l.strip_prefix("50%") {
            run.p50_ms = millis(v);
        } else if let Some(v) = l.strip_prefix("99%") {
            run.p99_ms = millis(v);
        } else if let Some(v) = l.strip_prefix("Socket errors:") {
            run.errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            run.errors += v.trim().parse::<u64>().unwrap_or(0);
        }
    }
    assert!(
        run.rps > 0.0,
        "wrk {url} measured nothing:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run
}

fn echo_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/examples/gateway_bench → target/<profile>/cairn-echo-app
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("cairn-echo-app"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} is missing: cargo build --release -p cairn-e2e --bin cairn-echo-app",
        bin.display()
    );
    bin
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
    let conns: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(32);
    let revocations: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let echo = echo_binary();
    let echo = echo.to_str().expect("utf-8 path");

    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let gateway_app = net.deploy_gateway_app().await;
    let gateway_cvm = boot_gateway_cvm(&net, &kms, &gateway_app, 0x71).await;
    let ca = TestCa::new();
    let mut options = gateway_options(&net, &gateway_cvm.cvm.agent_socket(), &ca);
    options.poll_interval = DEFAULT_POLL_INTERVAL;
    options.max_policy_age = Duration::from_secs(60);
    let node = GatewayNode::start(options.clone(), None).await;

    // the app (TLS) registered with the node; a plain twin for the opt-in case
    let app = net.deploy_app(net.owner, None).await;
    let cvm = echo_cvm(
        &kms,
        app.app_id(),
        0x72,
        echo,
        443,
        &[node.registration_url()],
        EchoOptions::default(),
    );
    let plain_cvm = echo_cvm(
        &kms,
        app.app_id(),
        0x73,
        echo,
        443,
        &[],
        EchoOptions {
            plain: true,
            port_policy: None,
        },
    );
    let app_port = app_host_port(&cvm);
    let plain_port = app_host_port(&plain_cvm);
    for c in [&cvm, &plain_cvm] {
        app.add_compose_hash(c.compose_hash()).await.unwrap();
    }
    net.mine(CONFIRMATIONS).await;
    let mut running = Running::boot(cvm).await;
    running.register();
    node.wait_admitting("admitted", &running).await;
    let (a, i) = (running.app_id(), running.instance_id());
    // a second node forwarding to the plain twin (explicit opt-in for this app)
    let mut plain_options = options.clone();
    plain_options.apps.insert(
        a,
        AppOptions {
            plain_tcp: true,
            max_connections: None,
        },
    );
    let plain_node = GatewayNode::start(plain_options, None).await;
    plain_cvm.set_gateways(
        &[plain_node.registration_url()],
        &[cairn_protocol::sysconfig::AppPort {
            guest_port: 443,
            host_port: plain_port,
        }],
    );
    let mut plain_running = Running::boot(plain_cvm).await;
    plain_running.register();
    plain_node.wait_admitting("admitted", &plain_running).await;
    // the app answers directly before measuring
    let direct_check = get_once(
        std::net::SocketAddr::from(([127, 0, 0, 1], app_port)),
        "app.direct",
        &passthrough_client(),
        "/",
    )
    .await
    .expect("the app answers directly");
    assert_eq!(direct_check.0, 200);

    let dir = tempfile::tempdir().unwrap();
    let lua = |port: u16| {
        let p = dir.path().join(format!("resolve-{port}.lua"));
        std::fs::write(
            &p,
            format!("function wrk.resolve(host, service)\n  wrk.addrs = wrk.lookup(\"127.0.0.1\", \"{port}\")\nend\n"),
        )
        .unwrap();
        p
    };
    // Each path: its label, the URL wrk asks, and the loopback port that URL resolves to.
    let via_gateway = |passthrough: bool, port: u16| {
        let url = format!("https://{}:{port}/", sni(&a, Some(443), passthrough));
        (url, port)
    };
    let paths = [
        (
            "direct to the app (TLS)",
            (format!("https://127.0.0.1:{app_port}/"), app_port),
        ),
        (
            "gateway, terminate (TLS to the app)",
            via_gateway(false, node.proxy.port()),
        ),
        ("gateway, passthrough", via_gateway(true, node.proxy.port())),
        (
            "direct to the plain twin (HTTP)",
            (format!("http://127.0.0.1:{plain_port}/"), plain_port),
        ),
        (
            "gateway, terminate (plain-TCP opt-in)",
            via_gateway(false, plain_node.proxy.port()),
        ),
    ];
    let cases: Vec<(&str, String, PathBuf)> = paths
        .into_iter()
        .map(|(label, (url, port))| (label, url, lua(port)))
        .collect();
    println!("wrk -t2 -c{conns} -d{secs}s on loopback; echo app in its own process, gateway in this one\n");
    for (mode, close) in [("keep-alive", false), ("new connection per request", true)] {
        println!("### {mode}\n");
        println!("| path | req/s | vs direct | p50 | p99 | errors |");
        println!("|---|---|---|---|---|---|");
        let mut direct = Run::default();
        for (label, url, script) in &cases {
            let run = wrk(url, secs, conns, close, script);
            if label.starts_with("direct to the app") {
                direct = run;
            }
            let base = if label.contains("plain") && !label.starts_with("direct") {
                None
            } else {
                Some(direct.rps)
            };
            let ratio = base.map_or_else(
                || "—".to_owned(),
                |d| format!("{:.0} %", 100.0 * run.rps / d),
            );
            println!(
                "| {label} | {:.0} | {ratio} | {:.2} ms | {:.2} ms | {} |",
                run.rps, run.p50_ms, run.p99_ms, run.errors
            );
        }
        println!();
    }

    // revocation latency
    println!("### revocation (poll interval {DEFAULT_POLL_INTERVAL:?}, confirmations {CONFIRMATIONS} mined at once)\n");
    let client = terminating_client(&ca);
    let name = sni(&a, Some(443), false);
    let hash = running.cvm.compose_hash();
    let mut samples = Vec::new();
    for n in 0..revocations {
        let mut conn = KeepAlive::open(node.proxy, &name, &client)
            .await
            .expect("connect");
        assert_eq!(conn.get("/").await.expect("request").0, 200);
        app.remove_compose_hash(hash).await.unwrap();
        let mined = Instant::now();
        net.mine(CONFIRMATIONS).await;
        conn.wait_closed(Duration::from_secs(60))
            .await
            .expect("closed within a minute");
        let total = mined.elapsed();
        samples.push(total);
        println!(
            "- revocation {}: {:.0} ms",
            n + 1,
            total.as_secs_f64() * 1000.0
        );
        // allow it again; the CVM registers again
        app.add_compose_hash(hash).await.unwrap();
        net.mine(CONFIRMATIONS).await;
        node.wait_for("re-admitted", |s| GatewayNode::admits(s, &a, &i))
            .await;
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = samples.iter().map(|d| ms(*d)).sum::<f64>() / samples.len().max(1) as f64;
    println!(
        "\nrevoke tx mined → open connection closed: mean {mean:.0} ms, min {:.0} ms, max {:.0} ms over {} revocations",
        samples.first().map_or(f64::NAN, |d| ms(*d)),
        samples.last().map_or(f64::NAN, |d| ms(*d)),
        samples.len()
    );

    plain_running.stop().await;
    running.stop().await;
    plain_node.stop().await;
    node.stop().await;
    gateway_cvm.stop().await;
    kms.stop().await;
}

/// The host port an echo CVM's app listens on (its sys-config's port map).
fn app_host_port(cvm: &Cvm) -> u16 {
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(cvm.dir.path().join("share/sys-config.json")).expect("sys-config"),
    )
    .expect("json");
    config["port_map"][0]["host_port"]
        .as_u64()
        .expect("a port map") as u16
}
