//! The KMS client: JSON over HTTP/1.1 over mutual RA-TLS (DESIGN.md §3, §5).
//!
//! The guest presents an RA-TLS client certificate (its quote binds the certificate key;
//! the embedded event log tells the KMS what the CVM measured). The KMS must present an
//! RA-TLS certificate with usage `kms:rpc` whose evidence the configured [`Verifier`]
//! accepts — checked by [`RaTlsServerVerifier`] during the handshake, before any request
//! byte is sent. WebPKI is not used: the KMS is trusted for what it *runs*, not its name.
//! A valid quote alone does not say *which* KMS it is, so [`KmsClient::app_key`] and
//! [`KmsClient::sign_cert`] also require the KMS's TLS certificate to be issued by the
//! KMS root CA (see [`crate::chain`]).
//! Every request has one overall timeout; response bodies are capped.

use std::sync::Arc;
use std::time::Duration;

use cairn_attestation::{
    PccsClient, RaTlsCert, RaTlsError, RaTlsServerVerifier, Usage, VerifiedQuote, Verifier,
};
use cairn_protocol::api::{
    AppKeyRequest, AppKeyResponse, ErrorBody, SignCertRequest, SignCertResponse, PATH_APP_KEY,
    PATH_SIGN_CERT,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::chain::KmsRoot;
use crate::error::KmsError;

/// Largest KMS response body read.
pub const MAX_RESPONSE_LEN: usize = 1024 * 1024;
/// Default timeout of one KMS request (connect, handshake, exchange).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds a fresh [`Verifier`] for a trust root (Intel's, or a simulator root).
pub type VerifierFactory = Arc<dyn Fn() -> Verifier + Send + Sync>;

/// Where the collateral for the KMS's quote comes from.
#[derive(Clone)]
enum Trust {
    /// A verifier with collateral configured up front (file, or the simulator's).
    Fixed(Arc<RaTlsServerVerifier<Verifier>>),
    /// Collateral fetched from a PCCS for each KMS's quote: a first handshake only reads
    /// the KMS certificate (and is aborted), then the real one verifies it.
    Pccs {
        verifier: VerifierFactory,
        pccs: Arc<PccsClient>,
    },
}

/// A client for one or more KMS nodes, verifying each node's RA-TLS evidence.
#[derive(Clone)]
pub struct KmsClient {
    trust: Trust,
    timeout: Duration,
}

impl std::fmt::Debug for KmsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsClient")
            .field(
                "collateral",
                &match &self.trust {
                    Trust::Fixed(_) => "configured",
                    Trust::Pccs { .. } => "pccs",
                },
            )
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl KmsClient {
    /// A client that accepts KMS certificates whose evidence `verifier` accepts and whose
    /// usage is `kms:rpc`.
    pub fn new(verifier: Verifier, timeout: Duration) -> Self {
        KmsClient {
            trust: Trust::Fixed(kms_verifier(verifier)),
            timeout,
        }
    }

    /// A client that fetches the collateral for each KMS's quote from `pccs` and verifies
    /// it with a verifier made by `verifier` (which fixes the trust root).
    pub fn with_pccs(verifier: VerifierFactory, pccs: PccsClient, timeout: Duration) -> Self {
        KmsClient {
            trust: Trust::Pccs {
                verifier,
                pccs: Arc::new(pccs),
            },
            timeout,
        }
    }

    /// The verifier for a connection to `host:port`.
    async fn verifier_for(
        &self,
        host: &str,
        port: u16,
        server_name: &ServerName<'static>,
    ) -> Result<Arc<RaTlsServerVerifier<Verifier>>, KmsError> {
        let (factory, pccs) = match &self.trust {
            Trust::Fixed(v) => return Ok(v.clone()),
            Trust::Pccs { verifier, pccs } => (verifier, pccs),
        };
        let cert = fetch_server_cert(host, port, server_name).await?;
        let evidence = cairn_attestation::parse_ra_tls_extensions(&cert)
            .map_err(|e| KmsError::Handshake(format!("KMS certificate rejected: {e}")))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let verifier = factory();
        // Fetched only when the quote's PCK chain verifies to the verifier's root.
        let collateral = pccs
            .collateral_for_quote(&evidence.quote, verifier.trust_root_der(), now)
            .await
            .map_err(|e| KmsError::Collateral(e.to_string()))?;
        Ok(kms_verifier(
            verifier.with_collateral((*collateral).clone()),
        ))
    }

    /// `POST /v1/app-key` with `client_cert`; returns the keys, the KMS's verified identity
    /// and the KMS root CA, checked to be a self-signed P-256 CA that issued the KMS's TLS
    /// certificate ([`KmsError::NotRooted`] otherwise). `resp.root_ca_cert` is that root.
    pub async fn app_key(
        &self,
        base_url: &str,
        client_cert: &RaTlsCert,
    ) -> Result<(AppKeyResponse, VerifiedQuote, KmsRoot), KmsError> {
        let (resp, peer): (AppKeyResponse, _) = self
            .exchange(base_url, PATH_APP_KEY, client_cert, &AppKeyRequest {})
            .await?;
        let root = KmsRoot::from_pem(&resp.root_ca_cert).map_err(KmsError::NotRooted)?;
        root.verify_issued(&peer.cert_der).map_err(|e| {
            KmsError::NotRooted(format!(
                "the KMS's TLS certificate is not issued by the root CA it returned: {e}"
            ))
        })?;
        Ok((resp, peer.identity, root))
    }

    /// `POST /v1/sign-cert`: have the app CA sign a CSR (DER) whose key is `client_cert`'s.
    /// The KMS's TLS certificate must be issued by `root` ([`KmsError::NotRooted`]) and the
    /// returned chain must be leaf → app CA → `root` with the leaf certifying the CSR key
    /// ([`KmsError::BadChain`]).
    pub async fn sign_cert(
        &self,
        base_url: &str,
        client_cert: &RaTlsCert,
        csr_der: Vec<u8>,
        root: &KmsRoot,
    ) -> Result<SignCertResponse, KmsError> {
        let (resp, peer): (SignCertResponse, _) = self
            .exchange(
                base_url,
                PATH_SIGN_CERT,
                client_cert,
                &SignCertRequest { csr: csr_der },
            )
            .await?;
        root.verify_issued(&peer.cert_der).map_err(|e| {
            KmsError::NotRooted(format!(
                "the KMS's TLS certificate is not issued by the booted KMS root CA: {e}"
            ))
        })?;
        let leaf_spki = root
            .verify_app_chain(&resp.certificate_chain)
            .map_err(KmsError::BadChain)?;
        let own_spki =
            crate::chain::spki(client_cert.cert_der.as_ref()).map_err(KmsError::BadChain)?;
        if leaf_spki != own_spki {
            return Err(KmsError::BadChain(
                "the leaf does not certify the requested key".to_owned(),
            ));
        }
        Ok(resp)
    }

    /// POST JSON to `base_url` + `path` over mutual RA-TLS. Only the KMS's evidence is
    /// checked here, not that it belongs to a given root CA: prefer [`KmsClient::app_key`]
    /// and [`KmsClient::sign_cert`].
    pub async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        base_url: &str,
        path: &str,
        client_cert: &RaTlsCert,
        body: &Req,
    ) -> Result<(Resp, VerifiedQuote), KmsError> {
        self.exchange(base_url, path, client_cert, body)
            .await
            .map(|(r, peer)| (r, peer.identity))
    }

    async fn exchange<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        base_url: &str,
        path: &str,
        client_cert: &RaTlsCert,
        body: &Req,
    ) -> Result<(Resp, Peer), KmsError> {
        tokio::time::timeout(
            self.timeout,
            self.post_inner(base_url, path, client_cert, body),
        )
        .await
        .map_err(|_| KmsError::Timeout(self.timeout))?
    }

    async fn post_inner<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        base_url: &str,
        path: &str,
        client_cert: &RaTlsCert,
        body: &Req,
    ) -> Result<(Resp, Peer), KmsError> {
        let url = url::Url::parse(base_url).map_err(|e| KmsError::BadUrl(e.to_string()))?;
        if url.scheme() != "https" {
            return Err(KmsError::BadUrl(format!(
                "scheme {:?}: the KMS is only reached over RA-TLS (https)",
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| KmsError::BadUrl("no host".to_owned()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port().unwrap_or(443);
        let prefix = url.path().trim_end_matches('/');
        let full_path = format!("{prefix}{path}");

        let server_name =
            ServerName::try_from(host.clone()).map_err(|e| KmsError::BadUrl(e.to_string()))?;
        let verifier = self.verifier_for(&host, port, &server_name).await?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| KmsError::Handshake(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_client_auth_cert(
                vec![client_cert.cert_der.clone()],
                client_cert.private_key_der(),
            )
            .map_err(|e| KmsError::Handshake(format!("client certificate: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name =
            ServerName::try_from(host.clone()).map_err(|e| KmsError::BadUrl(e.to_string()))?;

        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| KmsError::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let tls = TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(handshake_error)?;
        let identity = verifier
            .peer_identity(tls.get_ref().1)
            .map_err(|e| KmsError::Handshake(e.to_string()))?;
        let cert_der = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .ok_or_else(|| KmsError::Handshake("the KMS presented no certificate".to_owned()))?;

        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| KmsError::Http(e.to_string()))?;
        let conn_task = tokio::spawn(conn);
        let body = serde_json::to_vec(body).map_err(|e| KmsError::Http(e.to_string()))?;
        let req = hyper::Request::post(full_path)
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| KmsError::Http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| KmsError::Http(e.to_string()))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_LEN)
            .collect()
            .await
            .map_err(|e| KmsError::Body(format!("reading: {e}")))?
            .to_bytes();
        drop(sender);
        conn_task.abort();
        if !status.is_success() {
            let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => (b.error.code, b.error.message),
                Err(_) => (
                    "unknown".to_owned(),
                    format!("{} bytes of non-JSON body", bytes.len()),
                ),
            };
            return Err(KmsError::Status {
                status: status.as_u16(),
                code,
                message,
            });
        }
        let parsed = serde_json::from_slice(&bytes).map_err(|e| KmsError::Body(e.to_string()))?;
        Ok((parsed, Peer { identity, cert_der }))
    }
}

/// The KMS peer of one exchange: its verified evidence and its TLS end-entity certificate.
struct Peer {
    identity: VerifiedQuote,
    cert_der: Vec<u8>,
}

/// The handshake failure, with the RA-TLS verifier's own reason when it rejected the KMS.
fn handshake_error(e: std::io::Error) -> KmsError {
    let ratls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(|tls| match tls {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o)) => {
                o.0.downcast_ref::<RaTlsError>()
            }
            _ => None,
        });
    match ratls {
        Some(r) => KmsError::Handshake(format!("KMS certificate rejected: {r}")),
        None => KmsError::Handshake(e.to_string()),
    }
}

fn kms_verifier(verifier: Verifier) -> Arc<RaTlsServerVerifier<Verifier>> {
    Arc::new(RaTlsServerVerifier::new(verifier).require_usage(Usage::KmsRpc))
}

/// Records the server's end-entity certificate and aborts the handshake.
#[derive(Debug)]
struct CaptureCert(std::sync::Mutex<Option<Vec<u8>>>);

impl rustls::client::danger::ServerCertVerifier for CaptureCert {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(end_entity.to_vec());
        // Never trusted: this handshake only reads the certificate.
        Err(rustls::Error::General("certificate captured".to_owned()))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &rustls_pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("not used".to_owned()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &rustls_pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("not used".to_owned()))
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The KMS's certificate, read by a handshake that is aborted right after it.
async fn fetch_server_cert(
    host: &str,
    port: u16,
    server_name: &ServerName<'static>,
) -> Result<Vec<u8>, KmsError> {
    let capture = Arc::new(CaptureCert(std::sync::Mutex::new(None)));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| KmsError::Handshake(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| KmsError::Connect(e.to_string()))?;
    // Fails by design once the certificate is captured.
    let _ = TlsConnector::from(Arc::new(config))
        .connect(server_name.clone(), tcp)
        .await;
    let cert = capture.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    cert.ok_or_else(|| KmsError::Handshake("the KMS presented no certificate".to_owned()))
}
