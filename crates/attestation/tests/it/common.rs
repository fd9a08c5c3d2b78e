//! Shared world for the simulator tests.

use std::sync::{Arc, OnceLock};

use cairn_attestation::ids::{AppId, ComposeHash, InstanceId, KeyProvider};
use cairn_attestation::simulator::{
    OsImage, SimHostConfig, SimPki, SimPkiConfig, SimTcbStatus, SimTdx,
};
use cairn_attestation::{Collateral, Error, EventLog, Tee, Verifier};

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

/// Why [`sim_verifier`] of `pki` refuses `quote` and `log` for `report_data` at [`NOW`]
/// (the test fails if it accepts them).
pub fn refusal(pki: &SimPki, quote: &[u8], log: &[u8], report_data: &[u8; 64]) -> Error {
    match sim_verifier(pki).verify(quote, log, report_data, NOW) {
        Ok(q) => panic!("verified, expected a refusal: {q:?}"),
        Err(e) => e,
    }
}

/// Forges the FMSPC in a quote's PCK leaf: the leaf keeps its length (so the quote's
/// framing still parses) but its signature no longer verifies.
pub struct FmspcForger {
    quote: Vec<u8>,
    /// Byte range of the leaf's base64 text in the quote.
    pem: std::ops::Range<usize>,
    der: Vec<u8>,
    /// Offset of the FMSPC in `der`.
    at: usize,
}

impl FmspcForger {
    pub fn new(quote: &[u8]) -> Self {
        use base64::Engine as _;
        const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
        const END: &[u8] = b"-----END CERTIFICATE-----";
        let find = |hay: &[u8], needle: &[u8], from: usize| {
            hay[from..]
                .windows(needle.len())
                .position(|w| w == needle)
                .map(|p| p + from)
                .expect("marker")
        };
        let start = find(quote, BEGIN, 0) + BEGIN.len();
        let end = find(quote, END, start);
        let b64: Vec<u8> = quote[start..end]
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(&b64)
            .expect("leaf base64");
        let mut needle = vec![0x04, 0x06];
        needle.extend_from_slice(&cairn_attestation::simulator::SIM_FMSPC);
        let at = find(&der, &needle, 0) + 2;
        FmspcForger {
            quote: quote.to_vec(),
            pem: start..end,
            der,
            at,
        }
    }

    /// The quote with `fmspc` in its PCK leaf.
    pub fn forge(&self, fmspc: [u8; 6]) -> Vec<u8> {
        use base64::Engine as _;
        let mut der = self.der.clone();
        der[self.at..self.at + 6].copy_from_slice(&fmspc);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let mut chars = b64.bytes();
        let mut out = self.quote.clone();
        for b in &mut out[self.pem.clone()] {
            if !b.is_ascii_whitespace() {
                *b = chars.next().expect("same length");
            }
        }
        assert!(chars.next().is_none(), "same length");
        out
    }
}

/// The FMSPC of the `i`-th platform of a flood (never [`SIM_FMSPC`](cairn_attestation::simulator::SIM_FMSPC)).
pub fn nth_fmspc(i: u64) -> [u8; 6] {
    let b = (i + 1).to_be_bytes();
    [0xf0, b[3], b[4], b[5], b[6], b[7]]
}

/// A quote over `rd(1)` from the host `host_seed` of `pki`, on the platform `fmspc`.
pub fn quote_on_platform(pki: &Arc<SimPki>, host_seed: [u8; 32], fmspc: [u8; 6]) -> Vec<u8> {
    let mut cfg = SimHostConfig::new(host_seed, os());
    cfg.fmspc = fmspc;
    let tdx = SimTdx::new(Arc::clone(pki), cfg).expect("tdx");
    tdx.quote(&rd(1)).expect("quote")
}

/// This process's resident set size in KiB (Linux), for reports only.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
