//! The four RA-TLS X.509 extensions (FORMATS.md "RA-TLS certificates"), written by one
//! function and read by one function.
//!
//! | OID | content |
//! |---|---|
//! | `1.3.6.1.4.1.62397.1.1` | raw TDX quote |
//! | `1.3.6.1.4.1.62397.1.2` | event log JSON |
//! | `1.3.6.1.4.1.62397.1.3` | app id, 20 raw bytes |
//! | `1.3.6.1.4.1.62397.1.4` | special usage, UTF-8 ([`Usage`]) |
//!
//! All non-critical; each value is a DER OCTET STRING wrapping the bytes
//! ([`crate::der_octet_string`]).

use rcgen::CustomExtension;
use x509_parser::certificate::X509Certificate;

use super::consts::{MAX_USAGE_LEN, OID_APP_ID, OID_EVENT_LOG, OID_QUOTE, OID_SPECIAL_USAGE};
use super::{RaTlsError, Usage};
use crate::der::{der_octet_string, octet_string_content};

/// The values of one certificate's RA-TLS extensions; `None` leaves that extension out.
///
/// An RA-TLS end-entity certificate carries all four (`RaTlsCertBuilder`, the KMS's
/// `sign-cert` leaves); a KMS app CA carries only the app id and usage `app:ca`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtensionValues<'a> {
    /// The raw TDX quote (`…62397.1.1`).
    pub quote: Option<&'a [u8]>,
    /// The event log JSON (`…62397.1.2`).
    pub event_log: Option<&'a [u8]>,
    /// The app id (`…62397.1.3`).
    pub app_id: Option<&'a [u8; 20]>,
    /// The special usage (`…62397.1.4`).
    pub usage: Option<Usage>,
}

/// The rcgen extensions for `values`, in OID order, non-critical, each value a DER
/// OCTET STRING: the one place Cairn writes RA-TLS extensions.
pub fn ra_tls_extensions(values: ExtensionValues<'_>) -> Vec<CustomExtension> {
    let ext =
        |oid: &[u64], bytes: &[u8]| CustomExtension::from_oid_content(oid, der_octet_string(bytes));
    let mut out = Vec::with_capacity(4);
    if let Some(quote) = values.quote {
        out.push(ext(OID_QUOTE, quote));
    }
    if let Some(event_log) = values.event_log {
        out.push(ext(OID_EVENT_LOG, event_log));
    }
    if let Some(app_id) = values.app_id {
        out.push(ext(OID_APP_ID, app_id));
    }
    if let Some(usage) = values.usage {
        out.push(ext(OID_SPECIAL_USAGE, usage.as_str().as_bytes()));
    }
    out
}

/// The RA-TLS extensions a certificate carries, each checked for its documented shape;
/// absent ones are `None`. Nothing here is verified against evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CertExtensions {
    pub(crate) quote: Option<Vec<u8>>,
    pub(crate) event_log: Option<Vec<u8>>,
    pub(crate) app_id: Option<[u8; 20]>,
    pub(crate) usage: Option<Usage>,
}

impl CertExtensions {
    /// Reads the four extensions of a parsed certificate (x509-parser itself rejects
    /// duplicate extensions).
    pub(crate) fn read(cert: &X509Certificate<'_>) -> Result<Self, RaTlsError> {
        let mut out = CertExtensions::default();
        for ext in cert.extensions() {
            let is = |oid: &[u64]| {
                ext.oid
                    .iter()
                    .is_some_and(|arcs| arcs.eq(oid.iter().copied()))
            };
            if is(OID_QUOTE) {
                out.quote = Some(octet_string_content(ext.value, "quote")?.to_vec());
            } else if is(OID_EVENT_LOG) {
                out.event_log = Some(octet_string_content(ext.value, "event log")?.to_vec());
            } else if is(OID_APP_ID) {
                let bytes = octet_string_content(ext.value, "app id")?;
                out.app_id = Some(<[u8; 20]>::try_from(bytes).map_err(|_| {
                    RaTlsError::MalformedExtension {
                        name: "app id",
                        reason: "not 20 bytes",
                    }
                })?);
            } else if is(OID_SPECIAL_USAGE) {
                let bytes = octet_string_content(ext.value, "usage")?;
                if bytes.len() > MAX_USAGE_LEN {
                    return Err(RaTlsError::MalformedExtension {
                        name: "usage",
                        reason: "too long",
                    });
                }
                out.usage = Some(Usage::parse(bytes)?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(values: ExtensionValues<'_>) -> CertExtensions {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.custom_extensions = ra_tls_extensions(values);
        let cert = params.self_signed(&key).unwrap();
        let (_, x509) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
        for e in x509.extensions() {
            if e.oid.to_id_string().starts_with("1.3.6.1.4.1.62397.1.") {
                assert!(!e.critical, "{}", e.oid);
            }
        }
        CertExtensions::read(&x509).unwrap()
    }

    #[test]
    fn written_extensions_read_back_exactly() {
        let all = read_back(ExtensionValues {
            quote: Some(&[1; 300]),
            event_log: Some(b"[]"),
            app_id: Some(&[0x11; 20]),
            usage: Some(Usage::KmsRpc),
        });
        assert_eq!(
            all,
            CertExtensions {
                quote: Some(vec![1; 300]),
                event_log: Some(b"[]".to_vec()),
                app_id: Some([0x11; 20]),
                usage: Some(Usage::KmsRpc),
            }
        );
    }

    #[test]
    fn absent_values_leave_their_extension_out() {
        let ca = read_back(ExtensionValues {
            app_id: Some(&[0x22; 20]),
            usage: Some(Usage::AppCa),
            ..ExtensionValues::default()
        });
        assert_eq!(ca.quote, None);
        assert_eq!(ca.event_log, None);
        assert_eq!(ca.app_id, Some([0x22; 20]));
        assert_eq!(ca.usage, Some(Usage::AppCa));
        assert!(ra_tls_extensions(ExtensionValues::default()).is_empty());
    }
}
