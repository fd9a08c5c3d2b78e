//! The node's Prometheus metrics (`GET /metrics`, text exposition format 0.0.4).
//!
//! - `cairn_kms_releases_total{kind,outcome,check}`: every release-path request by kind
//!   (`app_key`, `sign_cert`, `onboard`), outcome (`released`, `denied`, `unavailable`,
//!   `error`) and check code (`none` when released).
//! - `cairn_kms_stage_duration_seconds{stage}`: latency of the release stages `verify`
//!   (evidence), `chain` (policy block + policy reads), `derive` (key derivation),
//!   `log` (durable append + checkpoint) and `total`.
//! - `cairn_kms_anchor_failures_total`: anchoring rounds that failed (the transaction
//!   reverted, ran out of gas money, timed out, …).
//! - `cairn_kms_anchor_unanchored_entries` (gauge): log entries the chain does not hold.
//! - `cairn_kms_anchor_last_success_age_seconds` (gauge): time since the log was last
//!   fully anchored.
//! - `cairn_kms_log_writable` (gauge): 1 while the transparency log takes entries, 0
//!   after a write failed (a full disk) until it is recovered.
//! - `cairn_kms_log_recoveries_total`: times the log was reopened after a failed write.
//! - `cairn_kms_connections_open` (gauge): TCP connections being served (handshake
//!   included).
//! - `cairn_kms_connections_refused_total{reason}`: connections closed at accept,
//!   `max_connections` or `max_per_source`.
//! - `cairn_kms_tls_handshake_timeouts_total`: handshakes cut at the handshake timeout.
//! - `cairn_kms_requests_in_flight` (gauge): requests whose headers were read and that
//!   are not answered yet (body reading, waiting for a permit, processing).
//! - `cairn_kms_requests_reading_body` (gauge): requests whose body is being read (no
//!   release permit is held meanwhile).
//! - `cairn_kms_request_body_timeouts_total`: requests answered 408 because their body
//!   stalled or was too slow.
//! - `cairn_kms_policy_head_waits_total{outcome}`: `app-key` requests whose
//!   `min_policy_block` was above the policy block, by outcome: `reached` (the head got
//!   there within `chain.head_wait_ms`, then judged as usual) or `behind` (answered 503
//!   `unavailable.policy_head_behind`: timed out, too far ahead, or too many waiting).
//! - `cairn_kms_policy_head_waiting` (gauge): `app-key` requests waiting for the policy
//!   head now (at most `MAX_HEAD_WAITERS`).
//!
//! - chain (from the policy head, [`render_chain`]): `cairn_kms_chain_head_block`,
//!   `cairn_kms_chain_policy_block`, `cairn_kms_chain_head_age_seconds` (gauges; absent
//!   while the head is failing), `cairn_kms_chain_head_up` (1 when the last advance
//!   succeeded), `cairn_kms_chain_head_advances_total`, `cairn_kms_chain_head_failures_total`,
//!   `cairn_kms_chain_disagreements_total` (reads the RPC endpoints answered differently),
//!   `cairn_kms_chain_tracked_reads` (reads kept answered at each new block).
//!
//! Hand-written exposition: a handful of counters and fixed-bucket histograms behind one
//! mutex each, no registry dependency. Gauges that depend on the node's state are sampled
//! by the caller at scrape time ([`AnchorGauges`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use cairn_service::Exposition;

use crate::anchor::AnchorGauges;

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

#[derive(Debug, Default)]
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

    /// The samples of the histogram `name` for one `stage` (cumulative buckets).
    fn render(&self, e: &mut Exposition, name: &str, stage: &str) {
        let mut cumulative = 0u64;
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let le = b.to_string();
            e.sample(
                &format!("{name}_bucket"),
                &[("stage", stage), ("le", &le)],
                cumulative,
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        e.sample(
            &format!("{name}_bucket"),
            &[("stage", stage), ("le", "+Inf")],
            count,
        );
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        e.sample(&format!("{name}_sum"), &[("stage", stage)], sum);
        e.sample(&format!("{name}_count"), &[("stage", stage)], count);
    }
}

