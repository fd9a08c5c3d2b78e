//! The gateway end to end (issue 12): anvil + the real KMS + guests on the simulator, a
//! gateway node whose identity is its own CVM's, app CVMs running `cairn-echo-app` that
//! register with it, and clients reaching them by SNI.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_e2e::gateway::*;
use cairn_e2e::*;
use cairn_gateway::{AppOptions, GatewayOptions, ProxyLimits};
use cairn_guest::gateway::Outcome;
use cairn_onchain::testing::{Behaviour, RpcProxy};
use cairn_onchain::AppAuthClient;
use cairn_protocol::api::ErrorBody;
use cairn_protocol::gateway::{GatewayStatus, RegisterRequest, RegisterResponse, PATH_REGISTER};
use rustls::AlertDescription;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ECHO: &str = env!("CARGO_BIN_EXE_cairn-echo-app");

/// The chain, the KMS, the gateway app, its CVM, and one gateway node serving.
struct World {
    net: Devnet,
    kms: Kms,
    gateway_app: AppAuthClient,
    gateway_cvm: Running,
    ca: TestCa,
    node: GatewayNode,
}

async fn world() -> World {
    world_with(|_| {}).await
}

async fn world_with(tune: impl FnOnce(&mut GatewayOptions)) -> World {
    let parts = Parts::boot(0x31).await;
    let mut options = parts.options();
    tune(&mut options);
    parts.start(options).await
}

/// A [`World`] before its gateway node starts: the chain, the KMS, the gateway app and
/// its CVM, the test CA.
struct Parts {
    net: Devnet,
    kms: Kms,
    gateway_app: AppAuthClient,
    gateway_cvm: Running,
    ca: TestCa,
}

impl Parts {
    /// The chain and KMS, and the gateway app's CVM booted on host `seed`.
    async fn boot(seed: u8) -> Parts {
        let net = Devnet::new().await;
        let kms = net.start_kms().await;
        let gateway_app = net.deploy_gateway_app().await;
        let gateway_cvm = boot_gateway_cvm(&net, &kms, &gateway_app, seed).await;
        Parts {
            net,
            kms,
            gateway_app,
            gateway_cvm,
            ca: TestCa::new(),
        }
    }

    /// The default options of a gateway node on the gateway CVM.
    fn options(&self) -> GatewayOptions {
        gateway_options(&self.net, &self.gateway_cvm.cvm.agent_socket(), &self.ca)
    }

    /// The world with a gateway node started with `options`.
    async fn start(self, options: GatewayOptions) -> World {
        let node = GatewayNode::start(options, None).await;
        let Parts {
            net,
            kms,
            gateway_app,
            gateway_cvm,
            ca,
        } = self;
        World {
            net,
            kms,
            gateway_app,
            gateway_cvm,
            ca,
            node,
        }
    }
}

impl World {
    /// Deploy an app, allow the compose of an echo CVM on `host`, boot it (not yet
    /// registering).
    async fn app_cvm(
        &self,
        host: u8,
        gateways: &[String],
        plain: bool,
        policy: Option<&str>,
    ) -> (AppAuthClient, Running) {
        let app = self.net.deploy_app(self.net.owner, None).await;
        let cvm = echo_cvm(
            &self.kms,
            app.app_id(),
            host,
            ECHO,
            443,
            gateways,
            EchoOptions {
                plain,
                port_policy: policy,
            },
        );
        app.add_compose_hash(cvm.compose_hash()).await.unwrap();
        self.net.mine(CONFIRMATIONS).await;
        (app, Running::boot(cvm).await)
    }

    /// [`World::app_cvm`] registered with this world's node, and admitted.
    async fn admitted_app(
        &self,
        host: u8,
        plain: bool,
        policy: Option<&str>,
    ) -> (AppAuthClient, Running) {
        let (app, mut running) = self
            .app_cvm(host, &[self.node.registration_url()], plain, policy)
            .await;
        running.register();
        self.node.wait_admitting("the app admitted", &running).await;
        (app, running)
    }

    /// [`world`] with an app admitted ([`World::admitted_app`] on `host`, no port
    /// policy).
    async fn admitting(host: u8, plain: bool) -> (World, AppAuthClient, Running) {
        let w = world().await;
        let (app, running) = w.admitted_app(host, plain, None).await;
        (w, app, running)
    }

    /// `GET path` once through this world's node, terminated at the gateway, to `id` (an
    /// app or instance id) on port 443.
    async fn get_terminated(
        &self,
        id: &[u8; 20],
        connector: &tokio_rustls::TlsConnector,
        path: &str,
    ) -> Result<(u16, String), ClientError> {
        get_once(self.node.proxy, &sni(id, Some(443), false), connector, path).await
    }

