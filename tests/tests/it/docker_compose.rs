//! docker-compose apps end to end: anvil + the real KMS + `cairn_guest::boot` with the
//! `docker-compose` runner on this machine's Docker engine (`scripts/setup.sh` starts
//! one; without it these tests fail, they never skip).
//!
//! The app's container does what a dstack app does: it mounts `/var/run/dstack.sock`
//! (the runner points that mount at this CVM's agent socket), asks the agent for a key,
//! and gets the decrypted env through `${VAR}` substitution. It serves both over HTTP on
//! the host network, and the test compares them with what the KMS derives and what the
//! deployer encrypted.

use std::time::Duration;

use cairn_attestation::ids::{AppId, InstanceId};
use cairn_e2e::*;
use cairn_protocol::env::{encrypt_env_for_app, EnvEncryption, EnvVar, EnvVars};
use cairn_protocol::sig;

/// The containers' stop grace in these tests.
const GRACE: Duration = Duration::from_secs(2);

fn env(api_key: &str, port: u16) -> EnvVars {
    EnvVars::new(vec![
        EnvVar {
            key: "API_KEY".into(),
            value: api_key.into(),
        },
        EnvVar {
            key: "PORT".into(),
            value: port.to_string(),
        },
    ])
    .expect("env vars")
}

