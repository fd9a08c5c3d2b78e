//! The TLS side of the server: rustls (ring) with the node's RA-TLS certificate and
//! *optional* client authentication.
//!
//! The client-certificate verifier here proves only **possession**: rustls checks the
//! client's handshake signature with the certificate key (`verify_tls1{2,3}_signature`,
//! ring's algorithms), so the certificate handed to the handlers belongs to this
//! connection's peer. Whether its evidence is good is release-path step 1
//! (`evidence::attest`), run per request so that a bad quote is answered as data
//! (403 `denied.quote`, `denied.report_data`, …, counted in the metrics) instead of an
//! opaque TLS alert — and so that `meta`, `env-pubkey`, the log endpoints, `/metrics`
//! and `/healthz` work without a certificate. Nothing is released without step 1.

use std::sync::Arc;

use cairn_attestation::ratls_consts::MAX_RA_TLS_CERT_LEN;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::error::{Error, Result};

/// Accepts any client certificate of at most 64 KiB whose key signs the handshake.
#[derive(Debug)]
pub(crate) struct PossessionVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl PossessionVerifier {
    pub(crate) fn new() -> Self {
        Self {
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for PossessionVerifier {
    fn client_auth_mandatory(&self) -> bool {
        false
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
        if end_entity.len() > MAX_RA_TLS_CERT_LEN {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            ));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The server config: the node's RA-TLS certificate, optional client auth, HTTP/1.1.
pub(crate) fn server_config(cert: &cairn_attestation::RaTlsCert) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_client_cert_verifier(Arc::new(PossessionVerifier::new()))
        .with_single_cert(vec![cert.cert_der.clone()], cert.private_key_der())
        .map_err(|e| Error::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
