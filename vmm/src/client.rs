//! [`VmmClient`]: the one client of the VMM API (the `cairn vm` CLI and the tests use it).
//!
//! HTTP/1.1 over a unix socket or TCP, one connection per request, every request under a
//! timeout, response bodies bounded; API errors come back typed with their code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cairn_protocol::api::ErrorBody;
use cairn_protocol::vmm::{
    AppList, CreateCvmRequest, CvmInfo, CvmList, ImageList, PreflightReport, UpgradeRequest,
    PATH_APPS, PATH_CVMS, PATH_IMAGES,
};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Default per-request timeout (a stop waits for the guest's grace period).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest response body read.
pub const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Where the VMM listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket.
    Unix(PathBuf),
    /// TCP.
    Tcp(SocketAddr),
}

impl Endpoint {
    /// Parse `unix:/path`, an absolute path, `http://HOST:PORT` or `HOST:PORT`.
    pub fn parse(s: &str) -> Result<Self, ClientError> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(Endpoint::Unix(PathBuf::from(p)));
        }
        if s.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(s)));
        }
        let hostport = s.strip_prefix("http://").unwrap_or(s).trim_end_matches('/');
        hostport
            .parse()
            .map(Endpoint::Tcp)
            .map_err(|_| ClientError::Endpoint(s.chars().take(128).collect()))
    }
}

/// Why a VMM request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The endpoint string is not understood.
    #[error("not a VMM endpoint: {0:?} (expected unix:/path or http://HOST:PORT)")]
    Endpoint(String),
    /// Could not connect.
    #[error("cannot connect to the VMM at {endpoint}: {source}")]
    Connect {
        /// Where.
        endpoint: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// HTTP failed (handshake, send, body).
    #[error("HTTP: {0}")]
    Http(String),
    /// No answer in time.
    #[error("the VMM did not answer within {0:?}")]
    Timeout(Duration),
    /// The VMM answered with an error.
    #[error("{status}: {} ({})", body.error.message, body.error.code)]
    Api {
        /// The status.
        status: StatusCode,
        /// The error body.
        body: ErrorBody,
    },
    /// The answer is not what the API documents.
    #[error("unexpected answer ({status}): {reason}")]
    Decode {
        /// The status.
        status: StatusCode,
        /// What is wrong.
        reason: String,
    },
}

impl ClientError {
    /// The API error code, when the VMM answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { body, .. } => Some(&body.error.code),
            _ => None,
        }
    }
}

/// A client of one VMM.
#[derive(Debug, Clone)]
pub struct VmmClient {
    endpoint: Endpoint,
    token: Option<String>,
    timeout: Duration,
}

/// A response streamed as it arrives (logs with `follow`).
pub struct Streaming {
    body: hyper::body::Incoming,
}

impl std::fmt::Debug for Streaming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streaming").finish_non_exhaustive()
    }
}

impl Streaming {
    /// The next chunk, `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(ClientError::Http(e.to_string())),
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

impl VmmClient {
    /// A client of `endpoint`, sending `token` as a bearer token when given.
    pub fn new(endpoint: Endpoint, token: Option<String>) -> Self {
        VmmClient {
            endpoint,
            token,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Use `timeout` per request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let endpoint = match &self.endpoint {
            Endpoint::Unix(p) => format!("unix:{}", p.display()),
            Endpoint::Tcp(a) => format!("http://{a}"),
        };
        let connect_err = |source| ClientError::Connect {
            endpoint: endpoint.clone(),
            source,
        };
        let mut sender = match &self.endpoint {
            Endpoint::Unix(p) => {
                let s = tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(connect_err)?;
                handshake(s).await?
            }
            Endpoint::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a)
                    .await
                    .map_err(connect_err)?;
                handshake(s).await?
            }
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "cairn-vmm");
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(StatusCode, T), ClientError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let work = async {
            let resp = self.send(method, path, body).await?;
            let status = resp.status();
            let bytes = read_body(resp.into_body()).await?;
            if !status.is_success() {
                return Err(api_error(status, &bytes));
            }
            let v = if bytes.is_empty() {
                serde_json::from_slice(b"null")
            } else {
                serde_json::from_slice(&bytes)
            };
            v.map(|v| (status, v)).map_err(|e| ClientError::Decode {
                status,
                reason: e.to_string(),
            })
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }

    /// `GET /v1/cvms`.
    pub async fn list(&self) -> Result<CvmList, ClientError> {
        Ok(self.call(Method::GET, PATH_CVMS, None::<&()>).await?.1)
    }

    /// `POST /v1/cvms`.
    pub async fn create(&self, req: &CreateCvmRequest) -> Result<CvmInfo, ClientError> {
        Ok(self.call(Method::POST, PATH_CVMS, Some(req)).await?.1)
    }

    /// `method` on the CVM `id`'s path + `action`, answered with its info.
    async fn on_cvm(&self, method: Method, id: &str, action: &str) -> Result<CvmInfo, ClientError> {
        Ok(self
            .call(method, &cvm_path(id, action), None::<&()>)
            .await?
            .1)
    }

    /// `GET /v1/cvms/{id}`.
    pub async fn get(&self, id: &str) -> Result<CvmInfo, ClientError> {
        self.on_cvm(Method::GET, id, "").await
    }

