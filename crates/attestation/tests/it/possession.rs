//! The possession-only verifiers over an in-memory duplex stream: they accept any
//! certificate whose key signs the handshake, and nothing else.

use std::io;
use std::sync::Arc;

use cairn_attestation::testing::{possession_client, Presents};
use cairn_attestation::{peer_end_entity, PossessionClientVerifier, PossessionServerVerifier};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, ClientConfig, ServerConfig};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A plain self-signed certificate and its key (no evidence at all).
fn plain() -> (CertificateDer<'static>, KeyPair) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["peer".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.der().clone(), key)
}

/// `cert` presented with the signing key `key` (which may not be the certified one).
fn certified(cert: CertificateDer<'static>, key: &KeyPair) -> Arc<CertifiedKey> {
    Presents::new(vec![cert], key.serialize_der()).0
}

fn server_config(
    server: Arc<CertifiedKey>,
    clients: Arc<PossessionClientVerifier>,
) -> Arc<ServerConfig> {
    Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(clients)
            .with_cert_resolver(Arc::new(Presents(server))),
    )
}

fn client_config(client: Option<Arc<CertifiedKey>>) -> Arc<ClientConfig> {
    let builder = possession_client();
    Arc::new(match client {
        Some(c) => builder.with_client_cert_resolver(Arc::new(Presents(c))),
        None => builder.with_no_client_auth(),
    })
}

/// One exchange: the server echoes one byte and reports the client certificate it saw.
async fn exchange(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> (
    io::Result<Option<CertificateDer<'static>>>,
    io::Result<CertificateDer<'static>>,
) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server_side = async move {
        let mut tls = TlsAcceptor::from(server).accept(a).await?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await?;
        tls.write_all(&byte).await?;
        tls.shutdown().await?;
        Ok(peer_end_entity(tls.get_ref().1).cloned())
    };
    let client_side = async move {
        let name = ServerName::try_from("peer").unwrap();
        let mut tls = TlsConnector::from(client).connect(name, b).await?;
        tls.write_all(b"x").await?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await?;
        let seen = peer_end_entity(tls.get_ref().1)
            .cloned()
            .ok_or_else(|| io::Error::other("no server certificate"))?;
        Ok(seen)
    };
    tokio::join!(server_side, client_side)
}

fn tls_error(err: &io::Error) -> &rustls::Error {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("not a rustls error: {err:?}"))
}

/// `result` failed with the TLS error `want`.
#[track_caller]
fn assert_tls_error<T: std::fmt::Debug>(result: io::Result<T>, want: rustls::Error) {
    let err = result.unwrap_err();
    assert_eq!(tls_error(&err), &want, "{err:?}");
}

/// [`exchange`] between a server presenting `server` that checks client certificates
/// with `clients`, and a client presenting `client` (if any).
async fn handshake(
    server: Arc<CertifiedKey>,
    clients: PossessionClientVerifier,
    client: Option<Arc<CertifiedKey>>,
) -> (
    io::Result<Option<CertificateDer<'static>>>,
    io::Result<CertificateDer<'static>>,
) {
    exchange(
        server_config(server, Arc::new(clients)),
        client_config(client),
    )
    .await
}

#[tokio::test]
async fn possession_verifiers_accept_any_certificate_whose_key_signs_and_expose_it() {
    let (server_cert, server_key) = plain();
    let (client_cert, client_key) = plain();
    let (server, client) = handshake(
        certified(server_cert.clone(), &server_key),
        PossessionClientVerifier::mandatory(),
        Some(certified(client_cert.clone(), &client_key)),
    )
    .await;
    assert_eq!(server.unwrap(), Some(client_cert));
    assert_eq!(client.unwrap(), server_cert);
}

#[tokio::test]
async fn a_server_without_the_certified_key_fails_the_possession_check() {
    let (genuine, _) = plain();
    let (_, thief) = plain();
    let (_, client) = handshake(
        certified(genuine, &thief),
        PossessionClientVerifier::optional(),
        None,
    )
    .await;
    assert_tls_error(
        client,
        rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature),
    );
}

#[tokio::test]
async fn a_client_without_the_certified_key_fails_the_possession_check() {
    let (server_cert, server_key) = plain();
    let (genuine, _) = plain();
    let (_, thief) = plain();
    let (server, client) = handshake(
        certified(server_cert, &server_key),
        PossessionClientVerifier::optional(),
        Some(certified(genuine, &thief)),
    )
    .await;
    assert_tls_error(
        server,
        rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature),
    );
    assert_tls_error(
        client,
        rustls::Error::AlertReceived(AlertDescription::DecryptError),
    );
}

#[tokio::test]
async fn client_certificates_are_optional_or_mandatory_as_configured() {
    let (server_cert, server_key) = plain();
    let (server, client) = handshake(
        certified(server_cert.clone(), &server_key),
        PossessionClientVerifier::optional(),
        None,
    )
    .await;
    assert_eq!(server.unwrap(), None, "no certificate, no identity");
    client.unwrap();

    let (server, _) = handshake(
        certified(server_cert, &server_key),
        PossessionClientVerifier::mandatory(),
        None,
    )
    .await;
    assert_tls_error(server, rustls::Error::NoCertificatesPresented);
}

#[test]
fn certificates_over_the_ra_tls_limit_are_refused_before_anything_else() {
    use cairn_attestation::ratls_consts::MAX_RA_TLS_CERT_LEN;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::server::danger::ClientCertVerifier;
    let big = CertificateDer::from(vec![0x30; MAX_RA_TLS_CERT_LEN + 1]);
    let now = rustls_pki_types::UnixTime::now();
    let bad_encoding = |side: &str, err: rustls::Error| {
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
            ),
            "{side}: {err:?}"
        );
    };
    let err = PossessionServerVerifier::new()
        .verify_server_cert(&big, &[], &ServerName::try_from("x").unwrap(), &[], now)
        .unwrap_err();
    bad_encoding("server verifier", err);
    let err = PossessionClientVerifier::optional()
        .verify_client_cert(&big, &[], now)
        .unwrap_err();
    bad_encoding("client verifier", err);
}
