//! The node's Prometheus metrics (`GET /metrics` on the admin listener, text exposition
//! format 0.0.4).
//!
//! - `cairn_gateway_connections_open` (gauge): proxied connections, hello included.
//! - `cairn_gateway_connections_total{mode,outcome}`: proxied connections that ended, by
//!   mode (`terminate`, `passthrough`) and outcome (`closed`, `revoked`,
//!   `idle_timeout`, `total_timeout`, `backend_unavailable`, `handshake_failed`,
//!   `shutdown`).
//! - `cairn_gateway_connections_refused_total{reason}`: connections closed before any
//!   byte was forwarded: `max_connections`, `max_per_source`, `hello_timeout`,
//!   `hello_too_large`, `hello_malformed`, `hello_closed`, `no_sni`, `other_domain`,
//!   `bad_name`, `unknown_app`, `port_denied`, `app_limit`, `policy_stale`.
//! - `cairn_gateway_backend_connect_failures_total`: connects to instances that failed.
//! - `cairn_gateway_registrations_total{outcome,check}`: registrations by outcome
//!   (`admitted`, `denied`, `unavailable`, `bad_request`) and check code.
//! - `cairn_gateway_revocations_total{check}`: admitted instances dropped because the
//!   chain no longer allows them (or they stopped registering: `expired`).
//! - `cairn_gateway_instances` (gauge): admitted instances.
//! - `cairn_gateway_policy_checks_total{outcome}`: policy polls (`ok`, `failed`).
//! - `cairn_gateway_policy_block` (gauge): the block the last full check was at.
//! - `cairn_gateway_policy_age_seconds` (gauge): since the last successful check.
//! - `cairn_gateway_certificate_reloads_total{outcome}`: certificate file reloads
//!   (`ok`, `failed`).
//!
//! Hand-written exposition like the KMS's: counters behind one mutex per family, no
//! registry dependency; state gauges are sampled by the caller at scrape time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use cairn_service::Exposition;

/// A family of counters with up to two labels.
#[derive(Debug, Default)]
struct Family {
    values: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Family {
    fn inc(&self, labels: (&'static str, &'static str)) {
        *self
            .values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(labels)
            .or_default() += 1;
    }

    fn get(&self, (a, b): (&str, &str)) -> u64 {
        self.values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|((x, y), _)| *x == a && *y == b)
            .map(|(_, n)| *n)
            .sum()
    }

    fn render(&self, e: &mut Exposition, name: &str, help: &str, labels: (&str, &str)) {
        e.header(name, "counter", help);
        for ((a, b), n) in self
            .values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            if labels.1.is_empty() {
                e.sample(name, &[(labels.0, a)], n);
            } else {
                e.sample(name, &[(labels.0, a), (labels.1, b)], n);
            }
        }
    }
}

/// State gauges sampled at scrape time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Gauges {
    /// Admitted instances.
    pub instances: u64,
    /// The block of the last full policy check (0: none yet).
    pub policy_block: u64,
    /// Seconds since the last successful policy check (`-1`: none yet).
    pub policy_age_seconds: f64,
}

/// Counters of one gateway node.
#[derive(Debug, Default)]
pub struct Metrics {
    connections_open: AtomicU64,
    connections: Family,
    refused: Family,
    backend_failures: AtomicU64,
    registrations: Family,
    revocations: Family,
    policy_checks: Family,
    cert_reloads: Family,
}

