//! [`CertSource`]: where the certificate for `*.<base_domain>` comes from. The proxy's
//! TLS acceptor reads a [`CertStore`] (a rustls `ResolvesServerCert` swapped atomically)
//! on every handshake; a source keeps that store filled:
//!
//! - [`CertSource::File`]: a PEM chain and a PKCS#8 PEM key the operator provides; both
//!   files are re-read every `reload_interval` and, when their contents changed and the
//!   new pair is valid (the leaf is for the key), swapped in. A bad new pair is logged and
//!   counted; the old certificate keeps serving.
//! - [`CertSource::Acme`]: `cairn-acme`'s [`AcmeManager`]: a wildcard certificate by
//!   DNS-01, the account key derived from the gateway app's key, every certificate key
//!   attested before the CA sees it, renewal, and the `/.dstack/acme-info` document the
//!   proxy serves on the base domain itself (docs/gateway.md, "Certificates").

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_acme::{AcmeManager, AcmeParts, AgentClient, CertStore, ServingCert, SystemClock};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::config::{read_bounded, CertConfig};
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Largest certificate chain or key file read.
pub const MAX_CERT_FILE_LEN: u64 = 256 * 1024;

/// The certificate files and what was last loaded from them.
pub struct FileSource {
    cert_file: PathBuf,
    key_file: PathBuf,
    interval: Duration,
    store: Arc<CertStore>,
    /// Digest of the files last loaded.
    loaded: std::sync::Mutex<Option<[u8; 32]>>,
}

cairn_protocol::redacted_debug!(FileSource {
    cert_file,
    key_file,
    interval,
    ..
});

/// Where the serving certificate comes from.
#[derive(Debug)]
pub enum CertSource {
    /// Files, reloaded on change.
    File(FileSource),
    /// ACME DNS-01.
    Acme(Arc<AcmeManager>),
}

fn cert_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Certificate {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// The files' contents, and a digest of both to notice changes.
fn read_pair(cert: &Path, key: &Path) -> Result<(String, Zeroizing<Vec<u8>>, [u8; 32])> {
    let chain = read_bounded(cert, "tls.cert_file", MAX_CERT_FILE_LEN)?;
    let key_pem = Zeroizing::new(read_bounded(key, "tls.key_file", MAX_CERT_FILE_LEN)?);
    let mut h = Sha256::new();
    h.update(&chain);
    h.update([0u8]);
    h.update(&*key_pem);
    let chain = String::from_utf8(chain).map_err(|_| cert_err(cert, "not UTF-8 PEM"))?;
    Ok((chain, key_pem, h.finalize().into()))
}

/// Parse a chain and a PKCS#8 PEM key into a serving certificate (the leaf must be for
/// the key).
pub fn load_pem_pair(chain_pem: &str, key_pem: &[u8], key_path: &Path) -> Result<ServingCert> {
    let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem)
        .map_err(|e| cert_err(key_path, format!("not a PKCS#8 PEM private key: {e}")))?;
    ServingCert::from_pem(chain_pem, key.secret_pkcs8_der()).map_err(|e| Error::Certificate {
        path: key_path.display().to_string(),
        reason: e.to_string(),
    })
}

impl FileSource {
    fn load(&self) -> Result<[u8; 32]> {
        let (chain, key, digest) = read_pair(&self.cert_file, &self.key_file)?;
        let cert = load_pem_pair(&chain, &key, &self.key_file)?;
        tracing::info!(names = ?cert.names(), not_after = cert.not_after(), "serving certificate loaded");
        self.store.replace(Arc::new(cert));
        *self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(digest);
        Ok(digest)
    }
}

impl CertSource {
    /// Set up the source: files are loaded now (a bad pair is an error); ACME derives the
    /// account key through the agent and loads its saved state (no network yet).
    pub async fn start(config: &CertConfig, agent: &AgentClient) -> Result<CertSource> {
        match config {
            CertConfig::File {
                cert_file,
                key_file,
                reload_interval,
            } => {
                warn_if_readable(key_file);
                let source = FileSource {
                    cert_file: cert_file.clone(),
                    key_file: key_file.clone(),
                    interval: *reload_interval,
                    store: Arc::new(CertStore::new()),
                    loaded: std::sync::Mutex::new(None),
                };
                source.load()?;
                Ok(CertSource::File(source))
            }
            CertConfig::Acme(acme) => {
                let account_key = agent.acme_account_key().await.map_err(Error::Agent)?;
                let dns = acme
                    .dns
                    .build(Duration::from_secs(acme.request_timeout_secs))
                    .map_err(Error::Acme)?;
                let manager = AcmeManager::new(
                    acme.clone(),
                    AcmeParts {
                        account_key,
                        dns,
                        attestor: Arc::new(agent.clone()),
                        clock: Arc::new(SystemClock),
                    },
                )
                .map_err(Error::Acme)?;
                Ok(CertSource::Acme(manager))
            }
        }
    }

