//! RA-TLS over real loopback TCP: rustls client and server (tokio-rustls, port 0), with
//! certificates whose quotes come from the TDX simulator and are checked by the real
//! `Verifier` configured with the simulator root. Every rejection is asserted on both
//! peers: the exact `RaTlsError` on the rejecting side, the alert on the other.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use cairn_attestation::ids::{AppId, ComposeHash, InstanceId, KeyProvider};
use cairn_attestation::simulator::{OsImage, SimHostConfig, SimTdx};
use cairn_attestation::testing::{sim_pki as pki, sim_verifier, unix_now, Presents};
use cairn_attestation::{
    ra_tls_extensions, ra_tls_report_data, Collateral, Error, EventLog, ExtensionValues, RaTlsCert,
    RaTlsCertBuilder, RaTlsClientVerifier, RaTlsError, RaTlsServerVerifier, Tee, Usage,
    VerifiedQuote, Verifier,
};
use rcgen::{CertificateParams, KeyPair, PublicKeyData, PKCS_ECDSA_P256_SHA256};
use rustls::client::danger::ServerCertVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{AlertDescription, ClientConfig, ServerConfig};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

// ---------------------------------------------------------------------------------------
// The world: one simulated Intel PKI, CVMs booted on it, verifiers trusting its root.
// ---------------------------------------------------------------------------------------

type Identity = VerifiedQuote;

// The mock Intel PKI is `pki` (built once per test binary). Unlike `common::NOW`, its
// collateral is anchored at the wall clock: rustls hands verifiers the current time, and
// `impl EvidenceVerifier for Verifier` verifies at the current time. `sim_verifier` is the
// real verifier trusting its root, with its collateral.

fn evidence_error(err: &RaTlsError) -> &Error {
    err.evidence_error::<Error>()
        .unwrap_or_else(|| panic!("not a Verifier rejection: {err:?}"))
}

/// A booted CVM: its TEE and measured event log.
struct Cvm {
    tdx: SimTdx,
    log: EventLog,
    app_id: AppId,
    compose_hash: ComposeHash,
}

impl Cvm {
    fn boot(host_seed: u8, compose: &str) -> Self {
        Self::boot_with(
            SimHostConfig::new([host_seed; 32], OsImage::example("cairn-os", "1.0")),
            compose,
        )
    }

    fn boot_with(config: SimHostConfig, compose: &str) -> Self {
        let os_hash = config.os_image.os_image_hash();
        let tdx = SimTdx::new(pki(), config).unwrap();
        let compose_hash = ComposeHash::of_compose(compose.as_bytes());
        let app_id = AppId::from_compose_hash(&compose_hash);
        let instance_id = InstanceId::derive(b"instance-seed", &app_id);
        let mut log = EventLog::new();
        log.measure_boot(&tdx, &app_id, &compose_hash, &instance_id)
            .unwrap();
        log.measure_system_ready(&tdx, &os_hash, &KeyProvider::kms(b"kms root spki"))
            .unwrap();
        Cvm {
            tdx,
            log,
            app_id,
            compose_hash,
        }
    }

    fn cert(&self, usage: Usage) -> RaTlsCert {
        RaTlsCertBuilder::new(usage)
            .common_name("cvm")
            .event_log(&self.log.to_json())
            .app_id(self.app_id.0)
            .build(&self.tdx)
            .unwrap()
    }
}

/// The KMS CVM whose `kms:rpc` certificate the server presents in the client-auth tests.
fn kms() -> &'static (Cvm, RaTlsCert) {
    static KMS: OnceLock<(Cvm, RaTlsCert)> = OnceLock::new();
    KMS.get_or_init(|| {
        let cvm = Cvm::boot(0x0B, r#"{"name":"kms"}"#);
        let cert = cvm.cert(Usage::KmsRpc);
        (cvm, cert)
    })
}

const APP_COMPOSE: &str = r#"{"manifest_version":2,"name":"app","runner":"docker-compose"}"#;

// ---------------------------------------------------------------------------------------
// Certificates built by hand (for forgeries).
// ---------------------------------------------------------------------------------------

