//! RA-TLS: X.509 certificates whose key is bound into a TDX quote, and rustls verifiers
//! that check that binding during the handshake (DESIGN.md §3, FORMATS.md "RA-TLS
//! certificates", docs/ratls.md).
//!
//! ```text
//!  guest                                             peer (KMS, gateway, app)
//!  ─────                                             ────────────────────────
//!  P-256 key ──SPKI DER──► SHA-512("ratls-cert:" ‖ SPKI) = report_data
//!  Tee::quote(report_data) ──► quote
//!  cert = { key, ext 1.1 quote, 1.2 event log,        rustls handshake:
//!           1.3 app id, 1.4 usage }  ───────────────►  parse cert (size-bounded)
//!                                                      usage required?  ──► reject
//!                                                      EvidenceVerifier::verify_evidence(
//!                                                        quote, event log,
//!                                                        SHA-512("ratls-cert:" ‖ SPKI))
//!                                                      app id ext == verified app id
//!                                                      handshake signature by cert key
//!                                                      ──► identity, available after
//!                                                          the handshake (peer_identity)
//! ```
//!
//! The certificate's own signature and issuer are *not* trust inputs: trust comes from
//! the quote (which binds the key), the event log (replayed against RTMR3 by the
//! evidence verifier) and the TLS handshake signature (which proves possession of the
//! key). What this module does *not* do: decide whether an identity is *allowed* —
//! that is policy (the contracts), applied by the application to the identity returned.

mod cert;
mod chain;
mod danger;
mod evidence;
mod extensions;
mod verify;

pub use cert::{generate_ra_tls_cert, parse_ra_tls_extensions, RaTlsCert, RaTlsCertBuilder};
pub use chain::{
    pem_to_der, spki_of, verify_app_chain, CertRole, ChainError, RootCa, VerifiedAppChain,
    MAX_CERT_PEM_LEN,
};
pub use danger::{peer_end_entity, PossessionClientVerifier, PossessionServerVerifier};
pub use extensions::{ra_tls_extensions, ExtensionValues};
pub use verify::{EvidenceVerifier, RaTlsClientVerifier, RaTlsServerVerifier};

use sha2::{Digest, Sha512};

/// OIDs, labels and limits of the RA-TLS certificate format, in one place.
pub mod consts {
    use std::time::Duration;

    /// Extension holding the raw TDX quote.
    pub const OID_QUOTE: &[u64] = &[1, 3, 6, 1, 4, 1, 62397, 1, 1];
    /// Extension holding the event log (JSON array, FORMATS.md "Runtime events").
    pub const OID_EVENT_LOG: &[u64] = &[1, 3, 6, 1, 4, 1, 62397, 1, 2];
    /// Extension holding the app id (20 raw bytes).
    pub const OID_APP_ID: &[u64] = &[1, 3, 6, 1, 4, 1, 62397, 1, 3];
    /// Extension holding the special usage (UTF-8, see [`super::Usage`]).
    pub const OID_SPECIAL_USAGE: &[u64] = &[1, 3, 6, 1, 4, 1, 62397, 1, 4];

    /// Report-data tag for a certificate key: `SHA-512("ratls-cert:" ‖ SPKI DER)`.
    pub const REPORT_DATA_TAG_CERT: &str = "ratls-cert";

    /// Usage string of an app's leaf certificate.
    pub const USAGE_APP_CUSTOM: &str = "app:custom";
    /// Usage string of an app's CA certificate.
    pub const USAGE_APP_CA: &str = "app:ca";
    /// Usage string of a KMS server certificate.
    pub const USAGE_KMS_RPC: &str = "kms:rpc";

    /// Largest RA-TLS certificate parsed. rustls itself refuses handshake messages over
    /// 64 KiB, so a larger certificate could never be presented anyway.
    pub const MAX_RA_TLS_CERT_LEN: usize = 64 * 1024;
    /// Longest usage string accepted.
    pub const MAX_USAGE_LEN: usize = 64;

    /// Default validity of a new RA-TLS certificate (one year). The evidence inside does
    /// not expire with it: verifiers judge the quote against current collateral each time.
    pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
    /// How far a new certificate's `notBefore` is set in the past (clock skew).
    pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

    /// How many verified certificates a verifier remembers for `peer_identity`.
    pub const VERIFIED_CACHE_CAPACITY: usize = 1024;
    /// How long a remembered identity is served before the evidence is verified again.
    pub const VERIFIED_CACHE_TTL: Duration = Duration::from_secs(60);
}

/// The special-usage extension (`1.3.6.1.4.1.62397.1.4`): what the certificate is for.
///
/// The usage is a claim of whoever holds the certified key, i.e. of the attested CVM
/// itself; it lets a peer reject a certificate minted for another purpose (an app leaf
/// presented where a KMS is expected). Whether the CVM may *act* in that role is still
/// decided by policy on its verified identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Usage {
    /// `app:custom` — an app's leaf certificate.
    AppCustom,
    /// `app:ca` — an app's CA certificate.
    AppCa,
    /// `kms:rpc` — a KMS node's RPC server certificate.
    KmsRpc,
}

