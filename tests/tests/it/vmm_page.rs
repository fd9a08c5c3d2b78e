//! The VMM's web page in a real headless Chromium (Debian's `chromium`, installed by
//! `scripts/setup.sh`; without it this test fails, it never skips): a VMM with two
//! CVMs — one running, one the chain now refuses — on anvil with the real KMS and the
//! real `cairn-guest`, the page's rendered DOM checked for both with their states and
//! chain status, attacker-controlled text (a console log line, a guest report) shown
//! as text and never as markup, and a screenshot saved to `target/vmm-page.png`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cairn_e2e::vmm::*;
use cairn_e2e::*;
use cairn_protocol::vmm::{CreateCvmRequest, CvmState};
use cairn_vmm::ClientError;
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the attacker-influenced strings carry: markup that would show as an element
/// (and, without the CSP, run) if the page inserted API text as HTML.
const LOG_XSS: &str = "<img src=x onerror=\"document.title='pwned-by-log'\">";
const REPORT_XSS: &str = "<script>document.title='pwned-by-report'</script><b>bold</b>";

/// The time one Chromium run may take on a loaded machine.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);

fn chromium() -> PathBuf {
    let bin =
        std::env::var_os("CAIRN_CHROMIUM").map_or_else(|| PathBuf::from("chromium"), PathBuf::from);
    let found = std::process::Command::new(&bin)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "no Chromium at {} ($CAIRN_CHROMIUM): run scripts/setup.sh, which installs Debian's chromium",
        bin.display()
    );
    bin
}

/// Run headless Chromium on `url` with `extra` flags; its stdout.
async fn run_chromium(bin: &Path, profile: &Path, url: &str, extra: &[&str]) -> String {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        // Let the page's fetches finish before the DOM is dumped or the shot taken.
        "--virtual-time-budget=8000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let out = tokio::time::timeout(CHROMIUM_TIMEOUT, cmd.output())
        .await
        .expect("chromium finished in time")
        .expect("run chromium");
    String::from_utf8(stdout_of_success("chromium", out)).expect("the DOM is UTF-8")
}

/// A process app that prints `LOG_XSS` to its console and runs until stopped.
fn xss_logger_compose() -> String {
    serde_json::json!({
        "manifest_version": 2,
        "name": "web",
        "runner": "process",
        "process": {"command": ["/bin/sh", "-c", format!("echo 'app says: {}'; sleep 3600 & wait", LOG_XSS.replace('\'', "'\\''"))]},
        "kms_enabled": true,
    })
    .to_string()
}