/// A self-signed certificate for `key` carrying exactly the given RA-TLS evidence.
fn forged_cert(key: &KeyPair, quote: &[u8], event_log: &[u8], usage: Usage) -> RaTlsCert {
    let mut params = CertificateParams::new(vec!["forged".to_owned()]).unwrap();
    params.custom_extensions = ra_tls_extensions(ExtensionValues {
        quote: Some(quote),
        event_log: Some(event_log),
        app_id: None,
        usage: Some(usage),
    });
    let der = params.self_signed(key).unwrap().der().clone();
    raw_cert(der, key)
}

fn raw_cert(cert_der: CertificateDer<'static>, key: &KeyPair) -> RaTlsCert {
    RaTlsCert::from_parts(cert_der, key.serialize_der())
}

// ---------------------------------------------------------------------------------------
// Transport harness.
// ---------------------------------------------------------------------------------------

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(
    cert: &RaTlsCert,
    client_verifier: Arc<dyn ClientCertVerifier>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ServerConfig {
    ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(vec![cert.cert_der.clone()], cert.private_key_der())
        .unwrap()
}

fn client_config(
    cert: &RaTlsCert,
    server_verifier: Arc<dyn ServerCertVerifier>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(server_verifier)
        .with_client_auth_cert(vec![cert.cert_der.clone()], cert.private_key_der())
        .unwrap()
}

/// What the server's request handler saw.
#[derive(Debug)]
struct Handled {
    identity: Identity,
}

/// Accepts one connection; the handler answers with the peer's verified app id and
/// compose hash, taken from `peer_identity` only.
async fn serve_once(
    config: ServerConfig,
    verifier: Arc<RaTlsClientVerifier<Verifier>>,
) -> (SocketAddr, JoinHandle<io::Result<Handled>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let identity = verifier
            .peer_identity(tls.get_ref().1)
            .map_err(io::Error::other)?;
        let (app_id, compose_hash) = (*identity.app_id(), *identity.compose_hash());
        let reply = format!(
            "hello app {} compose {}",
            app_id.to_hex(),
            compose_hash.to_hex()
        );
        tls.write_all(reply.as_bytes()).await?;
        tls.shutdown().await?;
        Ok(Handled { identity })
    });
    (addr, task)
}

/// Connects, completes the handshake and reads the reply to the end.
/// A server presenting `server_cert` (any client) and a guest client presenting
/// `client_cert` that requires a KMS: the handshake fails on both sides; their errors.
async fn kms_handshake_fails(
    server_cert: &RaTlsCert,
    client_cert: &RaTlsCert,
) -> (io::Error, io::Error) {
    let v = client_verifier(None);
    let (addr, server) = serve_once(server_config(server_cert, v.clone(), TLS13), v).await;
    let client_err = request(
        client_config(client_cert, kms_server_verifier(), TLS13),
        addr,
    )
    .await
    .unwrap_err();
    let server_err = server.await.unwrap().unwrap_err();
    (client_err, server_err)
}

async fn request(
    config: ClientConfig,
    addr: SocketAddr,
) -> io::Result<(Vec<u8>, rustls::ClientConnection)> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = TlsConnector::from(Arc::new(config));
    let mut tls = connector
        .connect(ServerName::try_from("kms.cairn.test").unwrap(), tcp)
        .await?;
    let mut reply = Vec::new();
    tls.read_to_end(&mut reply).await?;
    let (_, conn) = tls.into_inner();
    Ok((reply, conn))
}

/// The rustls error inside an I/O error from tokio-rustls.
fn tls_error(err: &io::Error) -> &rustls::Error {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("not a rustls error: {err:?}"))
}

/// The RA-TLS rejection inside a rustls error.
fn ratls_error(err: &io::Error) -> &RaTlsError {
    match tls_error(err) {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => other
            .0
            .downcast_ref::<RaTlsError>()
            .unwrap_or_else(|| panic!("not an RA-TLS rejection: {other:?}")),
        e => panic!("not a certificate rejection: {e:?}"),
    }
}

fn assert_alert(err: &io::Error, alert: AlertDescription) {
    assert!(
        matches!(tls_error(err), rustls::Error::AlertReceived(a) if *a == alert),
        "expected alert {alert:?}, got {err:?}"
    );
}

