//! Building and parsing RA-TLS certificates (FORMATS.md "RA-TLS certificates").

use std::fmt;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SigningKey, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use zeroize::Zeroizing;

use super::consts::{CLOCK_SKEW, DEFAULT_VALIDITY, MAX_RA_TLS_CERT_LEN};
use super::extensions::{ra_tls_extensions, CertExtensions, ExtensionValues};
use super::{ra_tls_report_data, Evidence, RaTlsError, Usage};
use crate::tee::Tee;

/// A freshly generated RA-TLS certificate and its private key.
pub struct RaTlsCert {
    /// The certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// The P-256 private key, PKCS#8 DER, wiped on drop.
    key: Zeroizing<Vec<u8>>,
}

impl RaTlsCert {
    /// An existing certificate and its PKCS#8 private key (e.g. loaded from disk, or a
    /// certificate issued elsewhere). Nothing is checked: verifiers check certificates.
    pub fn from_parts(cert_der: CertificateDer<'static>, key_pkcs8_der: Vec<u8>) -> Self {
        Self {
            cert_der,
            key: Zeroizing::new(key_pkcs8_der),
        }
    }

    /// The private key as PKCS#8 DER.
    pub fn key_pkcs8_der(&self) -> &[u8] {
        &self.key
    }

    /// The private key in the form rustls configs take.
    pub fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.to_vec()))
    }

    /// The key as an rcgen key pair, e.g. to sign leaves with an `app:ca` certificate.
    pub fn key_pair(&self) -> Result<KeyPair, RaTlsError> {
        KeyPair::try_from(self.key.as_slice()).map_err(|e| RaTlsError::Generate(e.to_string()))
    }
}

impl fmt::Debug for RaTlsCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaTlsCert")
            .field("cert_der", &format_args!("<{} bytes>", self.cert_der.len()))
            .field("key", &format_args!("<redacted>"))
            .finish()
    }
}

/// Builds an RA-TLS certificate: a new P-256 key, a quote over
/// `SHA-512("ratls-cert:" ‖ SPKI)`, and the four extensions.
///
/// ```no_run
/// # use cairn_attestation::{RaTlsCertBuilder, Usage, Tee};
/// # fn f(tee: &dyn Tee, event_log_json: &[u8]) -> Result<(), cairn_attestation::RaTlsError> {
/// let cert = RaTlsCertBuilder::new(Usage::AppCustom)
///     .common_name("my-app")
///     .alt_names(["my-app.example".to_owned()])
///     .event_log(event_log_json)
///     .app_id([0x11; 20])
///     .build(tee)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RaTlsCertBuilder {
    usage: Usage,
    common_name: String,
    alt_names: Vec<String>,
    app_id: Option<[u8; 20]>,
    event_log: Vec<u8>,
    validity: Duration,
    is_ca: bool,
    /// The time the validity window is computed from (unix seconds); the system clock
    /// at build when `None`.
    issued_at: Option<u64>,
    /// The certificate key; a fresh P-256 key when `None`. (`KeyPair`'s `Debug` elides
    /// the secret.)
    key: Option<std::sync::Arc<KeyPair>>,
}

impl RaTlsCertBuilder {
    /// A builder for a certificate with this special usage, common name "Cairn RA-TLS",
    /// no alt names, no app id, an empty event log and [`DEFAULT_VALIDITY`](super::consts::DEFAULT_VALIDITY).
    pub fn new(usage: Usage) -> Self {
        Self {
            usage,
            common_name: "Cairn RA-TLS".to_owned(),
            alt_names: Vec::new(),
            app_id: None,
            event_log: b"[]".to_vec(),
            validity: DEFAULT_VALIDITY,
            is_ca: false,
            issued_at: None,
            key: None,
        }
    }

    /// Certify this P-256 key instead of a fresh one (e.g. a key derived from the app
    /// key for a path, which must stay the same across calls).
    pub fn key_pair(mut self, key: KeyPair) -> Self {
        self.key = Some(std::sync::Arc::new(key));
        self
    }

    /// Subject common name.
    pub fn common_name(mut self, cn: impl Into<String>) -> Self {
        self.common_name = cn.into();
        self
    }

    /// Subject alternative names (DNS names or IP addresses).
    pub fn alt_names(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.alt_names = names.into_iter().collect();
        self
    }

    /// The app id extension (20 bytes).
    pub fn app_id(mut self, app_id: [u8; 20]) -> Self {
        self.app_id = Some(app_id);
        self
    }