/// What a malicious guest can do: report anything on its host-API socket.
async fn report_as_guest(socket: &Path, event: &str, payload: &str) {
    let body = serde_json::json!({"event": event, "payload": payload}).to_string();
    let mut s = tokio::net::UnixStream::connect(socket)
        .await
        .expect("host-api socket");
    s.write_all(
        format!(
            "POST /prpc/HostApi.Notify HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    assert!(
        resp.starts_with(b"HTTP/1.1 204"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}

fn create(name: &str, app: [u8; 20], compose: &str, start: bool) -> CreateCvmRequest {
    CreateCvmRequest {
        name: name.into(),
        app_id: Some(app),
        compose: compose.into(),
        image: "cairn-os:1.0".into(),
        vcpus: 1,
        memory_mb: 512,
        ports: vec![],
        encrypted_env: None,
        kms_urls: None,
        gateway_urls: None,
        start,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_page_in_chromium_shows_a_running_cvm_and_one_the_chain_refuses_and_escapes_what_it_shows(
) {
    let bin = chromium();
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let web = xss_logger_compose();
    let web_app = net.deploy_app(net.owner, Some(web.as_bytes())).await;
    let revoked = sleeper_compose("v1");
    let revoked_app = net.deploy_app(net.owner, Some(revoked.as_bytes())).await;
    let vmm = VmmNode::start(&net, &kms, "").await;
    let c = vmm.client();

    // One CVM running; one created while allowed whose compose hash the owner then
    // removed: the chain refuses to start it.
    let running = c
        .create(&create("web", web_app.app_id().into_array(), &web, true))
        .await
        .unwrap();
    let running = vmm.wait_state(&running.id, CvmState::Running).await;
    let refused = c
        .create(&create(
            "refused",
            revoked_app.app_id().into_array(),
            &revoked,
            false,
        ))
        .await
        .unwrap();
    revoked_app
        .remove_compose_hash(compose_hash(revoked.as_bytes()))
        .await
        .unwrap();
    net.mine(CONFIRMATIONS).await;
    match c.start(&refused.id).await.unwrap_err() {
        ClientError::Api { status, body } => {
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert_eq!(body.error.code, "denied.compose_hash");
        }
        e => panic!("{e}"),
    }
    // A hostile guest report, and the hostile log line is in the console.
    let host_api = vmm
        .state_dir()
        .join("cvms")
        .join(&running.id)
        .join("host-api.sock");
    report_as_guest(&host_api, "boot.progress", REPORT_XSS).await;
    let deadline = Instant::now() + DEADLINE;
    while !String::from_utf8_lossy(&c.logs(&running.id, 50).await.unwrap()).contains("app says") {
        assert!(
            Instant::now() < deadline,
            "the app's line never reached the console log"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The page, with the running CVM's details open (`#cvm=<id>`), in Chromium.
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{}/#cvm={}", vmm.tcp, running.id);
    let deadline = Instant::now() + DEADLINE;
    let dom = loop {
        let dom = run_chromium(&bin, profile.path(), &url, &["--dump-dom"]).await;
        // Loaded, and the detail panel has the log (the fetches run after the load).
        if dom.contains("data-loaded=\"true\"") && dom.contains("app says") {
            break dom;
        }
        assert!(
            Instant::now() < deadline,
            "the page never finished loading:\n{dom}"
        );
    };

    // Both CVMs, in their rows, with their states and their chain status.
    let row = |id: &str| -> String {
        let start = dom
            .find(&format!("data-cvm=\"{id}\""))
            .unwrap_or_else(|| panic!("no row for {id}:\n{dom}"));
        let end = dom[start..].find("</tr>").map_or(dom.len(), |e| start + e);
        dom[start..end].to_owned()
    };
    let web_row = row(&running.id);
    assert!(web_row.contains("data-state=\"running\""), "{web_row}");
    assert!(web_row.contains(">web<"), "{web_row}");
    assert!(web_row.contains("compose allowed"), "{web_row}");
    assert!(web_row.contains(">Stop<"), "{web_row}");
    let refused_row = row(&refused.id);
    assert!(
        refused_row.contains("data-state=\"created\""),
        "{refused_row}"
    );
    assert!(refused_row.contains(">refused<"), "{refused_row}");
    assert!(refused_row.contains("compose revoked"), "{refused_row}");
    assert!(
        refused_row.contains("Compose hash not allowed"),
        "{refused_row}"
    );
    assert!(refused_row.contains(">Start<"), "{refused_row}");
    assert!(dom.contains("2 CVMs (1 running, 1 created)"), "{dom}");

    // Attacker text is text: escaped in the serialized DOM, no element made of it, and
    // nothing of it ran.
    assert!(dom.contains("app says: &lt;img src=x onerror="), "{dom}");
    assert!(
        dom.contains(
            "&lt;script&gt;document.title='pwned-by-report'&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;"
        ),
        "{dom}"
    );
    assert!(
        !dom.contains("<img src=\"x\""),
        "the log line became an element"
    );
    assert!(
        !dom.contains("<b>bold</b>"),
        "the guest report became markup"
    );
    assert!(
        dom.contains("<title>Cairn VMM</title>"),
        "a script ran: {dom}"
    );

    // A screenshot for people.
    let shot = target_dir().join("vmm-page.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        &bin,
        profile.path(),
        &url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,800",
            "--hide-scrollbars",
        ],
    )
    .await;
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    kms.stop().await;
}
