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

use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{CommonState, Error};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::consts::MAX_RA_TLS_CERT_LEN;

/// What a Cairn rustls verifier decides. The rustls trait impls themselves are written
/// once, by `impl_server_cert_verifier!` and `impl_client_cert_verifier!`, for the
/// possession-only verifiers here and the RA-TLS verifiers (`verify.rs`).
pub(crate) trait EndEntityCheck {
    /// Judges the peer's end-entity certificate at `now` (the handshake signature is
    /// checked separately, with [`Self::algorithms`]).
    fn check_end_entity(&self, end_entity: &[u8], now: UnixTime) -> Result<(), Error>;
    /// The algorithms the handshake signature may use (ring's).
    fn algorithms(&self) -> &WebPkiSupportedAlgorithms;
    /// Whether a client must present a certificate (client-certificate verifiers only).
    fn requires_client_cert(&self) -> bool {
        true
    }
}

/// Shorthands the generated methods use (the invoking module imports them with
/// `use super::danger::*`-style imports, as `verify.rs` does).
pub(crate) type Cert<'a> = CertificateDer<'a>;
pub(crate) type Dss = rustls::DigitallySignedStruct;
pub(crate) type SigValid = rustls::client::danger::HandshakeSignatureValid;

/// The handshake-signature methods of a rustls verifier: rustls' own checks with the
/// type's [`EndEntityCheck::algorithms`] (written once for every verifier). Expects
/// `Cert`, `Dss`, `SigValid` and `EndEntityCheck` in scope.
macro_rules! handshake_signature_methods {
    () => {
        handshake_signature_method!(
            verify_tls12_signature,
            rustls::crypto::verify_tls12_signature
        );
        handshake_signature_method!(
            verify_tls13_signature,
            rustls::crypto::verify_tls13_signature
        );
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.algorithms().supported_schemes()
        }
    };
}

/// One handshake-signature method `$name`, checked by rustls' `$check`.
macro_rules! handshake_signature_method {
    ($name:ident, $check:path) => {
        fn $name(&self, m: &[u8], c: &Cert<'_>, d: &Dss) -> Result<SigValid, Error> {
            $check(m, c, d, self.algorithms())
        }
    };
}

/// `impl ServerCertVerifier` for a type that implements [`EndEntityCheck`] (same scope
/// expectations as `handshake_signature_methods!`).
macro_rules! impl_server_cert_verifier {
    ($ty:ident $(<$g:ident: $b:path>)?) => {
        impl$(<$g: $b>)? rustls::client::danger::ServerCertVerifier for $ty$(<$g>)? {
            fn verify_server_cert(&self, end_entity: &Cert<'_>, _intermediates: &[Cert<'_>], _server_name: &rustls_pki_types::ServerName<'_>, _ocsp: &[u8], now: rustls_pki_types::UnixTime) -> Result<rustls::client::danger::ServerCertVerified, Error> {
                EndEntityCheck::check_end_entity(self, end_entity, now)?;
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            handshake_signature_methods!();
        }
    };
}

/// `impl ClientCertVerifier` for a type that implements [`EndEntityCheck`] (same scope
/// expectations as `handshake_signature_methods!`).
macro_rules! impl_client_cert_verifier {
    ($ty:ident $(<$g:ident: $b:path>)?) => {
        impl$(<$g: $b>)? rustls::server::danger::ClientCertVerifier for $ty$(<$g>)? {
            fn client_auth_mandatory(&self) -> bool {
                EndEntityCheck::requires_client_cert(self)
            }
            fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
                &[]
            }
            fn verify_client_cert(&self, end_entity: &Cert<'_>, _intermediates: &[Cert<'_>], now: rustls_pki_types::UnixTime) -> Result<rustls::server::danger::ClientCertVerified, Error> {
                EndEntityCheck::check_end_entity(self, end_entity, now)?;
                Ok(rustls::server::danger::ClientCertVerified::assertion())
            }
            handshake_signature_methods!();
        }
    };
}
pub(crate) use {
    handshake_signature_method, handshake_signature_methods, impl_client_cert_verifier,
    impl_server_cert_verifier,
};

/// ring's signature-verification algorithms: what every Cairn verifier accepts.
pub(crate) fn ring_algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// The size bound every verifier applies before anything else.
fn check_size(end_entity: &[u8]) -> Result<(), rustls::Error> {
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

impl EndEntityCheck for PossessionServerVerifier {
    fn check_end_entity(&self, end_entity: &[u8], _now: UnixTime) -> Result<(), Error> {
        check_size(end_entity)
    }

    fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
        &self.algorithms
    }
}

impl_server_cert_verifier!(PossessionServerVerifier);

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

impl EndEntityCheck for PossessionClientVerifier {
    fn check_end_entity(&self, end_entity: &[u8], _now: UnixTime) -> Result<(), Error> {
        check_size(end_entity)
    }

    fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
        &self.algorithms
    }

    fn requires_client_cert(&self) -> bool {
        self.auth == ClientAuth::Mandatory
    }
}

impl_client_cert_verifier!(PossessionClientVerifier);
