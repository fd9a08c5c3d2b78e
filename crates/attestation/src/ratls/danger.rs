//! Possession-only rustls verifiers, and the handshake-signature methods every Cairn
//! verifier shares (modelled on rustls' own `client::danger`: the names say that these
//! verifiers, on their own, establish no trust).
//!
//! A possession-only verifier accepts any end-entity certificate of at most
//! [`MAX_RA_TLS_CERT_LEN`] bytes and then checks the peer's handshake signature with that
//! certificate's key (`rustls::crypto::verify_tls1{2,3}_signature`, ring's algorithms).
//! After the handshake, the certificate provably belongs to the peer of *this*
//! connection — nothing more. The caller **must** judge the certificate itself
//! (RA-TLS evidence with [`crate::RaTlsServerVerifier::verify_cert_der`] or the KMS's
//! release path, an issuer with [`crate::RootCa`]) before it trusts a single byte the
//! peer sends. Cairn uses them where the judgement needs more than a synchronous rustls
//! callback allows:
//!
//! - the KMS server ([`PossessionClientVerifier::optional`]): the release path verifies
//!   the client's evidence per request and answers a bad quote as data (a 403 naming the
//!   check), and public endpoints work without a client certificate;
//! - `cairn-kms-client` ([`PossessionServerVerifier`]): the KMS's evidence is verified
//!   right after the handshake, before any request is written, so that its collateral can
//!   be fetched from a PCCS (async) and a rejection is a typed error.

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CommonState, DistinguishedName};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::consts::MAX_RA_TLS_CERT_LEN;

/// The three handshake-signature methods of a rustls verifier, delegating to rustls'
/// own checks with the algorithms in the field at `$path` (written once for every
/// verifier of this crate).
macro_rules! handshake_signature_methods {
    ($($path:ident).+) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.$($path).+)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.$($path).+)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.$($path).+.supported_schemes()
        }
    };
}
pub(crate) use handshake_signature_methods;

/// ring's signature-verification algorithms: what every Cairn verifier accepts.
pub(crate) fn ring_algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// The size bound every verifier applies before anything else.
fn check_size(end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    if end_entity.len() > MAX_RA_TLS_CERT_LEN {
        return Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ));
    }
    Ok(())
}

/// The peer's end-entity certificate on a finished handshake (`ClientConnection` and
/// `ServerConnection` deref to [`CommonState`]).
pub fn peer_end_entity(conn: &CommonState) -> Option<&CertificateDer<'static>> {
    conn.peer_certificates().and_then(|certs| certs.first())
}

/// A `ServerCertVerifier` that proves only that the server holds its certificate key.
/// Put it in a `rustls::ClientConfig` with
/// `.dangerous().with_custom_certificate_verifier(Arc::new(PossessionServerVerifier::new()))`,
/// then verify [`peer_end_entity`] before sending anything (see the module docs).
#[derive(Debug)]
pub struct PossessionServerVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl PossessionServerVerifier {
    /// A verifier with ring's algorithms.
    pub fn new() -> Self {
        Self {
            algorithms: ring_algorithms(),
        }
    }
}

impl Default for PossessionServerVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerCertVerifier for PossessionServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        check_size(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    handshake_signature_methods!(algorithms);
}

/// Whether a [`PossessionClientVerifier`] requires a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    Optional,
    Mandatory,
}

/// A `ClientCertVerifier` that proves only that the client holds its certificate key.
/// Put it in a `rustls::ServerConfig` with `.with_client_cert_verifier(Arc::new(..))`,
/// then judge [`peer_end_entity`] before acting on the client's requests.
#[derive(Debug)]
pub struct PossessionClientVerifier {
    algorithms: WebPkiSupportedAlgorithms,
    auth: ClientAuth,
}

impl PossessionClientVerifier {
    /// Clients may connect without a certificate (the KMS's public endpoints).
    pub fn optional() -> Self {
        Self {
            algorithms: ring_algorithms(),
            auth: ClientAuth::Optional,
        }
    }

    /// Clients must present a certificate.
    pub fn mandatory() -> Self {
        Self {
            algorithms: ring_algorithms(),
            auth: ClientAuth::Mandatory,
        }
    }
}

impl ClientCertVerifier for PossessionClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.auth == ClientAuth::Mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_size(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    handshake_signature_methods!(algorithms);
}
