//! The certificate being served: [`ServingCert`] (a chain and its key, checked to belong
//! together) and [`CertStore`], which the gateway's TLS acceptor reads on every handshake
//! (`rustls::server::ResolvesServerCert`) and which a renewal replaces atomically.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::watch;
use x509_parser::extensions::GeneralName;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Longest certificate chain accepted.
const MAX_CHAIN_LEN: usize = 8;
/// Largest PEM chain accepted.
const MAX_CHAIN_PEM_LEN: usize = 64 * 1024;

/// A certificate chain with its private key. `Debug` never shows the key.
pub struct ServingCert {
    chain: Vec<CertificateDer<'static>>,
    chain_pem: String,
    key_pkcs8: Zeroizing<Vec<u8>>,
    certified: Arc<CertifiedKey>,
    spki: Vec<u8>,
    names: Vec<String>,
    serial: String,
    not_before: u64,
    not_after: u64,
}

cairn_protocol::redacted_debug!(ServingCert {
    names,
    serial,
    not_before,
    not_after,
    key: redacted,
});

fn bad(msg: impl Into<String>) -> Error {
    Error::BadCertificate(msg.into())
}

impl ServingCert {
    /// Parse a PEM chain (leaf first) and a PKCS#8 DER key; the leaf's key must be the
    /// private key's.
    pub fn from_pem(chain_pem: &str, key_pkcs8_der: &[u8]) -> Result<Self> {
        if chain_pem.len() > MAX_CHAIN_PEM_LEN {
            return Err(bad(format!("chain larger than {MAX_CHAIN_PEM_LEN} bytes")));
        }
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .take(MAX_CHAIN_LEN + 1)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("PEM: {e}")))?;
        if chain.is_empty() {
            return Err(bad("no certificate in the chain"));
        }
        if chain.len() > MAX_CHAIN_LEN {
            return Err(bad(format!("more than {MAX_CHAIN_LEN} certificates")));
        }
        let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0])
            .map_err(|e| bad(format!("leaf: {e}")))?;
        let spki = leaf.public_key().raw.to_vec();
        let key_der = PrivatePkcs8KeyDer::from(key_pkcs8_der.to_vec());
        let key_pair = rcgen::KeyPair::try_from(&key_der)
            .map_err(|e| Error::Key(format!("private key: {e}")))?;
        use rcgen::PublicKeyData;
        if key_pair.subject_public_key_info() != spki {
            return Err(bad("the leaf certificate is not for this key"));
        }
        let mut names = Vec::new();
        if let Ok(Some(san)) = leaf.subject_alternative_name() {
            for n in &san.value.general_names {
                if let GeneralName::DNSName(d) = n {
                    names.push(d.to_ascii_lowercase());
                }
            }
        }
        let not_before = u64::try_from(leaf.validity().not_before.timestamp())
            .map_err(|_| bad("notBefore before 1970"))?;
        let not_after = u64::try_from(leaf.validity().not_after.timestamp())
            .map_err(|_| bad("notAfter before 1970"))?;
        if not_after <= not_before {
            return Err(bad("empty validity period"));
        }
        let serial = hex::encode(leaf.raw_serial());
        let signing = rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::Pkcs8(
            key_der.clone_key(),
        ))
        .map_err(|e| Error::Key(format!("signing key: {e}")))?;
        let certified = Arc::new(CertifiedKey::new(chain.clone(), signing));
        Ok(ServingCert {
            chain,
            chain_pem: chain_pem.to_owned(),
            key_pkcs8: Zeroizing::new(key_pkcs8_der.to_vec()),
            certified,
            spki,
            names,
            serial,
            not_before,
            not_after,
        })
    }

    /// The chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The chain as PEM.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The leaf's SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The leaf's DNS names (lowercase).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The leaf's serial number, hex.
    pub fn serial_hex(&self) -> &str {
        &self.serial
    }

    /// notBefore, seconds since the epoch.
    pub fn not_before(&self) -> u64 {
        self.not_before
    }

    /// notAfter, seconds since the epoch.
    pub fn not_after(&self) -> u64 {
        self.not_after
    }

    /// The chain and key as rustls serves them.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.certified.clone()
    }

    pub(crate) fn key_pkcs8(&self) -> &[u8] {
        &self.key_pkcs8
    }

    /// Whether the leaf names every one of `names` exactly.
    pub fn covers(&self, names: &[String]) -> bool {
        names
            .iter()
            .all(|n| self.names.iter().any(|m| m.eq_ignore_ascii_case(n)))
    }

    /// When this certificate is due for renewal: `fraction` of its lifetime after
    /// notBefore.
    pub fn renew_at(&self, fraction: f64) -> u64 {
        let lifetime = self.not_after - self.not_before;
        // fraction is validated to (0, 1); the product fits in u64.
        let offset = (lifetime as f64 * fraction) as u64;
        self.not_before.saturating_add(offset.min(lifetime))
    }
}

/// The current serving certificate, replaced atomically; subscribers see each change.
pub struct CertStore {
    tx: watch::Sender<Option<Arc<ServingCert>>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("current", &*self.tx.borrow())
            .finish()
    }
}

impl Default for CertStore {
    fn default() -> Self {
        CertStore {
            tx: watch::Sender::new(None),
        }
    }
}

impl CertStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The certificate being served, if any.
    pub fn current(&self) -> Option<Arc<ServingCert>> {
        self.tx.borrow().clone()
    }

    /// Serve `cert` from now on.
    pub fn replace(&self, cert: Arc<ServingCert>) {
        self.tx.send_replace(Some(cert));
    }

    /// A receiver that sees every replacement.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<ServingCert>>> {
        self.tx.subscribe()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current().map(|c| c.certified_key())
    }
}