fn client_verifier(required: Option<Usage>) -> Arc<RaTlsClientVerifier<Verifier>> {
    client_verifier_with(sim_verifier(), required)
}

fn client_verifier_with(
    verifier: Verifier,
    required: Option<Usage>,
) -> Arc<RaTlsClientVerifier<Verifier>> {
    let v = RaTlsClientVerifier::new(verifier);
    Arc::new(match required {
        Some(u) => v.require_usage(u),
        None => v,
    })
}

fn kms_server_verifier() -> Arc<RaTlsServerVerifier<Verifier>> {
    Arc::new(RaTlsServerVerifier::new(sim_verifier()).require_usage(Usage::KmsRpc))
}

const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// Runs one connection whose client certificate the server must reject; checks the
/// client received `certificate_unknown` and returns the server's handshake error.
/// `cert`, presented as a client certificate, is refused because its quote's report data
/// does not bind the certificate's key.
async fn refused_for_a_quote_over_another_key(cert: &RaTlsCert) {
    let server_err = client_cert_rejected(cert, None).await;
    let err = ratls_error(&server_err);
    assert!(
        matches!(evidence_error(err), Error::ReportDataMismatch),
        "{err:?}"
    );
}

async fn client_cert_rejected(client_cert: &RaTlsCert, required: Option<Usage>) -> io::Error {
    client_cert_rejected_by(client_verifier(required), client_cert).await
}

async fn client_cert_rejected_by(
    verifier: Arc<RaTlsClientVerifier<Verifier>>,
    client_cert: &RaTlsCert,
) -> io::Error {
    let (_, kms_cert) = kms();
    let (addr, server) =
        serve_once(server_config(kms_cert, verifier.clone(), TLS13), verifier).await;
    let client = request(
        client_config(client_cert, kms_server_verifier(), TLS13),
        addr,
    )
    .await;
    let server_err = server.await.unwrap().unwrap_err();
    // TLS 1.3: the client's flight is complete before the server judges its certificate,
    // so the alert arrives on the client's first read.
    let client_err = client.unwrap_err();
    assert_alert(&client_err, AlertDescription::CertificateUnknown);
    server_err
}

// ---------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn client_with_simulator_ra_tls_cert_is_accepted_and_its_identity_reaches_the_handler() {
    let app = Cvm::boot(0x01, APP_COMPOSE);
    let app_cert = app.cert(Usage::AppCustom);
    let (_, kms_cert) = kms();

    let server_side = client_verifier(Some(Usage::AppCustom));
    let (addr, server) = serve_once(
        server_config(kms_cert, server_side.clone(), TLS13),
        server_side,
    )
    .await;
    let client_side = kms_server_verifier();
    let (reply, conn) = request(client_config(&app_cert, client_side.clone(), TLS13), addr)
        .await
        .unwrap();
    let handled = server.await.unwrap().unwrap();

    assert_eq!(*handled.identity.app_id(), app.app_id);
    assert_eq!(*handled.identity.compose_hash(), app.compose_hash);
    assert_eq!(handled.identity.tcb_status(), "UpToDate");
    assert_eq!(*handled.identity.device_id(), app.tdx.device_id());
    assert_eq!(
        String::from_utf8(reply).unwrap(),
        format!(
            "hello app {} compose {}",
            app.app_id.to_hex(),
            app.compose_hash.to_hex()
        )
    );
    // The client verified the server as the KMS CVM (kms:rpc).
    let kms_identity = client_side.peer_identity(&conn).unwrap();
    // A verifier that did not run this handshake has nothing cached: it re-verifies the
    // peer's certificate and arrives at the same identity.
    let fresh = kms_server_verifier().peer_identity(&conn).unwrap();
    assert_eq!(fresh.app_id(), kms_identity.app_id());
    assert_eq!(*kms_identity.app_id(), kms().0.app_id);
}

#[tokio::test]
async fn tls12_handshake_checks_the_signature_with_the_attested_key_too() {
    let app = Cvm::boot(0x01, APP_COMPOSE);
    let app_cert = app.cert(Usage::AppCustom);
    let (_, kms_cert) = kms();
    let v = client_verifier(None);
    let (addr, server) = serve_once(server_config(kms_cert, v.clone(), TLS12), v).await;
    request(client_config(&app_cert, kms_server_verifier(), TLS12), addr)
        .await
        .unwrap();
    let handled = server.await.unwrap().unwrap();
    assert_eq!(*handled.identity.app_id(), app.app_id);
}

