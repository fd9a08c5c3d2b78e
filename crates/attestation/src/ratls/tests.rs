//! Unit tests of certificate building, parsing and the verification order, with a fake
//! TEE whose "quotes" are MACs. The handshake tests with the real simulator and
//! `Verifier` are in `tests/it/ratls.rs`.

use rcgen::{CertificateParams, CustomExtension, KeyPair, PublicKeyData, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::UnixTime;
use sha2::{Digest, Sha256};

use super::consts::*;
use super::*;
use crate::der::der_octet_string;
use crate::tee::{Tee, TeeError};

/// A TEE whose quote is `"FAKE" ‖ app_id ‖ report_data ‖ SHA-256(secret ‖ app_id ‖ report_data)`.
struct FakeTee {
    secret: [u8; 32],
    app_id: [u8; 20],
}

impl Tee for FakeTee {
    fn extend_rtmr3(&self, _digest: &[u8; 48]) -> Result<(), TeeError> {
        Err(TeeError::Unsupported("fake".into()))
    }
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, TeeError> {
        let mac = Sha256::digest([&self.secret[..], &self.app_id, report_data].concat());
        Ok([b"FAKE".as_slice(), &self.app_id, report_data, &mac].concat())
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
enum FakeError {
    #[error("bad quote")]
    BadQuote,
    #[error("report data mismatch")]
    ReportData,
}

#[derive(Debug)]
struct FakeVerifier {
    secret: [u8; 32],
}

impl EvidenceVerifier for FakeVerifier {
    type Identity = [u8; 20];
    type Error = FakeError;
    fn verify_evidence(
        &self,
        quote: &[u8],
        _event_log_json: &[u8],
        expected_report_data: &[u8; 64],
    ) -> Result<[u8; 20], FakeError> {
        if quote.len() != 4 + 20 + 64 + 32 || &quote[..4] != b"FAKE" {
            return Err(FakeError::BadQuote);
        }
        let (app_id, rest) = quote[4..].split_at(20);
        let (rd, mac) = rest.split_at(64);
        let want = Sha256::digest([&self.secret[..], app_id, rd].concat());
        if mac != &want[..] {
            return Err(FakeError::BadQuote);
        }
        if rd != expected_report_data {
            return Err(FakeError::ReportData);
        }
        app_id.try_into().map_err(|_| FakeError::BadQuote)
    }
    fn app_id(&self, identity: &[u8; 20]) -> Option<[u8; 20]> {
        Some(*identity)
    }
}

const SECRET: [u8; 32] = [7; 32];
const APP: [u8; 20] = [0xAA; 20];

fn tee() -> FakeTee {
    FakeTee {
        secret: SECRET,
        app_id: APP,
    }
}

fn verifier() -> RaTlsClientVerifier<FakeVerifier> {
    RaTlsClientVerifier::new(FakeVerifier { secret: SECRET })
}

fn now() -> UnixTime {
    UnixTime::now()
}

#[test]
fn built_certificate_carries_all_four_extensions() {
    let cert =
        generate_ra_tls_cert(&tee(), br#"[{"x":1}]"#, Some(APP), Usage::KmsRpc, "kms").unwrap();
    let ev = parse_ra_tls_extensions(&cert.cert_der).unwrap();
    assert_eq!(ev.event_log, br#"[{"x":1}]"#);
    assert_eq!(ev.app_id, Some(APP));
    assert_eq!(ev.usage, Some(Usage::KmsRpc));
    // The quote binds this certificate's key.
    let (_, x509) = x509_parser::parse_x509_certificate(&cert.cert_der).unwrap();
    let rd = ra_tls_report_data(x509.public_key().raw);
    assert_eq!(&ev.quote[24..88], rd.as_slice());
    // The private key is the certified one.
    let kp = cert.key_pair().unwrap();
    assert_eq!(kp.subject_public_key_info(), x509.public_key().raw);
    assert!(format!("{cert:?}").contains("<redacted>"));
}

#[test]
fn extensions_are_non_critical_octet_strings() {
    let cert = generate_ra_tls_cert(&tee(), b"[]", Some(APP), Usage::AppCustom, "app").unwrap();
    let (_, x509) = x509_parser::parse_x509_certificate(&cert.cert_der).unwrap();
    let ours: Vec<_> = x509
        .extensions()
        .iter()
        .filter(|e| e.oid.to_id_string().starts_with("1.3.6.1.4.1.62397.1."))
        .collect();
    assert_eq!(ours.len(), 4);
    // OID 1.3.6.1.4.1.62397.1.1 in DER (docs/ratls.md).
    let quote_oid = hex::decode("060a2b0601040183e73d0101").unwrap();
    assert!(cert
        .cert_der
        .windows(quote_oid.len())
        .any(|w| w == quote_oid));
    for e in ours {
        assert!(!e.critical);
        assert_eq!(e.value[0], 0x04, "{}", e.oid);
    }
}

#[test]
fn valid_certificate_yields_the_verified_identity() {
    let cert = generate_ra_tls_cert(&tee(), b"[]", Some(APP), Usage::AppCustom, "app").unwrap();
    assert_eq!(
        verifier().verify_cert_der(&cert.cert_der, now()).unwrap(),
        APP
    );
}

#[test]
fn ca_signed_certificate_is_verified_by_its_own_evidence() {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = RaTlsCertBuilder::new(Usage::AppCustom)
        .app_id(APP)
        .build_signed_by(&tee(), &issuer)
        .unwrap();
    assert_eq!(
        verifier().verify_cert_der(&cert.cert_der, now()).unwrap(),
        APP
    );
}

#[test]
fn plain_certificate_is_rejected_for_missing_evidence() {
    let plain = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
    let err = verifier()
        .verify_cert_der(plain.cert.der(), now())
        .unwrap_err();
    assert!(
        matches!(err, RaTlsError::MissingExtension("quote")),
        "{err:?}"
    );
}

/// A certificate for a fresh key carrying `quote`, built by hand.
fn cert_with_quote(quote: &[u8], usage: &[u8], app_id: Option<&[u8]>) -> Vec<u8> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let ext = |oid: &[u64], b: &[u8]| CustomExtension::from_oid_content(oid, der_octet_string(b));
    params.custom_extensions = vec![ext(OID_QUOTE, quote), ext(OID_EVENT_LOG, b"[]")];
    params.custom_extensions.push(ext(OID_SPECIAL_USAGE, usage));
    if let Some(app_id) = app_id {
        params.custom_extensions.push(ext(OID_APP_ID, app_id));
    }
    params.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn replayed_quote_in_a_fresh_certificate_is_rejected() {
    let victim = generate_ra_tls_cert(&tee(), b"[]", None, Usage::AppCustom, "app").unwrap();
    let quote = parse_ra_tls_extensions(&victim.cert_der).unwrap().quote;
    let forged = cert_with_quote(&quote, b"app:custom", None);
    let err = verifier().verify_cert_der(&forged, now()).unwrap_err();
    assert_eq!(
        err.evidence_error::<FakeError>(),
        Some(&FakeError::ReportData),
        "{err:?}"
    );
}

#[test]
fn app_id_extension_must_match_the_verified_app_id() {
    // The TEE's verified app id is APP; the certificate's extension claims another one.
    let cert = RaTlsCertBuilder::new(Usage::AppCustom)
        .app_id([0xBB; 20])
        .build(&tee())
        .unwrap();
    let err = verifier()
        .verify_cert_der(&cert.cert_der, now())
        .unwrap_err();
    assert!(matches!(err, RaTlsError::AppIdMismatch { .. }), "{err:?}");
}

#[test]
fn required_usage_is_enforced_before_the_evidence_is_checked() {
    let cert = generate_ra_tls_cert(&tee(), b"[]", None, Usage::AppCustom, "app").unwrap();
    let v = verifier().require_usage(Usage::KmsRpc);
    let err = v.verify_cert_der(&cert.cert_der, now()).unwrap_err();
    assert!(
        matches!(
            err,
            RaTlsError::WrongUsage {
                required: Usage::KmsRpc,
                presented: Some(Usage::AppCustom)
            }
        ),
        "{err:?}"
    );
    // A garbage quote with the right usage gets to the evidence check instead.
    let forged = cert_with_quote(b"junk", b"kms:rpc", None);
    let err = v.verify_cert_der(&forged, now()).unwrap_err();
    assert_eq!(
        err.evidence_error::<FakeError>(),
        Some(&FakeError::BadQuote)
    );
}

#[test]
fn malformed_extensions_are_rejected() {
    let err = parse_ra_tls_extensions(&cert_with_quote(b"q", b"app:other", None)).unwrap_err();
    assert!(
        matches!(&err, RaTlsError::UnknownUsage(u) if u == "app:other"),
        "{err:?}"
    );
    let err =
        parse_ra_tls_extensions(&cert_with_quote(b"q", b"app:ca", Some(&[1; 19]))).unwrap_err();
    assert!(
        matches!(
            err,
            RaTlsError::MalformedExtension {
                name: "app id",
                reason: "not 20 bytes"
            }
        ),
        "{err:?}"
    );
}

#[test]
fn expired_certificate_is_rejected() {
    let cert = generate_ra_tls_cert(&tee(), b"[]", None, Usage::AppCustom, "app").unwrap();
    let later = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        now().as_secs() + DEFAULT_VALIDITY.as_secs() + 3600,
    ));
    let err = verifier()
        .verify_cert_der(&cert.cert_der, later)
        .unwrap_err();
    assert!(matches!(err, RaTlsError::NotValidAt { .. }), "{err:?}");
}

#[test]
fn oversized_and_truncated_certificates_are_rejected_before_parsing() {
    let err = parse_ra_tls_extensions(&vec![0x30; MAX_RA_TLS_CERT_LEN + 1]).unwrap_err();
    assert!(matches!(err, RaTlsError::CertTooLarge { .. }), "{err:?}");
    let cert = generate_ra_tls_cert(&tee(), b"[]", None, Usage::AppCustom, "app").unwrap();
    for len in [0, 1, 10, cert.cert_der.len() / 2, cert.cert_der.len() - 1] {
        let err = parse_ra_tls_extensions(&cert.cert_der[..len]).unwrap_err();
        assert!(
            matches!(err, RaTlsError::MalformedCert(_)),
            "{len}: {err:?}"
        );
    }
    let mut trailing = cert.cert_der.to_vec();
    trailing.push(0);
    let err = parse_ra_tls_extensions(&trailing).unwrap_err();
    assert!(matches!(err, RaTlsError::MalformedCert(_)), "{err:?}");
}

#[test]
fn oversized_event_log_is_refused_at_build_time() {
    let err = RaTlsCertBuilder::new(Usage::AppCustom)
        .event_log(&vec![b' '; MAX_RA_TLS_CERT_LEN])
        .build(&tee())
        .unwrap_err();
    assert!(matches!(err, RaTlsError::CertTooLarge { .. }), "{err:?}");
}

proptest::proptest! {
    #[test]
    fn random_bytes_never_panic_the_parser(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
        let _ = parse_ra_tls_extensions(&bytes);
    }

    #[test]
    fn bit_flips_in_a_certificate_never_panic_or_verify_with_another_key(idx in 0usize..4096, bit in 0u8..8) {
        let cert = generate_ra_tls_cert(&tee(), b"[]", None, Usage::AppCustom, "app").unwrap();
        let mut der = cert.cert_der.to_vec();
        let i = idx % der.len();
        der[i] ^= 1 << bit;
        if let Ok(ev) = parse_ra_tls_extensions(&der) {
            // If it still parses, the identity may only come out when the quote still
            // binds the (possibly flipped) key.
            if verifier().verify_cert_der(&der, now()).is_ok() {
                let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
                let rd = ra_tls_report_data(x.public_key().raw);
                proptest::prop_assert_eq!(&ev.quote[24..88], &rd[..]);
            }
        }
    }
}
