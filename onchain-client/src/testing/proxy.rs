//! [`RpcProxy`]: a JSON-RPC proxy in front of a real node (anvil) that forwards honestly
//! or lies, switchable while a test runs. Two proxies over one anvil are two agreeing
//! endpoints; turning one into a liar is the attack a quorum must catch.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use alloy::sol_types::SolCall;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use url::Url;

use crate::bindings::KmsAuth;

/// Largest request or response body the proxy handles.
pub const MAX_PROXY_BODY: usize = 16 * 1024 * 1024;

/// What the proxy does with the calls it forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Forward requests and answers unchanged.
    Forward,
    /// Accept requests and never answer (a stuck endpoint; the connection stays open).
    Stall,
    /// Down: new connections are closed as soon as they are accepted, and a request on
    /// an open connection gets its connection closed without an answer (a crashed or
    /// unreachable node, seen from the client: the request fails at once).
    Down,
    /// Answer every request with HTTP 503.
    Fail,
    /// Flip the verdict of every `isAppAllowed` / `isKmsAllowed` answer (allow ↔ deny,
    /// the reason string kept).
    FlipVerdicts,
    /// Replace the hash of every block header answered (`eth_getBlockBy*`).
    ChangeBlockHashes,
    /// Answer as if the chain had stopped at this block: `eth_blockNumber` says it,
    /// `latest` means it (a stuck or lagging node).
    FreezeHead(u64),
}

/// A running proxy on `127.0.0.1` (plain HTTP, or HTTPS as `localhost` with its own
/// test CA). Stops accepting when dropped.
pub struct RpcProxy {
    url: Url,
    behaviour: Arc<Mutex<Behaviour>>,
    requests: Arc<AtomicU64>,
    root: Option<CertificateDer<'static>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for RpcProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcProxy")
            .field("url", &self.url.as_str())
            .field("behaviour", &self.behaviour())
            .finish_non_exhaustive()
    }
}

impl Drop for RpcProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    upstream: Url,
    client: reqwest::Client,
    behaviour: Arc<Mutex<Behaviour>>,
    requests: Arc<AtomicU64>,
}

impl RpcProxy {
    /// A plain-HTTP proxy to `upstream` (`http://127.0.0.1:<port>/`), forwarding.
    ///
    /// # Panics
    ///
    /// When it cannot bind or build its HTTP client.
    pub async fn start(upstream: Url) -> RpcProxy {
        Self::spawn(upstream, None).await
    }

    /// An HTTPS proxy to `upstream` (`https://localhost:<port>/`) whose certificate is
    /// issued by a fresh test CA ([`RpcProxy::root_cert`]), forwarding.
    ///
    /// # Panics
    ///
    /// When it cannot bind, make its certificates or build its TLS config.
    pub async fn start_tls(upstream: Url) -> RpcProxy {
        let (root, config) = test_tls();
        Self::spawn(upstream, Some((root, config))).await
    }

    async fn spawn(
        upstream: Url,
        tls: Option<(CertificateDer<'static>, rustls::ServerConfig)>,
    ) -> RpcProxy {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind the RPC proxy: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("RPC proxy address: {e}"));
        let behaviour = Arc::new(Mutex::new(Behaviour::Forward));
        let requests = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(Shared {
            upstream,
            client: reqwest::Client::builder()
                .build()
                .unwrap_or_else(|e| panic!("RPC proxy HTTP client: {e}")),
            behaviour: Arc::clone(&behaviour),
            requests: Arc::clone(&requests),
        });
        let (url, root, acceptor) = match tls {
            Some((root, config)) => (
                format!("https://localhost:{}/", addr.port()),
                Some(root),
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
            ),
            None => (format!("http://{addr}/"), None, None),
        };
        let url = url
            .parse()
            .unwrap_or_else(|e| panic!("RPC proxy URL {url}: {e}"));
        let task = tokio::spawn(accept_loop(listener, shared, acceptor));
        RpcProxy {
            url,
            behaviour,
            requests,
            root,
            task,
        }
    }