    /// `POST /v1/cvms/{id}/start`.
    pub async fn start(&self, id: &str) -> Result<CvmInfo, ClientError> {
        self.on_cvm(Method::POST, id, "/start").await
    }

    /// `POST /v1/cvms/{id}/stop`.
    pub async fn stop(&self, id: &str) -> Result<CvmInfo, ClientError> {
        self.on_cvm(Method::POST, id, "/stop").await
    }

    /// `POST /v1/cvms/{id}/restart`.
    pub async fn restart(&self, id: &str) -> Result<CvmInfo, ClientError> {
        self.on_cvm(Method::POST, id, "/restart").await
    }

    /// `DELETE /v1/cvms/{id}`.
    pub async fn remove(&self, id: &str) -> Result<(), ClientError> {
        let _: (StatusCode, serde_json::Value) = self
            .call(Method::DELETE, &cvm_path(id, ""), None::<&()>)
            .await?;
        Ok(())
    }

    /// `POST /v1/cvms/{id}/upgrade`: `(true, info)` when it waits for approval (202).
    pub async fn upgrade(
        &self,
        id: &str,
        req: &UpgradeRequest,
    ) -> Result<(bool, CvmInfo), ClientError> {
        let (status, info) = self
            .call(Method::POST, &cvm_path(id, "/upgrade"), Some(req))
            .await?;
        Ok((status == StatusCode::ACCEPTED, info))
    }

    /// `GET /v1/images`.
    pub async fn images(&self) -> Result<ImageList, ClientError> {
        Ok(self.call(Method::GET, PATH_IMAGES, None::<&()>).await?.1)
    }

    /// `GET /v1/apps`.
    pub async fn apps(&self) -> Result<AppList, ClientError> {
        Ok(self.call(Method::GET, PATH_APPS, None::<&()>).await?.1)
    }

    /// `GET /v1/apps/{app_id}?compose_hash=…&image=…`.
    pub async fn app(
        &self,
        app_id: [u8; 20],
        compose_hash: [u8; 32],
        image: &str,
    ) -> Result<PreflightReport, ClientError> {
        let path = format!(
            "{PATH_APPS}/0x{}?compose_hash=0x{}&image={}",
            hex::encode(app_id),
            hex::encode(compose_hash),
            encode_query(image)
        );
        Ok(self.call(Method::GET, &path, None::<&()>).await?.1)
    }

    /// `GET /v1/cvms/{id}/logs?tail=N` (bounded).
    pub async fn logs(&self, id: &str, tail: u32) -> Result<Vec<u8>, ClientError> {
        let path = cvm_path(id, &format!("/logs?tail={tail}"));
        let work = async {
            let resp = self.send(Method::GET, &path, None).await?;
            let status = resp.status();
            let bytes = read_body(resp.into_body()).await?;
            if !status.is_success() {
                return Err(api_error(status, &bytes));
            }
            Ok(bytes.to_vec())
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }

    /// `GET /v1/cvms/{id}/logs?tail=N&follow=true`: the stream ends when the CVM stops.
    /// Only the response headers are under the timeout.
    pub async fn follow_logs(&self, id: &str, tail: u32) -> Result<Streaming, ClientError> {
        let path = cvm_path(id, &format!("/logs?tail={tail}&follow=true"));
        let resp = tokio::time::timeout(self.timeout, self.send(Method::GET, &path, None))
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))??;
        let status = resp.status();
        if !status.is_success() {
            let bytes = read_body(resp.into_body()).await?;
            return Err(api_error(status, &bytes));
        }
        Ok(Streaming {
            body: resp.into_body(),
        })
    }

    /// Any request, the raw answer (status, body) — e.g. `GET /openapi.json`, or a
    /// deliberately malformed body in a test.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let work = async {
            let resp = self.send(method, path, body).await?;
            let status = resp.status();
            Ok((status, read_body(resp.into_body()).await?.to_vec()))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }
}

async fn handshake<S>(
    io: S,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "VMM connection ended");
        }
    });
    Ok(sender)
}

async fn read_body(body: hyper::body::Incoming) -> Result<Bytes, ClientError> {
    Limited::new(body, MAX_RESPONSE)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ClientError::Http(e.to_string()))
}

fn api_error(status: StatusCode, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => ClientError::Api { status, body },
        Err(_) => ClientError::Decode {
            status,
            reason: String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned(),
        },
    }
}

fn cvm_path(id: &str, suffix: &str) -> String {
    format!("{PATH_CVMS}/{}{suffix}", encode_path(id))
}

fn encode_path(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn encode_query(s: &str) -> String {
    encode_path(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("unix:/run/vmm.sock").unwrap(),
            Endpoint::Unix("/run/vmm.sock".into())
        );
        assert_eq!(
            Endpoint::parse("/run/vmm.sock").unwrap(),
            Endpoint::Unix("/run/vmm.sock".into())
        );
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:9080/").unwrap(),
            Endpoint::Tcp("127.0.0.1:9080".parse().unwrap())
        );
        assert!(matches!(
            Endpoint::parse("ftp://x").unwrap_err(),
            ClientError::Endpoint(_)
        ));
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(cvm_path("demo-1", "/stop"), "/v1/cvms/demo-1/stop");
        assert_eq!(cvm_path("../x", ""), "/v1/cvms/..%2Fx");
        assert_eq!(encode_query("cairn-os:1.0"), "cairn-os%3A1.0");
    }
}