    /// The event log JSON (as the guest agent returns it) embedded beside the quote.
    pub fn event_log(mut self, json: &[u8]) -> Self {
        self.event_log = json.to_vec();
        self
    }

    /// How long the certificate is valid from now.
    pub fn validity(mut self, validity: Duration) -> Self {
        self.validity = validity;
        self
    }

    /// Compute the validity window from `unix_secs` instead of the system clock:
    /// `notBefore` = it − [`CLOCK_SKEW`](super::consts::CLOCK_SKEW), `notAfter` = it +
    /// the validity. For a service whose clock is injected (the KMS's `Clock`), so that
    /// its certificates and the checks it runs agree on "now"; and for tests of clock
    /// skew.
    pub fn issued_at(mut self, unix_secs: u64) -> Self {
        self.issued_at = Some(unix_secs);
        self
    }

    /// Make it a CA certificate (basic constraints CA, keyCertSign), e.g. for `app:ca`.
    pub fn ca(mut self, is_ca: bool) -> Self {
        self.is_ca = is_ca;
        self
    }

    /// A self-signed certificate; the quote comes from `tee`.
    pub fn build(&self, tee: &dyn Tee) -> Result<RaTlsCert, RaTlsError> {
        self.build_inner(tee, None::<&Issuer<'_, KeyPair>>)
    }

    /// A certificate signed by `issuer` (e.g. the KMS's app CA); the quote still binds
    /// the new certificate's own key.
    pub fn build_signed_by<S: SigningKey>(
        &self,
        tee: &dyn Tee,
        issuer: &Issuer<'_, S>,
    ) -> Result<RaTlsCert, RaTlsError> {
        self.build_inner(tee, Some(issuer))
    }

    fn build_inner<S: SigningKey>(
        &self,
        tee: &dyn Tee,
        issuer: Option<&Issuer<'_, S>>,
    ) -> Result<RaTlsCert, RaTlsError> {
        if self.event_log.len() > MAX_RA_TLS_CERT_LEN {
            return Err(RaTlsError::InvalidRequest(format!(
                "event log of {} bytes cannot fit a certificate of at most {MAX_RA_TLS_CERT_LEN}",
                self.event_log.len()
            )));
        }
        let gen_err = |e: rcgen::Error| RaTlsError::Generate(e.to_string());

        let generated;
        let key: &KeyPair = match &self.key {
            Some(key) if key.algorithm() != &PKCS_ECDSA_P256_SHA256 => {
                return Err(RaTlsError::InvalidRequest(
                    "RA-TLS certificate keys are P-256".to_owned(),
                ))
            }
            Some(key) => key,
            None => {
                generated = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
                &generated
            }
        };
        let report_data = ra_tls_report_data(&key.subject_public_key_info());
        let quote = tee.quote(&report_data)?;

        let mut params = CertificateParams::new(self.alt_names.clone()).map_err(gen_err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, self.common_name.as_str());
        let now = match self.issued_at {
            None => time::OffsetDateTime::now_utc(),
            Some(t) => i64::try_from(t)
                .ok()
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
                .ok_or_else(|| {
                    RaTlsError::InvalidRequest(format!("issue time {t} is out of range"))
                })?,
        };
        let validity = time::Duration::try_from(self.validity)
            .map_err(|_| RaTlsError::InvalidRequest("validity out of range".to_owned()))?;
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now
            .checked_add(validity)
            .ok_or_else(|| RaTlsError::InvalidRequest("validity out of range".to_owned()))?;
        if self.is_ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
        } else {
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
        }
        params.custom_extensions = ra_tls_extensions(ExtensionValues {
            quote: Some(&quote),
            event_log: Some(&self.event_log),
            app_id: self.app_id.as_ref(),
            usage: Some(self.usage),
        });

        let cert = match issuer {
            None => params.self_signed(key),
            Some(issuer) => params.signed_by(key, issuer),
        }
        .map_err(gen_err)?;
        let cert_der = cert.der().clone();
        if cert_der.len() > MAX_RA_TLS_CERT_LEN {
            return Err(RaTlsError::CertTooLarge {
                len: cert_der.len(),
                max: MAX_RA_TLS_CERT_LEN,
            });
        }
        Ok(RaTlsCert {
            cert_der,
            key: Zeroizing::new(key.serialize_der()),
        })
    }
}

/// A self-signed RA-TLS certificate for `subject` (the common name) with the given
/// evidence; the shorthand for [`RaTlsCertBuilder`].
pub fn generate_ra_tls_cert(
    tee: &dyn Tee,
    event_log_json: &[u8],
    app_id: Option<[u8; 20]>,
    usage: Usage,
    subject: &str,
) -> Result<RaTlsCert, RaTlsError> {
    let mut builder = RaTlsCertBuilder::new(usage)
        .common_name(subject)
        .event_log(event_log_json);
    if let Some(app_id) = app_id {
        builder = builder.app_id(app_id);
    }
    builder.build(tee)
}