    /// The proxy's URL.
    pub fn url(&self) -> Url {
        self.url.clone()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        let port = self.url.port().unwrap_or_default();
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// The test CA that issued the HTTPS proxy's certificate (`None` for plain HTTP).
    pub fn root_cert(&self) -> Option<CertificateDer<'static>> {
        self.root.clone()
    }

    /// Changes what the proxy does from the next request on.
    pub fn set(&self, behaviour: Behaviour) {
        *self
            .behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = behaviour;
    }

    /// What the proxy does now.
    pub fn behaviour(&self) -> Behaviour {
        *self
            .behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// HTTP requests received so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        if shared.behaviour() == Behaviour::Down {
            drop(stream);
            continue;
        }
        let shared = Arc::clone(&shared);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { handle(&shared, req).await.ok_or(ProxyDown) }
            });
            let http = hyper::server::conn::http1::Builder::new();
            match acceptor {
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = http.serve_connection(TokioIo::new(tls), service).await;
                    }
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
            }
        });
    }
}

fn respond(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The error a handler returns to make hyper close the connection without an answer.
#[derive(Debug)]
struct ProxyDown;

impl std::fmt::Display for ProxyDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the proxy is down")
    }
}

impl std::error::Error for ProxyDown {}

impl Shared {
    fn behaviour(&self) -> Behaviour {
        *self
            .behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The answer to one request; `None` closes the connection without one ([`Behaviour::Down`]).
async fn handle(shared: &Shared, req: Request<Incoming>) -> Option<Response<Full<Bytes>>> {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    if shared.behaviour() == Behaviour::Down {
        return None;
    }
    Some(answer(shared, req).await)
}

async fn answer(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let behaviour = shared.behaviour();
    match behaviour {
        Behaviour::Stall => std::future::pending::<()>().await,
        Behaviour::Fail => return respond(StatusCode::SERVICE_UNAVAILABLE, Vec::new()),
        _ => {}
    }
    let Ok(body) = Limited::new(req.into_body(), MAX_PROXY_BODY)
        .collect()
        .await
    else {
        return respond(StatusCode::PAYLOAD_TOO_LARGE, Vec::new());
    };
    let Ok(mut request) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
        return respond(StatusCode::BAD_REQUEST, Vec::new());
    };
    let calls = calls_by_id(&request);
    if let Behaviour::FreezeHead(n) = behaviour {
        for_each_call(&mut request, |call| pin_latest(call, n));
    }
    let forwarded = shared
        .client
        .post(shared.upstream.clone())
        .json(&request)
        .send()
        .await;
    let upstream = match forwarded {
        Ok(r) => r,
        Err(_) => return respond(StatusCode::BAD_GATEWAY, Vec::new()),
    };
    let status = upstream.status();
    let Ok(bytes) = upstream.bytes().await else {
        return respond(StatusCode::BAD_GATEWAY, Vec::new());
    };
    if bytes.len() > MAX_PROXY_BODY {
        return respond(StatusCode::BAD_GATEWAY, Vec::new());
    }
    let Ok(mut answer) = serde_json::from_slice::<Value>(&bytes) else {
        return respond(StatusCode::BAD_GATEWAY, bytes.to_vec());
    };
    for_each_call(&mut answer, |resp| {
        let Some(call) = resp.get("id").and_then(|id| calls.get(&id.to_string())) else {
            return;
        };
        lie(behaviour, call, resp);
    });
    let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    respond(status, serde_json::to_vec(&answer).unwrap_or_default())
}

/// Applies `f` to the call (or each call of a batch).
fn for_each_call(v: &mut Value, mut f: impl FnMut(&mut Value)) {
    match v {
        Value::Array(calls) => calls.iter_mut().for_each(f),
        call => f(call),
    }
}

/// The calls of a request by their id (as JSON text).
fn calls_by_id(v: &Value) -> HashMap<String, Value> {
    let calls: Vec<&Value> = match v {
        Value::Array(calls) => calls.iter().collect(),
        call => vec![call],
    };
    calls
        .into_iter()
        .filter_map(|c| Some((c.get("id")?.to_string(), c.clone())))
        .collect()
}

fn method(call: &Value) -> &str {
    call.get("method")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `FreezeHead`: every `latest` block tag in the request means block `n`.
fn pin_latest(call: &mut Value, n: u64) {
    if let Some(Value::Array(params)) = call.get_mut("params") {
        for p in params.iter_mut() {
            if p.as_str() == Some("latest") {
                *p = Value::String(format!("{n:#x}"));
            }
        }
    }
}

/// Rewrites one answer `resp` to `call` as `behaviour` lies.
fn lie(behaviour: Behaviour, call: &Value, resp: &mut Value) {
    let Some(result) = resp.get_mut("result") else {
        return;
    };
    match (behaviour, method(call)) {
        (Behaviour::FreezeHead(n), "eth_blockNumber") => {
            *result = Value::String(format!("{n:#x}"));
        }
        (Behaviour::ChangeBlockHashes, "eth_getBlockByNumber" | "eth_getBlockByHash") => {
            if let Some(Value::String(hash)) = result.get_mut("hash") {
                *hash = flip_last_hex_digit(hash);
            }
        }
        (Behaviour::FlipVerdicts, "eth_call") if is_verdict_call(call) => {
            if let Value::String(data) = result {
                *data = flip_first_word(data);
            }
        }
        _ => {}
    }
}

fn is_verdict_call(call: &Value) -> bool {
    let data = call
        .get("params")
        .and_then(|p| p.get(0))
        .and_then(|tx| tx.get("input").or_else(|| tx.get("data")))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let selector = data.strip_prefix("0x").unwrap_or(data).get(..8);
    let app = hex::encode(KmsAuth::isAppAllowedCall::SELECTOR);
    let kms = hex::encode(KmsAuth::isKmsAllowedCall::SELECTOR);
    selector.is_some_and(|s| s.eq_ignore_ascii_case(&app) || s.eq_ignore_ascii_case(&kms))
}

/// `(bool, string)` ABI answer with the bool flipped (the last byte of the first word).
fn flip_first_word(data: &str) -> String {
    let Ok(mut bytes) = hex::decode(data.strip_prefix("0x").unwrap_or(data)) else {
        return data.to_owned();
    };
    if let Some(b) = bytes.get_mut(31) {
        *b ^= 1;
    }
    format!("0x{}", hex::encode(bytes))
}

fn flip_last_hex_digit(hash: &str) -> String {
    let mut out = hash.to_owned();
    if let Some(last) = out.pop() {
        out.push(if last == '0' { '1' } else { '0' });
    }
    out
}

/// A fresh test CA and a server config for `localhost` / `127.0.0.1` issued by it.
fn test_tls() -> (CertificateDer<'static>, rustls::ServerConfig) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap_or_else(|e| panic!("test CA key: {e}"));
    let mut ca = CertificateParams::new(Vec::<String>::new())
        .unwrap_or_else(|e| panic!("test CA params: {e}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Cairn test RPC CA");
    let ca_cert = ca
        .self_signed(&ca_key)
        .unwrap_or_else(|e| panic!("test CA: {e}"));
    let issuer = Issuer::new(ca, &ca_key);
    let leaf_key = KeyPair::generate().unwrap_or_else(|e| panic!("test leaf key: {e}"));
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .and_then(|p| p.signed_by(&leaf_key, &issuer))
        .unwrap_or_else(|e| panic!("test leaf: {e}"));
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|b| {
        b.with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
    })
    .unwrap_or_else(|e| panic!("test TLS config: {e}"));
    (ca_cert.der().clone(), config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_flip_and_hashes_change() {
        let allow = format!("0x{}{}", "00".repeat(31), "01");
        assert_eq!(flip_first_word(&allow), format!("0x{}", "00".repeat(32)));
        assert_eq!(flip_last_hex_digit("0xab0"), "0xab1");
        assert_eq!(flip_last_hex_digit("0xab7"), "0xab0");
        let call = serde_json::json!({"method":"eth_call","params":[{"input": format!("0x{}00", hex::encode(KmsAuth::isAppAllowedCall::SELECTOR))}, "0x1"]});
        assert!(is_verdict_call(&call));
        let other =
            serde_json::json!({"method":"eth_call","params":[{"input":"0xdeadbeef"}, "0x1"]});
        assert!(!is_verdict_call(&other));
    }
}
