//! [`KmsConnection`]: one verified HTTP/1.1 connection to a KMS node, and the calls of
//! the KMS API on it.

use std::sync::Arc;
use std::time::Duration;

use cairn_attestation::{verify_app_chain, CertRole, RootCa, VerifiedQuote};
use cairn_protocol::api::{
    AppKeyRequest, AppKeyResponse, EnvPubkeyResponse, ErrorBody, MetaResponse, OnboardRequest,
    OnboardResponse, SignCertRequest, SignCertResponse, PATH_APP_KEY, PATH_META, PATH_ONBOARD,
    PATH_SIGN_CERT,
};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;

use crate::client::MAX_RESPONSE_LEN;
use crate::error::{Error, Result, Stage};

/// Longest message kept from an error answer that is not the API's error shape.
const MAX_UNPARSED_MESSAGE: usize = 256;

/// Where a connection goes: parsed from `https://host[:port][/prefix]`.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Host name or IP address (IPv6 without brackets).
    pub(crate) host: String,
    /// Port (443 by default).
    pub(crate) port: u16,
    /// The `Host` header value.
    authority: String,
    /// Path prefix, without a trailing `/`.
    prefix: String,
}

impl Target {
    pub(crate) fn parse(base_url: &str) -> Result<Self> {
        let bad = |reason| Error::BadUrl {
            url: base_url.to_owned(),
            reason,
        };
        let url = url::Url::parse(base_url).map_err(|source| Error::UrlParse {
            url: base_url.to_owned(),
            source,
        })?;
        if url.scheme() != "https" {
            return Err(bad("the KMS is only reached over RA-TLS (https)"));
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(bad("a KMS URL has no query, fragment or user"));
        }
        let host_str = url.host_str().ok_or_else(|| bad("no host"))?;
        let port = url.port().unwrap_or(443);
        Ok(Target {
            host: host_str
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            authority: format!("{host_str}:{port}"),
            prefix: url.path().trim_end_matches('/').to_owned(),
        })
    }

    /// `host:port`, as errors name it.
    pub(crate) fn addr(&self) -> String {
        self.authority.clone()
    }
}

/// The KMS at the other end of a connection: its verified evidence and its TLS
/// certificate (whose key it proved it holds).
#[derive(Debug, Clone)]
pub struct KmsPeer {
    pub(crate) identity: VerifiedQuote,
    pub(crate) cert_der: Vec<u8>,
}

impl KmsPeer {
    /// What the KMS runs: its verified quote and identities.
    pub fn identity(&self) -> &VerifiedQuote {
        &self.identity
    }

    /// Its TLS end-entity certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }
}

/// What `app-key` released, with who released it.
#[derive(Debug)]
pub struct AppKeyRelease {
    /// The keys and receipt (`Debug` redacts the secrets).
    pub keys: AppKeyResponse,
    /// The KMS's verified evidence.
    pub kms: VerifiedQuote,
    /// The KMS root CA that issued the KMS's TLS certificate (`keys.root_ca_cert`,
    /// parsed and checked).
    pub root: RootCa,
}

type Conn = Connection<TokioIo<TlsStream<TcpStream>>, Full<Bytes>>;