/// The key the KMS derives for this app, then the dstack `GetKey` derivation for `path`.
fn kms_derived_key(app_id: [u8; 20], path: &str) -> k256::ecdsa::SigningKey {
    let app = cairn_kms::AppKeys::derive(
        &cairn_kms::MasterSecret::from_bytes(MASTER),
        &root_keys(),
        &AppId(app_id),
        &InstanceId::None,
    )
    .expect("KMS derivation");
    sig::derive_path_key(&app.k256_secret(), path.as_bytes()).expect("path key")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_app_gets_its_key_over_the_mounted_agent_socket_and_its_env_and_down_leaves_nothing(
) {
    let image = agent_app_image();
    let (net, kms, app) = Devnet::with_kms_and_app(None).await;
    let app_id = app.app_id();
    let cvm = Cvm::with_compose(
        &kms.url(),
        app_id,
        0x21,
        agent_app_compose("compose-demo", &image),
    );
    app.add_compose_hash(cvm.compose_hash()).await.unwrap();
    net.mine(CONFIRMATIONS).await;
    let port = free_port();
    let mut public = kms.client(None).await;
    let blob = encrypt_env_for_app(
        &public.env_pubkey(&app_id.into_array()).await.unwrap(),
        &chain_root_k256(&net.client).await,
        &app_id.into_array(),
        &env("s3cret in a container $HOME", port),
        EnvEncryption::new(cairn_kms::unix_now()),
    )
    .unwrap();
    cvm.set_encrypted_env(&blob);

    let mut booted = cvm.boot().await.unwrap();
    let running = booted.app.as_mut().expect("the app started");
    let project = running
        .compose()
        .expect("a compose app")
        .project()
        .to_owned();
    let _cleanup = ProjectGuard(project.clone());
    // The agent is served after boot returns, as by the binary; `up` waits for it.
    let agent = Agent::serve(&cvm.agent_socket(), booted.state.clone());
    running.compose_mut().unwrap().ready().await.unwrap();

    // The decrypted env reached the container through `${API_KEY}`, byte-exact.
    let served_env = wait_for_http(port, "/env", &project).await;
    assert_eq!(served_env, b"s3cret in a container $HOME");

    // The container's GetKey over /var/run/dstack.sock equals the KMS-derived key...
    let got: serde_json::Value =
        serde_json::from_slice(&wait_for_http(port, "/getkey.json", &project).await).unwrap();
    let expected = kms_derived_key(app_id.into_array(), "e2e/docker");
    // ...and its signature chain ends at the root key registered on chain.
    let root = net.chain_k256_root().await;
    let key = checked_get_key(&got, &app_id.into_array(), "signing", &root);
    assert_eq!(key.to_bytes(), expected.to_bytes());

    // The runner sees the running container under this instance's project.
    let containers = running.compose().unwrap().containers().await.unwrap();
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0].service, "app");
    assert!(containers[0].is_running(), "{containers:?}");
    assert!(project.starts_with("cairn-compose-demo-"), "{project}");

    // Stop = compose down: no container of the project is left, nothing serves.
    running.stop(GRACE).await.unwrap();
    assert_eq!(project_containers(&project), Vec::<(String, String)>::new());
    assert!(
        http_get(port, "/env").await.is_none(),
        "the app still answers"
    );
    agent.stop().await;
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_of_one_compose_app_on_one_host_do_not_collide() {
    let image = agent_app_image();
    let (net, kms, app) = Devnet::with_kms_and_app(None).await;
    let app_id = app.app_id();
    let compose = agent_app_compose("twins", &image);
    // One compose hash, two CVMs (different hosts and instance seeds).
    let a = Cvm::with_compose(&kms.url(), app_id, 0x22, compose.clone());
    let b = Cvm::with_compose(&kms.url(), app_id, 0x23, compose);
    assert_eq!(a.compose_hash(), b.compose_hash());
    app.add_compose_hash(a.compose_hash()).await.unwrap();
    net.mine(CONFIRMATIONS).await;
    let mut public = kms.client(None).await;
    let (port_a, port_b) = (free_port(), free_port());
    for (cvm, key, port) in [(&a, "key-a", port_a), (&b, "key-b", port_b)] {
        let blob = encrypt_env_for_app(
            &public.env_pubkey(&app_id.into_array()).await.unwrap(),
            &chain_root_k256(&net.client).await,
            &app_id.into_array(),
            &env(key, port),
            EnvEncryption::new(cairn_kms::unix_now()),
        )
        .unwrap();
        cvm.set_encrypted_env(&blob);
    }

    let mut boot_a = a.boot().await.unwrap();
    let mut boot_b = b.boot().await.unwrap();
    let app_a = boot_a.app.as_mut().unwrap();
    let app_b = boot_b.app.as_mut().unwrap();
    let project_a = app_a.compose().unwrap().project().to_owned();
    let project_b = app_b.compose().unwrap().project().to_owned();
    let _cleanup = (
        ProjectGuard(project_a.clone()),
        ProjectGuard(project_b.clone()),
    );
    assert_ne!(project_a, project_b);
    let agent_a = Agent::serve(&a.agent_socket(), boot_a.state.clone());
    let agent_b = Agent::serve(&b.agent_socket(), boot_b.state.clone());
    app_a.compose_mut().unwrap().ready().await.unwrap();
    app_b.compose_mut().unwrap().ready().await.unwrap();

    // Each container reached its own CVM's agent (its own instance id) and got its own env.
    for (port, project, state, key) in [
        (port_a, &project_a, &boot_a.state, "key-a"),
        (port_b, &project_b, &boot_b.state, "key-b"),
    ] {
        assert_eq!(wait_for_http(port, "/env", project).await, key.as_bytes());
        let info: serde_json::Value =
            serde_json::from_slice(&wait_for_http(port, "/info.json", project).await).unwrap();
        assert_eq!(
            info["instance_id"]
                .as_str()
                .unwrap()
                .trim_start_matches("0x"),
            hex::encode(state.instance_id.as_bytes()),
            "{project}"
        );
    }
    assert_ne!(
        boot_a.state.instance_id.as_bytes(),
        boot_b.state.instance_id.as_bytes()
    );
    assert_eq!(project_containers(&project_a).len(), 1);
    assert_eq!(project_containers(&project_b).len(), 1);

    // Stopping one leaves the other running.
    app_a.stop(GRACE).await.unwrap();
    assert!(project_containers(&project_a).is_empty());
    assert!(http_get(port_a, "/env").await.is_none());
    let b_left = project_containers(&project_b);
    assert_eq!(b_left.len(), 1);
    assert_eq!(b_left[0].1, "running");
    assert_eq!(
        http_get(port_b, "/env").await,
        Some((200, b"key-b".to_vec()))
    );
    app_b.stop(GRACE).await.unwrap();
    assert!(project_containers(&project_b).is_empty());
    agent_a.stop().await;
    agent_b.stop().await;
    kms.stop().await;
}

