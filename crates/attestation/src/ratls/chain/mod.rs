//! X.509 chains under a KMS root CA (DESIGN.md §5, §7; docs/ratls.md "Relying parties").
//!
//! RA-TLS evidence proves *what* a peer runs, not *which* key family it belongs to: any
//! TDX VM can produce a valid `kms:rpc` quote. What names a KMS cluster is its root CA —
//! a self-signed P-256 CA whose SubjectPublicKeyInfo KmsAuth registers on chain and a
//! compose's `key_provider_id` pins. Under it:
//!
//! ```text
//!  root CA (self-signed, "Cairn KMS Root CA")
//!   ├── KMS TLS server certificate (usage kms:rpc, RA-TLS)      RootCa::verify_issued
//!   └── app CA (usage app:ca, app id, pathLen 0)                 ┐
//!        └── leaf (usage app:custom, app id, [quote, event log]) ┘ verify_app_chain
//! ```
//!
//! Every link is checked the same way: the issuer is a CA (basic constraints), the
//! child's issuer name is the issuer's subject, the child's ECDSA-P256-SHA256 signature
//! over its TBS verifies with the issuer's key, and both certificates are valid at the
//! time the caller passes. [`verify_app_chain`] is the one verifier for relying parties
//! of KMS-issued app certificates: it also requires the app CA and the leaf to carry the
//! expected app id, so a leaf of app A is never taken for app B.
//!
//! What this module does *not* do: verify RA-TLS evidence (the verifiers in this crate
//! do), consult revocation (KMS certificates are short-lived or rotate with the key
//! generation), or decide which root to trust (the caller pins it).

use p256::ecdsa::signature::Verifier as _;
use x509_parser::certificate::X509Certificate;
use x509_parser::error::{PEMError, X509Error};
use x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256;

use super::consts::MAX_RA_TLS_CERT_LEN;
use super::extensions::CertExtensions;
use super::{RaTlsError, Usage};

/// Largest PEM certificate accepted.
pub const MAX_CERT_PEM_LEN: usize = 64 * 1024;

/// Which certificate of a chain a [`ChainError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertRole {
    /// The KMS root CA.
    Root,
    /// A KMS app CA (usage `app:ca`).
    AppCa,
    /// An app leaf issued by an app CA (usage `app:custom`).
    Leaf,
    /// A KMS node's TLS server certificate (usage `kms:rpc`).
    KmsServer,
}

impl std::fmt::Display for CertRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CertRole::Root => "root CA",
            CertRole::AppCa => "app CA",
            CertRole::Leaf => "leaf",
            CertRole::KmsServer => "KMS server",
        })
    }
}

