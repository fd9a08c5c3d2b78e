//! The guest → host channel: boot steps, the receipt, the app start and a boot failure
//! reach the host's socket, and the host's port map reaches the app.

use std::sync::{Arc, Mutex};

use cairn_guest::{boot, Reporter};
use cairn_protocol::hostapi::{Notification, PATH_NOTIFY};

use crate::world::*;

/// A host-API socket recording what it receives.
struct Host {
    path: std::path::PathBuf,
    got: Arc<Mutex<Vec<Notification>>>,
}

fn host(dir: &std::path::Path) -> Host {
    let path = dir.join("host-api.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let got: Arc<Mutex<Vec<Notification>>> = Arc::default();
    let sink = Arc::clone(&got);
    let app = axum::Router::new().route(
        PATH_NOTIFY,
        axum::routing::post(move |axum::Json(n): axum::Json<Notification>| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push(n);
                hyper::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Host { path, got }
}

fn sys_config(s: &Share, kms_url: &str, host: &Host, port_map: serde_json::Value) {
    s.write(
        "sys-config.json",
        &serde_json::to_vec(&serde_json::json!({
            "kms_urls": [kms_url],
            "host_api_url": format!("unix:{}", host.path.display()),
            "port_map": port_map,
        }))
        .unwrap(),
    );
}

#[tokio::test]
async fn reports_arrive_in_order_and_flush_waits_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let r = Reporter::from_url(Some(&format!("unix:{}", host.path.display())));
    r.report("boot.progress", "measured app-id");
    r.report("app.started", "process");
    r.flush(std::time::Duration::from_secs(20)).await;
    let got = host.got.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![
            Notification::new("boot.progress", "measured app-id"),
            Notification::new("app.started", "process"),
        ]
    );
}

#[tokio::test]
async fn boot_steps_and_the_app_start_are_reported_and_the_app_learns_its_host_port() {
    let w = World::start().await;
    let mut s = w.share("");
    // An app that writes the host port it must listen on.
    let script = format!("printf '%s' \"$CAIRN_PORT_8080\" > {}", s.out().display());
    s.set_compose(format!(
        r#"{{"manifest_version":2,"name":"demo","runner":"process","process":{{"command":["/bin/sh","-c",{}]}},"kms_enabled":true}}"#,
        serde_json::to_string(&script).unwrap()
    ));
    w.allow(&s).await;
    let host = host(s.dir.path());
    sys_config(
        &s,
        &w.url(),
        &host,
        serde_json::json!([{"guest_port": 8080, "host_port": 20123}]),
    );
    let mut booted = boot(as_tee(&guest_tee(1)), kms_client(), &s.config())
        .await
        .unwrap();
    assert!(booted.app.take().unwrap().wait().await.unwrap().success());
    assert_eq!(std::fs::read_to_string(s.out()).unwrap(), "20123");
    booted
        .reporter
        .flush(std::time::Duration::from_secs(20))
        .await;
    let got = host.got.lock().unwrap().clone();
    let events: Vec<(&str, &str)> = got
        .iter()
        .map(|n| (n.event.as_str(), n.payload.as_str()))
        .collect();
    for step in [
        "measured system-preparing",
        "measured app-id",
        "measured compose-hash",
        "measured boot-mr-done",
        "measured os-image-hash",
        "measured system-ready",
    ] {
        assert!(
            events.contains(&("boot.progress", step)),
            "{step} missing from {events:?}"
        );
    }
    let receipt = got.iter().find(|n| n.event == "boot.receipt").unwrap();
    assert!(
        receipt.payload.contains(&format!("kms={}", w.url())),
        "{receipt:?}"
    );
    assert_eq!(events.last(), Some(&("app.started", "process")));
    // Nothing secret: no key material in any payload.
    let keys = s.app_keys();
    let secret = hex::encode(*keys.k256_secret());
    assert!(got.iter().all(|n| !n.payload.contains(&secret)));
}

#[tokio::test]
async fn a_refused_boot_reports_the_kms_reason_to_the_host() {
    // A compose the app's AppAuth never allowed: the chain denies it.
    let w = World::start().await;
    let s = w.share(r#","public_logs":true"#);
    let host = host(s.dir.path());
    sys_config(&s, &w.url(), &host, serde_json::json!([]));
    let err = boot(as_tee(&guest_tee(1)), kms_client(), &s.config())
        .await
        .unwrap_err();
    // boot() flushes the error report before returning.
    let got = host.got.lock().unwrap().clone();
    let last = got.last().unwrap();
    assert_eq!(last.event, "boot.error");
    assert_eq!(last.payload, err.to_string());
    assert!(
        last.payload.contains("Compose hash not allowed"),
        "{last:?}"
    );
}

#[tokio::test]
async fn an_unreachable_host_does_not_fail_the_boot() {
    let w = World::start().await;
    let s = w.share("");
    let gone = Host {
        path: s.dir.path().join("nobody.sock"),
        got: Arc::default(),
    };
    sys_config(&s, &w.url(), &gone, serde_json::json!([]));
    let mut booted = boot(as_tee(&guest_tee(1)), kms_client(), &s.config())
        .await
        .unwrap();
    assert!(booted.app.take().unwrap().wait().await.unwrap().success());
}
