//! The verified-result cache: hits only for the same inputs and collateral version, never
//! after the collateral expired or was replaced.

use cairn_attestation::simulator::{SimPki, SimPkiConfig};
use cairn_attestation::{Collateral, Error};

use crate::common::*;

#[test]
fn repeat_verification_is_served_from_the_cache() {
    let ev = evidence();
    let v = sim_verifier(&pki());
    let a = v.verify(&ev.quote, &ev.log, &rd(1), NOW).unwrap();
    assert_eq!(v.cached_results(), 1);
    let b = v.verify(&ev.quote, &ev.log, &rd(1), NOW + 60).unwrap();
    assert_eq!(v.cached_results(), 1);
    assert_eq!(a.mr_aggregated(), b.mr_aggregated());
}

#[test]
fn cache_never_serves_a_result_after_its_collateral_expired() {
    let ev = evidence();
    let v = sim_verifier(&pki());
    let q = v.verify(&ev.quote, &ev.log, &rd(1), NOW).unwrap();
    let expiry = q.valid_until();
    // One second before expiry: still served.
    v.verify(&ev.quote, &ev.log, &rd(1), expiry - 1).unwrap();
    // At expiry: not served, and the collateral itself is rejected.
    let err = v.verify(&ev.quote, &ev.log, &rd(1), expiry).unwrap_err();
    assert!(matches!(err, Error::CollateralExpired { .. }), "{err}");
    assert_eq!(v.cached_results(), 0, "the expired entry was evicted");
}

#[test]
fn cache_never_serves_a_result_after_its_collateral_was_replaced() {
    let ev = evidence();
    let mut v = sim_verifier(&pki());
    let first = v.verify(&ev.quote, &ev.log, &rd(1), NOW).unwrap();

    // Replace the collateral with one from a PKI whose root the verifier does not trust:
    // a cached answer would wrongly succeed, a fresh verification must fail.
    let mut cfg = SimPkiConfig::new([9u8; 32], NOW);
    cfg.collateral_validity_secs = 20 * DAY;
    let other = SimPki::new(cfg).unwrap();
    v.set_collateral(Collateral::new(other.collateral()).unwrap());
    let err = v.verify(&ev.quote, &ev.log, &rd(1), NOW).unwrap_err();
    assert!(matches!(err, Error::QuoteVerification(_)), "{err}");

    // Re-issued collateral of the same PKI (new version) is verified afresh.
    let reissued = SimPki::new(SimPkiConfig::new([7u8; 32], NOW + 10)).unwrap();
    let c = Collateral::new(reissued.collateral()).unwrap();
    assert_ne!(c.version(), *first.collateral_version());
    v.set_collateral(c);
    let again = v.verify(&ev.quote, &ev.log, &rd(1), NOW + 10).unwrap();
    assert_ne!(again.collateral_version(), first.collateral_version());
}

#[test]
fn cache_key_covers_report_data_and_event_log() {
    let ev = evidence();
    let v = sim_verifier(&pki());
    v.verify(&ev.quote, &ev.log, &rd(1), NOW).unwrap();
    let err = v.verify(&ev.quote, &ev.log, &rd(2), NOW).unwrap_err();
    assert!(matches!(err, Error::ReportDataMismatch), "{err}");
    let mut events = cairn_attestation::eventlog::from_json(&ev.log).unwrap();
    events.pop();
    let shorter = cairn_attestation::eventlog::to_json(&events);
    let err = v.verify(&ev.quote, &shorter, &rd(1), NOW).unwrap_err();
    assert!(matches!(err, Error::Rtmr3Mismatch { .. }), "{err}");
}

#[test]
fn cache_never_serves_a_result_before_its_collateral_window() {
    let ev = evidence();
    let v = sim_verifier(&pki());
    v.verify(&ev.quote, &ev.log, &rd(1), NOW).unwrap();
    let err = v
        .verify(&ev.quote, &ev.log, &rd(1), NOW - 2 * DAY)
        .unwrap_err();
    assert!(matches!(err, Error::CollateralExpired { .. }), "{err}");
}
