//! [`AcmeManager`]: issues the gateway's wildcard certificate, renews it before expiry
//! (backing off on failure while the old one keeps serving), attests every new key
//! before the CA sees it, and keeps the document monitors read.
//!
//! ```text
//! renew_now:  new P-256 key ─► quote over SHA-512("zt-cert:" ‖ SPKI) (GetQuote)
//!             ─► publish the quoted key ─► order (DNS-01) ─► check the chain
//!             ─► persist ─► CertStore::replace          (any failure: nothing replaced)
//! run:        every check interval: due = notBefore + fraction·lifetime (now if no
//!             certificate), later by the backoff after failures ─► renew_now
//! ```

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::Account;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::account::AccountKey;
use crate::agent::Attestor;
use crate::attest::{account_uri_report_data, attest_key, quote_json, AcmeInfo};
use crate::config::AcmeConfig;
use crate::consts::{MAX_ACME_RESPONSE_LEN, MAX_HISTORY};
use crate::dns::DnsProvider;
use crate::error::{Error, Result};
use crate::http::AcmeHttp;
use crate::order::{issue, OrderRequest};
use crate::persist::StateDir;
use crate::store::{CertStore, ServingCert};

/// The wall clock the renewal schedule reads (tests inject one).
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// What the manager needs besides its configuration.
pub struct AcmeParts {
    /// The account key ([`crate::AgentClient::acme_account_key`]).
    pub account_key: AccountKey,
    /// Where challenge records go ([`crate::DnsConfig::build`]).
    pub dns: Arc<dyn DnsProvider>,
    /// Quotes each new certificate key (the gateway's guest agent). There is no way to
    /// issue without it: an unattested key is never sent to the CA.
    pub attestor: Arc<dyn Attestor>,
    /// The wall clock ([`SystemClock`]).
    pub clock: Arc<dyn Clock>,
}

/// Where renewal stands (for metrics, logs and the gateway's status endpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenewalStatus {
    /// Failed issuances since the last success.
    pub consecutive_failures: u32,
    /// The last failure's message (its causes joined), if the last attempt failed.
    pub last_error: Option<String>,
    /// When the next attempt may start (seconds since the epoch).
    pub next_attempt_unix: u64,
    /// Successful issuances since start.
    pub issued: u64,
}

struct State {
    status: RenewalStatus,
    info: AcmeInfo,
}

/// The ACME certificate source of a gateway node.
pub struct AcmeManager {
    config: AcmeConfig,
    names: Vec<String>,
    account_key: AccountKey,
    dns: Arc<dyn DnsProvider>,
    attestor: Arc<dyn Attestor>,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    store: Arc<CertStore>,
    state_dir: Option<StateDir>,
    state: Mutex<State>,
    account: tokio::sync::Mutex<Option<Account>>,
    issuing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for AcmeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeManager")
            .field("directory_url", &self.config.directory_url)
            .field("names", &self.names)
            .field("account_key", &self.account_key)
            .finish_non_exhaustive()
    }
}

fn load_roots(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let roots = CertificateDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config {
            key: "ca_roots",
            reason: format!("{}: {e}", path.display()),
        })?;
    if roots.is_empty() {
        return Err(Error::Config {
            key: "ca_roots",
            reason: format!("{}: no certificate", path.display()),
        });
    }
    Ok(roots)
}

