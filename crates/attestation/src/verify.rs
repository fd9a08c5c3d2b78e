//! [`Verifier`]: TDX quote + event log verification, and the only way to get a
//! [`VerifiedQuote`].
//!
//! Order of checks in [`Verifier::verify_with`] (first failure wins):
//! 1. input sizes (quote ≤ [`MAX_QUOTE_LEN`], event log ≤ [`MAX_EVENT_LOG_LEN`]);
//! 2. the verified-result cache (same quote, log, report data and collateral version,
//!    collateral and the quote's PCK chain still valid; bounded by bytes, oldest evicted
//!    first) — a hit returns the earlier result;
//! 3. collateral validity window at `now` → [`Error::CollateralExpired`];
//! 4. quote parse (→ [`Error::MalformedQuote`]; must be TDX → [`Error::NotTdx`]) and
//!    event-log parse with per-event digest check;
//! 5. dcap-qvl 0.7.1 with the configured root: CRLs, TCB Info and QE Identity signatures,
//!    PCK chain, QE report, quote signature, TCB level; `Revoked` → [`Error::Revoked`],
//!    anything else → [`Error::QuoteVerification`] with dcap-qvl's text;
//! 6. debug TD (TUD bits of TDATTRIBUTES) → [`Error::DebugTd`];
//! 7. MRSIGNERSEAM ≠ 0 → [`Error::NonIntelTdxModule`];
//! 8. report data ≠ expected → [`Error::ReportDataMismatch`];
//! 9. event-log replay ≠ RTMR3 → [`Error::Rtmr3Mismatch`];
//! 10. boot order and payloads → [`Error::EventOrder`] / [`Error::EventPayload`].

use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::bounded::BoundedCache;
use crate::collateral::Collateral;
use crate::consts::{INTEL_ROOT_CA_DER, MAX_EVENT_LOG_LEN, MAX_QUOTE_LEN};
use crate::error::{check_len, Error, Result};
use crate::eventlog::{self, RuntimeEvent};
use crate::ids::{
    AppId, ComposeHash, DeviceId, InstanceId, KeyProvider, Measurement48, MrAggregated, MrSystem,
    OsImageHash, ReportData, TdMeasurements,
};
use crate::pccs::PccsClient;

/// Largest number of entries the verified-result cache holds; the oldest is evicted first.
pub const MAX_CACHE_ENTRIES: usize = 4096;

/// Which root of trust a [`Verifier`] uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TrustRoot {
    /// Intel's SGX root CA: production.
    Intel,
    /// A simulator root: development and tests only.
    Simulator,
}

/// A TDX quote verified with dcap-qvl, before any event-log processing.
#[derive(Clone, Debug)]
pub struct VerifiedReport {
    tcb_status: String,
    advisory_ids: Vec<String>,
    td_attributes: [u8; 8],
    mr_signer_seam: Measurement48,
    measurements: TdMeasurements,
    report_data: ReportData,
    ppid: Vec<u8>,
    device_id: DeviceId,
    /// Validity of the quote's PCK certificate chain (leaf, PCK CA, root), unix seconds:
    /// the latest `notBefore` and the earliest `notAfter`.
    pck_not_before: u64,
    pck_not_after: u64,
}

impl VerifiedReport {
    /// Intel's TCB status string (`UpToDate`, `OutOfDate`, …; never `Revoked`).
    pub fn tcb_status(&self) -> &str {
        &self.tcb_status
    }
    /// Intel security advisory ids that apply.
    pub fn advisory_ids(&self) -> &[String] {
        &self.advisory_ids
    }
    /// TDATTRIBUTES (little-endian bytes as quoted).
    pub fn td_attributes(&self) -> [u8; 8] {
        self.td_attributes
    }
    /// MRSIGNERSEAM.
    pub fn mr_signer_seam(&self) -> &Measurement48 {
        &self.mr_signer_seam
    }
    /// MRTD and RTMR0..3.
    pub fn measurements(&self) -> &TdMeasurements {
        &self.measurements
    }
    /// The quoted report data.
    pub fn report_data(&self) -> &ReportData {
        &self.report_data
    }
    /// PPID from the verified PCK certificate.
    pub fn ppid(&self) -> &[u8] {
        &self.ppid
    }
    /// SHA-256(PPID).
    pub fn device_id(&self) -> &DeviceId {
        &self.device_id
    }
}

