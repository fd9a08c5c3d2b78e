//! Each security check fails for its own reason (matched on the error variant).

use cairn_attestation::consts::{
    EVENT_APP_ID, EVENT_BOOT_MR_DONE, EVENT_COMPOSE_HASH, EVENT_INSTANCE_ID,
    EVENT_SYSTEM_PREPARING, MAX_EVENT_LOG_LEN, MAX_QUOTE_LEN,
};
use cairn_attestation::eventlog::{self, RuntimeEvent};
use cairn_attestation::simulator::{SimPki, SimPkiConfig, SimTcbStatus};
use cairn_attestation::{Error, EventLog, Tee};
use proptest::prelude::*;

use crate::common::*;

#[test]
fn tampered_quote_body_fails_the_quote_signature() {
    let ev = evidence();
    for offset in [
        184usize, /* MRTD */
        520,      /* RTMR3 */
        568,      /* report data */
        30,       /* user data */
    ] {
        let mut q = ev.quote.clone();
        q[offset] ^= 0x01;
        let err = refusal(&pki(), &q, &ev.log, &rd(1));
        assert!(
            matches!(&err, Error::QuoteVerification(m) if m.contains("signature")),
            "offset {offset}: {err}"
        );
    }
}

#[test]
fn tampered_qe_report_fails() {
    let ev = evidence();
    let mut q = ev.quote.clone();
    q[770 + 100] ^= 0x01;
    let err = refusal(&pki(), &q, &ev.log, &rd(1));
    assert!(matches!(err, Error::QuoteVerification(_)), "{err}");
}

#[test]
fn wrong_report_data_is_rejected() {
    let ev = evidence();
    let err = refusal(&pki(), &ev.quote, &ev.log, &rd(9));
    assert!(matches!(err, Error::ReportDataMismatch), "{err}");
}

#[test]
fn debug_td_is_rejected() {
    let pki = pki();
    let ev = evidence_on(&pki, 1, true);
    let err = refusal(&pki, &ev.quote, &ev.log, &rd(1));
    assert!(matches!(err, Error::DebugTd(_)), "{err}");
}

#[test]
fn non_zero_mrsignerseam_is_rejected_even_when_collateral_expects_it() {
    let mut cfg = SimPkiConfig::new([7u8; 32], NOW);
    cfg.mr_signer_seam = [0xee; 48];
    let pki = std::sync::Arc::new(SimPki::new(cfg).unwrap());
    let ev = evidence_on(&pki, 1, false);
    let err = refusal(&pki, &ev.quote, &ev.log, &rd(1));
    assert!(matches!(err, Error::NonIntelTdxModule(_)), "{err}");
}

#[test]
fn event_log_that_does_not_replay_to_rtmr3_is_rejected() {
    let ev = evidence();
    // A self-consistent log (every digest correct) claiming another compose hash.
    let mut events = eventlog::from_json(&ev.log).unwrap();
    events[2].payload = vec![0xaa; 32];
    let forged = eventlog::to_json(&events);
    let err = refusal(&pki(), &ev.quote, &forged, &rd(1));
    assert!(matches!(err, Error::Rtmr3Mismatch { .. }), "{err}");

    // Dropping the last event also breaks the replay.
    let truncated = eventlog::to_json(&events[..events.len() - 1]);
    let err = refusal(&pki(), &ev.quote, &truncated, &rd(1));
    assert!(matches!(err, Error::Rtmr3Mismatch { .. }), "{err}");
}

#[test]
fn event_with_a_wrong_recorded_digest_is_rejected() {
    let ev = evidence();
    let mut v: serde_json::Value = serde_json::from_slice(&ev.log).unwrap();
    v[3]["digest"] = serde_json::Value::String(hex::encode([0u8; 48]));
    let err = refusal(&pki(), &ev.quote, &serde_json::to_vec(&v).unwrap(), &rd(1));
    assert!(
        matches!(err, Error::EventDigestMismatch { index: 3, .. }),
        "{err}"
    );
}