/// Why a certificate chain was refused. Each check has its own variant and names the
/// certificate it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The PEM text is larger than [`MAX_CERT_PEM_LEN`]; nothing was parsed.
    #[error("{role} certificate PEM of {len} bytes exceeds the limit of {max}")]
    PemTooLarge {
        /// Which certificate.
        role: CertRole,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The text is not PEM.
    #[error("{role} certificate is not PEM")]
    Pem {
        /// Which certificate.
        role: CertRole,
        /// The PEM reader's error.
        #[source]
        source: PEMError,
    },
    /// The PEM block is not a `CERTIFICATE`.
    #[error("{role} PEM block is labelled {label:?}, not CERTIFICATE")]
    PemLabel {
        /// Which certificate.
        role: CertRole,
        /// The label found (at most 64 characters).
        label: String,
    },
    /// The DER is larger than [`MAX_RA_TLS_CERT_LEN`]; nothing was parsed.
    #[error("{role} certificate of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Which certificate.
        role: CertRole,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a DER X.509 certificate.
    #[error("{role} certificate is not DER X.509")]
    Malformed {
        /// Which certificate.
        role: CertRole,
        /// The parser's error.
        #[source]
        source: X509Error,
    },
    /// Bytes follow the certificate.
    #[error("{role} certificate is followed by {len} trailing bytes")]
    TrailingBytes {
        /// Which certificate.
        role: CertRole,
        /// How many.
        len: usize,
    },
    /// The issuer of this certificate is not a CA (no basic constraints with `cA`).
    #[error("the issuer of the {role} certificate is not a CA")]
    IssuerNotCa {
        /// The child certificate.
        role: CertRole,
    },
    /// The certificate's issuer name is not the issuer's subject.
    #[error("{role} certificate is issued by {issuer:?}, not by {expected:?}")]
    IssuerName {
        /// The child certificate.
        role: CertRole,
        /// The child's issuer name.
        issuer: String,
        /// The expected issuer's subject.
        expected: String,
    },
    /// The signature algorithm is not ecdsa-with-SHA256.
    #[error("{role} certificate is signed with {oid}, not ecdsa-with-SHA256")]
    SignatureAlgorithm {
        /// The child certificate.
        role: CertRole,
        /// The algorithm OID found.
        oid: String,
    },
    /// The issuer's key is not a P-256 point.
    #[error("the issuer key of the {role} certificate is not a P-256 point")]
    IssuerKey {
        /// The child certificate.
        role: CertRole,
    },
    /// The signature is not a DER ECDSA signature.
    #[error("{role} certificate signature is malformed")]
    MalformedSignature {
        /// The child certificate.
        role: CertRole,
    },
    /// The signature does not verify with the issuer's key.
    #[error("{role} certificate signature does not verify with its issuer's key")]
    BadSignature {
        /// The child certificate.
        role: CertRole,
    },
    /// The certificate's validity window does not contain the verification time.
    #[error("{role} certificate is not valid at {now}: valid from {not_before} to {not_after}")]
    NotValidAt {
        /// Which certificate.
        role: CertRole,
        /// Verification time (unix seconds).
        now: u64,
        /// Start of validity (unix seconds).
        not_before: i64,
        /// End of validity (unix seconds).
        not_after: i64,
    },
    /// The root CA certificate is not a self-signed P-256 CA.
    #[error("the root CA certificate is not a self-signed P-256 CA")]
    RootNotSelfSigned {
        /// Which self-signature check failed.
        #[source]
        source: Box<ChainError>,
    },
    /// A chain is not `leaf, app CA` or `leaf, app CA, root`.
    #[error("a chain of {len} certificates; expected leaf, app CA[, root]")]
    ChainLength {
        /// How many certificates it has.
        len: usize,
    },
    /// The chain's last certificate is a root CA other than the trusted one.
    #[error("the chain ends in another root CA than the trusted one")]
    ForeignRoot,
    /// An RA-TLS extension of the certificate is malformed.
    #[error("{role} certificate has a malformed RA-TLS extension")]
    Extension {
        /// Which certificate.
        role: CertRole,
        /// What is malformed.
        #[source]
        source: RaTlsError,
    },
    /// The certificate carries no app-id extension.
    #[error("{role} certificate carries no app id extension")]
    MissingAppId {
        /// Which certificate.
        role: CertRole,
    },
    /// The certificate is for another app.
    #[error("{role} certificate is for app 0x{}, not 0x{}", hex::encode(.found), hex::encode(.expected))]
    AppIdMismatch {
        /// Which certificate.
        role: CertRole,
        /// The app id the relying party expects.
        expected: [u8; 20],
        /// The app id the certificate carries.
        found: [u8; 20],
    },
    /// The certificate's special usage is not the one its place in the chain requires.
    #[error("{role} certificate usage is {found:?}, {expected} required")]
    WrongUsage {
        /// Which certificate.
        role: CertRole,
        /// The usage required.
        expected: Usage,
        /// The usage found.
        found: Option<Usage>,
    },
    /// A leaf certificate claims to be a CA.
    #[error("the leaf certificate is a CA")]
    LeafIsCa,
}

/// A certificate (DER) from PEM text, bounded by [`MAX_CERT_PEM_LEN`].
pub fn pem_to_der(pem: &str, role: CertRole) -> Result<Vec<u8>, ChainError> {
    if pem.len() > MAX_CERT_PEM_LEN {
        return Err(ChainError::PemTooLarge {
            role,
            len: pem.len(),
            max: MAX_CERT_PEM_LEN,
        });
    }
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| {
        let source = match e {
            x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
            x509_parser::nom::Err::Incomplete(_) => PEMError::IncompletePEM,
        };
        ChainError::Pem { role, source }
    })?;
    if block.label != "CERTIFICATE" {
        return Err(ChainError::PemLabel {
            role,
            label: block.label.chars().take(64).collect(),
        });
    }
    Ok(block.contents)
}