    /// The world with its node stopped and a new one started on the same registration
    /// address.
    async fn with_restarted_node(self) -> World {
        let registration = self.node.registration;
        self.node.stop().await;
        let options = gateway_options(&self.net, &self.gateway_cvm.cvm.agent_socket(), &self.ca);
        let node = GatewayNode::start(options, Some(registration)).await;
        World { node, ..self }
    }

    /// Stop `running`, then the world.
    async fn stop_with(self, running: Running) {
        running.stop().await;
        self.stop().await;
    }

    async fn stop(self) {
        self.node.stop().await;
        self.gateway_cvm.stop().await;
        self.kms.stop().await;
    }
}

/// An HTTP/1.1 connection over TLS (`connector`, server name `name`) on `tcp`, its
/// driver spawned.
async fn http1_over_tls<B>(
    connector: tokio_rustls::TlsConnector,
    name: String,
    tcp: tokio::net::TcpStream,
) -> hyper::client::conn::http1::SendRequest<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let server = rustls_pki_types::ServerName::try_from(name).unwrap();
    let tls = connector.connect(server, tcp).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// `answer` is the echo app's: 200 and `echo <instance id> <path>` of `running`.
#[track_caller]
fn assert_echo(answer: (u16, String), running: &Running, path: &str) {
    let want = format!("echo {} {path}\n", hex::encode(running.instance_id()));
    assert_eq!(answer, (200, want));
}

