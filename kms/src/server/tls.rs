//! The TLS side of the server: rustls (ring) with the node's RA-TLS certificate and
//! *optional* client authentication.
//!
//! The client-certificate verifier here (`cairn_attestation::PossessionClientVerifier`,
//! optional) proves only **possession**: a certificate of at most 64 KiB, and rustls
//! checks the client's handshake signature with its key (`verify_tls1{2,3}_signature`,
//! ring's algorithms), so the certificate handed to the handlers belongs to this
//! connection's peer. Whether its evidence is good is release-path step 1
//! (`evidence::attest`), run per request so that a bad quote is answered as data
//! (403 `denied.quote`, `denied.report_data`, …, counted in the metrics) instead of an
//! opaque TLS alert — and so that `meta`, `env-pubkey`, the log endpoints, `/metrics`
//! and `/healthz` work without a certificate. Nothing is released without step 1.

use std::sync::Arc;

use cairn_attestation::PossessionClientVerifier;
use rustls::ServerConfig;

use crate::error::{Error, Result};

/// The server config: the node's RA-TLS certificate (resolved per handshake: a rotation
/// switches it to the new root CA), optional client auth, HTTP/1.1.
pub(crate) fn server_config(
    certs: Arc<dyn rustls::server::ResolvesServerCert>,
) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?
        .with_client_cert_verifier(Arc::new(PossessionClientVerifier::optional()))
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
