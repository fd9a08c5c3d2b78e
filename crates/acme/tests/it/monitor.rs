//! The monitor's checks on published certificate keys, with quotes from the simulator and
//! the real verifier: every way a published key can be wrong is refused with its reason.

use cairn_acme::{
    cert_key_report_data, verify_quoted_key, verify_served_certificate, AcmeInfo, MonitorError,
    QuotedPublicKey,
};
use cairn_attestation::ids::AppId;
use rcgen::{CertificateParams, KeyPair, PublicKeyData};

use crate::sim::{unix_now, verifier, SimGateway};

const GATEWAY_APP: AppId = AppId([0x6A; 20]);

/// A certificate for a fresh key and the published entry of that key, quoted by `gw`.
fn published(gw: &SimGateway) -> (Vec<u8>, QuotedPublicKey) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["gw.example.com".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let spki = key.subject_public_key_info();
    let quote = gw.quote_now(cert_key_report_data(&spki));
    let entry = QuotedPublicKey {
        public_key: hex::encode(&spki),
        quote: serde_json::to_string(&quote).unwrap(),
    };
    (cert.der().to_vec(), entry)
}

fn info(entries: Vec<QuotedPublicKey>) -> AcmeInfo {
    AcmeInfo {
        quoted_hist_keys: entries,
        ..AcmeInfo::default()
    }
}

/// `verify_served_certificate` of `cert` for the gateway app, now, with `entry` the only
/// published key.
fn serve_checked(
    entry: QuotedPublicKey,
    cert: &[u8],
) -> Result<cairn_attestation::VerifiedQuote, MonitorError> {
    verify_served_certificate(
        &verifier(),
        &info(vec![entry]),
        cert,
        &GATEWAY_APP,
        unix_now(),
    )
}

/// `entry` with its quote document (JSON: quote, event log, …) changed by `edit`.
fn with_quote_doc(
    entry: &QuotedPublicKey,
    edit: impl FnOnce(&mut serde_json::Value),
) -> QuotedPublicKey {
    let mut doc: serde_json::Value = serde_json::from_str(&entry.quote).unwrap();
    edit(&mut doc);
    QuotedPublicKey {
        quote: doc.to_string(),
        ..entry.clone()
    }
}

#[test]
fn a_published_key_quoted_by_the_gateway_app_verifies() {
    let gw = SimGateway::boot(GATEWAY_APP, 1);
    let (cert, entry) = published(&gw);
    let v = serve_checked(entry, &cert).unwrap();
    assert_eq!(v.app_id(), &GATEWAY_APP);
}

#[test]
fn a_key_quoted_by_another_app_is_refused() {
    let impostor = SimGateway::boot(AppId([0x11; 20]), 1);
    let (cert, entry) = published(&impostor);
    match serve_checked(entry, &cert) {
        Err(MonitorError::WrongApp { expected, got }) => {
            assert_eq!(expected, GATEWAY_APP.to_hex());
            assert_eq!(got, "11".repeat(20));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_certificate_whose_key_is_not_published_is_refused() {
    let gw = SimGateway::boot(GATEWAY_APP, 1);
    let (_cert, entry) = published(&gw);
    let (other_cert, _) = published(&gw);
    assert!(matches!(
        serve_checked(entry, &other_cert),
        Err(MonitorError::KeyNotPublished { .. })
    ));
}

#[test]
fn a_quote_over_another_key_does_not_bind_the_published_key() {
    let gw = SimGateway::boot(GATEWAY_APP, 1);
    let (_, quoted) = published(&gw);
    let (cert, mut entry) = published(&gw);
    // the entry names this certificate's key but carries the quote made for another key
    entry.quote = quoted.quote;
    match serve_checked(entry, &cert) {
        Err(MonitorError::Quote(cairn_attestation::Error::ReportDataMismatch)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_tampered_quote_or_event_log_is_refused() {
    let gw = SimGateway::boot(GATEWAY_APP, 1);
    let (_, entry) = published(&gw);
    // flip one byte of the report body (inside the signed part)
    let tampered = with_quote_doc(&entry, |doc| {
        let mut bytes = hex::decode(doc["quote"].as_str().unwrap()).unwrap();
        bytes[200] ^= 1;
        doc["quote"] = hex::encode(&bytes).into();
    });
    assert!(matches!(
        verify_quoted_key(&verifier(), &tampered, &GATEWAY_APP, unix_now()),
        Err(MonitorError::Quote(_))
    ));
    // an event log that does not replay to RTMR3
    let no_log = with_quote_doc(&entry, |doc| doc["event_log"] = "[]".into());
    assert!(matches!(
        verify_quoted_key(&verifier(), &no_log, &GATEWAY_APP, unix_now()),
        Err(MonitorError::Quote(_))
    ));
}

#[test]
fn missing_or_malformed_entries_are_refused_before_any_verification() {
    let gw = SimGateway::boot(GATEWAY_APP, 1);
    let (_, entry) = published(&gw);
    let cases = [
        (
            QuotedPublicKey {
                quote: String::new(),
                ..entry.clone()
            },
            "NoQuote",
        ),
        (
            QuotedPublicKey {
                quote: "{".into(),
                ..entry.clone()
            },
            "MalformedQuote",
        ),
        (
            QuotedPublicKey {
                public_key: "zz".into(),
                ..entry.clone()
            },
            "MalformedHex",
        ),
    ];
    for (e, want) in cases {
        let got = verify_quoted_key(&verifier(), &e, &GATEWAY_APP, unix_now()).unwrap_err();
        let ok = match want {
            "NoQuote" => matches!(got, MonitorError::NoQuote),
            "MalformedQuote" => matches!(got, MonitorError::MalformedQuote(_)),
            _ => matches!(
                got,
                MonitorError::MalformedHex {
                    field: "public_key"
                }
            ),
        };
        assert!(ok, "{want}: {got:?}");
    }
    assert!(matches!(
        verify_served_certificate(
            &verifier(),
            &AcmeInfo::default(),
            b"not a certificate",
            &GATEWAY_APP,
            unix_now()
        ),
        Err(MonitorError::MalformedCertificate(_))
    ));
}
