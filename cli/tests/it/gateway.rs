//! `cairn gateway status` against a real gateway node (`cairn_e2e::gateway`): JSON equal
//! to the node's own answer, the text view with the chain's verdicts and a revocation's
//! reason, the admin token, and an unreachable node.

use cairn_e2e::gateway::*;
use cairn_e2e::*;
use cairn_protocol::api::ErrorBody;
use cairn_protocol::gateway::GatewayStatus;

use crate::chain::{hermetic_cairn, run_to_end};

/// Run `cairn gateway --admin <url> <args…>`: (success, stdout, stderr).
async fn cairn(admin: &str, args: &[&str]) -> (bool, String, String) {
    let (status, stdout, stderr) = run_to_end(
        hermetic_cairn()
            .arg("gateway")
            .arg("--admin")
            .arg(admin)
            .args(args),
    )
    .await;
    (status.success(), stdout, stderr)
}

/// An app that only keeps its CVM running and registers with the gateways.
fn idle_gateway_app(tag: &str) -> String {
    format!(
        r#"{{"manifest_version":2,"name":"idle","runner":"process","process":{{"command":["/bin/sleep","900"],"env":{{"TAG":"{tag}"}}}},"kms_enabled":true,"gateway_enabled":true}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_status_shows_admitted_instances_with_their_verdicts_and_revocations() {
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let gateway_app = net.deploy_gateway_app().await;
    let gateway_cvm = boot_gateway_cvm(&net, &kms, &gateway_app, 0x61).await;
    let ca = TestCa::new();
    let node = GatewayNode::start(
        gateway_options(&net, &gateway_cvm.cvm.agent_socket(), &ca),
        None,
    )
    .await;
    let admin = format!("http://{}", node.admin);

    let app = net.deploy_app(net.owner, None).await;
    let cvm = Cvm::with_compose(&kms.url(), app.app_id(), 0x62, idle_gateway_app("a"));
    cvm.set_gateways(&[node.registration_url()], &[]);
    app.add_compose_hash(cvm.compose_hash()).await.unwrap();
    net.mine(CONFIRMATIONS).await;
    let mut running = Running::boot(cvm).await;
    running.register();
    node.wait_admitting("admitted", &running).await;
    let (a, i) = (running.app_id(), running.instance_id());

    // --json is the node's own answer
    let (ok, stdout, stderr) = cairn(&admin, &["status", "--json"]).await;
    assert!(ok, "{stderr}");
    let s: GatewayStatus = serde_json::from_str(&stdout).unwrap();
    assert_eq!(s.apps.len(), 1);
    assert_eq!(s.apps[0].app_id, a);
    assert_eq!(s.apps[0].instances[0].instance_id, i.to_vec());
    assert_eq!(
        s.apps[0].instances[0].compose_hash,
        running.cvm.compose_hash().0
    );
    // text: the app, the instance and the block the chain allowed it at
    let (ok, text, _) = cairn(&admin, &["status"]).await;
    assert!(ok);
    let allowed_at = s.apps[0].instances[0].allowed_at.number;
    assert!(
        text.contains(&format!("app 0x{}", hex::encode(a))),
        "{text}"
    );
    assert!(
        text.contains(&format!("instance 0x{}", hex::encode(i))),
        "{text}"
    );
    assert!(text.contains("allowed at #"), "{text}");
    assert!(allowed_at > 0);

    // a revocation shows with the contract's reason
    app.remove_compose_hash(running.cvm.compose_hash())
        .await
        .unwrap();
    net.mine(CONFIRMATIONS).await;
    node.wait_for("revoked", |s| s.apps.is_empty()).await;
    let (ok, text, _) = cairn(&admin, &["status"]).await;
    assert!(ok);
    assert!(text.contains("no admitted instances"), "{text}");
    assert!(
        text.contains("revoked.compose_hash") && text.contains("Compose hash not allowed"),
        "{text}"
    );

    // an unreachable node: an error, as JSON with --json
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (ok, stdout, stderr) = cairn(&dead, &["status", "--json"]).await;
    assert!(!ok);
    let e: ErrorBody = serde_json::from_str(stdout.trim()).unwrap();
    assert!(e.error.message.contains("connecting to"), "{stdout}");
    assert!(stderr.contains("error:"), "{stderr}");

    running.stop().await;
    node.stop().await;
    gateway_cvm.stop().await;
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_an_admin_token_answers_only_with_it() {
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let gateway_app = net.deploy_gateway_app().await;
    let gateway_cvm = boot_gateway_cvm(&net, &kms, &gateway_app, 0x63).await;
    let ca = TestCa::new();
    let mut options = gateway_options(&net, &gateway_cvm.cvm.agent_socket(), &ca);
    let token = "0123456789abcdef-admin-token";
    options.admin_token = Some(std::sync::Arc::new(zeroize::Zeroizing::new(
        token.to_owned(),
    )));
    let node = GatewayNode::start(options, None).await;
    let admin = format!("http://{}", node.admin);
    let dir = tempfile::tempdir().unwrap();
    let (good, bad) = (dir.path().join("good"), dir.path().join("bad"));
    std::fs::write(&good, format!("{token}\n")).unwrap();
    std::fs::write(&bad, "not-the-token-at-all").unwrap();

    let (ok, _, stderr) = cairn(&admin, &["status"]).await;
    assert!(
        !ok && stderr.contains("answered 401: unauthorized"),
        "{stderr}"
    );
    let (ok, _, stderr) = cairn(&admin, &["status", "--token-file", bad.to_str().unwrap()]).await;
    assert!(!ok && stderr.contains("401"), "{stderr}");
    let (ok, stdout, stderr) =
        cairn(&admin, &["status", "--token-file", good.to_str().unwrap()]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("no admitted instances"), "{stdout}");
    // the health probe needs no token
    assert_eq!(
        http_get(node.admin.port(), "/healthz")
            .await
            .map(|(c, _)| c),
        Some(200)
    );
    node.stop().await;
    gateway_cvm.stop().await;
    kms.stop().await;
}
