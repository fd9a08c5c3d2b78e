//! The node's Prometheus metrics (`GET /metrics`, text exposition format 0.0.4).
//!
//! - `cairn_kms_releases_total{kind,outcome,check}`: every release-path request by kind
//!   (`app_key`, `sign_cert`, `onboard`), outcome (`released`, `denied`, `unavailable`,
//!   `error`) and check code (`none` when released).
//! - `cairn_kms_stage_duration_seconds{stage}`: latency of the release stages `verify`
//!   (evidence), `chain` (policy block + policy reads), `derive` (key derivation),
//!   `log` (durable append + checkpoint) and `total`.
//!
//! - chain (from the policy head, [`render_chain`]): `cairn_kms_chain_head_block`,
//!   `cairn_kms_chain_policy_block`, `cairn_kms_chain_head_age_seconds` (gauges; absent
//!   while the head is failing), `cairn_kms_chain_head_up` (1 when the last advance
//!   succeeded), `cairn_kms_chain_head_advances_total`, `cairn_kms_chain_head_failures_total`,
//!   `cairn_kms_chain_disagreements_total` (reads the RPC endpoints answered differently),
//!   `cairn_kms_chain_tracked_reads` (reads kept answered at each new block).
//!
//! Hand-written exposition: a handful of counters and fixed-bucket histograms behind one
//! mutex each, no registry dependency.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Histogram bucket upper bounds, in seconds.
pub const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A release-path stage whose latency is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// RA-TLS evidence verification (quote, event log, OS image).
    Verify,
    /// Policy block and policy reads (`isAppAllowed`, self-check).
    Chain,
    /// Key derivation and signing.
    Derive,
    /// Durable log append and signed checkpoint.
    Log,
    /// The whole request.
    Total,
}

impl Stage {
    const ALL: [Stage; 5] = [
        Stage::Verify,
        Stage::Chain,
        Stage::Derive,
        Stage::Log,
        Stage::Total,
    ];

    fn label(self) -> &'static str {
        match self {
            Stage::Verify => "verify",
            Stage::Chain => "chain",
            Stage::Derive => "derive",
            Stage::Log => "log",
            Stage::Total => "total",
        }
    }
}

#[derive(Default)]
struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in nanoseconds.
    sum_ns: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

/// Counters and histograms of one node.
#[derive(Default)]
pub struct Metrics {
    releases: Mutex<BTreeMap<(&'static str, &'static str, &'static str), u64>>,
    stages: [Histogram; 5],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Count one release-path outcome.
    pub fn count(&self, kind: &'static str, outcome: &'static str, check: &'static str) {
        *self
            .releases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((kind, outcome, check))
            .or_default() += 1;
    }

    /// The count for one label set (tests, benchmarks).
    pub fn releases(&self, kind: &str, outcome: &str, check: &str) -> u64 {
        self.releases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|((k, o, c), _)| *k == kind && *o == outcome && *c == check)
            .map(|(_, n)| *n)
            .sum()
    }

    /// Record a stage latency.
    pub fn observe(&self, stage: Stage, d: Duration) {
        if let Some(i) = Stage::ALL.iter().position(|s| *s == stage) {
            self.stages[i].observe(d);
        }
    }

    /// (count, sum in seconds) of a stage histogram.
    pub fn stage_summary(&self, stage: Stage) -> (u64, f64) {
        let i = Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0);
        let h = &self.stages[i];
        (
            h.count.load(Ordering::Relaxed),
            h.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        )
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP cairn_kms_releases_total Release-path requests by kind, outcome and check.\n",
        );
        out.push_str("# TYPE cairn_kms_releases_total counter\n");
        for ((kind, outcome, check), n) in self
            .releases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "cairn_kms_releases_total{{kind=\"{kind}\",outcome=\"{outcome}\",check=\"{check}\"}} {n}"
            );
        }
        out.push_str("# HELP cairn_kms_stage_duration_seconds Latency of release-path stages.\n");
        out.push_str("# TYPE cairn_kms_stage_duration_seconds histogram\n");
        for (stage, h) in Stage::ALL.iter().zip(&self.stages) {
            let label = stage.label();
            let mut cumulative = 0u64;
            for (b, c) in BUCKETS.iter().zip(&h.counts) {
                cumulative += c.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "cairn_kms_stage_duration_seconds_bucket{{stage=\"{label}\",le=\"{b}\"}} {cumulative}"
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "cairn_kms_stage_duration_seconds_bucket{{stage=\"{label}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "cairn_kms_stage_duration_seconds_sum{{stage=\"{label}\"}} {}",
                h.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
            );
            let _ = writeln!(
                out,
                "cairn_kms_stage_duration_seconds_count{{stage=\"{label}\"}} {count}"
            );
        }
        out
    }
}

