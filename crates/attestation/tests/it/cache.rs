//! The verified-result cache: hits only for the same inputs and collateral version, never
//! after the collateral expired or was replaced.

use cairn_attestation::simulator::{SimPki, SimPkiConfig};
use cairn_attestation::{Collateral, Error, Tee};

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

#[test]
fn cache_is_bounded_by_bytes_and_evicts_the_oldest_first() {
    let pki = pki();
    let tdx = tdx_on(&pki, 1, false);
    let log = boot(&tdx).to_json();
    let quotes: Vec<Vec<u8>> = (1..=5u8).map(|i| tdx.quote(&rd(i)).unwrap()).collect();

    // Measure one entry, then allow room for exactly two.
    let probe = sim_verifier(&pki);
    probe.verify(&quotes[0], &log, &rd(1), NOW).unwrap();
    let entry = probe.cached_bytes();
    assert!(
        entry > quotes[0].len(),
        "estimate counts at least the quote"
    );
    let budget = 2 * entry + entry / 2;
    let v = sim_verifier(&pki).with_cache_budget(budget);

    for (i, q) in quotes.iter().enumerate() {
        v.verify(q, &log, &rd(i as u8 + 1), NOW).unwrap();
        assert!(v.cached_bytes() <= budget, "over budget after insert {i}");
        assert_eq!(v.cached_results(), (i + 1).min(2));
    }
    assert_eq!(v.cached_bytes(), 2 * entry);
    // Which entries survive (the newest) is pinned by the unit tests in verify.rs.
}

#[test]
fn cache_entry_larger_than_the_budget_is_not_stored() {
    let ev = evidence();
    let v = sim_verifier(&pki()).with_cache_budget(100);
    v.verify(&ev.quote, &ev.log, &rd(1), NOW).unwrap();
    assert_eq!(v.cached_results(), 0);
    assert_eq!(v.cached_bytes(), 0);
}

#[test]
fn cached_result_expires_with_the_pck_certificate_chain() {
    // The quote's PCK leaf is valid until NOW + 365 d. Collateral re-issued by the same
    // PKI at NOW + 300 d stays valid until NOW + 400 d, longer than the leaf.
    let ev = evidence();
    let later = NOW + 300 * DAY;
    let mut cfg = SimPkiConfig::new([7u8; 32], later);
    cfg.collateral_validity_secs = 100 * DAY;
    let reissued = SimPki::new(cfg).unwrap();
    let c = Collateral::new(reissued.collateral()).unwrap();
    let leaf_end = NOW + 365 * DAY;
    assert!(c.not_after() > leaf_end, "collateral outlives the PCK leaf");
    let v = cairn_attestation::Verifier::dangerous_with_simulator_root(pki().root_ca_der())
        .with_collateral(c);

    let q = v.verify(&ev.quote, &ev.log, &rd(1), later).unwrap();
    assert_eq!(q.valid_until(), leaf_end);
    v.verify(&ev.quote, &ev.log, &rd(1), leaf_end - 1).unwrap();
    // After the leaf's notAfter the cached result is not served; verifying afresh fails.
    let err = v
        .verify(&ev.quote, &ev.log, &rd(1), leaf_end + 1)
        .unwrap_err();
    assert!(matches!(err, Error::QuoteVerification(_)), "{err}");
    assert_eq!(v.cached_results(), 0);
}
