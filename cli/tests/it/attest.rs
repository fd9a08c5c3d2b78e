//! `cairn attest verify` on evidence from a real guest agent (simulator TDX): a `GetQuote`
//! response and an `Attest` document verify and show the guest's identities; a tampered
//! event log, wrong report data or another trust root are refused (exit 1); input that is
//! not evidence is exit 2.

use cairn_e2e::*;

use crate::chain::{cairn, field_of_each, Cli, Run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attest_verify_shows_identities_and_refuses_tampered_evidence() {
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let (app, cvm) = net.allowed_cvm(&kms, 0x51, "attest").await;
    let booted = cvm.boot().await.unwrap();
    let agent = Agent::serve(&cvm.agent_socket(), booted.state.clone());
    let rd = "ab".repeat(64);
    let (st, quote) = agent
        .call("GetQuote", serde_json::json!({ "report_data": rd }))
        .await;
    assert_eq!(st, hyper::StatusCode::OK, "{quote}");
    let (st, attest) = agent
        .call("Attest", serde_json::json!({ "report_data": rd }))
        .await;
    assert_eq!(st, hyper::StatusCode::OK, "{attest}");
    agent.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, v: &serde_json::Value| {
        let p = dir.path().join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p.display().to_string()
    };
    let quote_file = write("quote.json", &quote);
    let attest_file = write("attest.json", &attest);
    let compose_hex = hex::encode(cvm.compose_hash());
    let app_hex = hex::encode(app.app_id());

    let cli = Cli::new(&net, dir.path());
    for (file, extra) in [(&quote_file, None), (&attest_file, Some(rd.as_str()))] {
        let mut args = vec![
            "--json",
            "attest",
            "verify",
            file.as_str(),
            "--trust",
            "simulator",
        ];
        if let Some(rd) = extra {
            args.extend_from_slice(&["--report-data", rd]);
        }
        let v = cli.run(&[], &args).await.ok_json();
        assert_eq!(v["verified"], true);
        assert_eq!(v["tcb_status"], "UpToDate");
        assert!(
            v["compose_hash"].as_str().unwrap().contains(&compose_hex),
            "{v}"
        );
        assert!(
            v["app_id"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains(&app_hex),
            "{v}"
        );
        assert_eq!(v["report_data"], rd);
        let names = field_of_each(&v["events"], "name");
        assert!(names.contains(&"compose-hash"), "{names:?}");
    }
    // Human output.
    let text = attest_verify(&net, dir.path(), &quote_file, &[]).await;
    assert_eq!(text.code, 0, "{text:#?}");
    assert!(text.stdout.contains("verified (TCB UpToDate)"), "{text:#?}");

    // The Attest document bound to other report data: refused.
    let other = "cd".repeat(64);
    attest_verify(&net, dir.path(), &attest_file, &["--report-data", &other])
        .await
        .fails(1, "the evidence does not verify");
    // A tampered event log (another compose hash): the event no longer matches its digest.
    let mut tampered = quote.clone();
    let log = tampered["event_log"]
        .as_str()
        .unwrap()
        .replace(&compose_hex, &"00".repeat(32));
    assert_ne!(
        log,
        tampered["event_log"].as_str().unwrap(),
        "the log carries the compose hash in hex"
    );
    tampered["event_log"] = serde_json::Value::String(log);
    let tampered_file = write("tampered.json", &tampered);
    let r = attest_verify(&net, dir.path(), &tampered_file, &[]).await;
    r.fails(
        1,
        "(compose-hash): recorded digest does not match its payload",
    );
    // Another root.
    let seed = "11".repeat(32);
    attest_verify(&net, dir.path(), &quote_file, &["--sim-pki-seed", &seed])
        .await
        .fails(1, "the evidence does not verify");
    // Not evidence.
    let junk = write("junk.json", &serde_json::json!({"hello": 1}));
    attest_verify(&net, dir.path(), &junk, &[])
        .await
        .fails(2, "not a GetQuote or Attest response");
    kms.stop().await;
}

/// `cairn attest verify FILE --trust simulator EXTRA…` with `net`'s chain, in `dir`.
async fn attest_verify(net: &Devnet, dir: &std::path::Path, file: &str, extra: &[&str]) -> Run {
    let mut args = vec!["attest", "verify", file, "--trust", "simulator"];
    args.extend_from_slice(extra);
    cairn(net, dir, &[], &args).await
}
