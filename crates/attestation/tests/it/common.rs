//! Shared world for the simulator tests.

use std::sync::{Arc, OnceLock};

use cairn_attestation::ids::{AppId, ComposeHash, InstanceId, KeyProvider};
use cairn_attestation::simulator::{
    OsImage, SimHostConfig, SimPki, SimPkiConfig, SimTcbStatus, SimTdx,
};
use cairn_attestation::{Collateral, EventLog, Tee, Verifier};

/// The fixed "now" every simulator test runs at (2026-09-21T...Z).
pub const NOW: u64 = 1_790_000_000;
pub const DAY: u64 = 24 * 3600;

pub fn pki_with(status: SimTcbStatus) -> Arc<SimPki> {
    let mut cfg = SimPkiConfig::new([7u8; 32], NOW);
    cfg.tcb_status = status;
    Arc::new(SimPki::new(cfg).expect("pki"))
}

/// The UpToDate PKI, built once.
pub fn pki() -> Arc<SimPki> {
    static PKI: OnceLock<Arc<SimPki>> = OnceLock::new();
    Arc::clone(PKI.get_or_init(|| pki_with(SimTcbStatus::UpToDate)))
}

pub fn os() -> OsImage {
    OsImage::example("cairn-os", "0.1.0")
}

pub fn tdx_on(pki: &Arc<SimPki>, host_seed: u8, debug: bool) -> SimTdx {
    let mut cfg = SimHostConfig::new([host_seed; 32], os());
    cfg.debug = debug;
    SimTdx::new(Arc::clone(pki), cfg).expect("tdx")
}

pub fn compose() -> &'static [u8] {
    br#"{"manifest_version":2,"name":"demo","runner":"process"}"#
}

/// Measure the full boot sequence into `tdx`.
pub fn boot(tdx: &SimTdx) -> EventLog {
    let compose_hash = ComposeHash::of_compose(compose());
    let app_id = AppId::from_compose_hash(&compose_hash);
    let instance_id = InstanceId::derive(b"instance-seed", &app_id);
    let mut log = EventLog::new();
    log.measure_boot(tdx, &app_id, &compose_hash, &instance_id)
        .expect("boot");
    log.measure_system_ready(
        tdx,
        &tdx.os_image().os_image_hash(),
        &KeyProvider::kms(&[1, 2, 3]),
    )
    .expect("ready");
    log
}

pub fn rd(tag: u8) -> [u8; 64] {
    [tag; 64]
}

/// A booted TD, its quote over `rd(1)`, and its event log JSON.
pub struct Evidence {
    pub tdx: SimTdx,
    pub quote: Vec<u8>,
    pub log: Vec<u8>,
}

pub fn evidence_on(pki: &Arc<SimPki>, host_seed: u8, debug: bool) -> Evidence {
    let tdx = tdx_on(pki, host_seed, debug);
    let log = boot(&tdx);
    let quote = tdx.quote(&rd(1)).expect("quote");
    Evidence {
        tdx,
        quote,
        log: log.to_json(),
    }
}

pub fn evidence() -> Evidence {
    evidence_on(&pki(), 1, false)
}

pub fn sim_verifier(pki: &SimPki) -> Verifier {
    Verifier::dangerous_with_simulator_root(pki.root_ca_der())
        .with_collateral(Collateral::new(pki.collateral()).expect("collateral"))
}