/// One HTTP/1.1 connection to a KMS node whose evidence verified (see
/// [`crate::KmsClient::connect`]). Requests on it run one at a time, each under the
/// request timeout, each response bounded by [`MAX_RESPONSE_LEN`]. Dropping it closes
/// the connection.
pub struct KmsConnection {
    target: Target,
    sender: SendRequest<Full<Bytes>>,
    conn: JoinHandle<()>,
    peer: KmsPeer,
    client_spki: Option<Vec<u8>>,
    request_timeout: Duration,
    now: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl std::fmt::Debug for KmsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsConnection")
            .field("kms", &self.target.authority)
            .field("kms_app_id", &self.peer.identity.app_id())
            .field("mutual", &self.client_spki.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for KmsConnection {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl KmsConnection {
    pub(crate) fn new(
        target: Target,
        sender: SendRequest<Full<Bytes>>,
        conn: Conn,
        peer: KmsPeer,
        client_spki: Option<Vec<u8>>,
        request_timeout: Duration,
        now: Arc<dyn Fn() -> u64 + Send + Sync>,
    ) -> Self {
        let kms = target.addr();
        let conn = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%kms, error = %e, "KMS connection ended");
            }
        });
        KmsConnection {
            target,
            sender,
            conn,
            peer,
            client_spki,
            request_timeout,
            now,
        }
    }

    /// The KMS at the other end.
    pub fn peer(&self) -> &KmsPeer {
        &self.peer
    }

    /// `host:port` of the KMS.
    pub fn addr(&self) -> String {
        self.target.addr()
    }

    /// Send one request (`path` below the URL's prefix; a JSON `body` when given) and
    /// read the whole response: its status and body, whatever the status.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes)> {
        let timeout = self.request_timeout;
        tokio::time::timeout(timeout, self.request_inner(method, path, body))
            .await
            .map_err(|_| Error::Timeout {
                addr: self.target.addr(),
                stage: Stage::Request,
                after: timeout,
            })?
    }

    async fn request_inner(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes)> {
        let addr = self.target.addr();
        let full_path = format!("{}{path}", self.target.prefix);
        let mut req = Request::builder()
            .method(method)
            .uri(&full_path)
            .header(hyper::header::HOST, &self.target.authority);
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Error::Request {
                path: path.to_owned(),
                source: Box::new(e),
            })?;
        let http = |source| Error::Http {
            addr: addr.clone(),
            source,
        };
        self.sender.ready().await.map_err(http)?;
        let resp = self.sender.send_request(req).await.map_err(http)?;
        let status = resp.status();
        let bytes = read_bounded(resp.into_body(), &addr).await?;
        Ok((status, bytes))
    }

    /// Send `body` as JSON (or nothing) and decode a JSON answer; an error status is
    /// [`Error::Status`] with the API's code and message.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Req>,
    ) -> Result<Resp> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| Error::Request {
                path: path.to_owned(),
                source: Box::new(e),
            })?;
        let (status, bytes) = self.request(method, path, body).await?;
        let addr = self.target.addr();
        if !status.is_success() {
            let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => (b.error.code, b.error.message),
                Err(_) => (
                    "unparsed".to_owned(),
                    String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_UNPARSED_MESSAGE)])
                        .into_owned(),
                ),
            };
            return Err(Error::Status {
                addr,
                status: status.as_u16(),
                code,
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
            addr,
            path: path.to_owned(),
            source,
        })
    }

    /// `GET path`, decoded.
    pub async fn get<Resp: DeserializeOwned>(&mut self, path: &str) -> Result<Resp> {
        self.call(Method::GET, path, None::<&()>).await
    }

    /// `GET /v1/meta`: the node's root keys, chain, contracts, node address.
    pub async fn meta(&mut self) -> Result<MetaResponse> {
        self.get(PATH_META).await
    }

    /// `GET /v1/env-pubkey/0x<app_id>`: the app's env public key with the root-k256
    /// signature over it (verify it with [`EnvPubkeyResponse::verify`] against the root key
    /// registered on chain before encrypting to it).
    pub async fn env_pubkey(&mut self, app_id: &[u8; 20]) -> Result<EnvPubkeyResponse> {
        self.get(&format!("/v1/env-pubkey/0x{}", hex::encode(app_id)))
            .await
    }

    /// `POST /v1/app-key` (needs a client certificate). The returned root CA must be a
    /// self-signed P-256 CA that issued this KMS's TLS certificate, both valid now
    /// ([`Error::NotRooted`] otherwise): the root is what a guest pins and measures.
    pub async fn app_key(&mut self) -> Result<AppKeyRelease> {
        self.app_key_with(&AppKeyRequest::default()).await
    }

    /// [`KmsConnection::app_key`] with a request body: `previous_generation` asks for the
    /// previous key generation's keys too (a rotation's transition window). The previous
    /// keys come back as the node sent them; the caller may check their `kms_signature`
    /// against that generation's root key on chain (`KmsAuth.rootKeys`).
    pub async fn app_key_with(&mut self, request: &AppKeyRequest) -> Result<AppKeyRelease> {
        if self.client_spki.is_none() {
            return Err(Error::NoClientCert);
        }
        let keys: AppKeyResponse = self.call(Method::POST, PATH_APP_KEY, Some(request)).await?;
        let not_rooted = |source| Error::NotRooted {
            addr: self.target.addr(),
            source,
        };
        let root = RootCa::from_pem(&keys.root_ca_cert).map_err(not_rooted)?;
        root.verify_issued(&self.peer.cert_der, (self.now)())
            .map_err(not_rooted)?;
        Ok(AppKeyRelease {
            keys,
            kms: self.peer.identity.clone(),
            root,
        })
    }

    /// `POST /v1/sign-cert`: have the app CA sign a CSR (DER, in `request`, with an
    /// optional validity window) for the key of this connection's client certificate.
    /// This KMS's TLS certificate must be issued by `root` ([`Error::NotRooted`]); the
    /// chain must pass [`verify_app_chain`] for `app_id` under `root`
    /// ([`Error::BadChain`]; judged at the later of now and the requested notBefore) and
    /// its leaf must certify the client certificate's key ([`Error::LeafKeyMismatch`]).
    pub async fn sign_cert(
        &mut self,
        request: SignCertRequest,
        root: &RootCa,
        app_id: &[u8; 20],
    ) -> Result<SignCertResponse> {
        let own_spki = self.client_spki.clone().ok_or(Error::NoClientCert)?;
        let addr = self.target.addr();
        let now = (self.now)();
        root.verify_issued(&self.peer.cert_der, now)
            .map_err(|source| Error::NotRooted {
                addr: addr.clone(),
                source,
            })?;
        let resp: SignCertResponse = self
            .call(Method::POST, PATH_SIGN_CERT, Some(&request))
            .await?;
        let bad_chain = |source| Error::BadChain {
            addr: addr.clone(),
            source,
        };
        let chain = resp
            .certificate_chain
            .iter()
            .enumerate()
            .map(|(i, pem)| {
                let role = match i {
                    0 => CertRole::Leaf,
                    1 => CertRole::AppCa,
                    _ => CertRole::Root,
                };
                cairn_attestation::pem_to_der(pem, role)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad_chain)?;
        // A leaf asked to start later is checked as of its start.
        let at = request.not_before.map_or(now, |nb| nb.max(now));
        let verified = verify_app_chain(root, &chain, app_id, at).map_err(bad_chain)?;
        if verified.leaf_spki != own_spki {
            return Err(Error::LeafKeyMismatch { addr });
        }
        Ok(resp)
    }

    /// `POST /v1/onboard` (KMS replication; needs this node's own `kms:rpc` client
    /// certificate): the master secret and the source's receipt. The caller checks the
    /// secret's root keys against the chain before storing it.
    pub async fn onboard(&mut self) -> Result<OnboardResponse> {
        self.onboard_generation(None).await
    }

    /// [`KmsConnection::onboard`] for a given key generation (`None`: the source's
    /// current one): a rotation's new generation, or the previous one during its window.
    pub async fn onboard_generation(&mut self, generation: Option<u64>) -> Result<OnboardResponse> {
        if self.client_spki.is_none() {
            return Err(Error::NoClientCert);
        }
        let request = OnboardRequest {
            key_generation: generation,
        };
        self.call(Method::POST, PATH_ONBOARD, Some(&request)).await
    }
}

/// The whole body, at most [`MAX_RESPONSE_LEN`] bytes.
async fn read_bounded(body: Incoming, addr: &str) -> Result<Bytes> {
    match Limited::new(body, MAX_RESPONSE_LEN).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(Error::ResponseTooLarge {
            addr: addr.to_owned(),
            max: MAX_RESPONSE_LEN,
        }),
        Err(source) => Err(Error::Body {
            addr: addr.to_owned(),
            source,
        }),
    }
}
