//! The VMM end to end: a real `cairn-vmm` in-process, its process backend running the
//! real `cairn-guest` binary against the real KMS, its pre-flight reading anvil.

use std::time::Duration;

use cairn_e2e::vmm::*;
use cairn_e2e::*;
use cairn_onchain::alloy::primitives::Address;
use cairn_onchain::{Proposal, ProposalState, Support};
use cairn_protocol::api::Receipt;
use cairn_protocol::vmm::{
    CheckStatus, CreateCvmRequest, CvmState, PortRequest, PreflightCheck, UpgradeRequest,
    UpgradeState,
};
use cairn_vmm::{ClientError, VmmClient};
use hyper::StatusCode;

fn create(name: &str, app_id: Address, compose: &str, ports: &[u16]) -> CreateCvmRequest {
    CreateCvmRequest {
        name: name.into(),
        app_id: Some(app_id.into_array()),
        compose: compose.into(),
        image: "cairn-os:1.0".into(),
        vcpus: 1,
        memory_mb: 512,
        ports: ports
            .iter()
            .map(|p| PortRequest {
                guest_port: *p,
                host_port: None,
            })
            .collect(),
        encrypted_env: None,
        kms_urls: None,
        gateway_urls: None,
        start: true,
    }
}

/// The API error (status, code, message), or a panic.
fn api_err(e: ClientError) -> (StatusCode, String, String) {
    match e {
        ClientError::Api { status, body } => (status, body.error.code, body.error.message),
        e => panic!("not an API error: {e}"),
    }
}

/// Creating `req` is refused by the chain pre-flight: 403, the failing check's code and
/// the contract's reason.
async fn create_is_denied(c: &VmmClient, req: &CreateCvmRequest, code: &str, reason: &str) {
    let (status, got_code, msg) = api_err(c.create(req).await.unwrap_err());
    assert_eq!(
        (status, got_code.as_str(), msg.as_str()),
        (StatusCode::FORBIDDEN, code, reason),
        "create {}",
        req.name
    );
}