    /// The store the proxy's acceptor resolves from.
    pub fn store(&self) -> Arc<CertStore> {
        match self {
            CertSource::File(f) => Arc::clone(&f.store),
            CertSource::Acme(m) => m.store(),
        }
    }

    /// The ACME manager, when the source is ACME.
    pub fn acme(&self) -> Option<Arc<AcmeManager>> {
        match self {
            CertSource::Acme(m) => Some(Arc::clone(m)),
            CertSource::File(_) => None,
        }
    }

    /// Keep the certificate fresh until `stop` flips: reload changed files, or renew by
    /// ACME.
    pub async fn run(&self, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
        match self {
            CertSource::Acme(m) => {
                Arc::clone(m)
                    .run(async move {
                        crate::forward::stopped(&mut stop).await;
                    })
                    .await
            }
            CertSource::File(f) => {
                let mut current = *f
                    .loaded
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let mut failed: Option<[u8; 32]> = None;
                let mut tick = tokio::time::interval(f.interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = crate::forward::stopped(&mut stop) => return,
                    }
                    let digest = match read_pair(&f.cert_file, &f.key_file) {
                        Ok(p) => p.2,
                        Err(e) => {
                            tracing::warn!(error = %e, "certificate files unreadable; the current certificate keeps serving");
                            continue;
                        }
                    };
                    if Some(digest) == current || Some(digest) == failed {
                        continue;
                    }
                    match f.load() {
                        Ok(d) => {
                            current = Some(d);
                            failed = None;
                            metrics.cert_reload("ok");
                        }
                        Err(e) => {
                            failed = Some(digest);
                            metrics.cert_reload("failed");
                            tracing::warn!(error = %e, "new certificate files refused; the current certificate keeps serving");
                        }
                    }
                }
            }
        }
    }
}

/// A private key readable by group or others is a misconfiguration worth a warning.
fn warn_if_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(key_file = %path.display(), "the private key file is readable by group or others (chmod 600)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_pem_pair_loads_and_a_mismatched_key_is_refused() {
        let (chain, key) = pair("*.gw.example.com");
        let cert = load_pem_pair(&chain, key.as_bytes(), Path::new("k")).unwrap();
        assert_eq!(cert.names(), ["*.gw.example.com"]);
        let (_, other_key) = pair("x");
        let e = load_pem_pair(&chain, other_key.as_bytes(), Path::new("k")).unwrap_err();
        assert!(matches!(e, Error::Certificate { .. }), "{e}");
        let e = load_pem_pair(&chain, b"not pem", Path::new("k")).unwrap_err();
        assert!(matches!(e, Error::Certificate { .. }), "{e}");
    }

    #[tokio::test]
    async fn changed_files_are_reloaded_and_a_bad_pair_keeps_the_old_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let (c1, k1) = pair("one.example");
        std::fs::write(&cert, &c1).unwrap();
        std::fs::write(&key, &k1).unwrap();
        let agent = AgentClient::new(cairn_acme::AgentEndpoint::Unix(dir.path().join("none")));
        let source = Arc::new(
            CertSource::start(
                &CertConfig::File {
                    cert_file: cert.clone(),
                    key_file: key.clone(),
                    reload_interval: Duration::from_millis(20),
                },
                &agent,
            )
            .await
            .unwrap(),
        );
        let store = source.store();
        let names = || store.current().unwrap().names().to_vec();
        assert_eq!(names(), ["one.example"]);
        let metrics = Arc::new(Metrics::default());
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn({
            let (source, metrics) = (Arc::clone(&source), Arc::clone(&metrics));
            async move { source.run(metrics, stop).await }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        // a chain without its key: refused, the old one serves
        let (c2, k2) = pair("two.example");
        std::fs::write(&cert, &c2).unwrap();
        while metrics.cert_reloads("failed") == 0 {
            assert!(std::time::Instant::now() < deadline, "no reload attempt");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(names(), ["one.example"]);
        // now the matching key: swapped in
        std::fs::write(&key, &k2).unwrap();
        while names() != ["two.example"] {
            assert!(std::time::Instant::now() < deadline, "not reloaded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(metrics.cert_reloads("ok"), 1);
        stop_tx.send_replace(true);
        task.await.unwrap();
    }
}