fn expect_alert(r: Result<(u16, String), ClientError>, want: AlertDescription) {
    match r {
        Err(e) => assert_eq!(e.alert(), Some(want), "{e:?}"),
        Ok(ok) => panic!("expected the alert {want:?}, got an answer {ok:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_through_the_gateway_reach_the_app_terminated_and_passed_through() {
    let (w, _app, running) = World::admitting(0x41, false).await;
    let (app_id, instance) = (running.app_id(), running.instance_id());
    let terminating = terminating_client(&w.ca);

    // terminated at the gateway (its certificate, verified by the client against the
    // test CA), forwarded over TLS to the app
    let answer = w.get_terminated(&app_id, &terminating, "/hello").await;
    assert_echo(answer.unwrap(), &running, "/hello");
    // by instance id too
    let (status, _) = w
        .get_terminated(&instance, &terminating, "/i")
        .await
        .unwrap();
    assert_eq!(status, 200);

    // passed through: the client talks TLS with the app itself and sees its KMS-issued
    // chain for this app id
    let mut pass = KeepAlive::open(
        w.node.proxy,
        &sni(&app_id, None, true),
        &passthrough_client(),
    )
    .await
    .unwrap();
    check_app_chain(&running.root(), &pass.server_chain, &app_id).unwrap();
    assert!(matches!(
        check_app_chain(&running.root(), &pass.server_chain, &[0x77; 20]),
        Err(cairn_attestation::ChainError::AppIdMismatch { .. })
    ));
    assert_echo(pass.get("/through").await.unwrap(), &running, "/through");
    // keep-alive: a second request on the same connection
    assert_eq!(pass.get("/again").await.unwrap().0, 200);

    // the status names the instance with its on-chain verdict
    let s = w.node.status().await;
    let inst = &s.apps[0].instances[0];
    assert_eq!(inst.compose_hash, running.cvm.compose_hash().0);
    assert_eq!(inst.tcb_status, "UpToDate");
    assert!(inst.healthy);
    assert_eq!(s.gateway_app_id, w.gateway_app.app_id().into_array());
    assert!(w
        .node
        .metrics()
        .await
        .contains("cairn_gateway_registrations_total{outcome=\"admitted\",check=\"none\"}"));
    // the guest's side of the registration
    assert!(matches!(
        &running.registration_outcomes()[0].1,
        Some(Outcome::Registered(r)) if r.app_id == app_id
    ));
    drop(pass);
    w.stop_with(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_whose_compose_is_not_allowed_is_never_admitted() {
    let w = world().await;
    let (app, mut running) = w
        .app_cvm(0x42, &[w.node.registration_url()], false, None)
        .await;
    // a client chain issued while the compose was allowed…
    let (chain, key) = tls_key(&running).await;
    // …then the owner removes the compose hash before the CVM registers
    app.remove_compose_hash(running.cvm.compose_hash())
        .await
        .unwrap();
    w.net.mine(CONFIRMATIONS).await;
    let request = RegisterRequest {
        app_compose: running.cvm.compose.clone(),
        port_map: vec![],
    };
    let answer = register_by_hand(&w.node, &chain, &key, &request).await;
    let body: ErrorBody = serde_json::from_slice(&answer.1).unwrap();
    assert_eq!(
        (
            answer.0,
            body.error.code.as_str(),
            body.error.message.as_str()
        ),
        (403, "denied.compose_hash", "Compose hash not allowed")
    );
    // the guest's own registration fails the same way (the KMS does not even issue it a
    // registration certificate any more)
    running.register();
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(Outcome::Failed(e)) = &running.registration_outcomes()[0].1 {
            assert!(e.contains("denied.compose_hash"), "{e}");
            break;
        }
        assert!(Instant::now() < deadline, "no outcome");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = w.node.status().await;
    assert!(s.apps.is_empty(), "nothing admitted: {s:#?}");
    let d = &s.recent_denials[0];
    assert_eq!(
        (d.code.as_str(), d.reason.as_str()),
        ("denied.compose_hash", "Compose hash not allowed")
    );
    assert_eq!(d.app_id, running.app_id().to_vec());
    // and nothing routes to it
    expect_alert(
        get_once(
            w.node.proxy,
            &sni(&running.app_id(), Some(443), false),
            &terminating_client(&w.ca),
            "/",
        )
        .await,
        AlertDescription::UnrecognisedName,
    );
    w.stop_with(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_compose_hash_closes_open_connections_within_one_poll() {
    let (w, app, running) = World::admitting(0x43, false).await;
    let app_id = running.app_id();
    let mut terminated = KeepAlive::open(
        w.node.proxy,
        &sni(&app_id, Some(443), false),
        &terminating_client(&w.ca),
    )
    .await
    .unwrap();
    let mut passed = KeepAlive::open(
        w.node.proxy,
        &sni(&app_id, Some(443), true),
        &passthrough_client(),
    )
    .await
    .unwrap();
    assert_eq!(terminated.get("/").await.unwrap().0, 200);
    assert_eq!(passed.get("/").await.unwrap().0, 200);

    app.remove_compose_hash(running.cvm.compose_hash())
        .await
        .unwrap();
    // the revocation is visible at the policy block once the confirmations are mined
    w.net.mine(CONFIRMATIONS).await;
    let visible = Instant::now();
    let t = terminated
        .wait_closed(DEADLINE)
        .await
        .expect("terminated connection closed");
    let p = passed
        .wait_closed(DEADLINE)
        .await
        .expect("passthrough connection closed");
    eprintln!(
        "revocation visible at the policy block → connections closed: terminate {t:?}, passthrough {p:?} (poll interval 200 ms; total {:?})",
        visible.elapsed()
    );
    // no new connection either
    expect_alert(
        w.get_terminated(&app_id, &terminating_client(&w.ca), "/")
            .await,
        AlertDescription::UnrecognisedName,
    );
    let s = w.node.status().await;
    assert!(s.apps.is_empty());
    let d = &s.recent_denials[0];
    assert_eq!(
        (d.code.as_str(), d.reason.as_str()),
        ("revoked.compose_hash", "Compose hash not allowed")
    );
    assert!(d.block.is_some());
    let metrics = w.node.metrics().await;
    for mode in ["terminate", "passthrough"] {
        assert!(
            metrics.contains(&format!(
                "cairn_gateway_connections_total{{mode=\"{mode}\",outcome=\"revoked\"}} 1"
            )),
            "{metrics}"
        );
    }
    w.stop_with(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_gateway_nodes_one_stopped_the_other_keeps_serving() {
    let w = world().await;
    let second_cvm = boot_gateway_cvm(&w.net, &w.kms, &w.gateway_app, 0x32).await;
    let second = GatewayNode::start(
        gateway_options(&w.net, &second_cvm.cvm.agent_socket(), &w.ca),
        None,
    )
    .await;
    let (_app, mut running) = w
        .app_cvm(
            0x44,
            &[w.node.registration_url(), second.registration_url()],
            false,
            None,
        )
        .await;
    running.register();
    let a = running.app_id();
    w.node.wait_admitting("admitted by node 1", &running).await;
    second.wait_admitting("admitted by node 2", &running).await;
    let client = terminating_client(&w.ca);
    let name = sni(&a, Some(443), false);
    assert_eq!(
        get_once(w.node.proxy, &name, &client, "/").await.unwrap().0,
        200
    );

    let first_proxy = w.node.proxy;
    let World {
        net,
        kms,
        gateway_cvm,
        node,
        ..
    } = w;
    node.stop().await;
    assert!(
        tokio::net::TcpStream::connect(first_proxy).await.is_err(),
        "node 1 is down"
    );
    let (status, body) = get_once(second.proxy, &name, &client, "/still")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    second.stop().await;
    running.stop().await;
    second_cvm.stop().await;
    gateway_cvm.stop().await;
    kms.stop().await;
    drop(net);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_is_registered_with_again() {
    let (w, _app, running) = World::admitting(0x45, false).await;
    let a = running.app_id();
    // a new node on the same registration address keeps no state of the old one
    let w = w.with_restarted_node().await;
    w.node
        .wait_admitting("the instance registered again", &running)
        .await;
    let (status, _) = w
        .get_terminated(&a, &terminating_client(&w.ca), "/")
        .await
        .unwrap();
    assert_eq!(status, 200);
    w.stop_with(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_is_down_answers_502_quickly() {
    let (w, _app, mut running) = World::admitting(0x46, false).await;
    let a = running.app_id();
    running.stop_app().await;
    let started = Instant::now();
    let (status, body) = w
        .get_terminated(&a, &terminating_client(&w.ca), "/")
        .await
        .unwrap();
    eprintln!("backend down → 502 in {:?}", started.elapsed());
    assert_eq!(
        (status, body.as_str()),
        (502, "no instance of this app answered\n")
    );
    // in passthrough there is no HTTP to answer with: a TLS alert
    expect_alert(
        get_once(
            w.node.proxy,
            &sni(&a, Some(443), true),
            &passthrough_client(),
            "/",
        )
        .await,
        AlertDescription::InternalError,
    );
    let s = w.node.status().await;
    assert!(
        !s.apps[0].instances[0].healthy,
        "failed connects mark it unhealthy"
    );
    w.stop_with(running).await;
}

/// Everything the gateway answers to bytes that are not a routable ClientHello: read to
/// the end (the gateway closes) within the deadline.
async fn answer_to(proxy: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    // the gateway may close before everything was written: only the answer matters
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .expect("the gateway closes")
        .ok();
    out
}

/// A TLS record carrying `len` bytes of a ClientHello that claims to be 64 KiB long.
fn oversized_hello(len: usize) -> Vec<u8> {
    let mut body = vec![0x01, 0x00, 0xff, 0xff]; // ClientHello, 65535 bytes
    body.extend(std::iter::repeat_n(0x41, len));
    let mut out = Vec::new();
    for chunk in body.chunks(16 * 1024) {
        out.extend([0x16, 0x03, 0x01]);
        out.extend((chunk.len() as u16).to_be_bytes());
        out.extend(chunk);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_hello_no_sni_unknown_app_and_oversized_hello_close_cleanly_and_the_gateway_keeps_serving(
) {
    let (w, _app, running) = World::admitting(0x47, false).await;
    let a = running.app_id();
    let client = terminating_client(&w.ca);

    // not TLS at all: rustls' alert, then close
    let answer = answer_to(w.node.proxy, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.is_empty() || answer[0] == 0x15, "{answer:02x?}");
    // an oversized hello: cut at the bound with handshake_failure
    let answer = answer_to(w.node.proxy, &oversized_hello(40 * 1024)).await;
    assert_eq!(
        answer,
        cairn_gateway::alert(cairn_gateway::alerts::HANDSHAKE_FAILURE)
    );
    // no SNI (the client dials an IP address): unrecognized_name
    let tcp = tokio::net::TcpStream::connect(w.node.proxy).await.unwrap();
    let no_sni = client
        .connect(
            rustls_pki_types::ServerName::IpAddress(w.node.proxy.ip().into()),
            tcp,
        )
        .await
        .map(|_| ())
        .map_err(ClientError::Tls);
    assert_eq!(
        no_sni.unwrap_err().alert(),
        Some(AlertDescription::UnrecognisedName)
    );
    // an unknown app, a name outside the base domain, a bad port
    for name in [
        sni(&[0x99; 20], None, false),
        "app.example.com".to_owned(),
        format!("{}-0.{BASE_DOMAIN}", hex::encode(a)),
    ] {
        expect_alert(
            get_once(w.node.proxy, &name, &client, "/").await,
            AlertDescription::UnrecognisedName,
        );
    }
    // and the gateway still serves
    let (status, _) = w.get_terminated(&a, &client, "/").await.unwrap();
    assert_eq!(status, 200);
    let m = w.node.metrics().await;
    for reason in [
        "hello_too_large",
        "no_sni",
        "unknown_app",
        "other_domain",
        "bad_name",
    ] {
        assert!(
            m.contains(&format!(
                "cairn_gateway_connections_refused_total{{reason=\"{reason}\"}}"
            )),
            "{reason} not counted:\n{m}"
        );
    }
    w.stop_with(running).await;
}

/// A TLS connection from `source` (a loopback address of its own).
async fn connect_from(source: IpAddr, to: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_of_handshakes_does_not_stop_other_clients() {
    let w = world_with(|o| {
        o.proxy = ProxyLimits {
            hello_timeout: Duration::from_secs(2),
            max_connections_per_source: 16,
            ..o.proxy
        }
    })
    .await;
    let (_app, running) = w.admitted_app(0x48, false, None).await;
    let a = running.app_id();
    // 64 connections from one source, each sending one byte of a hello and stalling
    let attacker: IpAddr = "127.0.0.2".parse().unwrap();
    let mut stalled = Vec::new();
    for _ in 0..64 {
        let mut s = connect_from(attacker, w.node.proxy).await;
        let _ = s.write_all(&[0x16]).await;
        stalled.push(s);
    }
    // meanwhile a client from another source is served at once
    let started = Instant::now();
    let tcp = connect_from("127.0.0.3".parse().unwrap(), w.node.proxy).await;
    let mut sender =
        http1_over_tls(terminating_client(&w.ca), sni(&a, Some(443), false), tcp).await;
    let resp = sender
        .send_request(
            hyper::Request::get("/")
                .header("host", BASE_DOMAIN)
                .body(http_body_util::Empty::<hyper::body::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    eprintln!("served during the slowloris in {:?}", started.elapsed());
    // the stalled handshakes are cut at the hello timeout; the ones over the per-source
    // limit were closed at accept
    for mut s in stalled {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .expect("closed by the gateway");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
    let m = w.node.metrics().await;
    assert!(
        m.contains("cairn_gateway_connections_refused_total{reason=\"max_per_source\"} 48"),
        "{m}"
    );
    assert!(
        m.contains("cairn_gateway_connections_refused_total{reason=\"hello_timeout\"} 16"),
        "{m}"
    );
    w.stop_with(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_measured_port_policy_restricts_reachable_ports() {
    let w = world().await;
    let (_app, running) = w
        .admitted_app(
            0x49,
            false,
            Some(r#"{"restrict_mode":true,"ports":[{"port":443}]}"#),
        )
        .await;
    let a = running.app_id();
    let client = terminating_client(&w.ca);
    assert_eq!(w.get_terminated(&a, &client, "/").await.unwrap().0, 200);
    for port in [Some(8080), None] {
        expect_alert(
            get_once(w.node.proxy, &sni(&a, port, false), &client, "/").await,
            AlertDescription::AccessDenied,
        );
    }
    w.stop_with(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_to_an_app_only_by_explicit_opt_in() {
    let w = world().await;
    // an app that serves plain HTTP: the TLS hop to it fails (no instance answers
    // acceptably)…
    let (app, running) = w.admitted_app(0x4a, true, None).await;
    let a = running.app_id();
    let name = sni(&a, Some(443), false);
    let client = terminating_client(&w.ca);
    assert_eq!(
        get_once(w.node.proxy, &name, &client, "/").await.unwrap().0,
        502
    );
    // …until a node is configured to forward to it in plain text
    let mut options = gateway_options(&w.net, &w.gateway_cvm.cvm.agent_socket(), &w.ca);
    options.apps.insert(
        a,
        AppOptions {
            plain_tcp: true,
            max_connections: None,
        },
    );
    let plain = GatewayNode::start(options, None).await;
    running.stop().await;
    // a fresh instance of the same app registering with the opted-in node
    let app_cvm = echo_cvm(
        &w.kms,
        a.into(),
        0x4b,
        ECHO,
        443,
        &[plain.registration_url()],
        EchoOptions {
            plain: true,
            port_policy: None,
        },
    );
    app.add_compose_hash(app_cvm.compose_hash()).await.unwrap();
    w.net.mine(CONFIRMATIONS).await;
    let mut running = Running::boot(app_cvm).await;
    running.register();
    plain.wait_admitting("admitted", &running).await;
    let answer = get_once(plain.proxy, &name, &client, "/plain").await;
    assert_echo(answer.unwrap(), &running, "/plain");
    plain.stop().await;
    w.stop_with(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_not_named_by_kmsauth_does_not_start_and_cvms_refuse_a_non_gateway() {
    let w = world().await;
    // a CVM of another app as "gateway": the node refuses to start
    let (other, other_cvm) = w.app_cvm(0x4c, &[], false, None).await;
    let options = gateway_options(&w.net, &other_cvm.cvm.agent_socket(), &w.ca);
    let listeners = cairn_gateway::Listeners {
        proxy: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        registration: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        admin: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let e = cairn_gateway::run(listeners, options, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        matches!(e, cairn_gateway::Error::NotGatewayApp { ours, .. } if ours == other.app_id().into_array()),
        "{e}"
    );

    // a CVM pointed at a TLS server that is not the gateway app (another app's KMS-issued
    // chain) refuses it before sending anything
    let impostor = format!(
        "https://127.0.0.1:{}",
        other_cvm.booted.state.port_map[0].host_port
    );
    let (_app, mut running) = w.app_cvm(0x4d, &[impostor], false, None).await;
    running.register();
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(Outcome::Failed(e)) = &running.registration_outcomes()[0].1 {
            assert!(
                e.contains("is not the gateway app") && e.contains("app CA certificate is for app"),
                "{e}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no outcome");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await;
    other_cvm.stop().await;
    w.stop().await;
}

/// A hand-made registration: `chain` and `key` (PEM, from an agent's `GetTlsKey`) as
/// the client certificate, `body` as the request.
async fn register_by_hand(
    node: &GatewayNode,
    chain: &[String],
    key: &str,
    body: &RegisterRequest,
) -> (u16, Vec<u8>) {
    use rustls_pki_types::pem::PemObject;
    let certs = chain
        .iter()
        .map(|p| rustls_pki_types::CertificateDer::from_pem_slice(p.as_bytes()).unwrap())
        .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = cairn_attestation::testing::possession_client()
        .with_client_auth_cert(certs, key)
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(node.registration)
        .await
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut sender = http1_over_tls(connector, "gateway".to_owned(), tcp).await;
    let req = hyper::Request::post(PATH_REGISTER)
        .header("host", "gateway")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(hyper::body::Bytes::from(
            serde_json::to_vec(body).unwrap(),
        )))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    use http_body_util::BodyExt;
    (
        status,
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

/// A KMS-issued client chain and key from `r`'s agent (`GetTlsKey` with RA-TLS evidence).
async fn tls_key(r: &Running) -> (Vec<String>, String) {
    let (status, v) = r
        .agent_call(
            "GetTlsKey",
            serde_json::json!({"usage_ra_tls": true, "usage_client_auth": true, "with_app_info": true}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let chain: Vec<String> = serde_json::from_value(v["certificate_chain"].clone()).unwrap();
    (chain, v["key"].as_str().unwrap().to_owned())
}

fn code_of(answer: &(u16, Vec<u8>)) -> (u16, String) {
    let body: ErrorBody = serde_json::from_slice(&answer.1)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&answer.1)));
    (answer.0, body.error.code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_refuses_each_failed_check_by_name() {
    let w = world().await;
    // a CVM whose compose does not enable the gateway, and one that does
    let app = w.net.deploy_app(w.net.owner, None).await;
    let disabled_compose =
        echo_compose(ECHO, free_port(), false, None).replace(",\"gateway_enabled\":true", "");
    let disabled = Cvm::with_compose(&w.kms.url(), app.app_id(), 0x4e, disabled_compose);
    let enabled = echo_cvm(
        &w.kms,
        app.app_id(),
        0x4f,
        ECHO,
        443,
        &[],
        EchoOptions::default(),
    );
    for c in [&disabled, &enabled] {
        app.add_compose_hash(c.compose_hash()).await.unwrap();
    }
    w.net.mine(CONFIRMATIONS).await;
    let disabled = Running::boot(disabled).await;
    let enabled = Running::boot(enabled).await;
    let (chain, key) = tls_key(&enabled).await;
    let request = |compose: &str| RegisterRequest {
        app_compose: compose.to_owned(),
        port_map: vec![],
    };

    // the real registration works by hand too
    let ok = register_by_hand(&w.node, &chain, &key, &request(&enabled.cvm.compose)).await;
    assert_eq!(ok.0, 200, "{}", String::from_utf8_lossy(&ok.1));
    let resp: RegisterResponse = serde_json::from_slice(&ok.1).unwrap();
    assert_eq!(resp.app_id, enabled.app_id());

    // step 4: a compose that is not the measured one
    let other = enabled.cvm.compose.replace("\"echo\"", "\"echo2\"");
    assert_eq!(
        code_of(&register_by_hand(&w.node, &chain, &key, &request(&other)).await),
        (403, "denied.compose".into())
    );
    // step 4: the measured compose does not enable the gateway
    let (dchain, dkey) = tls_key(&disabled).await;
    assert_eq!(
        code_of(&register_by_hand(&w.node, &dchain, &dkey, &request(&disabled.cvm.compose)).await),
        (403, "denied.gateway_disabled".into())
    );
    // step 1: the leaf alone (no app CA to the root)
    assert_eq!(
        code_of(
            &register_by_hand(&w.node, &chain[..1], &key, &request(&enabled.cvm.compose)).await
        ),
        (403, "denied.chain".into())
    );
    // step 1: a leaf with another app's CA (the gateway's)
    let (gchain, _) = tls_key(&w.gateway_cvm).await;
    let mixed = vec![chain[0].clone(), gchain[1].clone(), chain[2].clone()];
    assert_eq!(
        code_of(&register_by_hand(&w.node, &mixed, &key, &request(&enabled.cvm.compose)).await),
        (403, "denied.chain".into())
    );
    // bad input: a port map with port 0
    let mut bad = request(&enabled.cvm.compose);
    bad.port_map = vec![cairn_protocol::sysconfig::AppPort {
        guest_port: 0,
        host_port: 1,
    }];
    assert_eq!(
        code_of(&register_by_hand(&w.node, &chain, &key, &bad).await),
        (400, "bad_request".into())
    );
    let s: GatewayStatus = w.node.status().await;
    let codes: Vec<&str> = s.recent_denials.iter().map(|d| d.code.as_str()).collect();
    for code in [
        "denied.compose",
        "denied.gateway_disabled",
        "denied.chain",
        "bad_request",
    ] {
        assert!(codes.contains(&code), "{codes:?}");
    }
    disabled.stop().await;
    enabled.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_acme_certificate_source_the_gateway_serves_pebbles_wildcard_and_the_acme_document()
{
    let pebble = cairn_acme::testing::Pebble::start().await;
    let mut acme = cairn_acme::AcmeConfig::new(
        &pebble.directory_url,
        BASE_DOMAIN,
        cairn_acme::DnsConfig::Challtestsrv {
            management_url: pebble.challtestsrv_url.clone(),
        },
    );
    acme.ca_roots = Some(pebble.listener_ca.clone());
    acme.dns_propagation_secs = 0;
    acme.check_interval_secs = 1;
    acme.order_timeout_secs = 60;
    acme.request_timeout_secs = 10;
    let w = world_with(move |o| o.certs = cairn_gateway::CertConfig::Acme(acme)).await;
    let (_app, running) = w.admitted_app(0x50, false, None).await;
    let a = running.app_id();

    // a client that trusts only Pebble's issuing root
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(
            pebble.issuing_root().await,
        ))
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = tokio_rustls::TlsConnector::from(Arc::new(config));

    // once issued, the app is served under the ACME wildcard
    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, _) = loop {
        match w.get_terminated(&a, &client, "/acme").await {
            Ok(ok) => break ok,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no ACME certificate in time: {e:?}"),
        }
    };
    assert_eq!(status, 200);
    // the base domain itself serves the document monitors read, with the served key
    // quoted
    let mut own = KeepAlive::open(w.node.proxy, BASE_DOMAIN, &client)
        .await
        .unwrap();
    let (status, body) = own.get("/.dstack/acme-info").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let info: cairn_acme::AcmeInfo = serde_json::from_str(&body).unwrap();
    assert_eq!(info.base_domain, BASE_DOMAIN);
    assert!(!info.active_cert.is_empty());
    let served = cairn_acme::certificate_spki(&own.server_chain[0]).unwrap();
    assert!(
        info.quoted_hist_keys
            .iter()
            .any(|k| k.public_key == hex::encode(&served)),
        "the served key is published with its quote"
    );
    w.stop_with(running).await;
}

/// Issue 14: the gateway's chain RPC through a lying proxy set to `behaviour` (`Down` or
/// `Stall`), then back. `seed` picks the simulated hosts (gateway CVM, app A, app B).
///
/// While it is lost: a registration is refused `503 unavailable.chain` within the RPC
/// timeout (nothing admitted);
/// an instance admitted before stays admitted and new connections to it keep being routed
/// until the last complete policy check is `max_policy_age` old, then they are refused
/// (`policy_stale`, `internal_error` alert); a connection opened before stays open (only a
/// denial cuts connections). When it returns: new connections flow again, the guest whose
/// registration was refused registers by itself (its retry loop) and is reachable — no
/// restart of anything.
async fn gateway_chain_outage(behaviour: Behaviour, seed: u8) {
    const MAX_POLICY_AGE: Duration = Duration::from_secs(2);
    const RPC_TIMEOUT: Duration = Duration::from_secs(1);

    let parts = Parts::boot(seed).await;
    let proxy = RpcProxy::start(parts.net.anvil.endpoint_url()).await;
    let mut options = parts.options();
    options.chain.rpc_urls = vec![proxy.url()];
    options.chain.call_timeout = RPC_TIMEOUT;
    options.max_policy_age = MAX_POLICY_AGE;
    let w = parts.start(options).await;
    let terminating = terminating_client(&w.ca);

    // Before: app A admitted and reachable, a connection to it kept open; app B booted,
    // not yet registered.
    let (_a, running_a) = w.admitted_app(seed + 1, false, None).await;
    let a = running_a.app_id();
    let a_name = sni(&a, Some(443), false);
    assert_eq!(
        get_once(w.node.proxy, &a_name, &terminating, "/")
            .await
            .unwrap()
            .0,
        200
    );
    let mut open = KeepAlive::open(w.node.proxy, &a_name, &terminating)
        .await
        .unwrap();
    assert_eq!(open.get("/before").await.unwrap().0, 200);
    let (_b, mut running_b) = w
        .app_cvm(seed + 2, &[w.node.registration_url()], false, None)
        .await;
    let (chain_b, key_b) = tls_key(&running_b).await;
    let request_b = RegisterRequest {
        app_compose: running_b.cvm.compose.clone(),
        port_map: vec![],
    };

    proxy.set(behaviour);
    let down = Instant::now();
    // A registration is refused, fail closed, and names the chain, within the RPC timeout
    // (+ slack on the shared cores: a hang detector).
    let answer = register_by_hand(&w.node, &chain_b, &key_b, &request_b).await;
    let took = down.elapsed();
    assert!(
        took < RPC_TIMEOUT + Duration::from_secs(4),
        "{behaviour:?}: registration refused after {took:?}"
    );
    eprintln!("{behaviour:?}: registration refused in {took:?}");
    assert_eq!(
        code_of(&answer),
        (503, "unavailable.chain".to_owned()),
        "{}",
        String::from_utf8_lossy(&answer.1)
    );
    // B's own registration loop starts now and is refused the same way.
    running_b.register();
    // New connections to A: routed until the policy is stale, then refused.
    let refused_after = loop {
        match get_once(w.node.proxy, &a_name, &terminating, "/").await {
            Ok((status, _)) => assert_eq!(status, 200),
            Err(e) => {
                assert_eq!(e.alert(), Some(AlertDescription::InternalError), "{e:?}");
                break down.elapsed();
            }
        }
        assert!(
            down.elapsed() < MAX_POLICY_AGE + Duration::from_secs(10),
            "new connections still routed {:?} after the RPC went down",
            down.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("{behaviour:?}: new connections refused after {refused_after:?} (max_policy_age {MAX_POLICY_AGE:?})");
    let s = w.node.status().await;
    assert!(
        GatewayNode::admits(&s, &a, &running_a.instance_id()),
        "A stays admitted (only a denial removes it): {s:#?}"
    );
    assert!(
        !GatewayNode::admits(&s, &running_b.app_id(), &running_b.instance_id()),
        "B admitted while the chain is down: {s:#?}"
    );
    // B's guest saw its registration refused the same way.
    let deadline = Instant::now() + DEADLINE;
    loop {
        match &running_b.registration_outcomes()[0].1 {
            Some(Outcome::Failed(e)) => {
                assert!(e.contains("unavailable.chain"), "{e}");
                break;
            }
            None => {}
            Some(o) => panic!("{behaviour:?}: B's registration: {o:?}"),
        }
        assert!(Instant::now() < deadline, "no registration outcome for B");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(w
        .node
        .metrics()
        .await
        .contains("cairn_gateway_connections_refused_total{reason=\"policy_stale\"}"));
    // The connection opened before is not cut for staleness.
    assert_eq!(open.get("/during").await.unwrap().0, 200);

    // Back: routing and admission resume by themselves.
    proxy.set(Behaviour::Forward);
    let back = Instant::now();
    w.node
        .wait_admitting("B admitted by its own retry", &running_b)
        .await;
    let admitted_b = back.elapsed();
    let resumed = loop {
        match get_once(w.node.proxy, &a_name, &terminating, "/").await {
            Ok((status, _)) => {
                assert_eq!(status, 200);
                break back.elapsed();
            }
            Err(e) => {
                assert_eq!(e.alert(), Some(AlertDescription::InternalError), "{e:?}");
                assert!(back.elapsed() < DEADLINE, "routing did not resume");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    eprintln!("{behaviour:?} → Forward: B admitted after {admitted_b:?}, A routed again after {resumed:?}");
    let answer = w
        .get_terminated(&running_b.app_id(), &terminating, "/b")
        .await;
    assert_echo(answer.unwrap(), &running_b, "/b");
    assert_eq!(open.get("/after").await.unwrap().0, 200);
    drop(open);
    running_a.stop().await;
    running_b.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_chain_rpc_down_refuses_registrations_stops_routing_when_stale_and_resumes_by_itself(
) {
    gateway_chain_outage(Behaviour::Down, 0x33).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_chain_rpc_stalled_refuses_registrations_stops_routing_when_stale_and_resumes_by_itself(
) {
    gateway_chain_outage(Behaviour::Stall, 0x36).await;
}
