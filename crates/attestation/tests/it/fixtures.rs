//! Real Intel quotes and collateral (dcap-qvl 0.7.1 `sample/`), verified at fixed times.

use cairn_attestation::{Collateral, Error, Verifier};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn load(quote: &str, collateral: &str) -> (Vec<u8>, Collateral) {
    let q = std::fs::read(format!("{DIR}/{quote}")).expect("quote fixture");
    let c = Collateral::from_file(format!("{DIR}/{collateral}")).expect("collateral fixture");
    (q, c)
}

/// 2025-06-20T06:13:20Z, inside the collateral window of `tdx_quote`.
const TDX_NOW: u64 = 1_750_400_000;
/// 2026-03-01T00:00:00Z, inside the collateral window of `tdx_quote_outdated`.
const TDX_OUTDATED_NOW: u64 = 1_772_323_200;

#[test]
fn real_intel_tdx_sample_verifies_up_to_date_with_intels_root() {
    let (q, c) = load("tdx_quote", "tdx_quote_collateral.json");
    let r = Verifier::intel()
        .verify_quote(&q, &c, TDX_NOW)
        .expect("verifies");
    assert_eq!(r.tcb_status(), "UpToDate");
    assert!(r.advisory_ids().is_empty(), "{:?}", r.advisory_ids());
    assert_eq!(r.ppid().len(), 16);
}

#[test]
fn real_intel_tdx_sample_fails_after_its_collateral_expires() {
    let (q, c) = load("tdx_quote", "tdx_quote_collateral.json");
    let err = Verifier::intel()
        .verify_quote(&q, &c, c.not_after())
        .unwrap_err();
    assert!(matches!(err, Error::CollateralExpired { .. }), "{err}");
    let err = Verifier::intel()
        .verify_quote(&q, &c, c.not_before() - 1)
        .unwrap_err();
    assert!(matches!(err, Error::CollateralExpired { .. }), "{err}");
}

#[test]
fn real_intel_tdx_sample_fails_with_a_simulator_root() {
    let (q, c) = load("tdx_quote", "tdx_quote_collateral.json");
    let pki = crate::common::pki();
    let err = Verifier::dangerous_with_simulator_root(pki.root_ca_der())
        .verify_quote(&q, &c, TDX_NOW)
        .unwrap_err();
    assert!(matches!(err, Error::QuoteVerification(_)), "{err}");
}

/// The real "outdated" sample is *below every* TCB level of its collateral: dcap-qvl 0.7.1
/// finds no matching level (its own test only passes with a TCB override). We assert that
/// real outcome; OutOfDate surfacing as a status is covered by the simulator tests.
#[test]
fn real_outdated_tdx_sample_matches_no_tcb_level() {
    let (q, c) = load("tdx_quote_outdated", "tdx_quote_outdated_collateral.json");
    let err = Verifier::intel()
        .verify_quote(&q, &c, TDX_OUTDATED_NOW)
        .unwrap_err();
    assert!(
        matches!(&err, Error::QuoteVerification(m) if m.contains("No matching TCB level")),
        "{err}"
    );
}

#[test]
fn real_sgx_sample_is_rejected_as_not_tdx() {
    let (q, c) = load("sgx_quote", "sgx_quote_collateral.json");
    let err = Verifier::intel()
        .verify_quote(&q, &c, c.not_before())
        .unwrap_err();
    assert!(matches!(err, Error::NotTdx), "{err}");
}

#[test]
fn real_tdx_sample_with_a_flipped_measurement_byte_fails_the_signature() {
    let (mut q, c) = load("tdx_quote", "tdx_quote_collateral.json");
    q[184] ^= 1; // MRTD
    let err = Verifier::intel().verify_quote(&q, &c, TDX_NOW).unwrap_err();
    assert!(
        matches!(&err, Error::QuoteVerification(m) if m.contains("signature")),
        "{err}"
    );
}

#[test]
fn collateral_json_round_trips_with_the_same_version() {
    let (_, c) = load("tdx_quote", "tdx_quote_collateral.json");
    let again = Collateral::from_json(&c.to_json()).unwrap();
    assert_eq!(again.version(), c.version());
}

/// 2026-10-09T12:53:20Z, inside the collateral window of `tdx_quote_td15ex`.
const TD15_NOW: u64 = 1_791_500_000;

#[test]
fn real_intel_td15_sample_verifies_up_to_date() {
    let (q, c) = load("tdx_quote_td15ex", "tdx_quote_td15ex_collateral.json");
    let r = Verifier::intel()
        .verify_quote(&q, &c, TD15_NOW)
        .expect("verifies");
    assert_eq!(r.tcb_status(), "UpToDate");
    assert!(r.advisory_ids().is_empty());
    let err = Verifier::intel()
        .verify_quote(&q, &c, c.not_after())
        .unwrap_err();
    assert!(matches!(err, Error::CollateralExpired { .. }), "{err}");
}