#[test]
fn events_measured_out_of_boot_order_are_rejected() {
    // compose-hash measured before app-id, for real: RTMR3 replays, the order is wrong.
    let err = refusal_of_events(&[
        (EVENT_SYSTEM_PREPARING, vec![]),
        (EVENT_COMPOSE_HASH, vec![2u8; 32]),
        (EVENT_APP_ID, vec![1u8; 20]),
        (EVENT_INSTANCE_ID, vec![]),
        (EVENT_BOOT_MR_DONE, vec![]),
    ]);
    assert!(
        matches!(
            err,
            Error::EventOrder {
                index: 1,
                expected: EVENT_APP_ID,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn app_event_measured_before_boot_finished_is_rejected() {
    let err = refusal_of_events(&[(EVENT_SYSTEM_PREPARING, vec![]), ("my-app", vec![1])]);
    assert!(matches!(err, Error::EventOrder { index: 1, .. }), "{err}");
}

#[test]
fn expired_collateral_is_rejected() {
    let ev = evidence();
    let v = sim_verifier(&pki());
    let err = v
        .verify(&ev.quote, &ev.log, &rd(1), NOW + 31 * DAY)
        .unwrap_err();
    assert!(matches!(err, Error::CollateralExpired { .. }), "{err}");
    assert!(err.is_retryable());
    let err = v
        .verify(&ev.quote, &ev.log, &rd(1), NOW - 2 * DAY)
        .unwrap_err();
    assert!(
        matches!(err, Error::CollateralExpired { .. }),
        "not yet valid: {err}"
    );
}

#[test]
fn revoked_tcb_is_rejected() {
    let pki = pki_with(SimTcbStatus::Revoked);
    let ev = evidence_on(&pki, 1, false);
    let err = refusal(&pki, &ev.quote, &ev.log, &rd(1));
    assert!(matches!(err, Error::Revoked), "{err}");
}

#[test]
fn outdated_tcb_is_surfaced_as_status_not_an_error() {
    for (status, name, advisory) in [
        (SimTcbStatus::OutOfDate, "OutOfDate", "INTEL-SA-00837"),
        (
            SimTcbStatus::SwHardeningNeeded,
            "SWHardeningNeeded",
            "INTEL-SA-00615",
        ),
        (
            SimTcbStatus::ConfigurationNeeded,
            "ConfigurationNeeded",
            "INTEL-SA-00767",
        ),
    ] {
        let pki = pki_with(status);
        let ev = evidence_on(&pki, 1, false);
        let q = sim_verifier(&pki)
            .verify(&ev.quote, &ev.log, &rd(1), NOW)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(q.tcb_status(), name);
        assert_eq!(q.advisory_ids(), [advisory.to_owned()]);
    }
}

#[test]
fn every_truncation_of_a_quote_is_a_clean_error() {
    let ev = evidence();
    let v = sim_verifier(&pki());
    for len in 0..ev.quote.len() {
        let err = v
            .verify(&ev.quote[..len], &ev.log, &rd(1), NOW)
            .unwrap_err();
        assert!(
            matches!(err, Error::MalformedQuote(_) | Error::QuoteVerification(_)),
            "len {len}: {err}"
        );
    }
}

#[test]
fn oversized_inputs_are_rejected_before_parsing() {
    let ev = evidence();
    let v = sim_verifier(&pki());
    let big = vec![0u8; MAX_QUOTE_LEN + 1];
    let err = v.verify(&big, &ev.log, &rd(1), NOW).unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { what: "quote", .. }),
        "{err}"
    );
    let big_log = vec![b' '; MAX_EVENT_LOG_LEN + 1];
    let err = v.verify(&ev.quote, &big_log, &rd(1), NOW).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                what: "event log",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn malformed_event_log_is_rejected() {
    let ev = evidence();
    let v = sim_verifier(&pki());
    for bad in [&b""[..], b"{}", b"[1]", b"[{\"imr\":3}]", b"\xff"] {
        let err = v.verify(&ev.quote, bad, &rd(1), NOW).unwrap_err();
        assert!(matches!(err, Error::MalformedEventLog(_)), "{err}");
    }
    // A hand-made event with a bad hex payload.
    let e = RuntimeEvent::new("x", vec![]);
    let json = format!(
        r#"[{{"imr":3,"event_type":134217729,"digest":"{}","event":"x","event_payload":"zz"}}]"#,
        hex::encode(e.digest())
    );
    let err = v
        .verify(&ev.quote, json.as_bytes(), &rd(1), NOW)
        .unwrap_err();
    assert!(matches!(err, Error::MalformedEventLog(_)), "{err}");
}

/// Why the verifier refuses a TD that measured exactly `events` (name, payload), in
/// order, into RTMR3: the log replays, so only the event checks can refuse it.
fn refusal_of_events(events: &[(&str, Vec<u8>)]) -> Error {
    let pki = pki();
    let tdx = tdx_on(&pki, 4, false);
    let mut log = EventLog::new();
    for (name, payload) in events {
        log.measure(&tdx, *name, payload.clone()).unwrap();
    }
    let quote = tdx.quote(&rd(1)).unwrap();
    refusal(&pki, &quote, &log.to_json(), &rd(1))
}

/// Which check must refuse a quote with a bit flipped at `offset` (TDX quote v4: a 48-byte
/// header, then the 584-byte TD report body, all covered by the attestation key's
/// signature). The header's format fields are checked before the signature: version
/// (0..2), attestation key type (2..4), TEE type (4..8), QE vendor id (12..28); a flip
/// anywhere else (reserved bytes, user data, the body) fails the signature.
fn refused_by_the_check_for(offset: usize, err: &Error) -> bool {
    match offset {
        0..=1 => {
            matches!(err, Error::MalformedQuote(m) if m.contains("version") || m.contains("body type"))
        }
        2..=3 => matches!(err, Error::QuoteVerification(m) if m.contains("attestation key type")),
        4..=7 => matches!(err, Error::MalformedQuote(m) if m.contains("TEE type")),
        12..=27 => matches!(err, Error::QuoteVerification(m) if m.contains("QE vendor ID")),
        _ => matches!(err, Error::QuoteVerification(m) if m.contains("signature is invalid")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn random_quote_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let ev = evidence();
        let _ = sim_verifier(&pki()).verify(&bytes, &ev.log, &rd(1), NOW);
    }

    #[test]
    fn random_mutation_of_a_valid_quote_never_verifies(idx in 0usize..632, bit in 0u8..8) {
        let ev = evidence();
        let mut q = ev.quote.clone();
        q[idx] ^= 1 << bit;
        let err = sim_verifier(&pki()).verify(&q, &ev.log, &rd(1), NOW).unwrap_err();
        prop_assert!(refused_by_the_check_for(idx, &err), "offset {}: {}", idx, err);
    }

    #[test]
    fn random_event_log_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = eventlog::from_json(&bytes);
    }
}
