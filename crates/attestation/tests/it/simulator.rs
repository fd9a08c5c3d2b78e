//! Simulator quotes verify with the simulator root, with every identity decoded, and
//! fail with Intel's root.

use cairn_attestation::consts::EVENT_SYSTEM_READY;
use cairn_attestation::ids::{AppId, ComposeHash, DeviceId, InstanceId, KeyProvider};
use cairn_attestation::{Collateral, Error, Tee, TrustRoot, Verifier};

use crate::common::*;

#[test]
fn simulator_quote_verifies_with_simulator_root_and_decodes_identities() {
    let pki = pki();
    let ev = evidence();
    let v = sim_verifier(&pki);
    assert_eq!(v.trust_root(), TrustRoot::Simulator);
    let q = v.verify(&ev.quote, &ev.log, &rd(1), NOW).expect("verifies");

    let compose_hash = ComposeHash::of_compose(compose());
    let app_id = AppId::from_compose_hash(&compose_hash);
    assert_eq!(q.tcb_status(), "UpToDate");
    assert!(q.advisory_ids().is_empty());
    assert_eq!(q.compose_hash(), &compose_hash);
    assert_eq!(q.app_id(), &app_id);
    assert_eq!(
        q.instance_id(),
        &InstanceId::derive(b"instance-seed", &app_id)
    );
    assert_eq!(q.os_image_hash(), Some(&os().os_image_hash()));
    assert_eq!(q.key_provider(), Some(&KeyProvider::kms(&[1, 2, 3])));
    assert_eq!(q.ppid(), ev.tdx.ppid());
    assert_eq!(q.device_id(), &DeviceId::from_ppid(ev.tdx.ppid()));
    assert_eq!(q.report_data().0, rd(1));
    let m = os().manifest();
    assert_eq!(q.mrtd(), &m.mrtd);
    assert_eq!(q.rtmrs()[0], &m.rtmr0);
    assert_eq!(q.rtmrs()[1], &m.rtmr1);
    assert_eq!(q.rtmrs()[2], &m.rtmr2);
    assert_eq!(q.rtmrs()[3], &ev.tdx.rtmr3());
    assert_eq!(q.events().len(), 8);
    assert_eq!(q.events()[7].name, EVENT_SYSTEM_READY);
    assert_eq!(q.mr_aggregated(), &q.measurements().mr_aggregated());
    assert_eq!(
        q.mr_system(),
        &q.measurements()
            .mr_system(&KeyProvider::kms(&[1, 2, 3]).to_payload())
    );
}

#[test]
fn simulator_quote_fails_with_intels_root() {
    let pki = pki();
    let ev = evidence();
    let v =
        Verifier::intel().with_collateral(Collateral::new(pki.collateral()).expect("collateral"));
    assert_eq!(v.trust_root(), TrustRoot::Intel);
    let err = v.verify(&ev.quote, &ev.log, &rd(1), NOW).unwrap_err();
    assert!(
        matches!(&err, Error::QuoteVerification(m) if m.contains("root CA CRL")),
        "{err}"
    );
}

#[test]
fn another_simulator_pki_root_is_not_trusted() {
    let ev = evidence();
    let mut cfg = cairn_attestation::simulator::SimPkiConfig::new([8u8; 32], NOW);
    cfg.collateral_validity_secs = 10 * DAY;
    let other = cairn_attestation::simulator::SimPki::new(cfg).unwrap();
    let v = Verifier::dangerous_with_simulator_root(other.root_ca_der())
        .with_collateral(Collateral::new(pki().collateral()).unwrap());
    let err = v.verify(&ev.quote, &ev.log, &rd(1), NOW).unwrap_err();
    assert!(matches!(err, Error::QuoteVerification(_)), "{err}");
}

#[test]
fn different_host_seeds_give_different_device_ids_under_one_root() {
    let pki = pki();
    let a = evidence_on(&pki, 1, false);
    let b = evidence_on(&pki, 2, false);
    let v = sim_verifier(&pki);
    let qa = v.verify(&a.quote, &a.log, &rd(1), NOW).unwrap();
    let qb = v.verify(&b.quote, &b.log, &rd(1), NOW).unwrap();
    assert_ne!(qa.device_id(), qb.device_id());
    assert_eq!(
        qa.mr_aggregated(),
        qb.mr_aggregated(),
        "same image, same events"
    );
}

#[test]
fn guest_may_be_verified_before_it_measures_os_image_hash() {
    let pki = pki();
    let tdx = tdx_on(&pki, 3, false);
    let ch = ComposeHash::of_compose(compose());
    let app = AppId::from_compose_hash(&ch);
    let mut log = cairn_attestation::EventLog::new();
    log.measure_boot(&tdx, &app, &ch, &InstanceId::None)
        .unwrap();
    let quote = tdx.quote(&rd(2)).unwrap();
    let q = sim_verifier(&pki)
        .verify(&quote, &log.to_json(), &rd(2), NOW)
        .unwrap();
    assert_eq!(q.os_image_hash(), None);
    assert_eq!(q.key_provider(), None);
    assert_eq!(q.instance_id(), &InstanceId::None);
}

#[test]
fn os_image_manifest_round_trips_and_hashes_its_bytes() {
    use cairn_attestation::simulator::OsImageManifest;
    let m = os().manifest();
    let bytes = m.to_bytes();
    assert_eq!(OsImageManifest::parse(&bytes).unwrap(), m);
    assert_eq!(
        m.os_image_hash(),
        cairn_attestation::ids::OsImageHash::of_manifest(&bytes)
    );
    assert_ne!(
        OsImage_v2_hash(),
        os().os_image_hash(),
        "another version measures differently"
    );
}

#[allow(non_snake_case)]
fn OsImage_v2_hash() -> cairn_attestation::ids::OsImageHash {
    cairn_attestation::simulator::OsImage::example("cairn-os", "0.2.0").os_image_hash()
}

#[test]
fn simulator_pki_is_deterministic_from_its_seed() {
    let a = cairn_attestation::simulator::SimPki::new(
        cairn_attestation::simulator::SimPkiConfig::new([7u8; 32], NOW),
    )
    .unwrap();
    // Same seed: the same root key, so the first PKI's root verifies quotes of the second.
    let tdx = cairn_attestation::simulator::SimTdx::new(
        std::sync::Arc::new(a),
        cairn_attestation::simulator::SimHostConfig::new([1u8; 32], os()),
    )
    .unwrap();
    let log = boot(&tdx);
    let quote = tdx.quote(&rd(1)).unwrap();
    sim_verifier(&pki())
        .verify(&quote, &log.to_json(), &rd(1), NOW)
        .expect("same seed, same root key");
    assert_eq!(tdx.ppid(), evidence().tdx.ppid());
}

#[test]
fn verifier_without_collateral_says_so() {
    let ev = evidence();
    let err = Verifier::dangerous_with_simulator_root(pki().root_ca_der())
        .verify(&ev.quote, &ev.log, &rd(1), NOW)
        .unwrap_err();
    assert!(matches!(err, Error::NoCollateral), "{err}");
}