/// Parses `der` as one X.509 certificate: size first, then DER, no trailing bytes.
fn parse(der: &[u8], role: CertRole) -> Result<X509Certificate<'_>, ChainError> {
    if der.len() > MAX_RA_TLS_CERT_LEN {
        return Err(ChainError::TooLarge {
            role,
            len: der.len(),
            max: MAX_RA_TLS_CERT_LEN,
        });
    }
    let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| {
        let source = match e {
            x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
            x509_parser::nom::Err::Incomplete(_) => X509Error::InvalidCertificate,
        };
        ChainError::Malformed { role, source }
    })?;
    if !rest.is_empty() {
        return Err(ChainError::TrailingBytes {
            role,
            len: rest.len(),
        });
    }
    Ok(cert)
}

/// The DER SubjectPublicKeyInfo of a certificate.
pub fn spki_of(der: &[u8], role: CertRole) -> Result<Vec<u8>, ChainError> {
    Ok(parse(der, role)?.public_key().raw.to_vec())
}

/// `cert` (in the role `role`) is valid at `now` (unix seconds).
fn check_valid_at(cert: &X509Certificate<'_>, role: CertRole, now: u64) -> Result<(), ChainError> {
    let validity = cert.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    let t = i128::from(now);
    if t < i128::from(not_before) || t > i128::from(not_after) {
        return Err(ChainError::NotValidAt {
            role,
            now,
            not_before,
            not_after,
        });
    }
    Ok(())
}

/// `child` (in the role `role`) is signed by `issuer`: the issuer is a CA, the names
/// match, and the ECDSA-P256-SHA256 signature over the child's TBS verifies.
fn check_signed_by(
    child: &X509Certificate<'_>,
    role: CertRole,
    issuer: &X509Certificate<'_>,
) -> Result<(), ChainError> {
    match issuer.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        _ => return Err(ChainError::IssuerNotCa { role }),
    }
    if child.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(ChainError::IssuerName {
            role,
            issuer: child.issuer().to_string(),
            expected: issuer.subject().to_string(),
        });
    }
    if child.signature_algorithm.algorithm != OID_SIG_ECDSA_WITH_SHA256 {
        return Err(ChainError::SignatureAlgorithm {
            role,
            oid: child.signature_algorithm.algorithm.to_id_string(),
        });
    }
    let key =
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&issuer.public_key().subject_public_key.data)
            .map_err(|_| ChainError::IssuerKey { role })?;
    let sig = p256::ecdsa::Signature::from_der(&child.signature_value.data)
        .map_err(|_| ChainError::MalformedSignature { role })?;
    key.verify(child.tbs_certificate.as_ref(), &sig)
        .map_err(|_| ChainError::BadSignature { role })
}

/// The RA-TLS extensions of `cert`, as a chain error.
fn extensions(cert: &X509Certificate<'_>, role: CertRole) -> Result<CertExtensions, ChainError> {
    CertExtensions::read(cert).map_err(|source| ChainError::Extension { role, source })
}

/// `cert` carries usage `expected` and the app id `app_id`.
fn check_app_cert(
    cert: &X509Certificate<'_>,
    role: CertRole,
    expected: Usage,
    app_id: &[u8; 20],
) -> Result<(), ChainError> {
    let ext = extensions(cert, role)?;
    if ext.usage != Some(expected) {
        return Err(ChainError::WrongUsage {
            role,
            expected,
            found: ext.usage,
        });
    }
    match ext.app_id {
        None => Err(ChainError::MissingAppId { role }),
        Some(found) if found != *app_id => Err(ChainError::AppIdMismatch {
            role,
            expected: *app_id,
            found,
        }),
        Some(_) => Ok(()),
    }
}

/// A trusted KMS root CA certificate: a self-signed P-256 CA. Where the trust comes from
/// is the caller's business (a `key_provider_id` pin, the SPKI KmsAuth registers on chain,
/// or the root a verified KMS returned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootCa {
    der: Vec<u8>,
    spki: Vec<u8>,
}

