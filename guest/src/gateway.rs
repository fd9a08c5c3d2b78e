//! Registering with the gateways (DESIGN.md §8, docs/gateway.md "Registration"): when the
//! measured compose enables the gateway (`gateway_enabled`), a booted guest registers with
//! **every** URL in sys-config's `gateway_urls`, and keeps doing so — each gateway node
//! keeps no state, so a restarted node learns the instance again from the next
//! registration.
//!
//! ```text
//!  per gateway URL, forever:
//!    client chain: GetTlsKey-style (a fresh key, RA-TLS evidence, KMS sign-cert with the
//!                  app id; reused across registrations)
//!    TLS ─► the gateway proves it holds its certificate key; its chain must be
//!           leaf → app CA → *our* KMS root with KmsAuth's gatewayAppId (from the KMS's
//!           app-key answer) in both ─► else refused, nothing sent
//!    POST /v1/register {app_compose (the exact measured text), port_map}
//!    ─► admitted: again after the gateway's reregister_after (bounded)
//!    ─► refused or unreachable: again after a backoff (doubling, bounded)
//! ```
//!
//! What it trusts: its KMS root CA (pinned or checked at boot) and the gateway app id
//! the KMS returned. What it sends is public (the compose, the port map); identity is
//! the certificate chain. Every network step has a timeout; answers are bounded.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cairn_attestation::{pem_to_der, verify_app_chain, CertRole, ChainError, RootCa};
use cairn_protocol::api::ErrorBody;
use cairn_protocol::gateway::{RegisterRequest, RegisterResponse, PATH_REGISTER};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use zeroize::Zeroizing;

use crate::agent::tls::{issue, TlsKeyOptions};
use crate::state::GuestState;

/// Timeout of one registration (connect, handshake, request, answer).
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(15);
/// First delay after a failed registration; doubles per failure.
pub const RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Longest delay after failures.
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// Shortest and longest interval between registrations, whatever the gateway asks.
pub const INTERVAL_BOUNDS: (Duration, Duration) =
    (Duration::from_millis(200), Duration::from_secs(300));
/// The client certificate is issued again after this long.
pub const CERT_REFRESH: Duration = Duration::from_secs(12 * 3600);
/// Largest answer read from a gateway.
pub const MAX_ANSWER_LEN: usize = 64 * 1024;

