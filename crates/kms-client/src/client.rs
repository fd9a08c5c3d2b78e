//! [`KmsClient`]: how a KMS is trusted, and how a connection to it is opened.

use std::sync::Arc;
use std::time::Duration;

use cairn_attestation::{
    peer_end_entity, PccsClient, PossessionServerVerifier, RaTlsCert, RaTlsError, RootCa, Usage,
    Verifier,
};
use cairn_protocol::api::{SignCertRequest, SignCertResponse};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::connection::{AppKeyRelease, KmsConnection, KmsPeer, Target};
use crate::error::{Error, Result, Stage};

/// Default timeout of the TCP connect.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default timeout of the TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default timeout of the KMS's evidence check (a PCCS fetch of its collateral included).
pub const DEFAULT_ATTESTATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Default timeout of one request (sending it and reading the whole response).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body read (the largest KMS answer, a page of log entries, is far
/// below).
pub const MAX_RESPONSE_LEN: usize = 1024 * 1024;

/// The timeout of each stage of an exchange; every network wait is under one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// TLS handshake.
    pub handshake: Duration,
    /// The KMS's evidence check, including a PCCS fetch.
    pub attestation: Duration,
    /// Each request, until its whole response is read.
    pub request: Duration,
}

impl Timeouts {
    /// The same timeout for every stage.
    pub const fn uniform(timeout: Duration) -> Self {
        Timeouts {
            connect: timeout,
            handshake: timeout,
            attestation: timeout,
            request: timeout,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: DEFAULT_CONNECT_TIMEOUT,
            handshake: DEFAULT_HANDSHAKE_TIMEOUT,
            attestation: DEFAULT_ATTESTATION_TIMEOUT,
            request: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// Seconds since the Unix epoch by the system clock (0 before 1970: every validity
/// window then fails, closed).
fn system_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A client of the KMS API. Cheap to clone; it holds no connection (see
/// [`KmsClient::connect`]).
///
/// A KMS is trusted for what it runs: its TLS certificate must be an RA-TLS certificate
/// with usage `kms:rpc` whose quote the [`Verifier`] accepts (trust root and collateral
/// as configured, or collateral from a PCCS). Which KMS it is (its root CA) is checked
/// by the calls that receive or use the root ([`KmsConnection::app_key`],
/// [`KmsConnection::sign_cert`]).
#[derive(Clone)]
pub struct KmsClient {
    verifier: Arc<Verifier>,
    pccs: Option<Arc<PccsClient>>,
    timeouts: Timeouts,
    now: Arc<dyn Fn() -> u64 + Send + Sync>,
}

cairn_protocol::redacted_debug!(KmsClient {
    verifier,
    pccs,
    timeouts,
    ..
});

impl KmsClient {
    /// A client verifying KMS quotes with `verifier` and the collateral configured in it
    /// ([`Verifier::with_collateral`]).
    pub fn new(verifier: impl Into<Arc<Verifier>>) -> Self {
        KmsClient {
            verifier: verifier.into(),
            pccs: None,
            timeouts: Timeouts::default(),
            now: Arc::new(system_now),
        }
    }

    /// A client verifying KMS quotes with `verifier` (its trust root) and collateral
    /// fetched from `pccs` per quote (cached there until it expires).
    pub fn with_pccs(verifier: impl Into<Arc<Verifier>>, pccs: impl Into<Arc<PccsClient>>) -> Self {
        KmsClient {
            pccs: Some(pccs.into()),
            ..Self::new(verifier)
        }
    }

    /// Use these timeouts.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Read "now" (unix seconds; validity windows of certificates and collateral) from
    /// `now` instead of the system clock.
    pub fn with_clock(mut self, now: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.now = Arc::new(now);
        self
    }

    /// The timeouts in use.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Open one HTTP/1.1 connection to the KMS at `base_url` (`https://host[:port][/prefix]`),
    /// presenting `client_cert` when given (mutual RA-TLS) or none (server-only: the
    /// public endpoints).
    ///
    /// In order, each under its timeout: TCP connect; TLS handshake, in which the KMS
    /// proves it holds its certificate key ([`PossessionServerVerifier`]); then, before
    /// any request is written, the KMS's certificate is verified
    /// ([`Verifier::verify_ra_tls_cert`]: RA-TLS with usage `kms:rpc`, quote, event log,
    /// validity). A KMS that fails is [`Error::KmsEvidence`] naming the check.
    pub async fn connect(
        &self,
        base_url: &str,
        client_cert: Option<&RaTlsCert>,
    ) -> Result<KmsConnection> {
        let target = Target::parse(base_url)?;
        let addr = target.addr();
        let server_name = ServerName::try_from(target.host.clone()).map_err(|_| Error::BadUrl {
            url: base_url.to_owned(),
            reason: "the host is not a DNS name or an IP address",
        })?;
        let config = tls_config(client_cert)?;

        let t = self.timeouts;
        let tcp = staged(
            &addr,
            Stage::Connect,
            t.connect,
            TcpStream::connect((target.host.as_str(), target.port)),
            |source| Error::Connect {
                addr: addr.clone(),
                source,
            },
        )
        .await?;
        // Latency only; a socket that refuses the option still works.
        let _ = tcp.set_nodelay(true);
        let tls = staged(
            &addr,
            Stage::Handshake,
            t.handshake,
            TlsConnector::from(config).connect(server_name, tcp),
            |source| Error::Handshake {
                addr: addr.clone(),
                source,
            },
        )
        .await?;
        let cert_der = peer_end_entity(tls.get_ref().1)
            .map(|c| c.to_vec())
            .ok_or_else(|| Error::NoServerCertificate { addr: addr.clone() })?;

        let now = (self.now)();
        let identity = staged(
            &addr,
            Stage::Attestation,
            t.attestation,
            self.verifier.verify_ra_tls_cert(
                &cert_der,
                Some(Usage::KmsRpc),
                self.pccs.as_deref(),
                now,
            ),
            |e| evidence_error(&addr, e),
        )
        .await?;
        tracing::debug!(kms = %addr, kms_app_id = %identity.app_id(), "KMS evidence verified");

        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|source| Error::Http {
                addr: addr.clone(),
                source,
            })?;
        let client_spki = client_cert
            .map(|c| cairn_attestation::spki_of(&c.cert_der, cairn_attestation::CertRole::Leaf))
            .transpose()
            .map_err(|source| Error::BadChain {
                addr: addr.clone(),
                source,
            })?;
        Ok(KmsConnection::new(
            target,
            sender,
            conn,
            KmsPeer { identity, cert_der },
            client_spki,
            t.request,
            self.now.clone(),
        ))
    }

    /// `POST /v1/app-key` on a fresh mutual RA-TLS connection (see
    /// [`KmsConnection::app_key`]).
    pub async fn app_key(&self, base_url: &str, client_cert: &RaTlsCert) -> Result<AppKeyRelease> {
        self.connect(base_url, Some(client_cert))
            .await?
            .app_key()
            .await
    }

    /// `POST /v1/sign-cert` on a fresh mutual RA-TLS connection (see
    /// [`KmsConnection::sign_cert`]).
    pub async fn sign_cert(
        &self,
        base_url: &str,
        client_cert: &RaTlsCert,
        request: SignCertRequest,
        root: &RootCa,
        app_id: &[u8; 20],
    ) -> Result<SignCertResponse> {
        self.connect(base_url, Some(client_cert))
            .await?
            .sign_cert(request, root, app_id)
            .await
    }
}

/// One stage of [`KmsClient::connect`] under its time limit: [`Error::Timeout`] naming
/// `stage` when `fut` takes longer than `after`, else `fut`'s own error mapped by `err`.
async fn staged<T, E>(
    addr: &str,
    stage: Stage,
    after: Duration,
    fut: impl std::future::Future<Output = std::result::Result<T, E>>,
    err: impl FnOnce(E) -> Error,
) -> Result<T> {
    match tokio::time::timeout(after, fut).await {
        Ok(done) => done.map_err(err),
        Err(_) => Err(Error::Timeout {
            addr: addr.to_owned(),
            stage,
            after,
        }),
    }
}

/// An evidence failure, with a failure to obtain collateral told apart (retryable when
/// the fetch failed or the collateral expired).
fn evidence_error(addr: &str, err: RaTlsError) -> Error {
    use cairn_attestation::Error as A;
    let addr = addr.to_owned();
    match err {
        RaTlsError::Evidence(inner) => match inner.downcast::<A>() {
            Ok(e)
                if matches!(
                    *e,
                    A::CollateralFetch { .. }
                        | A::PccsRateLimited { .. }
                        | A::CollateralExpired { .. }
                        | A::NoCollateral
                        | A::MalformedCollateral(_)
                ) =>
            {
                Error::Collateral { addr, source: *e }
            }
            Ok(e) => Error::KmsEvidence {
                addr,
                source: RaTlsError::Evidence(e),
            },
            Err(other) => Error::KmsEvidence {
                addr,
                source: RaTlsError::Evidence(other),
            },
        },
        source => Error::KmsEvidence { addr, source },
    }
}

/// The rustls config of one connection: possession-only server verification (the
/// evidence is checked right after), our certificate when given, HTTP/1.1.
fn tls_config(client_cert: Option<&RaTlsCert>) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::TlsConfig { source })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PossessionServerVerifier::new()));
    let mut config = match client_cert {
        Some(c) => builder
            .with_client_auth_cert(vec![c.cert_der.clone()], c.private_key_der())
            .map_err(|source| Error::ClientCert { source })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