/// For each counter [`Family`], its methods: one counting one more for its labels (one or
/// two; a missing second label is `""`), then the family's reader for the same labels.
macro_rules! family_methods {
    ($(
        $(#[$doc:meta])* fn $count:ident($($label:ident),+);
        $(#[$read_doc:meta])* fn $read:ident => $family:ident;
    )*) => {$(
        $(#[$doc])*
        pub fn $count(&self, $($label: &'static str),+) {
            self.$family.inc(family_methods!(@labels $($label),+));
        }

        $(#[$read_doc])*
        pub fn $read(&self, $($label: &str),+) -> u64 {
            self.$family.get(family_methods!(@labels $($label),+))
        }
    )*};
    (@labels $a:ident) => {
        ($a, "")
    };
    (@labels $a:ident, $b:ident) => {
        ($a, $b)
    };
}

/// Decrements the open-connections gauge when dropped.
pub type OpenGuard<'a> = cairn_service::GaugeGuard<'a>;

impl Metrics {
    /// Count one open connection until the guard drops.
    pub fn connection_opened(&self) -> OpenGuard<'_> {
        OpenGuard::inc(&self.connections_open)
    }

    /// Connections open now.
    pub fn connections_open(&self) -> u64 {
        self.connections_open.load(Ordering::Relaxed)
    }

    /// Count a failed connect to an instance.
    pub fn backend_failed(&self) {
        self.backend_failures.fetch_add(1, Ordering::Relaxed);
    }

    family_methods! {
        /// Count a proxied connection that ended.
        fn connection_ended(mode, outcome);
        /// Proxied connections that ended with `outcome` (any mode).
        fn connections_ended => connections;
        /// Count a connection refused before forwarding.
        fn refused(reason);
        /// Connections refused for `reason` so far.
        fn refusals => refused;
        /// Count a registration outcome.
        fn registration(outcome, check);
        /// Registrations with this outcome and check so far.
        fn registrations => registrations;
        /// Count a revoked (or expired) instance.
        fn revoked(check);
        /// Revocations for `check` so far.
        fn revocations => revocations;
        /// Count a policy poll.
        fn policy_check(outcome);
        /// Policy polls with `outcome` so far.
        fn policy_checks => policy_checks;
        /// Count a certificate reload.
        fn cert_reload(outcome);
        /// Certificate reloads with `outcome` so far.
        fn cert_reloads => cert_reloads;
    }

    /// The Prometheus text exposition, with the state gauges sampled by the caller.
    pub fn render(&self, g: &Gauges) -> String {
        let mut e = Exposition::new();
        #[rustfmt::skip]
        let singles = [
            ("connections_open", "gauge", "Proxied connections open, ClientHello included.", self.connections_open().to_string()),
            ("backend_connect_failures_total", "counter", "Connects to instances that failed.", self.backend_failures.load(Ordering::Relaxed).to_string()),
            ("instances", "gauge", "Admitted instances.", g.instances.to_string()),
            ("policy_block", "gauge", "Block of the last full policy check.", g.policy_block.to_string()),
            ("policy_age_seconds", "gauge", "Seconds since the last successful policy check (-1: none).", g.policy_age_seconds.to_string()),
        ];
        for (name, kind, help, value) in singles {
            e.single(&format!("cairn_gateway_{name}"), kind, help, value);
        }
        #[rustfmt::skip]
        let families = [
            (&self.connections, "connections_total", "Proxied connections that ended, by mode and outcome.", ("mode", "outcome")),
            (&self.refused, "connections_refused_total", "Connections closed before any byte was forwarded, by reason.", ("reason", "")),
            (&self.registrations, "registrations_total", "Registrations by outcome and check.", ("outcome", "check")),
            (&self.revocations, "revocations_total", "Admitted instances dropped, by check.", ("check", "")),
            (&self.policy_checks, "policy_checks_total", "Policy polls by outcome.", ("outcome", "")),
            (&self.cert_reloads, "certificate_reloads_total", "Certificate file reloads by outcome.", ("outcome", "")),
        ];
        for (family, name, help, labels) in families {
            family.render(&mut e, &format!("cairn_gateway_{name}"), help, labels);
        }
        e.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_every_family_with_its_labels() {
        let m = Metrics::default();
        let open = m.connection_opened();
        m.connection_ended("terminate", "revoked");
        m.refused("unknown_app");
        m.refused("unknown_app");
        m.registration("denied", "denied.compose_hash");
        m.revoked("denied.compose_hash");
        m.policy_check("ok");
        m.cert_reload("failed");
        m.backend_failed();
        let text = m.render(&Gauges {
            instances: 3,
            policy_block: 42,
            policy_age_seconds: 1.5,
        });
        for line in [
            "cairn_gateway_connections_open 1\n",
            "cairn_gateway_connections_total{mode=\"terminate\",outcome=\"revoked\"} 1\n",
            "cairn_gateway_connections_refused_total{reason=\"unknown_app\"} 2\n",
            "cairn_gateway_registrations_total{outcome=\"denied\",check=\"denied.compose_hash\"} 1\n",
            "cairn_gateway_revocations_total{check=\"denied.compose_hash\"} 1\n",
            "cairn_gateway_policy_checks_total{outcome=\"ok\"} 1\n",
            "cairn_gateway_certificate_reloads_total{outcome=\"failed\"} 1\n",
            "cairn_gateway_backend_connect_failures_total 1\n",
            "cairn_gateway_instances 3\n",
            "cairn_gateway_policy_block 42\n",
            "cairn_gateway_policy_age_seconds 1.5\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert_eq!(m.refusals("unknown_app"), 2);
        drop(open);
        assert_eq!(m.connections_open(), 0);
    }
}