/// Why one registration failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The URL is not `https://host[:port]`.
    #[error("gateway URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The KMS named no gateway app (KmsAuth's `gatewayAppId` is unset).
    #[error("the KMS names no gateway app (KmsAuth gatewayAppId is unset)")]
    NoGatewayApp,
    /// The client certificate could not be issued through the KMS.
    #[error("issuing the registration certificate: {0}")]
    Certificate(#[source] crate::Error),
    /// TCP, TLS or HTTP failed, or a step timed out.
    #[error("{url}: {reason}")]
    Transport {
        /// The gateway.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The gateway's certificate is not a KMS-issued chain of the gateway app under our
    /// KMS root: not a gateway this CVM trusts; nothing was sent.
    #[error("{url} is not the gateway app: {source}")]
    NotTheGateway {
        /// The gateway.
        url: String,
        /// Which check failed.
        #[source]
        source: ChainError,
    },
    /// The gateway refused the registration (its code names the check).
    #[error("{url} refused the registration: {status} {code}: {message}")]
    Refused {
        /// The gateway.
        url: String,
        /// HTTP status.
        status: u16,
        /// Error code (`denied.compose_hash`, …).
        code: String,
        /// Its message (for chain denials, the contract's reason).
        message: String,
    },
    /// The answer is not a registration of this instance.
    #[error("{url}: unexpected answer: {reason}")]
    BadAnswer {
        /// The gateway.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

/// How registration behaves (defaults: [`RETRY_INITIAL`], [`RETRY_MAX`],
/// [`REGISTER_TIMEOUT`]).
#[derive(Debug, Clone, Copy)]
pub struct RegisterOptions {
    /// First delay after a failure.
    pub retry_initial: Duration,
    /// Longest delay after failures.
    pub retry_max: Duration,
    /// Timeout of one registration.
    pub timeout: Duration,
}

impl Default for RegisterOptions {
    fn default() -> Self {
        RegisterOptions {
            retry_initial: RETRY_INITIAL,
            retry_max: RETRY_MAX,
            timeout: REGISTER_TIMEOUT,
        }
    }
}

/// The last outcome with one gateway.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Admitted at this policy block.
    Registered(RegisterResponse),
    /// The last attempt failed.
    Failed(String),
}

/// The last outcome per gateway URL, shared by the registration tasks.
type Outcomes = Arc<Mutex<Vec<(String, Option<Outcome>)>>>;

/// The running registrations; dropping it stops them.
#[derive(Debug)]
pub struct Registrations {
    tasks: Vec<JoinHandle<()>>,
    last: Outcomes,
}

impl Drop for Registrations {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Registrations {
    /// The last outcome per gateway URL (`None`: not tried yet).
    pub fn outcomes(&self) -> Vec<(String, Option<Outcome>)> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The key and chain the guest registers with.
struct ClientCert {
    chain: Vec<CertificateDer<'static>>,
    key: Zeroizing<Vec<u8>>,
    issued: Instant,
}

/// Start registering with every gateway of sys-config, unless the compose does not
/// enable the gateway or there is none (then `None`, logged).
pub fn spawn(state: Arc<GuestState>, options: RegisterOptions) -> Option<Registrations> {
    if !state.compose.gateway_enabled {
        return None;
    }
    if state.gateway_urls.is_empty() {
        tracing::info!("gateway_enabled, but sys-config lists no gateway_urls");
        return None;
    }
    let cert: Arc<tokio::sync::Mutex<Option<ClientCert>>> = Arc::default();
    let last = Arc::new(Mutex::new(
        state
            .gateway_urls
            .iter()
            .map(|u| (u.clone(), None))
            .collect::<Vec<_>>(),
    ));
    let tasks = state
        .gateway_urls
        .iter()
        .enumerate()
        .map(|(i, url)| {
            let (state, cert, last, url) = (
                Arc::clone(&state),
                Arc::clone(&cert),
                Arc::clone(&last),
                url.clone(),
            );
            tokio::spawn(async move { keep_registered(state, cert, url, i, last, options).await })
        })
        .collect();
    Some(Registrations { tasks, last })
}

async fn keep_registered(
    state: Arc<GuestState>,
    cert: Arc<tokio::sync::Mutex<Option<ClientCert>>>,
    url: String,
    index: usize,
    last: Outcomes,
    options: RegisterOptions,
) {
    let mut retry = options.retry_initial;
    let mut failing = false;
    loop {
        let result =
            match tokio::time::timeout(options.timeout, register_once(&state, &cert, &url)).await {
                Ok(r) => r,
                Err(_) => Err(RegisterError::Transport {
                    url: url.clone(),
                    reason: format!("no answer within {:?}", options.timeout),
                }),
            };
        let (outcome, pause) = match result {
            Ok(resp) => {
                if failing {
                    tracing::info!(gateway = %url, block = resp.policy_block.number, "registered again");
                } else {
                    tracing::debug!(gateway = %url, block = resp.policy_block.number, "registered");
                }
                failing = false;
                retry = options.retry_initial;
                let pause = Duration::from_secs(resp.reregister_after_secs)
                    .clamp(INTERVAL_BOUNDS.0, INTERVAL_BOUNDS.1);
                (Outcome::Registered(resp), pause)
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(gateway = %url, error = %e, "gateway registration failed; retrying");
                }
                failing = true;
                let pause = retry;
                retry = (retry * 2).min(options.retry_max);
                (Outcome::Failed(e.to_string()), pause)
            }
        };
        if let Some(slot) = last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(index)
        {
            slot.1 = Some(outcome);
        }
        tokio::time::sleep(pause).await;
    }
}

/// The registration certificate, issued through the KMS when missing or old.
async fn client_cert(
    state: &Arc<GuestState>,
    slot: &tokio::sync::Mutex<Option<ClientCert>>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), RegisterError> {
    let mut slot = slot.lock().await;
    let fresh = slot
        .as_ref()
        .is_some_and(|c| c.issued.elapsed() < CERT_REFRESH);
    if !fresh {
        let resp = issue(
            state,
            TlsKeyOptions {
                subject: state.compose.name.clone(),
                alt_names: Vec::new(),
                usage_ra_tls: true,
                usage_server_auth: false,
                usage_client_auth: true,
                not_before: None,
                not_after: None,
                with_app_info: true,
            },
            None,
        )
        .await
        .map_err(|e| RegisterError::Certificate(e.into_inner()))?;
        let bad = |reason: String| RegisterError::Certificate(crate::Error::BadKmsResponse(reason));
        let chain = resp
            .certificate_chain
            .iter()
            .map(|pem| pem_to_der(pem, CertRole::Leaf).map(CertificateDer::from))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("certificate chain: {e}")))?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(resp.key.as_bytes())
            .map_err(|e| bad(format!("key: {e}")))?;
        *slot = Some(ClientCert {
            chain,
            key: Zeroizing::new(key.secret_pkcs8_der().to_vec()),
            issued: Instant::now(),
        });
    }
    let c = slot.as_ref().ok_or(RegisterError::NoGatewayApp)?;
    Ok((
        c.chain.clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key.to_vec())),
    ))
}

