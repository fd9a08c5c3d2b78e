//! The VMM's Prometheus metrics (`GET /metrics`, text exposition format 0.0.4).
//!
//! - `cairn_vmm_cvms{state}` (gauge): CVMs by lifecycle state.
//! - `cairn_vmm_preflights_total{outcome,check}` (counter): chain pre-flights by outcome
//!   (`allowed`, `denied`, `error`) and the failed check's code (`none` when allowed).
//! - `cairn_vmm_operations_total{op,outcome}` (counter): lifecycle operations (`create`,
//!   `start`, `stop`, `restart`, `remove`, `upgrade`) by outcome (`ok`, the error code).
//! - `cairn_vmm_guest_reports_total` (counter): host-API reports received.
//! - `cairn_vmm_deploy_seconds` (summary sum/count): `POST /v1/cvms` with `start` until
//!   the guest process runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use cairn_protocol::vmm::CvmState;
use cairn_service::Exposition;

/// Counters of one VMM.
#[derive(Debug, Default)]
pub struct Metrics {
    preflights: Mutex<BTreeMap<(&'static str, String), u64>>,
    operations: Mutex<BTreeMap<(&'static str, String), u64>>,
    guest_reports: AtomicU64,
    deploy_count: AtomicU64,
    deploy_ns: AtomicU64,
}

fn bump(m: &Mutex<BTreeMap<(&'static str, String), u64>>, a: &'static str, b: &str) {
    *m.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry((a, b.to_owned()))
        .or_default() += 1;
}

impl Metrics {
    /// Count a pre-flight: `outcome` is `allowed`, `denied` or `error`.
    pub fn preflight(&self, outcome: &'static str, check: &str) {
        bump(&self.preflights, outcome, check);
    }

    /// Count a lifecycle operation's outcome (`ok` or an error code).
    pub fn operation(&self, op: &'static str, outcome: &str) {
        bump(&self.operations, op, outcome);
    }

    /// Count a guest report.
    pub fn guest_report(&self) {
        self.guest_reports.fetch_add(1, Ordering::Relaxed);
    }

    /// Record a deploy's duration.
    pub fn deploy(&self, d: Duration) {
        self.deploy_count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.deploy_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The count for one pre-flight label set (tests).
    pub fn preflights(&self, outcome: &str, check: &str) -> u64 {
        self.preflights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|((o, c), _)| *o == outcome && c == check)
            .map(|(_, n)| *n)
            .sum()
    }

    /// The exposition text; `states` are the current CVM counts.
    pub fn render(&self, states: &BTreeMap<CvmState, usize>) -> String {
        let mut e = Exposition::new();
        e.header("cairn_vmm_cvms", "gauge", "CVMs by lifecycle state.");
        for s in [
            CvmState::Created,
            CvmState::Booting,
            CvmState::Running,
            CvmState::Stopped,
            CvmState::Failed,
        ] {
            let n = states.get(&s).copied().unwrap_or(0);
            e.sample("cairn_vmm_cvms", &[("state", &s.to_string())], n);
        }
        #[rustfmt::skip]
        let families = [
            (&self.preflights, "preflights_total", "Chain pre-flights by outcome and failed check.", ["outcome", "check"]),
            (&self.operations, "operations_total", "Lifecycle operations by outcome.", ["op", "outcome"]),
        ];
        for (family, name, help, [la, lb]) in families {
            let name = format!("cairn_vmm_{name}");
            e.header(&name, "counter", help);
            for ((a, b), n) in family.lock().unwrap_or_else(PoisonError::into_inner).iter() {
                e.sample(&name, &[(la, a), (lb, b)], n);
            }
        }
        let reports = self.guest_reports.load(Ordering::Relaxed);
        e.single(
            "cairn_vmm_guest_reports_total",
            "counter",
            "Host-API reports received.",
            reports,
        );
        let deploys = "cairn_vmm_deploy_seconds";
        e.header(deploys, "summary", "Deploys until the guest process runs.");
        let sum = self.deploy_ns.load(Ordering::Relaxed) as f64 / 1e9;
        e.sample(&format!("{deploys}_sum"), &[], sum);
        e.sample(
            &format!("{deploys}_count"),
            &[],
            self.deploy_count.load(Ordering::Relaxed),
        );
        e.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_gauges_and_counters() {
        let m = Metrics::default();
        m.preflight("denied", "denied.compose_hash");
        m.preflight("denied", "denied.compose_hash");
        m.operation("create", "ok");
        m.guest_report();
        let states = BTreeMap::from([(CvmState::Running, 2)]);
        let text = m.render(&states);
        assert!(text.contains("cairn_vmm_cvms{state=\"running\"} 2"));
        assert!(text.contains("cairn_vmm_cvms{state=\"failed\"} 0"));
        assert!(text.contains(
            "cairn_vmm_preflights_total{outcome=\"denied\",check=\"denied.compose_hash\"} 2"
        ));
        assert!(text.contains("cairn_vmm_operations_total{op=\"create\",outcome=\"ok\"} 1"));
        assert!(text.contains("cairn_vmm_guest_reports_total 1"));
        assert_eq!(m.preflights("denied", "denied.compose_hash"), 2);
    }
}
