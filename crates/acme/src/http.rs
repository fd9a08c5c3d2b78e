//! HTTP for instant-acme and the DNS providers: one reqwest client (rustls with ring, the
//! stack the rest of Cairn uses), a timeout on every request, bounded response bodies.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

/// Why a bounded read failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The body is larger than the bound.
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    /// The transport failed while reading.
    #[error("reading the response")]
    Transport(#[source] reqwest::Error),
}

/// Read a response body of at most `max` bytes.
pub(crate) async fn read_bounded(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, ReadError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(ReadError::TooLarge(max));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Transport)? {
        if out.len() + chunk.len() > max {
            return Err(ReadError::TooLarge(max));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Install ring as the process-wide rustls provider if none is installed (reqwest is
/// built without one).
pub(crate) fn ensure_crypto_provider() {
    // Err only means a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Build a reqwest client: `roots` replaces the platform's trust store when given.
pub(crate) fn client(
    timeout: Duration,
    roots: Option<&[rustls_pki_types::CertificateDer<'static>]>,
) -> Result<reqwest::Client, reqwest::Error> {
    ensure_crypto_provider();
    let mut b = reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(roots) = roots {
        let certs = roots
            .iter()
            .map(|c| reqwest::Certificate::from_der(c))
            .collect::<Result<Vec<_>, _>>()?;
        b = b.tls_certs_only(certs);
    }
    b.build()
}

/// instant-acme's HTTP client: reqwest, bodies bounded by `max_body`.
pub(crate) struct AcmeHttp {
    client: reqwest::Client,
    max_body: usize,
}

impl AcmeHttp {
    pub(crate) fn new(client: reqwest::Client, max_body: usize) -> Self {
        AcmeHttp { client, max_body }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

async fn send(
    client: reqwest::Client,
    max_body: usize,
    req: http::Request<BodyWrapper<Bytes>>,
) -> Result<BytesResponse, BoxError> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let url = reqwest::Url::parse(&parts.uri.to_string())?;
    let resp = client
        .request(parts.method, url)
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut builder = http::Response::builder().status(resp.status());
    if let Some(h) = builder.headers_mut() {
        *h = resp.headers().clone();
    }
    let bytes = read_bounded(resp, max_body).await?;
    let rsp = builder.body(())?;
    let (parts, ()) = rsp.into_parts();
    Ok(BytesResponse {
        parts,
        body: Box::new(Bytes::from(bytes)),
    })
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.client.clone();
        let max_body = self.max_body;
        Box::pin(async move {
            send(client, max_body, req)
                .await
                .map_err(instant_acme::Error::Other)
        })
    }
}
