//! Bad input is a 4xx naming what is wrong, nothing is created, and the VMM keeps
//! serving; the chain being down fails closed; auth on TCP; one VMM per state dir.

use cairn_protocol::compose::MAX_APP_COMPOSE_LEN;
use cairn_protocol::vmm::{CreateCvmRequest, PortRequest};
use cairn_vmm::{ClientError, Error};
use hyper::{Method, StatusCode};

use crate::support::*;

fn api_err(e: ClientError) -> (StatusCode, String, String) {
    match e {
        ClientError::Api { status, body } => (status, body.error.code, body.error.message),
        e => panic!("not an API error: {e}"),
    }
}

fn cvm_dirs(s: &Served) -> usize {
    std::fs::read_dir(s.dir.path().join("state/cvms"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn bad_requests_are_4xx_naming_the_problem_and_the_vmm_keeps_serving() {
    let s = Served::start("").await;
    let c = s.unix_client();
    let post = |body: Vec<u8>| {
        let c = c.clone();
        async move { c.raw(Method::POST, "/v1/cvms", Some(body)).await.unwrap() }
    };

    let (status, body) = post(b"{not json".to_vec()).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, body) =
        post(br#"{"name":"a","compose":"{}","image":"x","colour":1}"#.to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("colour"));
    let (status, _) = post(vec![b' '; cairn_vmm_max_body() + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Requests that parse but are invalid: each refused with its status and code, the
    // message naming what is wrong.
    type Case = (
        &'static str,
        fn(&mut CreateCvmRequest),
        StatusCode,
        &'static str,
        fn(&str) -> bool,
    );
    let cases: [Case; 7] = [
        (
            "bad-name",
            |r| r.name = "Bad_Name".into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
            |m| m.starts_with("name:"),
        ),
        (
            "big",
            |r| {
                r.compose = format!(
                    r#"{{"manifest_version":2,"name":"demo","runner":"process","process":{{"command":["/bin/true"],"env":{{"PAD":"{}"}}}}}}"#,
                    "x".repeat(MAX_APP_COMPOSE_LEN)
                )
            },
            StatusCode::PAYLOAD_TOO_LARGE,
            "bad_request.compose_too_large",
            |m| m.contains(&MAX_APP_COMPOSE_LEN.to_string()),
        ),
        (
            "bad-compose",
            |r| r.compose = r#"{"manifest_version":99,"name":"demo","runner":"process"}"#.into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
            |m| m.starts_with("compose:"),
        ),
        (
            "img",
            |r| r.image = "windows:95".into(),
            StatusCode::BAD_REQUEST,
            "bad_request.unknown_image",
            |m| m.contains("windows:95") && m.contains("cairn-os:1.0"),
        ),
        (
            "cpus",
            |r| r.vcpus = 10_000,
            StatusCode::BAD_REQUEST,
            "bad_request",
            |m| m.starts_with("vcpus:"),
        ),
        (
            "no-kms",
            |r| r.kms_urls = None,
            StatusCode::BAD_REQUEST,
            "bad_request",
            |m| m.starts_with("kms_urls:"),
        ),
        (
            "twice",
            |r| {
                let port = PortRequest {
                    guest_port: 80,
                    host_port: None,
                };
                r.ports = vec![port; 2];
            },
            StatusCode::BAD_REQUEST,
            "bad_request",
            |m| m.starts_with("ports[1].guest_port"),
        ),
    ];
    for (name, make_invalid, want_status, want_code, names_the_problem) in cases {
        let mut req = request(name);
        make_invalid(&mut req);
        let (status, code, msg) = api_err(c.create(&req).await.unwrap_err());
        assert_eq!(
            (status, code.as_str()),
            (want_status, want_code),
            "{name}: {msg}"
        );
        assert!(names_the_problem(&msg), "{name}: {msg}");
    }

    // The VMM kept serving, created nothing, left no directory.
    assert!(c.list().await.unwrap().cvms.is_empty());
    assert_eq!(cvm_dirs(&s), 0);
    s.stop().await;
}

fn cairn_vmm_max_body() -> usize {
    2 * 1024 * 1024
}

#[tokio::test]
async fn a_host_port_already_taken_is_a_409_and_nothing_is_created() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let s = Served::start(&format!("[cvm]\nport_range = [{port}, {port}]\n")).await;
    let c = s.unix_client();
    let mut req: CreateCvmRequest = request("web");
    req.ports = vec![PortRequest {
        guest_port: 8080,
        host_port: Some(port),
    }];
    let (status, code, msg) = api_err(c.create(&req).await.unwrap_err());
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "conflict.port")
    );
    assert!(
        msg.contains(&port.to_string()) && msg.contains("in use"),
        "{msg}"
    );
    req.ports[0].host_port = None;
    let (status, code, _) = api_err(c.create(&req).await.unwrap_err());
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "conflict.port")
    );
    assert!(c.list().await.unwrap().cvms.is_empty());
    assert_eq!(cvm_dirs(&s), 0);
    s.stop().await;
}