/// A quote and event log that passed every check of [`Verifier::verify`].
///
/// Only the verifier constructs it; holding one is proof of verification.
#[derive(Clone, Debug)]
pub struct VerifiedQuote {
    report: VerifiedReport,
    events: Vec<RuntimeEvent>,
    app_id: AppId,
    compose_hash: ComposeHash,
    instance_id: InstanceId,
    os_image_hash: Option<OsImageHash>,
    key_provider: Option<KeyProvider>,
    mr_system: MrSystem,
    mr_aggregated: MrAggregated,
    collateral_version: [u8; 32],
    valid_from: u64,
    valid_until: u64,
}

impl VerifiedQuote {
    /// The verified report (TCB status, measurements, PPID…).
    pub fn report(&self) -> &VerifiedReport {
        &self.report
    }
    /// Intel's TCB status string, for policy.
    pub fn tcb_status(&self) -> &str {
        &self.report.tcb_status
    }
    /// Advisory ids, for policy.
    pub fn advisory_ids(&self) -> &[String] {
        &self.report.advisory_ids
    }
    /// MRTD.
    pub fn mrtd(&self) -> &Measurement48 {
        &self.report.measurements.mrtd
    }
    /// RTMR0..RTMR3.
    pub fn rtmrs(&self) -> [&Measurement48; 4] {
        let m = &self.report.measurements;
        [&m.rtmr0, &m.rtmr1, &m.rtmr2, &m.rtmr3]
    }
    /// MRTD and RTMR0..3 together.
    pub fn measurements(&self) -> &TdMeasurements {
        &self.report.measurements
    }
    /// The quoted (and checked) report data.
    pub fn report_data(&self) -> &ReportData {
        &self.report.report_data
    }
    /// PPID from the verified PCK certificate.
    pub fn ppid(&self) -> &[u8] {
        &self.report.ppid
    }
    /// SHA-256(PPID).
    pub fn device_id(&self) -> &DeviceId {
        &self.report.device_id
    }
    /// The replayed runtime events.
    pub fn events(&self) -> &[RuntimeEvent] {
        &self.events
    }
    /// App id from the `app-id` event.
    pub fn app_id(&self) -> &AppId {
        &self.app_id
    }
    /// Compose hash from the `compose-hash` event.
    pub fn compose_hash(&self) -> &ComposeHash {
        &self.compose_hash
    }
    /// Instance id from the `instance-id` event.
    pub fn instance_id(&self) -> &InstanceId {
        &self.instance_id
    }
    /// OS image hash from the `os-image-hash` event, if measured yet.
    pub fn os_image_hash(&self) -> Option<&OsImageHash> {
        self.os_image_hash.as_ref()
    }
    /// Key provider from the `key-provider` event, if measured yet.
    pub fn key_provider(&self) -> Option<&KeyProvider> {
        self.key_provider.as_ref()
    }
    /// SHA-256(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ SHA-256(key-provider payload)); the payload
    /// is empty when `key-provider` was not measured.
    pub fn mr_system(&self) -> &MrSystem {
        &self.mr_system
    }
    /// SHA-256(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ RTMR3).
    pub fn mr_aggregated(&self) -> &MrAggregated {
        &self.mr_aggregated
    }
    /// Version (fingerprint) of the collateral it was verified with.
    pub fn collateral_version(&self) -> &[u8; 32] {
        &self.collateral_version
    }
    /// The result stops being valid (unix seconds, exclusive) when the collateral expires
    /// or a certificate of the quote's PCK chain does, whichever comes first.
    pub fn valid_until(&self) -> u64 {
        self.valid_until
    }
}

type CacheKey = ([u8; 32], [u8; 32]);

