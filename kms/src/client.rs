//! A small RA-TLS client of the KMS API over one warm HTTP/1.1 connection: used by
//! `onboard` (new node → existing node), the integration tests and the load benchmark.
//!
//! The server is verified by its RA-TLS certificate (usage `kms:rpc`) with
//! [`RaTlsServerVerifier`]; the client presents its own RA-TLS certificate when given.
//! Response bodies are capped at [`MAX_RESPONSE`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use cairn_attestation::{RaTlsCert, RaTlsServerVerifier, Usage, Verifier};
use cairn_protocol::api::ErrorBody;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::ServerCertVerifier;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::{Error, Result};

/// Largest response body read.
pub const MAX_RESPONSE: usize = 1024 * 1024;

/// A `ClientConfig` that verifies the KMS by its RA-TLS evidence (usage `kms:rpc`) and
/// presents `client_cert` if given.
pub fn client_config(
    server_verifier: Arc<dyn ServerCertVerifier>,
    client_cert: Option<&RaTlsCert>,
) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(server_verifier);
    let mut config = match client_cert {
        Some(c) => builder
            .with_client_auth_cert(vec![c.cert_der.clone()], c.private_key_der())
            .map_err(|e| Error::Tls(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A server verifier for KMS nodes: the real [`Verifier`], usage `kms:rpc` required.
pub fn kms_server_verifier(verifier: Verifier) -> Arc<RaTlsServerVerifier<Verifier>> {
    Arc::new(RaTlsServerVerifier::new(verifier).require_usage(Usage::KmsRpc))
}

/// An error answer of the KMS: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorAnswer {
    /// HTTP status.
    pub status: StatusCode,
    /// The decoded error body (code `unparsed` when the body was not the API's shape).
    pub body: ErrorBody,
}

/// One HTTP/1.1 connection to a KMS node.
pub struct KmsClient {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl std::fmt::Debug for KmsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsClient").finish_non_exhaustive()
    }
}

impl KmsClient {
    /// Connect to `addr` with `config` (see [`client_config`]). Returns the client and
    /// the server's end-entity certificate (DER), for `peer_identity`-style checks.
    pub async fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<(Self, Vec<u8>)> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| Error::Http(format!("connect {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from("cairn-kms").map_err(|e| Error::Tls(e.to_string()))?;
        let tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| Error::Tls(e.to_string()))?;
        let server_cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .ok_or_else(|| Error::Tls("server presented no certificate".into()))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| Error::Http(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "client connection ended");
            }
        });
        Ok((KmsClient { sender }, server_cert))
    }

    /// Send one request; returns the status and the (capped) body.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes)> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "cairn-kms");
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Error::Http(e.to_string()))?;
        self.sender
            .ready()
            .await
            .map_err(|e| Error::Http(e.to_string()))?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| Error::Http(e.to_string()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| Error::Http(e.to_string()))?
            .to_bytes();
        Ok((status, body))
    }

    /// Send `body` as JSON (or nothing) and decode a JSON answer: `Ok(Ok(T))` on 2xx,
    /// `Ok(Err(ErrorAnswer))` on an error status.
    pub async fn call<T: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<Result<T, ErrorAnswer>> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| Error::Http(e.to_string()))?;
        let (status, bytes) = self.request(method, path, body).await?;
        if status.is_success() {
            serde_json::from_slice(&bytes)
                .map(Ok)
                .map_err(|e| Error::Http(format!("bad response body: {e}")))
        } else {
            let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                ErrorBody::new("unparsed", String::from_utf8_lossy(&bytes).into_owned())
            });
            Ok(Err(ErrorAnswer { status, body }))
        }
    }
}

impl KmsClient {
    async fn log_get<T: DeserializeOwned>(
        &mut self,
        path: &str,
    ) -> std::result::Result<T, cairn_onchain::SourceError> {
        match self.call::<T>(Method::GET, path, None::<&()>).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(cairn_onchain::SourceError(format!(
                "{path}: {} {}",
                e.status, e.body.error.code
            ))),
            Err(e) => Err(cairn_onchain::SourceError(format!("{path}: {e}"))),
        }
    }
}

/// The KMS's public `/v1/log/*` endpoints as an audit [`cairn_onchain::LogSource`].
impl cairn_onchain::LogSource for KmsClient {
    async fn checkpoint(&mut self) -> std::result::Result<String, cairn_onchain::SourceError> {
        let r: cairn_protocol::api::CheckpointResponse = self
            .log_get(cairn_protocol::api::PATH_LOG_CHECKPOINT)
            .await?;
        Ok(r.checkpoint)
    }

    async fn entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> std::result::Result<cairn_protocol::api::LogEntriesResponse, cairn_onchain::SourceError>
    {
        let path = format!(
            "{}?start={start}&end={end}",
            cairn_protocol::api::PATH_LOG_ENTRIES
        );
        self.log_get(&path).await
    }

    async fn inclusion_proof(
        &mut self,
        index: u64,
        size: u64,
    ) -> std::result::Result<cairn_protocol::api::InclusionProofResponse, cairn_onchain::SourceError>
    {
        let path = format!(
            "{}?index={index}&size={size}",
            cairn_protocol::api::PATH_LOG_INCLUSION
        );
        self.log_get(&path).await
    }

    async fn consistency_proof(
        &mut self,
        first: u64,
        second: u64,
    ) -> std::result::Result<
        cairn_protocol::api::ConsistencyProofResponse,
        cairn_onchain::SourceError,
    > {
        let path = format!(
            "{}?first={first}&second={second}",
            cairn_protocol::api::PATH_LOG_CONSISTENCY
        );
        self.log_get(&path).await
    }
}