/// Removes every container of the Compose projects starting with `prefix` when dropped
/// (a failing VMM test leaves nothing running on the shared engine).
struct PrefixGuard(&'static str);

impl Drop for PrefixGuard {
    fn drop(&mut self) {
        for project in projects_with_prefix(self.0) {
            drop(ProjectGuard(project));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compose_app_deployed_through_the_vmm_serves_its_key_and_env_and_remove_leaves_no_container(
) {
    use cairn_e2e::vmm::VmmNode;
    use cairn_protocol::vmm::{CreateCvmRequest, CvmState, PortRequest};

    // The compose's name is only this test's, so its projects are only this test's.
    const PREFIX: &str = "cairn-vmm-compose-";
    let image = agent_app_image();
    let _cleanup = PrefixGuard(PREFIX);
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    // The container listens on the host port the VMM maps to its port 8080.
    let compose = agent_app_compose_on("vmm-compose", &image, "${CAIRN_PORT_8080}");
    let app = net.deploy_app(net.owner, Some(compose.as_bytes())).await;
    let app_id = app.app_id();
    let vmm = VmmNode::start(&net, &kms, "").await;
    let c = vmm.client();

    // The deployer encrypts the env for the app's KMS key, checked against the chain.
    let vars = vmm::api_key_env("s3cret through the VMM $HOME");
    let env = vmm::encrypt_env(&net, &kms, app_id, &vars, cairn_kms::unix_now())
        .await
        .unwrap();
    let created = c
        .create(&CreateCvmRequest {
            name: "dockerized".into(),
            app_id: Some(app_id.into_array()),
            compose: compose.clone(),
            image: "cairn-os:1.0".into(),
            vcpus: 1,
            memory_mb: 512,
            ports: vec![PortRequest {
                guest_port: 8080,
                host_port: None,
            }],
            encrypted_env: Some(env),
            kms_urls: None,
            gateway_urls: None,
            start: true,
        })
        .await
        .unwrap();
    let running = vmm.wait_state(&created.id, CvmState::Running).await;
    assert_eq!(running.ports[0].guest_port, 8080);
    let port = running.ports[0].host_port;
    // `running` = the guest started its runner; `up` creates the project meanwhile.
    let deadline = std::time::Instant::now() + DEADLINE;
    let project = loop {
        let projects = projects_with_prefix(PREFIX);
        assert!(projects.len() <= 1, "{projects:?}");
        if let Some(p) = projects.into_iter().next() {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no Compose project {PREFIX}*; console:\n{}",
            String::from_utf8_lossy(&c.logs(&created.id, 60).await.unwrap_or_default())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let project = &project;

    // VMM → guest → container: the decrypted env, byte-exact...
    assert_eq!(
        wait_for_http(port, "/env", project).await,
        b"s3cret through the VMM $HOME"
    );
    // ...and the key the container got over the mounted agent socket is the KMS's.
    let got: serde_json::Value =
        serde_json::from_slice(&wait_for_http(port, "/getkey.json", project).await).unwrap();
    let root = net.chain_k256_root().await;
    let key = checked_get_key(&got, &app_id.into_array(), "signing", &root);
    assert_eq!(
        key.to_bytes(),
        kms_derived_key(app_id.into_array(), "e2e/docker").to_bytes()
    );
    let containers = project_containers(project);
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0].1, "running");
    assert!(running.events.iter().any(|e| e.event == "app.started"));
    // The env value never reached the console log.
    let logs = String::from_utf8(c.logs(&created.id, 200).await.unwrap()).unwrap();
    assert!(!logs.contains("s3cret through the VMM"), "{logs}");

    // Remove: the guest brings the project down; no container, nothing serves.
    c.remove(&created.id).await.unwrap();
    assert_eq!(projects_with_prefix(PREFIX), Vec::<String>::new());
    assert!(
        http_get(port, "/env").await.is_none(),
        "the app still answers"
    );
    assert!(c.list().await.unwrap().cvms.is_empty());
    kms.stop().await;
}