/// Estimated memory held by a cached result: the struct, every event's name and payload,
/// the strings and PPID, plus the quote's length (a conservative extra).
fn cached_size(v: &VerifiedQuote, quote_len: usize) -> usize {
    let events: usize = v
        .events
        .iter()
        .map(|e| std::mem::size_of::<RuntimeEvent>() + e.name.len() + e.payload.len())
        .sum();
    let strings: usize = v.report.tcb_status.len()
        + v.report
            .advisory_ids
            .iter()
            .map(|a| std::mem::size_of::<String>() + a.len())
            .sum::<usize>()
        + v.report.ppid.len();
    std::mem::size_of::<VerifiedQuote>()
        + std::mem::size_of::<CacheKey>()
        + 64
        + events
        + strings
        + quote_len
}

/// Verifies TDX quotes and their event logs against one trust root.
pub struct Verifier {
    root_der: Vec<u8>,
    root: TrustRoot,
    collateral: Option<Arc<Collateral>>,
    cache: Mutex<BoundedCache<CacheKey, VerifiedQuote>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("root", &self.root)
            .field("has_collateral", &self.collateral.is_some())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    fn with_root(root_der: Vec<u8>, root: TrustRoot) -> Self {
        Verifier {
            root_der,
            root,
            collateral: None,
            cache: Mutex::new(BoundedCache::new(
                Self::DEFAULT_CACHE_BUDGET_BYTES,
                MAX_CACHE_ENTRIES,
            )),
        }
    }

    /// Default byte budget of the verified-result cache (64 MiB, estimated from the
    /// events, strings and quote of each entry).
    pub const DEFAULT_CACHE_BUDGET_BYTES: usize = 64 << 20;

    /// Set the verified-result cache's byte budget (clears the cache). `0` disables it.
    pub fn with_cache_budget(self, bytes: usize) -> Self {
        *self.lock_cache() = BoundedCache::new(bytes, MAX_CACHE_ENTRIES);
        self
    }

    /// A verifier trusting Intel's SGX root CA only.
    pub fn intel() -> Self {
        Self::with_root(INTEL_ROOT_CA_DER.to_vec(), TrustRoot::Intel)
    }

    /// A verifier trusting a **simulator** root instead of Intel's. Quotes it accepts
    /// prove nothing about real hardware: use only for development and tests. Logs a WARN.
    pub fn dangerous_with_simulator_root(root_ca_der: &[u8]) -> Self {
        tracing::warn!(
            root_sha256 = %hex::encode(Sha256::digest(root_ca_der)),
            "attestation verifier trusts a SIMULATOR root: quotes prove nothing about real TDX hardware"
        );
        Self::with_root(root_ca_der.to_vec(), TrustRoot::Simulator)
    }

    /// Use this collateral for [`Self::verify`] (from a file, or in memory).
    pub fn with_collateral(mut self, collateral: Collateral) -> Self {
        self.collateral = Some(Arc::new(collateral));
        self
    }

    /// Replace the collateral used by [`Self::verify`]. Cached results verified with the
    /// previous collateral are no longer served.
    pub fn set_collateral(&mut self, collateral: Collateral) {
        self.collateral = Some(Arc::new(collateral));
    }

    /// The trust root in use.
    pub fn trust_root(&self) -> TrustRoot {
        self.root
    }

    /// The trust root certificate (DER), e.g. for [`PccsClient::collateral_for_quote`].
    pub fn trust_root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// Verify with the configured collateral (see [`Self::with_collateral`]).
    pub fn verify(
        &self,
        quote: &[u8],
        event_log_json: &[u8],
        expected_report_data: &[u8; 64],
        now_unix: u64,
    ) -> Result<VerifiedQuote> {
        let collateral = self.collateral.as_ref().ok_or(Error::NoCollateral)?;
        self.verify_with(
            quote,
            event_log_json,
            expected_report_data,
            collateral,
            now_unix,
        )
    }