#[tokio::test]
async fn an_unreachable_chain_fails_closed_with_503_and_creates_nothing() {
    let s = Served::start("").await;
    let c = s.unix_client();
    let (status, code, _) = api_err(c.create(&request("demo")).await.unwrap_err());
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable.chain")
    );
    assert_eq!(cvm_dirs(&s), 0);
    // Images still list, saying why the chain could not be asked.
    let images = c.images().await.unwrap();
    assert_eq!(images.images.len(), 1);
    assert_eq!(images.images[0].allowed, None);
    assert!(images.chain_error.is_some());
    s.stop().await;
}

#[tokio::test]
async fn unknown_cvms_and_routes_are_404() {
    let s = Served::start("").await;
    let c = s.unix_client();
    let (status, code, msg) = api_err(c.get("nope").await.unwrap_err());
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    assert!(msg.contains("nope"));
    let (status, code, _) = api_err(c.stop("nope").await.unwrap_err());
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, body) = c.raw(Method::GET, "/v2/whatever", None).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("no route"));
    s.stop().await;
}

#[tokio::test]
async fn tcp_needs_the_bearer_token_when_one_is_configured_and_the_unix_socket_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let token = "0123456789abcdef-vmm-token";
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let config = config(
        dir.path(),
        &format!("[api]\ntoken_file = \"{}\"\n", token_file.display()),
    );
    let s = Served::start_with(dir, config).await;
    let (status, code, _) = api_err(s.tcp_client(None).list().await.unwrap_err());
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let (status, _, _) = api_err(
        s.tcp_client(Some("wrong-token-wrong"))
            .list()
            .await
            .unwrap_err(),
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(s
        .tcp_client(Some(token))
        .list()
        .await
        .unwrap()
        .cvms
        .is_empty());
    assert!(s.unix_client().list().await.unwrap().cvms.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn a_non_loopback_listener_without_a_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    let tcp = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = cairn_vmm::run(
        cairn_vmm::Listeners {
            tcp: Some(tcp),
            unix: None,
        },
        config,
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Config { key, reason } if key == "api.token_file" && reason.contains("bearer token")),
        "{err}"
    );
}

#[tokio::test]
async fn one_state_directory_serves_one_vmm() {
    let dir = tempfile::tempdir().unwrap();
    let first = cairn_vmm::Vmm::open(config(dir.path(), "")).await.unwrap();
    let err = cairn_vmm::Vmm::open(config(dir.path(), ""))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Locked(_)), "{err}");
    first.shutdown().await;
    let again = cairn_vmm::Vmm::open(config(dir.path(), "")).await.unwrap();
    again.shutdown().await;
}

#[tokio::test]
async fn the_qemu_backend_refuses_a_host_without_tdx() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-param");
    let config = config(
        dir.path(),
        &format!(
            "[backend]\nkind = \"qemu\"\n[backend.qemu]\nkvm_device = \"{}\"\ntdx_param = \"{}\"\n",
            dir.path().display(),
            missing.display()
        ),
    );
    let err = cairn_vmm::Vmm::open(config).await.unwrap_err();
    assert!(
        matches!(&err, Error::BackendUnavailable { backend: "qemu", reason } if reason.contains("no TDX")),
        "{err}"
    );
}

#[tokio::test]
async fn a_state_dir_too_long_for_unix_sockets_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), "");
    config.state_dir = dir.path().join("x".repeat(100));
    let err = cairn_vmm::Vmm::open(config).await.unwrap_err();
    assert!(
        matches!(&err, Error::Config { key, .. } if key == "state_dir"),
        "{err}"
    );
}