impl AcmeManager {
    /// Validate `config`, load the state directory (a saved certificate that still names
    /// the configured domain is served at once) and build the manager. No network.
    pub fn new(config: AcmeConfig, parts: AcmeParts) -> Result<Arc<Self>> {
        config.validate()?;
        let roots = config.ca_roots.as_deref().map(load_roots).transpose()?;
        let http =
            crate::http::client(config.request_timeout(), roots.as_deref()).map_err(|e| {
                Error::Config {
                    key: "ca_roots",
                    reason: format!("building the HTTP client: {e}"),
                }
            })?;
        let names = config.names();
        let store = Arc::new(CertStore::new());
        let mut info = AcmeInfo {
            base_domain: names[1].clone(),
            ..AcmeInfo::default()
        };
        let state_dir = config
            .state_dir
            .as_deref()
            .map(StateDir::open)
            .transpose()?;
        if let Some(dir) = &state_dir {
            if let Some(saved) = dir.load_info()? {
                // the history stays published across restarts (the CA logged those keys)
                info.quoted_hist_keys = saved.quoted_hist_keys;
                info.hist_keys = saved.hist_keys;
                info.account_uri = saved.account_uri;
                info.account_quote = saved.account_quote;
            }
            if let Some(cert) = dir.load_cert()? {
                if cert.covers(&names) && cert.not_after() > parts.clock.now_unix() {
                    info.active_cert = cert.chain_pem().to_owned();
                    store.replace(Arc::new(cert));
                } else {
                    tracing::info!("the saved certificate is expired or names other domains");
                }
            }
        }
        Ok(Arc::new(AcmeManager {
            config,
            names,
            account_key: parts.account_key,
            dns: parts.dns,
            attestor: parts.attestor,
            clock: parts.clock,
            http,
            store,
            state_dir,
            state: Mutex::new(State {
                status: RenewalStatus::default(),
                info,
            }),
            account: tokio::sync::Mutex::new(None),
            issuing: tokio::sync::Mutex::new(()),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The store the gateway's TLS acceptor resolves certificates from.
    pub fn store(&self) -> Arc<CertStore> {
        self.store.clone()
    }

    /// The names on the certificate.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The document published at [`crate::consts::ACME_INFO_PATH`].
    pub fn acme_info(&self) -> AcmeInfo {
        self.lock().info.clone()
    }

    /// Where renewal stands.
    pub fn status(&self) -> RenewalStatus {
        self.lock().status.clone()
    }

    /// When the current certificate is due for renewal (now if there is none, or it does
    /// not name the configured domain).
    pub fn renewal_due(&self) -> u64 {
        match self.store.current() {
            Some(c) if c.covers(&self.names) => c.renew_at(self.config.renew_after_fraction),
            _ => 0,
        }
    }

    /// The ACME account, created (or found, since the key is derived) on first use; its
    /// URI is attested and published once.
    async fn account(&self) -> Result<Account> {
        let mut slot = self.account.lock().await;
        if let Some(a) = slot.as_ref() {
            return Ok(a.clone());
        }
        let http = AcmeHttp::new(self.http.clone(), MAX_ACME_RESPONSE_LEN);
        let (account, _credentials) = Account::builder_with_http(Box::new(http))
            .create_from_key(
                self.account_key.to_acme_key()?,
                self.config.directory_url.clone(),
            )
            .await
            .map_err(Error::acme("creating or finding the account"))?;
        let uri = account.id().to_owned();
        let quote = self.attestor.quote(account_uri_report_data(&uri)).await?;
        let quote = quote_json(&quote)?;
        {
            let mut st = self.lock();
            st.info.account_uri = uri;
            st.info.account_quote = quote;
        }
        *slot = Some(account.clone());
        Ok(account)
    }

    /// Issue a new certificate now and serve it. On any failure the current certificate
    /// stays and the error says which step failed.
    pub async fn renew_now(&self) -> Result<Arc<ServingCert>> {
        let _one_at_a_time = self.issuing.lock().await;
        let timeout = Duration::from_secs(self.config.order_timeout_secs);
        let result = match tokio::time::timeout(timeout, self.issue_and_install()).await {
            Ok(r) => r,
            Err(_) => Err(Error::IssuanceTimeout {
                secs: timeout.as_secs(),
            }),
        };
        let now = self.clock.now_unix();
        let mut st = self.lock();
        match &result {
            Ok(cert) => {
                st.status.consecutive_failures = 0;
                st.status.last_error = None;
                st.status.issued += 1;
                st.status.next_attempt_unix = cert.renew_at(self.config.renew_after_fraction);
                tracing::info!(serial = %cert.serial_hex(), not_after = cert.not_after(), "ACME certificate installed");
            }
            Err(e) => {
                st.status.consecutive_failures = st.status.consecutive_failures.saturating_add(1);
                st.status.last_error = Some(cairn_protocol::with_causes(e));
                let backoff = self.backoff(st.status.consecutive_failures);
                st.status.next_attempt_unix = now.saturating_add(backoff.as_secs());
                tracing::warn!(error = %cairn_protocol::with_causes(e), retry_in_secs = backoff.as_secs(), "ACME issuance failed; the current certificate keeps serving");
            }
        }
        result
    }

    /// Delay after `failures` consecutive failures: initial · 2^(failures−1), capped.
    fn backoff(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(32);
        let secs = self
            .config
            .retry_initial_secs
            .saturating_mul(1u64 << exp)
            .min(self.config.retry_max_secs);
        Duration::from_secs(secs)
    }

    async fn issue_and_install(&self) -> Result<Arc<ServingCert>> {
        let account = self.account().await?;

        // A fresh key for every certificate, attested before the CA ever sees it.
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| Error::Key(format!("generating the certificate key: {e}")))?;
        use rcgen::PublicKeyData;
        let spki = key.subject_public_key_info();
        let quoted = attest_key(self.attestor.as_ref(), &spki).await?;
        {
            let mut st = self.lock();
            let spki_hex = hex::encode(&spki);
            st.info.hist_keys.push(spki_hex);
            st.info.quoted_hist_keys.push(quoted);
            let excess = st.info.quoted_hist_keys.len().saturating_sub(MAX_HISTORY);
            st.info.quoted_hist_keys.drain(..excess);
            let excess = st.info.hist_keys.len().saturating_sub(MAX_HISTORY);
            st.info.hist_keys.drain(..excess);
        }

        let mut params = rcgen::CertificateParams::new(self.names.clone())
            .map_err(|e| Error::Key(format!("CSR names: {e}")))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| Error::Key(format!("CSR: {e}")))?;
        let request = OrderRequest {
            names: &self.names,
            csr_der: csr.der(),
            propagation: Duration::from_secs(self.config.dns_propagation_secs),
            poll_timeout: Duration::from_secs(self.config.order_timeout_secs),
        };
        let chain_pem = issue(&account, self.dns.as_ref(), &request).await?;

        let cert = ServingCert::from_pem(&chain_pem, &key.serialize_der())?;
        if !cert.covers(&self.names) {
            return Err(Error::BadCertificate(format!(
                "the certificate names {:?}, not {:?}",
                cert.names(),
                self.names
            )));
        }
        let now = self.clock.now_unix();
        if cert.not_after() <= now {
            return Err(Error::BadCertificate("the certificate is expired".into()));
        }

        if let Some(dir) = &self.state_dir {
            dir.save_info(&self.acme_info())?;
            dir.save_cert(&cert)?;
        }
        let cert = Arc::new(cert);
        self.lock().info.active_cert = cert.chain_pem().to_owned();
        self.store.replace(cert.clone());
        Ok(cert)
    }

    /// Renew whenever due until `shutdown` resolves: check every `check_interval_secs`;
    /// a failure is retried after the backoff, the current certificate serving meanwhile.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()> + Send) {
        let interval = Duration::from_secs(self.config.check_interval_secs);
        tokio::pin!(shutdown);
        loop {
            let now = self.clock.now_unix();
            let retry_after = {
                let st = self.lock();
                if st.status.consecutive_failures > 0 {
                    st.status.next_attempt_unix
                } else {
                    0
                }
            };
            if now >= self.renewal_due().max(retry_after) {
                // The outcome is in status() and the logs.
                let _ = self.renew_now().await;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = &mut shutdown => return,
            }
        }
    }
}