    /// Verify, fetching collateral from a PCCS (cached per platform until `nextUpdate`;
    /// fetched only when the quote's PCK chain verifies to this verifier's root).
    pub async fn verify_with_pccs(
        &self,
        pccs: &PccsClient,
        quote: &[u8],
        event_log_json: &[u8],
        expected_report_data: &[u8; 64],
        now_unix: u64,
    ) -> Result<VerifiedQuote> {
        check_len("quote", quote.len(), MAX_QUOTE_LEN)?;
        check_len("event log", event_log_json.len(), MAX_EVENT_LOG_LEN)?;
        let collateral = pccs
            .collateral_for_quote(quote, &self.root_der, now_unix)
            .await?;
        self.verify_with(
            quote,
            event_log_json,
            expected_report_data,
            &collateral,
            now_unix,
        )
    }

    /// Verify with explicit collateral. See the module docs for the order of checks.
    pub fn verify_with(
        &self,
        quote: &[u8],
        event_log_json: &[u8],
        expected_report_data: &[u8; 64],
        collateral: &Collateral,
        now_unix: u64,
    ) -> Result<VerifiedQuote> {
        check_len("quote", quote.len(), MAX_QUOTE_LEN)?;
        check_len("event log", event_log_json.len(), MAX_EVENT_LOG_LEN)?;

        let key = (
            cache_key(quote, event_log_json, expected_report_data),
            collateral.version(),
        );
        if let Some(hit) = self.cache_get(&key, now_unix) {
            return Ok(hit);
        }

        collateral.check_valid_at(now_unix)?;
        let events = eventlog::from_json(event_log_json)?;
        let report = self.verify_quote(quote, collateral, now_unix)?;

        if report.report_data.0 != *expected_report_data {
            return Err(Error::ReportDataMismatch);
        }
        let replayed = eventlog::replay_rtmr3(&events);
        if replayed != report.measurements.rtmr3.0 {
            return Err(Error::Rtmr3Mismatch {
                quoted: report.measurements.rtmr3.to_hex(),
                replayed: hex::encode(replayed),
            });
        }
        let boot = eventlog::decode_boot_identity(&events)?;
        let mr_system = report.measurements.mr_system(&boot.key_provider_payload);
        let mr_aggregated = report.measurements.mr_aggregated();
        let verified = VerifiedQuote {
            events,
            app_id: boot.app_id,
            compose_hash: boot.compose_hash,
            instance_id: boot.instance_id,
            os_image_hash: boot.os_image_hash,
            key_provider: boot.key_provider,
            mr_system,
            mr_aggregated,
            collateral_version: collateral.version(),
            valid_from: collateral.not_before().max(report.pck_not_before),
            valid_until: collateral.not_after().min(report.pck_not_after),
            report,
        };
        let size = cached_size(&verified, quote.len());
        self.cache_put(key, &verified, size, now_unix);
        Ok(verified)
    }

    /// Verify a quote alone (no event log, no report-data check): dcap-qvl with this
    /// verifier's root, then the debug and MRSIGNERSEAM checks.
    pub fn verify_quote(
        &self,
        quote: &[u8],
        collateral: &Collateral,
        now_unix: u64,
    ) -> Result<VerifiedReport> {
        check_len("quote", quote.len(), MAX_QUOTE_LEN)?;
        collateral.check_valid_at(now_unix)?;
        let parsed = dcap_qvl::quote::Quote::parse(quote)
            .map_err(|e| Error::MalformedQuote(format!("{e:#}")))?;
        if parsed.report.as_td10().is_none() {
            return Err(Error::NotTdx);
        }
        // Debug is checked by us after the crypto (step 6), so it gets its own error.
        let vr = dcap_qvl::verify::QuoteVerifier::new(self.root_der.clone())
            .allow_debug(true)
            .verify(quote, collateral.inner(), now_unix)
            .map_err(|e| classify_dcap_error(&e))?;
        let td = vr.report.as_td10().ok_or(Error::NotTdx)?;
        // TUD: bit 0 DEBUG, bits 4-6 profiling (dcap-qvl's own debug/profiling mask).
        if td.td_attributes[0] & 0x71 != 0 {
            return Err(Error::DebugTd(hex::encode(td.td_attributes)));
        }
        if td.mr_signer_seam != [0u8; 48] {
            return Err(Error::NonIntelTdxModule(hex::encode(td.mr_signer_seam)));
        }
        let (pck_not_before, pck_not_after) = pck_chain_validity(&parsed)?;
        Ok(VerifiedReport {
            tcb_status: vr.status.clone(),
            advisory_ids: vr.advisory_ids.clone(),
            td_attributes: td.td_attributes,
            mr_signer_seam: Measurement48(td.mr_signer_seam),
            measurements: TdMeasurements {
                mrtd: Measurement48(td.mr_td),
                rtmr0: Measurement48(td.rt_mr0),
                rtmr1: Measurement48(td.rt_mr1),
                rtmr2: Measurement48(td.rt_mr2),
                rtmr3: Measurement48(td.rt_mr3),
            },
            report_data: ReportData(td.report_data),
            device_id: DeviceId::from_ppid(&vr.ppid),
            ppid: vr.ppid,
            pck_not_before,
            pck_not_after,
        })
    }