/// Extracts the RA-TLS evidence from a certificate. Nothing is verified; the quote and
/// event log extensions are required, app id and usage are optional.
pub fn parse_ra_tls_extensions(cert_der: &[u8]) -> Result<Evidence, RaTlsError> {
    Ok(ParsedCert::parse(cert_der)?.evidence)
}

/// What the verifier needs from a certificate.
#[derive(Debug)]
pub(crate) struct ParsedCert {
    pub(crate) evidence: Evidence,
    pub(crate) spki_der: Vec<u8>,
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

impl ParsedCert {
    /// Size check first, then X.509 (no trailing bytes), then the four extensions.
    pub(crate) fn parse(cert_der: &[u8]) -> Result<Self, RaTlsError> {
        if cert_der.len() > MAX_RA_TLS_CERT_LEN {
            return Err(RaTlsError::CertTooLarge {
                len: cert_der.len(),
                max: MAX_RA_TLS_CERT_LEN,
            });
        }
        // Duplicate extensions are rejected by x509-parser itself.
        let (rest, cert) = x509_parser::parse_x509_certificate(cert_der)
            .map_err(|e| RaTlsError::MalformedCert(e.to_string()))?;
        if !rest.is_empty() {
            return Err(RaTlsError::MalformedCert(format!(
                "{} trailing bytes",
                rest.len()
            )));
        }

        let ext = CertExtensions::read(&cert)?;
        let spki = cert.public_key();
        let is_p256 = spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY
            && spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .is_some_and(|curve| curve == OID_EC_P256);

        let evidence = Evidence {
            quote: ext.quote.ok_or(RaTlsError::MissingExtension("quote"))?,
            event_log: ext
                .event_log
                .ok_or(RaTlsError::MissingExtension("event log"))?,
            app_id: ext.app_id,
            usage: ext.usage,
        };
        if !is_p256 {
            return Err(RaTlsError::UnsupportedKey);
        }
        let validity = cert.validity();
        Ok(Self {
            evidence,
            spki_der: spki.raw.to_vec(),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_strings_match_formats_md() {
        for usage in [Usage::AppCustom, Usage::AppCa, Usage::KmsRpc] {
            assert_eq!(Usage::parse(usage.as_str().as_bytes()).unwrap(), usage);
        }
        assert_eq!(Usage::KmsRpc.as_str(), "kms:rpc");
        assert!(matches!(
            Usage::parse(b"kms:admin"),
            Err(RaTlsError::UnknownUsage(u)) if u == "kms:admin"
        ));
        assert!(matches!(
            Usage::parse(&[0xff]),
            Err(RaTlsError::UnknownUsage(_))
        ));
    }

    /// docs/ratls.md test vector: the P-256 key with secret scalar 1 (public key = G).
    #[test]
    fn report_data_known_answer_for_the_generator_key() {
        use p256::pkcs8::EncodePublicKey;
        let mut scalar = [0u8; 32];
        scalar[31] = 1;
        let sk = p256::SecretKey::from_slice(&scalar).unwrap();
        let spki = sk.public_key().to_public_key_der().unwrap();
        assert_eq!(
            hex::encode(spki.as_bytes()),
            "3059301306072a8648ce3d020106082a8648ce3d030107034200\
             046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296\
             4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
        );
        assert_eq!(
            hex::encode(ra_tls_report_data(spki.as_bytes())),
            "8bf9513e7e20627726e7283dae3b581494058996c16138326a933b56438e2dea\
             a400cca5c8028878093c1d96812f98d459de692a9a54a11ff0ec5c2bf5873b9a"
        );
        assert_eq!(
            hex::encode(crate::der::der_octet_string(b"kms:rpc")),
            "04076b6d733a727063"
        );
    }

    #[test]
    fn report_data_tag_check_value() {
        // FORMATS.md: SHA-512("app-data:test content") begins 7ea0b744 — same shape as ours.
        use sha2::{Digest, Sha512};
        let d = Sha512::digest(b"app-data:test content");
        assert_eq!(hex::encode(&d[..4]), "7ea0b744");
        let spki = b"spki";
        let want: [u8; 64] = Sha512::digest(b"ratls-cert:spki").into();
        assert_eq!(ra_tls_report_data(spki), want);
    }
}