/// One registration with `url`.
async fn register_once(
    state: &Arc<GuestState>,
    cert: &tokio::sync::Mutex<Option<ClientCert>>,
    url: &str,
) -> Result<RegisterResponse, RegisterError> {
    let gateway_app = state.secrets.gateway_app_id;
    if gateway_app == [0u8; 20] {
        return Err(RegisterError::NoGatewayApp);
    }
    let bad_url = |reason: &str| RegisterError::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = url::Url::parse(url).map_err(|e| bad_url(&e.to_string()))?;
    if parsed.scheme() != "https" {
        return Err(bad_url("a gateway is only reached over TLS (https)"));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| bad_url("no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = parsed.port().unwrap_or(443);
    let server_name = ServerName::try_from(host.clone()).map_err(|_| bad_url("bad host"))?;
    let root = RootCa::from_pem(&state.secrets.root_ca_cert)
        .map_err(|e| RegisterError::Certificate(crate::Error::RootCa(e)))?;

    let (chain, key) = client_cert(state, cert).await?;
    let transport = |reason: String| RegisterError::Transport {
        url: url.to_owned(),
        reason,
    };
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| transport(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(
                cairn_attestation::PossessionServerVerifier::new(),
            ))
            .with_client_auth_cert(chain, key)
            .map_err(|e| transport(format!("client certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| transport(format!("connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let tls = TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| transport(format!("TLS: {e}")))?;

    // The gateway must be the gateway app under our KMS root before anything is sent.
    let presented = tls
        .get_ref()
        .1
        .peer_certificates()
        .ok_or_else(|| transport("no server certificate".to_owned()))?
        .to_vec();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    verify_app_chain(&root, &presented, &gateway_app, now).map_err(|source| {
        RegisterError::NotTheGateway {
            url: url.to_owned(),
            source,
        }
    })?;

    let body = serde_json::to_vec(&RegisterRequest {
        app_compose: String::from_utf8(state.compose_bytes.clone())
            .map_err(|_| bad_url("the compose is not UTF-8"))?,
        port_map: state.port_map.clone(),
    })
    .map_err(|e| transport(format!("encoding: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| transport(format!("HTTP: {e}")))?;
    let driver = tokio::spawn(conn);
    let req = hyper::Request::post(PATH_REGISTER)
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| transport(format!("request: {e}")))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| transport(format!("HTTP: {e}")))?;
    let status = resp.status();
    let bytes = Limited::new(resp.into_body(), MAX_ANSWER_LEN)
        .collect()
        .await
        .map_err(|e| transport(format!("answer: {e}")))?
        .to_bytes();
    driver.abort();
    if !status.is_success() {
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => (b.error.code, b.error.message),
            Err(_) => (
                "unknown".to_owned(),
                String::from_utf8_lossy(&bytes).chars().take(256).collect(),
            ),
        };
        return Err(RegisterError::Refused {
            url: url.to_owned(),
            status: status.as_u16(),
            code,
            message,
        });
    }
    let answer: RegisterResponse =
        serde_json::from_slice(&bytes).map_err(|e| RegisterError::BadAnswer {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    if answer.app_id != state.app_id.0 || answer.instance_id != state.instance_id.as_bytes() {
        return Err(RegisterError::BadAnswer {
            url: url.to_owned(),
            reason: "it admitted another app or instance".to_owned(),
        });
    }
    Ok(answer)
}