impl RootCa {
    /// Parses a root CA certificate (DER) and checks that it is a self-signed P-256 CA.
    /// Its validity is checked at each verification, against the time given there.
    pub fn from_der(der: Vec<u8>) -> Result<Self, ChainError> {
        let cert = parse(&der, CertRole::Root)?;
        check_signed_by(&cert, CertRole::Root, &cert).map_err(|e| {
            ChainError::RootNotSelfSigned {
                source: Box::new(e),
            }
        })?;
        let spki = cert.public_key().raw.to_vec();
        Ok(RootCa { der, spki })
    }

    /// [`Self::from_der`] of a PEM certificate.
    pub fn from_pem(pem: &str) -> Result<Self, ChainError> {
        Self::from_der(pem_to_der(pem, CertRole::Root)?)
    }

    /// The root CA certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The root CA's DER SubjectPublicKeyInfo (what `key_provider_id` pins and KmsAuth
    /// registers).
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// The parsed root (always parses: checked in the constructor).
    fn parsed(&self) -> Result<X509Certificate<'_>, ChainError> {
        parse(&self.der, CertRole::Root)
    }

    /// Checks that `end_entity` (DER, a KMS node's TLS server certificate) is issued
    /// directly by this root, and that both are valid at `now` (unix seconds).
    pub fn verify_issued(&self, end_entity: &[u8], now: u64) -> Result<(), ChainError> {
        let role = CertRole::KmsServer;
        let root = self.parsed()?;
        let cert = parse(end_entity, role)?;
        check_valid_at(&root, CertRole::Root, now)?;
        check_signed_by(&cert, role, &root)?;
        check_valid_at(&cert, role, now)
    }
}

/// A leaf certificate that [`verify_app_chain`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAppChain {
    /// The app both the leaf and its app CA are for.
    pub app_id: [u8; 20],
    /// The leaf's DER SubjectPublicKeyInfo (the key the peer must prove it holds).
    pub leaf_spki: Vec<u8>,
    /// The end of the leaf's validity (unix seconds).
    pub leaf_not_after: i64,
}

/// The relying party's check of a KMS-issued app certificate chain (DER, leaf first):
/// `leaf, app CA` or `leaf, app CA, root` where the last equals `root`.
///
/// In order: the chain shape; the app CA is signed by `root`, valid at `now`, has usage
/// `app:ca` and the app id `app_id`; the leaf is signed by the app CA, valid at `now`, not
/// a CA, has usage `app:custom` and the app id `app_id`; `root` itself is valid at `now`.
/// It does not prove that the peer holds the leaf key: a TLS handshake with the leaf
/// (or a signature by it) must do that. docs/ratls.md lists what else a relying party
/// must check.
pub fn verify_app_chain<C: AsRef<[u8]>>(
    root: &RootCa,
    chain: &[C],
    app_id: &[u8; 20],
    now: u64,
) -> Result<VerifiedAppChain, ChainError> {
    let (leaf, app_ca) = match chain {
        [leaf, app_ca] => (leaf.as_ref(), app_ca.as_ref()),
        [leaf, app_ca, last] if last.as_ref() == root.der() => (leaf.as_ref(), app_ca.as_ref()),
        [_, _, _] => return Err(ChainError::ForeignRoot),
        _ => return Err(ChainError::ChainLength { len: chain.len() }),
    };
    let root_cert = root.parsed()?;
    let ca = parse(app_ca, CertRole::AppCa)?;
    let leaf_cert = parse(leaf, CertRole::Leaf)?;

    check_valid_at(&root_cert, CertRole::Root, now)?;
    check_signed_by(&ca, CertRole::AppCa, &root_cert)?;
    check_valid_at(&ca, CertRole::AppCa, now)?;
    check_app_cert(&ca, CertRole::AppCa, Usage::AppCa, app_id)?;

    check_signed_by(&leaf_cert, CertRole::Leaf, &ca)?;
    check_valid_at(&leaf_cert, CertRole::Leaf, now)?;
    if let Ok(Some(bc)) = leaf_cert.basic_constraints() {
        if bc.value.ca {
            return Err(ChainError::LeafIsCa);
        }
    }
    check_app_cert(&leaf_cert, CertRole::Leaf, Usage::AppCustom, app_id)?;
    Ok(VerifiedAppChain {
        app_id: *app_id,
        leaf_spki: leaf_cert.public_key().raw.to_vec(),
        leaf_not_after: leaf_cert.validity().not_after.timestamp(),
    })
}

#[cfg(test)]
mod tests;