impl Usage {
    /// The UTF-8 string stored in the extension.
    pub const fn as_str(self) -> &'static str {
        match self {
            Usage::AppCustom => consts::USAGE_APP_CUSTOM,
            Usage::AppCa => consts::USAGE_APP_CA,
            Usage::KmsRpc => consts::USAGE_KMS_RPC,
        }
    }

    /// Parses the extension's bytes; unknown usages are an error, not a default.
    pub fn parse(bytes: &[u8]) -> Result<Self, RaTlsError> {
        let unknown = || {
            RaTlsError::UnknownUsage(
                String::from_utf8_lossy(&bytes[..bytes.len().min(consts::MAX_USAGE_LEN)])
                    .into_owned(),
            )
        };
        match std::str::from_utf8(bytes).map_err(|_| unknown())? {
            consts::USAGE_APP_CUSTOM => Ok(Usage::AppCustom),
            consts::USAGE_APP_CA => Ok(Usage::AppCa),
            consts::USAGE_KMS_RPC => Ok(Usage::KmsRpc),
            _ => Err(unknown()),
        }
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The evidence carried by an RA-TLS certificate, as parsed — nothing in it is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// Raw TDX quote (extension `…1.1`).
    pub quote: Vec<u8>,
    /// Event log JSON (extension `…1.2`).
    pub event_log: Vec<u8>,
    /// App id claimed by the certificate (extension `…1.3`), if present.
    pub app_id: Option<[u8; 20]>,
    /// Special usage (extension `…1.4`), if present.
    pub usage: Option<Usage>,
}

/// The report data that binds a certificate key:
/// `SHA-512("ratls-cert:" ‖ DER SubjectPublicKeyInfo)` (FORMATS.md).
pub fn ra_tls_report_data(spki_der: &[u8]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(consts::REPORT_DATA_TAG_CERT.as_bytes());
    h.update(b":");
    h.update(spki_der);
    h.finalize().into()
}

/// Why an RA-TLS certificate could not be built, parsed or verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RaTlsError {
    /// The certificate is larger than [`consts::MAX_RA_TLS_CERT_LEN`]; nothing was parsed.
    #[error("certificate is {len} bytes, over the limit of {max}")]
    CertTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The certificate is not DER X.509 (or has trailing bytes).
    #[error("malformed certificate: {0}")]
    MalformedCert(String),
    /// A required RA-TLS extension is absent: a plain certificate carries no evidence.
    #[error("certificate has no {0} extension: not an RA-TLS certificate")]
    MissingExtension(&'static str),
    /// An RA-TLS extension is not a DER OCTET STRING of the documented content.
    #[error("malformed {name} extension: {reason}")]
    MalformedExtension {
        /// Which extension.
        name: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The usage extension holds a string this version does not know.
    #[error("unknown special usage {0:?}")]
    UnknownUsage(String),
    /// The certificate key is not an EC P-256 key.
    #[error("certificate key is not EC P-256")]
    UnsupportedKey,
    /// The verifier requires a usage the certificate does not declare.
    #[error("certificate usage is {presented:?}, {required} required")]
    WrongUsage {
        /// Required by the verifier.
        required: Usage,
        /// Declared by the certificate.
        presented: Option<Usage>,
    },
    /// The certificate's validity window does not contain the verification time.
    #[error("certificate not valid at {now}: valid from {not_before} to {not_after}")]
    NotValidAt {
        /// Verification time (unix seconds).
        now: u64,
        /// Start of validity (unix seconds).
        not_before: i64,
        /// End of validity (unix seconds).
        not_after: i64,
    },
    /// The evidence verifier rejected the quote or event log (bad signature, report data
    /// not binding this key, RTMR3 mismatch, …). The source is the verifier's own error.
    #[error("evidence rejected: {0}")]
    Evidence(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The app id extension differs from the app id in the verified event log.
    #[error("app id extension {cert} differs from verified app id {verified}")]
    AppIdMismatch {
        /// From the certificate (hex).
        cert: String,
        /// From the verified evidence (hex).
        verified: String,
    },
    /// The peer presented no certificate (asked for an identity on such a connection).
    #[error("peer presented no certificate")]
    NoPeerCertificate,
    /// The TEE could not produce a quote for a new certificate.
    #[error(transparent)]
    Tee(#[from] crate::tee::TeeError),
    /// Key generation or certificate serialisation failed.
    #[error("certificate generation: {0}")]
    Generate(String),
    /// The builder was given an input the format cannot carry.
    #[error("invalid certificate request: {0}")]
    InvalidRequest(String),
}

impl RaTlsError {
    /// The evidence verifier's own error, if this is [`RaTlsError::Evidence`] and it has
    /// type `E`.
    pub fn evidence_error<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            RaTlsError::Evidence(e) => e.downcast_ref::<E>(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