    /// Number of cached verified results.
    pub fn cached_results(&self) -> usize {
        self.lock_cache().len()
    }

    /// Estimated bytes held by the verified-result cache (never above its budget).
    pub fn cached_bytes(&self) -> usize {
        self.lock_cache().bytes()
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, BoundedCache<CacheKey, VerifiedQuote>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cache_get(&self, key: &CacheKey, now: u64) -> Option<VerifiedQuote> {
        let mut cache = self.lock_cache();
        let hit = cache.get(key)?;
        if hit.valid_from <= now && now < hit.valid_until {
            return Some(hit.clone());
        }
        cache.remove(key);
        None
    }

    fn cache_put(&self, key: CacheKey, v: &VerifiedQuote, size: usize, now: u64) {
        self.lock_cache()
            .insert(key, v.clone(), size, |e| now >= e.valid_until);
    }
}

/// Validity of the quote's PCK chain (dcap-qvl verified it at `now`): the latest
/// `notBefore` and earliest `notAfter` over its certificates.
fn pck_chain_validity(quote: &dcap_qvl::quote::Quote) -> Result<(u64, u64)> {
    let bad = |e: &dyn std::fmt::Display| Error::QuoteVerification(format!("PCK chain: {e}"));
    let chain = dcap_qvl::intel::extract_cert_chain(quote).map_err(|e| bad(&e))?;
    if chain.is_empty() {
        return Err(bad(&"no certificate"));
    }
    let mut window = (0u64, u64::MAX);
    for der in &chain {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(&e))?;
        let v = cert.validity();
        let nb = u64::try_from(v.not_before.timestamp()).unwrap_or(0);
        // Treated as exclusive, like the collateral window: never later than notAfter.
        let na = u64::try_from(v.not_after.timestamp()).unwrap_or(0);
        window = (window.0.max(nb), window.1.min(na));
    }
    Ok(window)
}

/// SHA-256(len ‖ quote ‖ len ‖ event log ‖ report data): unambiguous framing.
fn cache_key(quote: &[u8], log: &[u8], rd: &[u8; 64]) -> [u8; 32] {
    Sha256::new()
        .chain_update((quote.len() as u64).to_be_bytes())
        .chain_update(quote)
        .chain_update((log.len() as u64).to_be_bytes())
        .chain_update(log)
        .chain_update(rd)
        .finalize()
        .into()
}

/// dcap-qvl 0.7.1 reports a revoked TCB only as this message (verify.rs); it is pinned
/// by the `revoked_tcb_is_rejected` test against the simulator.
const DCAP_REVOKED: &str = "TCB status is invalid: Revoked";

fn classify_dcap_error(e: &impl std::fmt::Display) -> Error {
    let text = format!("{e:#}");
    if text == DCAP_REVOKED || text.ends_with(DCAP_REVOKED) {
        Error::Revoked
    } else {
        Error::QuoteVerification(text)
    }
}