fn cvm_dirs(vmm: &VmmNode) -> usize {
    std::fs::read_dir(vmm.state_dir().join("cvms"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_through_the_vmm_boots_gets_keys_and_the_app_answers_on_its_mapped_port() {
    let compose = web_compose("v1");
    let (net, kms, app, vmm) = vmm_world(&compose).await;
    let app_id = app.app_id();
    let c = vmm.client();

    // The client encrypts the env for the app's KMS key, checked against the chain
    // (the library function the CLI uses).
    let mut public = kms.client(None).await;
    let vars = vmm::api_key_env("vmm-s3cret");
    let env = vmm::encrypt_env(&net, &kms, app_id, &vars, cairn_kms::unix_now())
        .await
        .unwrap();
    let mut req = create("web", app_id, &compose, &[8080]);
    req.encrypted_env = Some(env);
    let created = c.create(&req).await.unwrap();
    assert!(created.state.is_active(), "{created:?}");
    assert!(created.has_encrypted_env);
    assert_eq!(created.ports[0].guest_port, 8080);

    let running = vmm.wait_state(&created.id, CvmState::Running).await;
    let body = app_answer(running.ports[0].host_port).await;
    assert!(
        body.starts_with("API_KEY=vmm-s3cret;log_index=") && body.ends_with(";version=v1"),
        "{body}"
    );

    // The guest reported its boot; the receipt it got is in the KMS's log.
    let events: Vec<&str> = running.events.iter().map(|e| e.payload.as_str()).collect();
    for step in [
        "measured app-id",
        "measured compose-hash",
        "measured system-ready",
    ] {
        assert!(events.contains(&step), "{step} missing: {events:?}");
    }
    assert!(running
        .events
        .iter()
        .any(|e| e.event == "boot.receipt" && e.payload.contains(&kms.url())));
    assert!(running.events.iter().any(|e| e.event == "app.started"));
    let receipt: Receipt = serde_json::from_slice(
        &std::fs::read(
            vmm.state_dir()
                .join("cvms")
                .join(&created.id)
                .join("keys/receipt.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(body.contains(&format!("log_index={};", receipt.log_index)));
    let record = cairn_onchain::verify_receipt(
        &net.client,
        &mut public,
        &receipt,
        app_id,
        cairn_tlog::ReleaseKind::AppKey,
    )
    .await
    .unwrap();
    assert_eq!(record.boot.app_id, app_id);

    // Status, logs and the app's on-chain status.
    let logs = String::from_utf8(c.logs(&created.id, 100).await.unwrap()).unwrap();
    assert!(logs.contains("web app listening on"), "{logs}");
    assert!(
        !logs.contains("vmm-s3cret"),
        "the env value reached the console log"
    );
    let apps = c.apps().await.unwrap();
    assert_eq!(apps.apps.len(), 1);
    assert!(apps.apps[0].registered);
    assert!(apps.apps[0].cvms[0].preflight.allowed);
    let images = c.images().await.unwrap();
    assert_eq!(images.images[0].allowed, Some(true));

    c.remove(&created.id).await.unwrap();
    assert_eq!(cvm_dirs(&vmm), 0);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_apps_unapproved_composes_and_images_are_refused_before_anything_starts() {
    let compose = sleeper_compose("v1");
    let (net, kms, app) = Devnet::with_kms_and_app(None).await;
    // A second image the VMM knows but KmsAuth does not allow.
    let vmm = VmmNode::start(
        &net,
        &kms,
        "[[image]]\nname = \"cairn-os\"\nversion = \"2.0\"\nkind = \"simulator\"\n",
    )
    .await;
    let c = vmm.client();

    let stranger = Address::repeat_byte(0x5a);
    let unregistered = create("a", stranger, &compose, &[]);
    create_is_denied(
        &c,
        &unregistered,
        "denied.app_not_registered",
        "App not registered",
    )
    .await;
    let unapproved = create("b", app.app_id(), &compose, &[]);
    create_is_denied(
        &c,
        &unapproved,
        "denied.compose_hash",
        "Compose hash not allowed",
    )
    .await;

    app.add_compose_hash(compose_hash(compose.as_bytes()))
        .await
        .unwrap();
    net.mine(CONFIRMATIONS).await;
    let mut other_image = create("c", app.app_id(), &compose, &[]);
    other_image.image = "cairn-os:2.0".into();
    create_is_denied(
        &c,
        &other_image,
        "denied.os_image",
        "OS image is not allowed",
    )
    .await;

    // A scheduled hash says when it activates.
    let later = sleeper_compose("v2");
    let at = net.client.policy_block().await.unwrap();
    let now = net.client.block_timestamp(at).await.unwrap();
    app.schedule_compose_hash(compose_hash(later.as_bytes()), now + 3600)
        .await
        .unwrap();
    net.mine(CONFIRMATIONS).await;
    let (status, code, msg) = api_err(
        c.create(&create("d", app.app_id(), &later, &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "denied.compose_hash_not_active")
    );
    assert!(
        msg.starts_with("Compose hash not yet active")
            && msg.contains(&format!("activates at unix time {}", now + 3600)),
        "{msg}"
    );
    let report = c
        .app(
            app.app_id().into_array(),
            compose_hash(later.as_bytes()).0,
            "cairn-os:1.0",
        )
        .await
        .unwrap();
    assert!(!report.allowed);
    let compose_check = report
        .checks
        .iter()
        .find(|k| k.check == PreflightCheck::ComposeHash)
        .unwrap();
    assert_eq!(compose_check.status, CheckStatus::Scheduled);
    assert_eq!(compose_check.activates_at, Some(now + 3600));

    // Nothing was created, written or started for any of them.
    assert!(c.list().await.unwrap().cvms.is_empty());
    assert_eq!(cvm_dirs(&vmm), 0);
    assert!(processes_in(&vmm.state_dir(), "cairn-guest").is_empty());
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_waits_for_the_dao_vote_and_applies_once_the_timelock_executes() {
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let (params, dao) = net.deploy_dao().await;
    let v1 = web_compose("v1");
    let v2 = web_compose("v2");
    let app = net.deploy_app(dao.timelock(), Some(v1.as_bytes())).await;
    let vmm = VmmNode::start(&net, &kms, "").await;
    let c = vmm.client();
    let running = vmm
        .create_running(&create("web", app.app_id(), &v1, &[8080]))
        .await;
    let id = running.id.clone();
    let port = running.ports[0].host_port;
    assert!(app_answer(port).await.ends_with("version=v1"));

    // Without waiting: refused now, nothing changes.
    let upgrade = |wait: bool, timeout: Option<u64>| UpgradeRequest {
        compose: v2.clone(),
        encrypted_env: None,
        image: None,
        wait_for_approval: wait,
        approval_timeout_secs: timeout,
    };
    let (status, code, _) = api_err(c.upgrade(&id, &upgrade(false, None)).await.unwrap_err());
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "denied.compose_hash")
    );

    // Waiting: 202, progress in the status, v1 keeps running meanwhile.
    let (waiting, info) = c.upgrade(&id, &upgrade(true, Some(600))).await.unwrap();
    assert!(waiting);
    let status = info.upgrade.unwrap();
    assert_eq!(status.state, UpgradeState::WaitingForApproval);
    assert!(
        status.detail.contains("Compose hash not allowed"),
        "{}",
        status.detail
    );
    let (code, _) = match c.upgrade(&id, &upgrade(true, Some(600))).await.unwrap_err() {
        ClientError::Api { body, .. } => (body.error.code, ()),
        e => panic!("{e}"),
    };
    assert_eq!(code, "conflict.upgrade_pending");

    dao.delegate(net.owner).await.unwrap();
    net.mine(1).await;
    let proposal =
        Proposal::add_compose_hash(app.app_id(), compose_hash(v2.as_bytes()), "release v2");
    let pid = dao.propose(&proposal).await.unwrap();
    net.mine(u64::from(params.voting_delay_blocks) + 1).await;
    dao.cast_vote(pid, Support::For).await.unwrap();
    net.mine(u64::from(params.voting_period_blocks) + 1).await;
    dao.queue(&proposal).await.unwrap();
    net.mine(CONFIRMATIONS).await;
    // Queued is not executed: still waiting, still v1.
    let info = c.get(&id).await.unwrap();
    assert_eq!(
        info.upgrade.unwrap().state,
        UpgradeState::WaitingForApproval
    );
    assert_eq!(info.compose_hash, compose_hash(v1.as_bytes()).0);
    assert!(app_answer(port).await.ends_with("version=v1"));

    net.increase_time(params.timelock_delay_secs + 1).await;
    dao.execute(&proposal).await.unwrap();
    assert_eq!(dao.state(pid).await.unwrap(), ProposalState::Executed);
    net.mine(CONFIRMATIONS).await;

    let done = vmm
        .wait_until(&id, Duration::from_secs(60), |i| {
            i.upgrade
                .as_ref()
                .is_some_and(|u| u.state == UpgradeState::Done)
                && i.state == CvmState::Running
        })
        .await;
    assert_eq!(done.compose_hash, compose_hash(v2.as_bytes()).0);
    assert_eq!(done.ports[0].host_port, port);
    assert!(app_answer(port).await.ends_with("version=v2"));

    // An upgrade nobody approves times out and leaves the CVM as it is.
    let v3 = web_compose("v3");
    let (waiting, _) = c
        .upgrade(
            &id,
            &UpgradeRequest {
                compose: v3,
                encrypted_env: None,
                image: None,
                wait_for_approval: true,
                approval_timeout_secs: Some(1),
            },
        )
        .await
        .unwrap();
    assert!(waiting);
    let timed_out = vmm
        .wait_until(&id, Duration::from_secs(30), |i| {
            i.upgrade
                .as_ref()
                .is_some_and(|u| u.state == UpgradeState::TimedOut)
        })
        .await;
    assert_eq!(timed_out.compose_hash, compose_hash(v2.as_bytes()).0);
    assert_eq!(timed_out.state, CvmState::Running);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vmm_restart_keeps_running_cvms_without_duplicates_and_reports_one_that_died() {
    let compose = sleeper_compose("v1");
    let (_net, kms, app, mut vmm) = vmm_world(&compose).await;
    let c = vmm.client();
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        ids.push(
            c.create(&create(name, app.app_id(), &compose, &[]))
                .await
                .unwrap()
                .id,
        );
    }
    let mut pids = Vec::new();
    for id in &ids {
        pids.push(vmm.wait_state(id, CvmState::Running).await.pid.unwrap());
    }

    vmm.shutdown().await;
    // The guests outlive their VMM. One dies while no VMM watches it.
    assert!(pids.iter().all(|p| alive(*p)));
    let c_session = session(pids[2]);
    assert!(c_session.len() >= 2, "the guest and its app: {c_session:?}");
    std::process::Command::new("kill")
        .args(["-KILL", &pids[2].to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    while alive(pids[2]) {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    vmm.restart().await;
    let c = vmm.client();
    for (id, pid) in ids.iter().zip(&pids).take(2) {
        let info = c.get(id).await.unwrap();
        assert_eq!(
            (info.state, info.pid),
            (CvmState::Running, Some(*pid)),
            "{info:?}"
        );
        let dir = vmm.state_dir().join("cvms").join(id);
        assert_eq!(
            processes_in(&dir, "cairn-guest"),
            vec![*pid],
            "one guest per CVM"
        );
    }
    let dead = c.get(&ids[2]).await.unwrap();
    assert_eq!(dead.state, CvmState::Failed);
    assert!(
        dead.reason
            .as_deref()
            .unwrap_or_default()
            .contains("exited while the VMM was not running"),
        "{dead:?}"
    );
    // What the dead guest started was cleaned up, not orphaned.
    let deadline = std::time::Instant::now() + DEADLINE;
    while c_session.iter().any(|p| alive(*p)) {
        assert!(
            std::time::Instant::now() < deadline,
            "leftovers of the dead guest live on"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The re-adopted guests are still under control.
    let stopped = c.stop(&ids[0]).await.unwrap();
    assert_eq!(stopped.state, CvmState::Stopped);
    assert!(!alive(pids[0]));
    let restarted = c.start(&ids[2]).await.unwrap();
    assert!(restarted.state.is_active());
    vmm.wait_state(&ids[2], CvmState::Running).await;
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_remove_reach_the_whole_session_and_logs_follow_until_the_stop() {
    let compose = sleeper_compose("v1");
    let (_net, kms, app, vmm) = vmm_world(&compose).await;
    let c = vmm.client();
    let running = vmm
        .create_running(&create("sleeper", app.app_id(), &compose, &[9000]))
        .await;
    let (id, pid) = (running.id, running.pid.unwrap());
    // guest, its app's shell, the shell's sleep
    let deadline = std::time::Instant::now() + DEADLINE;
    let members = loop {
        let m = session(pid);
        if m.len() >= 3 {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "session of {pid}: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    let mut follow = c.follow_logs(&id, 50).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(chunk) = follow.next().await.unwrap() {
            all.extend_from_slice(&chunk);
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let stopped = c.stop(&id).await.unwrap();
    assert_eq!(stopped.state, CvmState::Stopped);
    assert!(
        members.iter().all(|p| !alive(*p)),
        "{members:?} outlived the stop"
    );
    let followed = tokio::time::timeout(DEADLINE, reader)
        .await
        .unwrap()
        .unwrap();
    assert!(followed.contains("sleeper up"), "{followed}");

    // A host port taken while it was stopped: start is refused, then works once free.
    let port = stopped.ports[0].host_port;
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (status, code, _) = api_err(c.start(&id).await.unwrap_err());
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "conflict.port")
    );
    drop(squatter);
    let pid = c.start(&id).await.unwrap().pid.unwrap();
    vmm.wait_state(&id, CvmState::Running).await;
    let deadline = std::time::Instant::now() + DEADLINE;
    let members = loop {
        let m = session(pid);
        if m.len() >= 3 {
            break m;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    c.remove(&id).await.unwrap();
    assert!(
        members.iter().all(|p| !alive(*p)),
        "{members:?} outlived the removal"
    );
    let (status, _, _) = api_err(c.get(&id).await.unwrap_err());
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(cvm_dirs(&vmm), 0);
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vmm_clients_env_encryption_refuses_a_key_the_root_on_chain_did_not_sign() {
    let (net, kms, app) = Devnet::with_kms_and_app(None).await;
    let vars = vmm::api_key_env("never-encrypted");
    let app_id = app.app_id();
    // A stale answer is refused too (the KMS signed "now"; we are an hour later).
    let err = vmm::encrypt_env(&net, &kms, app_id, &vars, cairn_kms::unix_now() + 3600)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            cairn_vmm::EnvError::Protocol(cairn_protocol::Error::StaleTimestamp { .. })
        ),
        "{err:?}"
    );
    // The chain now names another root: the running KMS's signature no longer verifies.
    net.register_other_root().await;
    let err = vmm::encrypt_env(&net, &kms, app_id, &vars, cairn_kms::unix_now())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            cairn_vmm::EnvError::Protocol(cairn_protocol::Error::WrongSigner)
        ),
        "{err:?}"
    );
    kms.stop().await;
}

/// Issue 14: the VMM's chain RPC through a lying proxy, its client connected by a first
/// create. Down, then stalled: a create is
/// refused `503 unavailable.chain` within the RPC timeout and nothing is created or
/// started; back: the same request boots the CVM, no VMM restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vmms_chain_rpc_lost_refuses_creates_closed_and_the_same_create_passes_when_it_returns()
{
    use cairn_onchain::testing::{Behaviour, RpcProxy};
    use std::time::Instant;
    const RPC_TIMEOUT_MS: u64 = 1000;
    // One RPC timeout plus scheduling slack on the shared cores (a hang detector, not a
    // speed assertion: an untimed call would take DEADLINE).
    let bound = Duration::from_millis(RPC_TIMEOUT_MS) + Duration::from_secs(4);

    let compose = sleeper_compose("outage");
    let (net, kms, app) = Devnet::with_kms_and_app(Some(compose.as_bytes())).await;
    let proxy = RpcProxy::start(net.anvil.endpoint_url()).await;
    let vmm = VmmNode::start_via(&net, &kms, "", proxy.url().as_str(), RPC_TIMEOUT_MS).await;
    let c = vmm.client();
    let req = create("sleeper", app.app_id(), &compose, &[]);

    // Before: the VMM's chain client connects and a create passes (then it is removed).
    let before = vmm.create_running(&req).await;
    c.remove(&before.id).await.unwrap();
    assert_eq!(cvm_dirs(&vmm), 0);

    for behaviour in [Behaviour::Down, Behaviour::Stall] {
        proxy.set(behaviour);
        let t = Instant::now();
        let (status, code, message) = api_err(c.create(&req).await.unwrap_err());
        let took = t.elapsed();
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable.chain"),
            "{behaviour:?}: {message}"
        );
        assert!(
            took < bound,
            "{behaviour:?}: refused after {took:?}, RPC timeout {RPC_TIMEOUT_MS} ms"
        );
        assert!(message.contains("chain RPC"), "{behaviour:?}: {message}");
        eprintln!("{behaviour:?}: refused in {took:?}: {message}");
        // nothing created, nothing started
        assert_eq!(cvm_dirs(&vmm), 0, "{behaviour:?}");
        assert!(c.list().await.unwrap().cvms.is_empty(), "{behaviour:?}");
        assert!(
            processes_in(&vmm.state_dir(), "cairn-guest").is_empty(),
            "{behaviour:?}"
        );
    }

    // The RPC returns: the same request passes on the same VMM.
    proxy.set(Behaviour::Forward);
    let t = Instant::now();
    let created = loop {
        match c.create(&req).await {
            Ok(created) => break created,
            Err(e) => {
                let (status, code, message) = api_err(e);
                assert_eq!(
                    (status, code.as_str()),
                    (StatusCode::SERVICE_UNAVAILABLE, "unavailable.chain"),
                    "{message}"
                );
                assert!(t.elapsed() < DEADLINE, "creates still refused: {message}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    eprintln!("Forward: created after {:?}", t.elapsed());
    vmm.wait_state(&created.id, CvmState::Running).await;
    assert_eq!(c.list().await.unwrap().cvms.len(), 1);
    c.remove(&created.id).await.unwrap();
    kms.stop().await;
}

/// The KMS URL a running CVM got its keys from (its `boot.receipt` event names it).
fn receipt_kms(info: &cairn_protocol::vmm::CvmInfo, urls: &[String]) -> String {
    let payload = info
        .events
        .iter()
        .find(|e| e.event == "boot.receipt")
        .map(|e| e.payload.clone())
        .unwrap_or_else(|| panic!("no boot.receipt event: {:?}", info.events));
    urls.iter()
        .find(|u| payload.contains(u.as_str()))
        .unwrap_or_else(|| panic!("the receipt names no node of {urls:?}: {payload}"))
        .clone()
}

/// Issue 14, "survives the loss and return of another KMS node" for the VMM: CVMs list
/// two nodes; with the first down a deploy boots through the second, with the first back
/// and the second down through the first, with both down the CVM fails naming each URL —
/// and the VMM keeps serving throughout, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_through_the_vmm_survives_the_loss_and_return_of_a_kms_node() {
    let net = Devnet::new().await;
    let cluster = net.start_cluster(2).await;
    let urls = cluster.urls();
    let mut nodes = cluster.nodes;
    let second = nodes.pop().expect("two nodes");
    let first = nodes.pop().expect("two nodes");
    let compose = web_compose("v1");
    let app = net.deploy_app(net.owner, Some(compose.as_bytes())).await;
    let vmm = VmmNode::start(&net, &first, "").await;
    let c = vmm.client();
    let deploy = |name: &str| {
        let mut req = create(name, app.app_id(), &compose, &[8080]);
        req.kms_urls = Some(urls.clone());
        req
    };

    // The first node lost: the guest walks its list and the second one releases.
    let first_down = first.stop().await;
    let a = c.create(&deploy("a")).await.unwrap();
    let running = vmm.wait_state(&a.id, CvmState::Running).await;
    assert_eq!(receipt_kms(&running, &urls), urls[1]);
    let body = app_answer(running.ports[0].host_port).await;
    assert!(body.ends_with(";version=v1"), "{body}");

    // The first node back (same address), the second lost: the first releases again.
    let first = net.restart_kms(first_down).await;
    let second_down = second.stop().await;
    let b = c.create(&deploy("b")).await.unwrap();
    let running = vmm.wait_state(&b.id, CvmState::Running).await;
    assert_eq!(receipt_kms(&running, &urls), urls[0]);

    // Both lost: the CVM fails and says why; nothing else changes.
    let first_down = first.stop().await;
    let d = c.create(&deploy("d")).await.unwrap();
    let failed = vmm.wait_state(&d.id, CvmState::Failed).await;
    let console = String::from_utf8_lossy(&c.logs(&d.id, 200).await.unwrap()).into_owned();
    for url in &urls {
        assert!(
            console.contains(url.trim_start_matches("https://")),
            "the failed boot does not name {url}: reason {:?}\n{console}",
            failed.reason
        );
    }
    assert_eq!(
        c.get(&a.id).await.unwrap().state,
        CvmState::Running,
        "a running CVM was disturbed"
    );

    // The nodes back: a new deploy boots, with no VMM restart.
    let _first = net.restart_kms(first_down).await;
    let _second = net.restart_kms(second_down).await;
    let e = c.create(&deploy("e")).await.unwrap();
    vmm.wait_state(&e.id, CvmState::Running).await;
    for id in [&a.id, &b.id, &d.id, &e.id] {
        if let Err(err) = c.remove(id).await {
            let state = c
                .get(id)
                .await
                .map(|i| format!("{:?} {:?}", i.state, i.reason));
            panic!("remove {id}: {err} (CVM: {state:?})");
        }
    }
    assert_eq!(cvm_dirs(&vmm), 0);
}