/// The chain section of the exposition, from the policy head's status at `now` (seconds
/// since the Unix epoch, the node's clock).
pub fn render_chain(status: &cairn_onchain::HeadStatus, now: u64) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    };
    if let Some(head) = &status.head {
        metric(
            "cairn_kms_chain_head_block",
            "gauge",
            "The chain head the RPC quorum reported at the last advance.",
            head.number.to_string(),
        );
        metric(
            "cairn_kms_chain_policy_block",
            "gauge",
            "The pinned policy block (head - confirmations).",
            head.pinned.number.to_string(),
        );
        metric(
            "cairn_kms_chain_head_age_seconds",
            "gauge",
            "Age of the head block's timestamp at the node's clock.",
            head.age(now).as_secs().to_string(),
        );
    }
    metric(
        "cairn_kms_chain_head_up",
        "gauge",
        "1 when the last policy-head advance succeeded, else 0 (releases fail with 503).",
        u8::from(status.head.is_some()).to_string(),
    );
    metric(
        "cairn_kms_chain_head_advances_total",
        "counter",
        "Policy-head advances (successful or not).",
        status.advances.to_string(),
    );
    metric(
        "cairn_kms_chain_head_failures_total",
        "counter",
        "Policy-head advances that failed (unreachable, disagreement, stale).",
        status.failures.to_string(),
    );
    metric(
        "cairn_kms_chain_disagreements_total",
        "counter",
        "Chain reads the RPC endpoints answered differently (none used).",
        status.disagreements.to_string(),
    );
    metric(
        "cairn_kms_chain_tracked_reads",
        "gauge",
        "Recently used chain reads re-read at each new policy block.",
        status.tracked.to_string(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.count("app_key", "released", "none");
        m.count("app_key", "denied", "denied.compose_hash");
        m.count("app_key", "denied", "denied.compose_hash");
        m.observe(Stage::Log, Duration::from_micros(300));
        m.observe(Stage::Log, Duration::from_millis(30));
        let text = m.render();
        assert!(text.contains(
            "cairn_kms_releases_total{kind=\"app_key\",outcome=\"denied\",check=\"denied.compose_hash\"} 2"
        ));
        assert!(
            text.contains("cairn_kms_stage_duration_seconds_bucket{stage=\"log\",le=\"0.0005\"} 1")
        );
        assert!(
            text.contains("cairn_kms_stage_duration_seconds_bucket{stage=\"log\",le=\"0.05\"} 2")
        );
        assert!(text.contains("cairn_kms_stage_duration_seconds_count{stage=\"log\"} 2"));
        assert_eq!(m.releases("app_key", "denied", "denied.compose_hash"), 2);
    }

    #[test]
    fn chain_section_reports_the_head_and_the_disagreements() {
        let head = cairn_onchain::Head {
            number: 12,
            timestamp: 1_000,
            pinned: cairn_onchain::PolicyBlock {
                number: 10,
                hash: cairn_onchain::alloy::primitives::B256::ZERO,
            },
        };
        let status = cairn_onchain::HeadStatus {
            head: Some(head),
            error: None,
            advances: 7,
            failures: 1,
            disagreements: 2,
            tracked: 3,
        };
        let text = render_chain(&status, 1_030);
        assert!(text.contains("cairn_kms_chain_head_block 12\n"), "{text}");
        assert!(text.contains("cairn_kms_chain_policy_block 10\n"), "{text}");
        assert!(
            text.contains("cairn_kms_chain_head_age_seconds 30\n"),
            "{text}"
        );
        assert!(text.contains("cairn_kms_chain_head_up 1\n"), "{text}");
        assert!(
            text.contains("cairn_kms_chain_disagreements_total 2\n"),
            "{text}"
        );
        let down = cairn_onchain::HeadStatus {
            head: None,
            error: Some("stale".into()),
            ..status
        };
        let text = render_chain(&down, 1_030);
        assert!(text.contains("cairn_kms_chain_head_up 0\n"), "{text}");
        assert!(!text.contains("cairn_kms_chain_head_block"), "{text}");
    }
}
