//! Issuance, renewal and failures against a real ACME CA (Pebble) with DNS-01 through
//! pebble-challtestsrv.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_acme::testing::Pebble;
use cairn_acme::{
    verify_served_certificate, AccountKey, AcmeConfig, AcmeManager, AcmeParts, Attestor, BoxFuture,
    ChallTestSrvDns, Clock, DnsConfig, DnsError, DnsProvider, Error, ServingCert,
};
use cairn_attestation::ids::AppId;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::sim::{unix_now, verifier, BrokenAttestor, SimGateway};

const BASE: &str = "gw.example.com";
const GATEWAY_APP: AppId = AppId([0x6A; 20]);

struct TestClock(AtomicU64);

impl TestClock {
    fn new() -> Arc<Self> {
        Arc::new(TestClock(AtomicU64::new(unix_now())))
    }
    fn set(&self, t: u64) {
        self.0.store(t, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_unix(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn config(p: &Pebble, state_dir: Option<&Path>) -> AcmeConfig {
    let mut c = AcmeConfig::new(
        &p.directory_url,
        BASE,
        DnsConfig::Challtestsrv {
            management_url: p.challtestsrv_url.clone(),
        },
    );
    c.ca_roots = Some(p.listener_ca.clone());
    c.state_dir = state_dir.map(Path::to_path_buf);
    c.dns_propagation_secs = 0;
    c.check_interval_secs = 1;
    c.order_timeout_secs = 60;
    c.request_timeout_secs = 10;
    c
}

struct Node {
    manager: Arc<AcmeManager>,
}

fn node(
    c: AcmeConfig,
    app_key: [u8; 32],
    dns: Arc<dyn DnsProvider>,
    attestor: Arc<dyn Attestor>,
    clock: Arc<dyn Clock>,
) -> Node {
    let manager = AcmeManager::new(
        c,
        AcmeParts {
            account_key: AccountKey::derive(&app_key).unwrap(),
            dns,
            attestor,
            clock,
        },
    )
    .unwrap();
    Node { manager }
}

fn challtestsrv(p: &Pebble) -> Arc<dyn DnsProvider> {
    Arc::new(ChallTestSrvDns::new(&p.challtestsrv_url, Duration::from_secs(5)).unwrap())
}

/// Verify `cert` chains to `root` for `name` (rustls's webpki verifier, as a browser would).
fn verify_chain(cert: &ServingCert, root: &[u8], name: &str) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(root.to_vec())).unwrap();
    let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let chain = cert.chain();
    v.verify_server_cert(
        &chain[0],
        &chain[1..],
        &ServerName::try_from(name.to_owned()).unwrap(),
        &[],
        UnixTime::now(),
    )
    .map(|_| ())
}

/// Poll `f` until it returns `Some`, or fail at the deadline.
async fn until<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TLS handshake against a rustls server resolving from `store`; returns the leaf served.
async fn served_leaf(store: Arc<cairn_acme::CertStore>, root: &[u8], sni: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = acceptor.accept(tcp).await;
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(root.to_vec())).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await
        .expect("TLS handshake with the ACME certificate");
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    task.await.unwrap();
    leaf
}

/// `GET /.dstack/acme-info` through the router the gateway mounts.
async fn fetch_acme_info(manager: Arc<AcmeManager>) -> cairn_acme::AcmeInfo {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let resp = cairn_acme::acme_info_router(manager)
        .oneshot(
            axum::http::Request::get("/.dstack/acme-info")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    cairn_acme::AcmeInfo::parse(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_issues_an_attested_wildcard_certificate_and_renewal_replaces_it() {
    let p = Pebble::start().await;
    let state = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let gw = SimGateway::boot(GATEWAY_APP, 1);
    let n = node(
        config(&p, Some(state.path())),
        [9; 32],
        challtestsrv(&p),
        gw.clone(),
        clock.clone(),
    );
    let store = n.manager.store();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(n.manager.clone().run(async {
        let _ = stop_rx.await;
    }));

    let first = until("the first certificate", Duration::from_secs(60), || {
        store.current()
    })
    .await;
    let root = p.issuing_root().await;
    // chains to Pebble's issuing root and covers the wildcard and the base domain
    for name in ["app1.gw.example.com", "x-8080s.gw.example.com", BASE] {
        verify_chain(&first, &root, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(matches!(
        verify_chain(&first, &root, "a.b.gw.example.com"),
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. }
        ))
    ));
    assert!(first.covers(&["*.gw.example.com".into(), BASE.into()]));
    // a root that did not issue it does not verify it
    let other_root = rcgen::generate_simple_self_signed(vec!["x".to_owned()]).unwrap();
    assert!(matches!(
        verify_chain(&first, other_root.cert.der(), BASE),
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer
        ))
    ));

    // the key was quoted and published; a monitor's check passes for the gateway app only
    let info = n.manager.acme_info();
    assert_eq!(info.quoted_hist_keys.len(), 1);
    assert_eq!(info.active_cert, first.chain_pem());
    assert!(info
        .account_uri
        .starts_with(&p.directory_url.replace("/dir", "")));
    let v = verify_served_certificate(
        &verifier(),
        &info,
        &first.chain()[0],
        &GATEWAY_APP,
        unix_now(),
    )
    .unwrap();
    assert_eq!(v.app_id(), &GATEWAY_APP);
    // monitors fetch the document over HTTP and check the served certificate against it
    let published = fetch_acme_info(n.manager.clone()).await;
    assert_eq!(published, info);
    verify_served_certificate(
        &verifier(),
        &published,
        &first.chain()[0],
        &GATEWAY_APP,
        unix_now(),
    )
    .unwrap();
    // the TLS acceptor serves it
    let leaf = served_leaf(store.clone(), &root, "app1.gw.example.com").await;
    assert_eq!(leaf, first.chain()[0].to_vec());

    // not due yet: nothing happens on the next checks
    let due = n.manager.renewal_due();
    assert!(due > clock.now_unix() && due < first.not_after());
    // past the renewal point: the loop renews and the new certificate replaces the old
    clock.set(due + 1);
    let second = until("the renewed certificate", Duration::from_secs(60), || {
        store
            .current()
            .filter(|c| c.serial_hex() != first.serial_hex())
    })
    .await;
    assert_ne!(
        second.spki_der(),
        first.spki_der(),
        "a renewal uses a new key"
    );
    verify_chain(&second, &root, "app2.gw.example.com").unwrap();
    let info = n.manager.acme_info();
    assert_eq!(info.quoted_hist_keys.len(), 2, "both keys stay published");
    for c in [&first, &second] {
        verify_served_certificate(&verifier(), &info, &c.chain()[0], &GATEWAY_APP, unix_now())
            .unwrap();
    }
    assert_eq!(
        served_leaf(store.clone(), &root, BASE).await,
        second.chain()[0].to_vec()
    );
    let status = n.manager.status();
    assert_eq!((status.issued, status.consecutive_failures), (2, 0));
    // quotes: the account URI once, then one per certificate key
    assert_eq!(*gw.quotes.lock().unwrap(), 3);

    // the key file is private
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.path().join("key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

/// Publishes a TXT value that is not the challenge's.
struct WrongTxt(ChallTestSrvDns);

impl DnsProvider for WrongTxt {
    fn set_txt<'a>(
        &'a self,
        host: &'a str,
        _value: &'a str,
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        self.0
            .set_txt(host, "not-the-key-authorization-digest-aaaaaaaaaaa")
    }
    fn clear_txt<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<(), DnsError>> {
        self.0.clear_txt(host)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_txt_record_fails_the_order_clearly_and_the_old_certificate_keeps_serving() {
    let p = Pebble::start().await;
    let state = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let gw = SimGateway::boot(GATEWAY_APP, 2);
    let good = node(
        config(&p, Some(state.path())),
        [9; 32],
        challtestsrv(&p),
        gw.clone(),
        clock.clone(),
    );
    let old = good.manager.renew_now().await.unwrap();
    let saved_cert = std::fs::read(state.path().join("cert.pem")).unwrap();
    let saved_key = std::fs::read(state.path().join("key.pem")).unwrap();
    drop(good);

    // a restarted node serves the saved certificate at once, without a new order
    let wrong: Arc<dyn DnsProvider> = Arc::new(WrongTxt(
        ChallTestSrvDns::new(&p.challtestsrv_url, Duration::from_secs(5)).unwrap(),
    ));
    let n = node(
        config(&p, Some(state.path())),
        [9; 32],
        wrong,
        gw,
        clock.clone(),
    );
    let served = n.manager.store().current().expect("the saved certificate");
    assert_eq!(served.serial_hex(), old.serial_hex());
    assert!(n.manager.renewal_due() > clock.now_unix());

    let err = n.manager.renew_now().await.unwrap_err();
    // the message names the identifier and carries the CA's reason
    let msg = err.to_string();
    assert!(
        msg.starts_with("ACME authorization for ")
            && msg.contains("Correct value not found for DNS challenge"),
        "{msg}"
    );
    match &err {
        Error::AuthorizationInvalid {
            identifier,
            problem,
        } => {
            assert!(
                identifier == BASE || identifier == "*.gw.example.com",
                "{identifier}"
            );
            assert!(problem.contains("unauthorized"), "{problem}");
        }
        other => panic!("expected AuthorizationInvalid, got {other:?}"),
    }
    // nothing replaced: the store, the files
    assert_eq!(
        n.manager.store().current().unwrap().serial_hex(),
        old.serial_hex()
    );
    assert_eq!(
        std::fs::read(state.path().join("cert.pem")).unwrap(),
        saved_cert
    );
    assert_eq!(
        std::fs::read(state.path().join("key.pem")).unwrap(),
        saved_key
    );
    // the failure is counted and the next attempt backs off
    let s = n.manager.status();
    assert_eq!(s.consecutive_failures, 1);
    assert_eq!(s.next_attempt_unix, clock.now_unix() + 60);
    assert!(s.last_error.unwrap().contains("unauthorized"));
    assert_eq!(s.issued, 0);
    // a second failure doubles the delay
    n.manager.renew_now().await.unwrap_err();
    let s = n.manager.status();
    assert_eq!(s.consecutive_failures, 2);
    assert_eq!(s.next_attempt_unix, clock.now_unix() + 120);
    assert_eq!(
        n.manager.store().current().unwrap().serial_hex(),
        old.serial_hex()
    );
    // the keys quoted for the failed orders stay published
    assert_eq!(n.manager.acme_info().quoted_hist_keys.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_of_the_app_share_one_acme_account_and_another_app_gets_its_own() {
    let p = Pebble::start().await;
    let clock = TestClock::new();
    let a = node(
        config(&p, None),
        [9; 32],
        challtestsrv(&p),
        SimGateway::boot(GATEWAY_APP, 3),
        clock.clone(),
    );
    let b = node(
        config(&p, None),
        [9; 32],
        challtestsrv(&p),
        SimGateway::boot(GATEWAY_APP, 4),
        clock.clone(),
    );
    let other = node(
        config(&p, None),
        [10; 32],
        challtestsrv(&p),
        SimGateway::boot(GATEWAY_APP, 5),
        clock,
    );
    a.manager.renew_now().await.unwrap();
    b.manager.renew_now().await.unwrap();
    other.manager.renew_now().await.unwrap();
    let (ua, ub, uo) = (
        a.manager.acme_info().account_uri,
        b.manager.acme_info().account_uri,
        other.manager.acme_info().account_uri,
    );
    assert!(!ua.is_empty());
    assert_eq!(ua, ub);
    assert_ne!(ua, uo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_listener_outside_the_configured_roots_is_refused() {
    let p = Pebble::start().await;
    let mut c = config(&p, None);
    // trust some other CA only
    let dir = tempfile::tempdir().unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["x".to_owned()]).unwrap();
    std::fs::write(dir.path().join("other.pem"), other.cert.pem()).unwrap();
    c.ca_roots = Some(dir.path().join("other.pem"));
    let gw = SimGateway::boot(GATEWAY_APP, 6);
    let n = node(c, [9; 32], challtestsrv(&p), gw.clone(), TestClock::new());
    match n.manager.renew_now().await.unwrap_err() {
        Error::Acme { context, .. } => assert_eq!(context, "creating or finding the account"),
        other => panic!("expected an ACME transport error, got {other:?}"),
    }
    assert!(n.manager.store().current().is_none());
    assert_eq!(*gw.quotes.lock().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quote_no_certificate_is_ordered() {
    let p = Pebble::start().await;
    let n = node(
        config(&p, None),
        [9; 32],
        challtestsrv(&p),
        Arc::new(BrokenAttestor),
        TestClock::new(),
    );
    match n.manager.renew_now().await.unwrap_err() {
        Error::Agent { method, .. } => assert_eq!(method, "GetQuote"),
        other => panic!("expected the agent failure, got {other:?}"),
    }
    assert!(n.manager.store().current().is_none());
    assert!(n.manager.acme_info().quoted_hist_keys.is_empty());
}