/// Why a connection was closed at accept (shared with the other services).
pub use cairn_service::Refusal;

/// Counters and histograms of one node.
#[derive(Debug, Default)]
pub struct Metrics {
    releases: Mutex<BTreeMap<(&'static str, &'static str, &'static str), u64>>,
    stages: [Histogram; 5],
    anchor_failures: AtomicU64,
    log_recoveries: AtomicU64,
    connections_open: AtomicU64,
    refused_max_connections: AtomicU64,
    refused_max_per_source: AtomicU64,
    handshake_timeouts: AtomicU64,
    in_flight: AtomicU64,
    reading_body: AtomicU64,
    body_timeouts: AtomicU64,
    head_waits_reached: AtomicU64,
    head_waits_behind: AtomicU64,
    head_waiting: AtomicU64,
}

/// Decrements a gauge when dropped (shared with the other services).
pub use cairn_service::GaugeGuard;

/// For each metric field, its methods: a `counter` counts one more, a `gauge` holds one
/// more until its [`GaugeGuard`] drops; then the field's reader.
macro_rules! metric_methods {
    ($(
        $(#[$doc:meta])* $kind:ident fn $name:ident;
        $(#[$read_doc:meta])* fn $read:ident => $field:ident;
    )*) => {$(
        metric_methods!(@$kind $(#[$doc])* $name $field);

        $(#[$read_doc])*
        pub fn $read(&self) -> u64 {
            self.$field.load(Ordering::Relaxed)
        }
    )*};
    (@counter $(#[$doc:meta])* $name:ident $field:ident) => {
        $(#[$doc])*
        pub fn $name(&self) {
            self.$field.fetch_add(1, Ordering::Relaxed);
        }
    };
    (@gauge $(#[$doc:meta])* $name:ident $field:ident) => {
        $(#[$doc])*
        pub fn $name(&self) -> GaugeGuard<'_> {
            GaugeGuard::inc(&self.$field)
        }
    };
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

    metric_methods! {
        /// Count one failed anchoring round.
        counter fn anchor_failed;
        /// Anchoring rounds that failed so far.
        fn anchor_failures => anchor_failures;
        /// Count one recovery of the log after a failed write.
        counter fn log_recovered;
        /// Log recoveries so far.
        fn log_recoveries => log_recoveries;
        /// Count one open connection until the guard drops.
        gauge fn connection_opened;
        /// Connections being served now.
        fn connections_open => connections_open;
        /// Count one TLS handshake cut at the timeout.
        counter fn handshake_timed_out;
        /// TLS handshakes cut at the timeout so far.
        fn handshake_timeouts => handshake_timeouts;
        /// Count one request (headers read) until the guard drops.
        gauge fn request_started;
        /// Requests received and not answered yet.
        fn requests_in_flight => in_flight;
        /// Count one request whose body is being read until the guard drops.
        gauge fn body_reading;
        /// Requests whose body is being read now.
        fn requests_reading_body => reading_body;
        /// Count one request answered 408 because its body was too slow.
        counter fn body_timed_out;
        /// Requests answered 408 for a slow body so far.
        fn body_timeouts => body_timeouts;
        /// Count one release that waited for the policy head and saw it reach its block.
        counter fn head_wait_reached;
        /// Releases whose wait for the policy head ended with the head at their block.
        fn head_waits_reached => head_waits_reached;
        /// Count one release answered 503 because the policy head did not reach its block.
        counter fn head_wait_behind;
        /// Releases answered 503 `unavailable.policy_head_behind` so far.
        fn head_waits_behind => head_waits_behind;
        /// Count one release waiting for the policy head until the guard drops.
        gauge fn head_wait_started;
        /// Releases waiting for the policy head now.
        fn head_waiting => head_waiting;
    }

    /// Count one connection closed at accept.
    pub fn connection_refused(&self, why: Refusal) {
        self.refused(why).fetch_add(1, Ordering::Relaxed);
    }

    /// Connections closed at accept for `why` so far.
    pub fn connections_refused(&self, why: Refusal) -> u64 {
        self.refused(why).load(Ordering::Relaxed)
    }

    fn refused(&self, why: Refusal) -> &AtomicU64 {
        match why {
            Refusal::MaxConnections => &self.refused_max_connections,
            Refusal::MaxPerSource => &self.refused_max_per_source,
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

    /// Per-bucket (not cumulative) counts of a stage histogram, bucket `i` covering
    /// `(BUCKETS[i-1], BUCKETS[i]]`; observations above the last bound are not in any
    /// bucket (`count` minus the sum). For benchmarks' tail estimates.
    pub fn stage_buckets(&self, stage: Stage) -> [u64; BUCKETS.len()] {
        let i = Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0);
        let h = &self.stages[i];
        std::array::from_fn(|b| h.counts[b].load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition, with the anchoring gauges sampled by the caller.
    pub fn render(&self, anchor: &AnchorGauges, log_writable: bool) -> String {
        let mut e = Exposition::new();
        let releases = "cairn_kms_releases_total";
        e.header(
            releases,
            "counter",
            "Release-path requests by kind, outcome and check.",
        );
        for ((kind, outcome, check), n) in self
            .releases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let labels = [("kind", *kind), ("outcome", *outcome), ("check", *check)];
            e.sample(releases, &labels, n);
        }
        let stages = "cairn_kms_stage_duration_seconds";
        e.header(stages, "histogram", "Latency of release-path stages.");
        for (stage, h) in Stage::ALL.iter().zip(&self.stages) {
            h.render(&mut e, stages, stage.label());
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        #[rustfmt::skip]
        let singles = [
            ("anchor_failures_total", "counter", "Anchoring rounds that failed.", load(&self.anchor_failures).to_string()),
            ("anchor_unanchored_entries", "gauge", "Log entries not yet anchored on chain.", anchor.unanchored_entries.to_string()),
            ("anchor_last_success_age_seconds", "gauge", "Seconds since the log was last fully anchored on chain.", anchor.last_success_age_seconds.to_string()),
            ("log_writable", "gauge", "1 while the transparency log takes entries, 0 after a write failed until it is recovered.", u8::from(log_writable).to_string()),
            ("log_recoveries_total", "counter", "Times the log was reopened after a failed write.", load(&self.log_recoveries).to_string()),
            ("connections_open", "gauge", "Connections being served, TLS handshake included.", load(&self.connections_open).to_string()),
            ("tls_handshake_timeouts_total", "counter", "TLS handshakes cut at the handshake timeout.", load(&self.handshake_timeouts).to_string()),
            ("requests_in_flight", "gauge", "Requests whose headers were read and that are not answered yet.", load(&self.in_flight).to_string()),
            ("requests_reading_body", "gauge", "Requests whose body is being read (no release permit held).", load(&self.reading_body).to_string()),
            ("request_body_timeouts_total", "counter", "Requests answered 408 because their body stalled or was too slow.", load(&self.body_timeouts).to_string()),
            ("policy_head_waiting", "gauge", "app-key requests waiting now for the policy head to reach their min_policy_block.", load(&self.head_waiting).to_string()),
        ];
        for (name, kind, help, value) in singles {
            e.single(&format!("cairn_kms_{name}"), kind, help, value);
        }
        e.labelled(
            "cairn_kms_policy_head_waits_total",
            "app-key requests that waited for the policy head to reach their min_policy_block, by outcome.",
            "outcome",
            [
                ("reached", self.head_waits_reached()),
                ("behind", self.head_waits_behind()),
            ],
        );
        e.labelled(
            "cairn_kms_connections_refused_total",
            "Connections closed at accept, by reason.",
            "reason",
            [Refusal::MaxConnections, Refusal::MaxPerSource]
                .map(|why| (why.label(), self.connections_refused(why))),
        );
        e.finish()
    }
}

/// The chain section of the exposition, from the policy head's status at `now` (seconds
/// since the Unix epoch, the node's clock).
pub fn render_chain(status: &cairn_onchain::HeadStatus, now: u64) -> String {
    let mut e = Exposition::new();
    if let Some(head) = &status.head {
        #[rustfmt::skip]
        let gauges = [
            ("head_block", "The chain head the RPC quorum reported at the last advance.", head.number),
            ("policy_block", "The pinned policy block (head - confirmations).", head.pinned.number),
            ("head_age_seconds", "Age of the head block's timestamp at the node's clock.", head.age(now).as_secs()),
        ];
        for (name, help, value) in gauges {
            e.single(&format!("cairn_kms_chain_{name}"), "gauge", help, value);
        }
    }
    #[rustfmt::skip]
    let singles = [
        ("head_up", "gauge", "1 when the last policy-head advance succeeded, else 0 (releases fail with 503).", u64::from(status.head.is_some())),
        ("head_advances_total", "counter", "Policy-head advances (successful or not).", status.advances),
        ("head_failures_total", "counter", "Policy-head advances that failed (unreachable, disagreement, stale).", status.failures),
        ("disagreements_total", "counter", "Chain reads the RPC endpoints answered differently (none used).", status.disagreements),
        ("tracked_reads", "gauge", "Recently used chain reads re-read at each new policy block.", status.tracked as u64),
    ];
    for (name, kind, help, value) in singles {
        e.single(&format!("cairn_kms_chain_{name}"), kind, help, value);
    }
    e.finish()
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
        m.anchor_failed();
        m.connection_refused(Refusal::MaxPerSource);
        let open = m.connection_opened();
        m.log_recovered();
        let text = m.render(
            &AnchorGauges {
                unanchored_entries: 7,
                last_success_age_seconds: 1.5,
            },
            false,
        );
        for sample in [
            "cairn_kms_releases_total{kind=\"app_key\",outcome=\"denied\",check=\"denied.compose_hash\"} 2",
            "cairn_kms_stage_duration_seconds_bucket{stage=\"log\",le=\"0.0005\"} 1",
            "cairn_kms_stage_duration_seconds_bucket{stage=\"log\",le=\"0.05\"} 2",
            "cairn_kms_stage_duration_seconds_count{stage=\"log\"} 2",
            "\ncairn_kms_anchor_failures_total 1\n",
            "\ncairn_kms_log_writable 0\n",
            "\ncairn_kms_log_recoveries_total 1\n",
            "\ncairn_kms_anchor_unanchored_entries 7\n",
            "\ncairn_kms_anchor_last_success_age_seconds 1.5\n",
            "\ncairn_kms_connections_open 1\n",
            "cairn_kms_connections_refused_total{reason=\"max_per_source\"} 1\n",
            "cairn_kms_connections_refused_total{reason=\"max_connections\"} 0\n",
        ] {
            assert!(text.contains(sample), "{sample:?} not in {text}");
        }
        assert_eq!(m.releases("app_key", "denied", "denied.compose_hash"), 2);
        // 300 µs is in (250 µs, 500 µs], 30 ms in (25 ms, 50 ms]; not cumulative.
        let b = m.stage_buckets(Stage::Log);
        assert_eq!((b[2], b[8], b.iter().sum::<u64>()), (1, 1, 2));
        drop(open);
        assert_eq!(m.connections_open(), 0);
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
        for sample in [
            "cairn_kms_chain_head_block 12\n",
            "cairn_kms_chain_policy_block 10\n",
            "cairn_kms_chain_head_age_seconds 30\n",
            "cairn_kms_chain_head_up 1\n",
            "cairn_kms_chain_disagreements_total 2\n",
        ] {
            assert!(text.contains(sample), "{sample:?} not in {text}");
        }
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
