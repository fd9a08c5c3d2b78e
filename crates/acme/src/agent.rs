//! The gateway's own guest agent (dstack's guest-agent API, `docs/guest-agent.md`): the
//! app key for the ACME account (`GetKey`), quotes over certificate keys (`GetQuote`),
//! and the gateway's KMS-issued TLS identity (`GetTlsKey`, `Info`).
//! [`Attestor`] is what issuance needs; [`AgentClient`] is its implementation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use cairn_protocol::agent::{
    decode_hex, GetKeyRequest, GetKeyResponse, GetQuoteResponse, GetTlsKeyRequest,
    GetTlsKeyResponse, InfoResponse, ReportDataRequest, METHOD_GET_KEY, METHOD_GET_QUOTE,
    METHOD_GET_TLS_KEY, METHOD_INFO,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::account::AccountKey;
use crate::consts::{
    ACCOUNT_KEY_PATH, ACCOUNT_KEY_PURPOSE, DEFAULT_REQUEST_TIMEOUT, MAX_AGENT_RESPONSE_LEN,
};
use crate::dns::BoxFuture;
use crate::error::{Error, Result};

/// Something that quotes 64 bytes of report data with the gateway's TEE evidence.
pub trait Attestor: Send + Sync {
    /// A quote (and event log) over `report_data`, as the guest agent's `GetQuote` returns.
    fn quote<'a>(&'a self, report_data: [u8; 64]) -> BoxFuture<'a, Result<GetQuoteResponse>>;
}

/// Where the agent listens.
#[derive(Debug, Clone)]
pub enum AgentEndpoint {
    /// A unix socket (the CVM's `/var/run/dstack.sock` or cairn-guest's `--agent-socket`).
    Unix(PathBuf),
    /// A TCP address (development).
    Tcp(SocketAddr),
}

/// A client of the guest agent; every call bounded by its timeout and
/// [`MAX_AGENT_RESPONSE_LEN`].
#[derive(Debug, Clone)]
pub struct AgentClient {
    endpoint: AgentEndpoint,
    timeout: Duration,
}

impl AgentClient {
    /// A client for `endpoint` with [`DEFAULT_REQUEST_TIMEOUT`].
    pub fn new(endpoint: AgentEndpoint) -> Self {
        AgentClient {
            endpoint,
            timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// Change the per-call timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `GetKey(path, purpose)`: the 32-byte key the agent derives from the app key.
    pub async fn get_key(&self, path: &str, purpose: &str) -> Result<Zeroizing<[u8; 32]>> {
        let req = GetKeyRequest {
            path: path.to_owned(),
            purpose: purpose.to_owned(),
            algorithm: "secp256k1".to_owned(),
            key_generation: None,
        };
        let resp: GetKeyResponse = self.call(METHOD_GET_KEY, &req).await?;
        let bad = |reason: &str| Error::Agent {
            method: METHOD_GET_KEY,
            reason: reason.to_owned(),
        };
        let bytes =
            Zeroizing::new(decode_hex(&resp.key, 32).map_err(|_| bad("malformed key hex"))?);
        let mut key = Zeroizing::new([0u8; 32]);
        if bytes.len() != 32 {
            return Err(bad("key is not 32 bytes"));
        }
        key.copy_from_slice(&bytes);
        Ok(key)
    }

    /// The ACME account key of this gateway app ([`crate::AccountKey::derive`] over
    /// `GetKey("cairn/gateway/acme-account")`).
    pub async fn acme_account_key(&self) -> Result<AccountKey> {
        let k = self.get_key(ACCOUNT_KEY_PATH, ACCOUNT_KEY_PURPOSE).await?;
        AccountKey::derive(&k)
    }

    /// `GetQuote(report_data)`.
    pub async fn get_quote(&self, report_data: &[u8; 64]) -> Result<GetQuoteResponse> {
        let req = ReportDataRequest {
            report_data: hex::encode(report_data),
        };
        let resp: GetQuoteResponse = self.call(METHOD_GET_QUOTE, &req).await?;
        // The agent must have quoted exactly what was asked.
        if resp.report_data != hex::encode(report_data) {
            return Err(Error::Agent {
                method: METHOD_GET_QUOTE,
                reason: "the agent quoted other report data".to_owned(),
            });
        }
        Ok(resp)
    }

    /// `GetTlsKey(request)`: a fresh key and its KMS-issued certificate chain (leaf
    /// first). The caller checks the chain against the root it trusts.
    pub async fn get_tls_key(&self, request: &GetTlsKeyRequest) -> Result<GetTlsKeyResponse> {
        self.call(METHOD_GET_TLS_KEY, request).await
    }

    /// `Info`: what the CVM measured (app id, instance id, compose hash, …), as the agent
    /// reports it.
    pub async fn info(&self) -> Result<InfoResponse> {
        self.call(METHOD_INFO, &serde_json::json!({})).await
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: &'static str,
        req: &Req,
    ) -> Result<Resp> {
        match tokio::time::timeout(self.timeout, self.call_inner(method, req)).await {
            Ok(r) => r,
            Err(_) => Err(Error::AgentTimeout {
                method,
                secs: self.timeout.as_secs(),
            }),
        }
    }

    async fn call_inner<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: &'static str,
        req: &Req,
    ) -> Result<Resp> {
        let fail = |reason: String| Error::Agent { method, reason };
        let body = serde_json::to_vec(req).map_err(|e| fail(format!("encoding: {e}")))?;
        let request = http::Request::post(format!("/{method}"))
            .header(http::header::HOST, "localhost")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail(format!("request: {e}")))?;
        let response = match &self.endpoint {
            AgentEndpoint::Unix(path) => {
                let io = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| fail(format!("connect {}: {e}", path.display())))?;
                send(io, request).await
            }
            AgentEndpoint::Tcp(addr) => {
                let io = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| fail(format!("connect {addr}: {e}")))?;
                send(io, request).await
            }
        }
        .map_err(fail)?;
        let (parts, bytes) = response;
        if !parts.status.is_success() {
            let msg = serde_json::from_slice::<cairn_protocol::agent::AgentError>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).chars().take(200).collect());
            return Err(fail(format!("HTTP {}: {msg}", parts.status.as_u16())));
        }
        serde_json::from_slice(&bytes).map_err(|e| fail(format!("malformed response: {e}")))
    }
}

async fn send<IO>(
    io: IO,
    request: http::Request<Full<Bytes>>,
) -> std::result::Result<(http::response::Parts, Bytes), String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let (parts, body) = response.into_parts();
    let bytes = Limited::new(body, MAX_AGENT_RESPONSE_LEN)
        .collect()
        .await
        .map_err(|e| format!("response body: {e}"))?
        .to_bytes();
    driver.abort();
    Ok((parts, bytes))
}

impl Attestor for AgentClient {
    fn quote<'a>(&'a self, report_data: [u8; 64]) -> BoxFuture<'a, Result<GetQuoteResponse>> {
        Box::pin(async move { self.get_quote(&report_data).await })
    }
}