#[tokio::test]
async fn plain_self_signed_client_cert_is_rejected_during_the_handshake() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let der = CertificateParams::new(vec!["plain".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .der()
        .clone();
    let server_err = client_cert_rejected(&raw_cert(der, &key), None).await;
    let err = ratls_error(&server_err);
    assert!(
        matches!(err, RaTlsError::MissingExtension("quote")),
        "{err:?}"
    );
}

#[tokio::test]
async fn client_cert_whose_quote_binds_another_key_is_rejected() {
    let app = Cvm::boot(0x01, APP_COMPOSE);
    let presented = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    // A genuine quote from the CVM — but over the other key's report data.
    let quote = app
        .tdx
        .quote(&ra_tls_report_data(&other.subject_public_key_info()))
        .unwrap();
    let cert = forged_cert(&presented, &quote, &app.log.to_json(), Usage::AppCustom);
    refused_for_a_quote_over_another_key(&cert).await;
}

#[tokio::test]
async fn replayed_quote_copied_into_a_fresh_cert_is_rejected() {
    let app = Cvm::boot(0x01, APP_COMPOSE);
    let genuine = app.cert(Usage::AppCustom);
    let evidence = cairn_attestation::parse_ra_tls_extensions(&genuine.cert_der).unwrap();
    let thief = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = forged_cert(
        &thief,
        &evidence.quote,
        &evidence.event_log,
        Usage::AppCustom,
    );
    refused_for_a_quote_over_another_key(&cert).await;
}

#[tokio::test]
async fn client_cert_with_the_wrong_usage_is_rejected() {
    let app = Cvm::boot(0x01, APP_COMPOSE);
    let cert = app.cert(Usage::KmsRpc);
    let server_err = client_cert_rejected(&cert, Some(Usage::AppCustom)).await;
    let err = ratls_error(&server_err);
    assert!(
        matches!(
            err,
            RaTlsError::WrongUsage {
                required: Usage::AppCustom,
                presented: Some(Usage::KmsRpc)
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn client_cert_claiming_another_app_id_is_rejected() {
    let app = Cvm::boot(0x01, APP_COMPOSE);
    let cert = RaTlsCertBuilder::new(Usage::AppCustom)
        .event_log(&app.log.to_json())
        .app_id([0xEE; 20])
        .build(&app.tdx)
        .unwrap();
    let server_err = client_cert_rejected(&cert, None).await;
    let err = ratls_error(&server_err);
    assert!(matches!(err, RaTlsError::AppIdMismatch { .. }), "{err:?}");
}

#[tokio::test]
async fn client_cert_with_another_cvms_event_log_is_rejected() {
    let app = Cvm::boot(0x01, APP_COMPOSE);
    let evil = Cvm::boot(0x01, r#"{"name":"evil"}"#);
    // The quote carries app's RTMR3; the event log claims evil's compose hash.
    let cert = RaTlsCertBuilder::new(Usage::AppCustom)
        .event_log(&evil.log.to_json())
        .build(&app.tdx)
        .unwrap();
    let server_err = client_cert_rejected(&cert, None).await;
    let err = ratls_error(&server_err);
    assert!(
        matches!(evidence_error(err), Error::Rtmr3Mismatch { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn server_cert_without_kms_rpc_usage_is_rejected_by_the_client() {
    let app = Cvm::boot(0x01, APP_COMPOSE);
    let app_cert = app.cert(Usage::AppCustom);
    let impostor = Cvm::boot(0x0C, r#"{"name":"not-kms"}"#).cert(Usage::AppCustom);
    let (client_err, server_err) = kms_handshake_fails(&impostor, &app_cert).await;
    assert!(
        matches!(
            ratls_error(&client_err),
            RaTlsError::WrongUsage {
                required: Usage::KmsRpc,
                presented: Some(Usage::AppCustom)
            }
        ),
        "{client_err:?}"
    );
    assert_alert(&server_err, AlertDescription::CertificateUnknown);
}

#[tokio::test]
async fn plain_server_cert_is_rejected_by_the_client() {
    let app = Cvm::boot(0x01, APP_COMPOSE);
    let app_cert = app.cert(Usage::AppCustom);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let der = CertificateParams::new(vec!["kms.cairn.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .der()
        .clone();
    let plain = raw_cert(der, &key);
    let (client_err, server_err) = kms_handshake_fails(&plain, &app_cert).await;
    assert!(
        matches!(
            ratls_error(&client_err),
            RaTlsError::MissingExtension("quote")
        ),
        "{client_err:?}"
    );
    assert_alert(&server_err, AlertDescription::CertificateUnknown);
}

// Forgeries carry exactly the evidence they were given.
#[test]
fn hand_built_octet_strings_match_the_library() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = forged_cert(&key, &[7; 300], b"[]", Usage::AppCa);
    let ev = cairn_attestation::parse_ra_tls_extensions(&cert.cert_der).unwrap();
    assert_eq!(ev.quote, vec![7; 300]);
    assert_eq!(ev.usage, Some(Usage::AppCa));
}

#[tokio::test]
async fn simulator_cert_is_rejected_by_a_verifier_trusting_intels_root() {
    let app = Cvm::boot(0x01, APP_COMPOSE);
    let cert = app.cert(Usage::AppCustom);
    let intel = Verifier::intel().with_collateral(Collateral::new(pki().collateral()).unwrap());
    let server_err = client_cert_rejected_by(client_verifier_with(intel, None), &cert).await;
    let err = ratls_error(&server_err);
    assert!(
        matches!(evidence_error(err), Error::QuoteVerification(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn client_cert_from_a_debug_td_is_rejected() {
    let mut config = SimHostConfig::new([0x01; 32], OsImage::example("cairn-os", "1.0"));
    config.debug = true;
    let app = Cvm::boot_with(config, APP_COMPOSE);
    let server_err = client_cert_rejected(&app.cert(Usage::AppCustom), None).await;
    let err = ratls_error(&server_err);
    assert!(matches!(evidence_error(err), Error::DebugTd(_)), "{err:?}");
}

#[tokio::test]
async fn stolen_genuine_cert_without_its_key_fails_the_handshake_signature() {
    let app = Cvm::boot(0x01, APP_COMPOSE);
    let genuine = app.cert(Usage::AppCustom);
    let thief = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    // The genuine certificate with the thief's key, as a thief holding only the public
    // certificate would present it.
    let presents = Presents::new(vec![genuine.cert_der.clone()], thief.serialize_der());
    let client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS13)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(kms_server_verifier())
        .with_client_cert_resolver(Arc::new(presents));

    let (_, kms_cert) = kms();
    let verifier = client_verifier(None);
    let (addr, server) =
        serve_once(server_config(kms_cert, verifier.clone(), TLS13), verifier).await;
    let client_err = request(client, addr).await.unwrap_err();
    let server_err = server.await.unwrap().unwrap_err();
    // The evidence is genuine; only the handshake signature betrays the thief.
    assert!(
        matches!(
            tls_error(&server_err),
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
        ),
        "{server_err:?}"
    );
    assert_alert(&client_err, AlertDescription::DecryptError);
}

#[tokio::test]
async fn ca_issued_ra_tls_leaf_presented_with_its_chain_is_accepted() {
    // E.g. an app certificate issued by the KMS's app CA: trust still comes from the
    // leaf's own quote; the chain is carried but not a trust input.
    let app = Cvm::boot(0x01, APP_COMPOSE);
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_der = ca_params.self_signed(&ca_key).unwrap().der().clone();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = RaTlsCertBuilder::new(Usage::AppCustom)
        .event_log(&app.log.to_json())
        .app_id(app.app_id.0)
        .build_signed_by(&app.tdx, &issuer)
        .unwrap();
    let client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS13)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(kms_server_verifier())
        .with_client_auth_cert(vec![leaf.cert_der.clone(), ca_der], leaf.private_key_der())
        .unwrap();

    let (_, kms_cert) = kms();
    let verifier = client_verifier(Some(Usage::AppCustom));
    let (addr, server) =
        serve_once(server_config(kms_cert, verifier.clone(), TLS13), verifier).await;
    request(client, addr).await.unwrap();
    let handled = server.await.unwrap().unwrap();
    assert_eq!(*handled.identity.app_id(), app.app_id);
}

#[tokio::test]
async fn no_identity_is_served_for_a_connection_without_a_client_certificate() {
    // A server that does not ask for client certificates: the RA-TLS verifier has
    // nothing to vouch for, and says so instead of returning some cached identity.
    let (_, kms_cert) = kms();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS13)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![kms_cert.cert_der.clone()], kms_cert.private_key_der())
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let verifier = client_verifier(None);
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let identity = verifier.peer_identity(tls.get_ref().1);
        tls.shutdown().await.unwrap();
        identity
    });
    let client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS13)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(kms_server_verifier())
        .with_no_client_auth();
    request(client, addr).await.unwrap();
    let err = server.await.unwrap().unwrap_err();
    assert!(matches!(err, RaTlsError::NoPeerCertificate), "{err:?}");
}

#[tokio::test]
async fn verify_ra_tls_cert_applies_the_verifiers_checks_outside_a_handshake() {
    let (kms_cvm, kms_cert) = kms();
    let v = sim_verifier();
    let now = unix_now();
    let id = v
        .verify_ra_tls_cert(&kms_cert.cert_der, Some(Usage::KmsRpc), None, now)
        .await
        .unwrap();
    assert_eq!(*id.app_id(), kms_cvm.app_id);

    let err = v
        .verify_ra_tls_cert(&kms_cert.cert_der, Some(Usage::AppCa), None, now)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RaTlsError::WrongUsage {
                required: Usage::AppCa,
                presented: Some(Usage::KmsRpc)
            }
        ),
        "{err:?}"
    );
    let two_years = now + 2 * 365 * 24 * 3600;
    let err = v
        .verify_ra_tls_cert(&kms_cert.cert_der, None, None, two_years)
        .await
        .unwrap_err();
    assert!(matches!(err, RaTlsError::NotValidAt { .. }), "{err:?}");

    // Another CVM's event log in a certificate for this key: RTMR3 replay fails.
    let app = Cvm::boot(0x01, APP_COMPOSE);
    let forged = RaTlsCertBuilder::new(Usage::KmsRpc)
        .event_log(&app.log.to_json())
        .build(&kms_cvm.tdx)
        .unwrap();
    let err = v
        .verify_ra_tls_cert(&forged.cert_der, None, None, now)
        .await
        .unwrap_err();
    assert!(
        matches!(evidence_error(&err), Error::Rtmr3Mismatch { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_certificate_issued_at_a_given_time_is_valid_from_five_minutes_before_it() {
    let (kms_cvm, _) = kms();
    let v = sim_verifier();
    // A day after the system clock: inside the simulator collateral's 30 days.
    let at = unix_now() + 24 * 3600;
    let cert = RaTlsCertBuilder::new(Usage::KmsRpc)
        .event_log(&kms_cvm.log.to_json())
        .issued_at(at)
        .build(&kms_cvm.tdx)
        .unwrap();
    let skew = cairn_attestation::ratls_consts::CLOCK_SKEW.as_secs();
    let year = cairn_attestation::ratls_consts::DEFAULT_VALIDITY.as_secs();
    for ok in [at - skew, at, at + 3600] {
        v.verify_ra_tls_cert(&cert.cert_der, None, None, ok)
            .await
            .unwrap_or_else(|e| panic!("valid at {ok}: {e:?}"));
    }
    // One second before notBefore: refused, and the error names the whole window
    // (notAfter = the issue time + the default validity).
    let bad = at - skew - 1;
    match v.verify_ra_tls_cert(&cert.cert_der, None, None, bad).await {
        Err(RaTlsError::NotValidAt {
            now,
            not_before,
            not_after,
        }) => {
            assert_eq!(now, bad);
            assert_eq!(not_before, (at - skew) as i64);
            assert_eq!(not_after, (at + year) as i64);
        }
        other => panic!("expected NotValidAt at {bad}, got {other:?}"),
    }
}
