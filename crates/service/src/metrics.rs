//! The Prometheus text exposition (format 0.0.4), written by hand: each service keeps its
//! own counters and names, and renders them through one [`Exposition`], so `# HELP` /
//! `# TYPE` headers and label sets are spelled the same way everywhere.

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};

/// A Prometheus text exposition being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `# HELP` and `# TYPE` lines of the family `name` (`kind`: `counter`, `gauge`,
    /// `histogram`, `summary`).
    pub fn header(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    /// One sample line: `name{l1="v1",…} value` (no braces without labels). Label values
    /// are written as given: callers pass codes, never client input.
    pub fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl Display,
    ) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// A family of one unlabelled sample: its header and its value.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Display) -> &mut Self {
        self.header(name, kind, help).sample(name, &[], value)
    }

    /// A counter family with one label: the header, then a sample per `(label value,
    /// count)`.
    pub fn labelled<'a>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> &mut Self {
        self.header(name, "counter", help);
        for (v, n) in samples {
            self.sample(name, &[(label, v)], n);
        }
        self
    }

    /// The exposition text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// Decrements a gauge when dropped (open connections, requests in flight).
#[must_use = "the gauge is decremented when this is dropped"]
#[derive(Debug)]
pub struct GaugeGuard<'a>(&'a AtomicU64);

impl<'a> GaugeGuard<'a> {
    /// Increment `gauge` now; it is decremented when the guard drops.
    pub fn inc(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_headers_and_samples_their_labels() {
        let mut e = Exposition::new();
        e.single("x_open", "gauge", "Open things.", 3)
            .header("x_total", "counter", "Things by kind.")
            .sample("x_total", &[("kind", "a"), ("outcome", "ok")], 2)
            .labelled(
                "x_refused_total",
                "Refusals.",
                "reason",
                [("max", 1), ("src", 0)],
            );
        assert_eq!(
            e.finish(),
            "# HELP x_open Open things.\n# TYPE x_open gauge\nx_open 3\n\
             # HELP x_total Things by kind.\n# TYPE x_total counter\n\
             x_total{kind=\"a\",outcome=\"ok\"} 2\n\
             # HELP x_refused_total Refusals.\n# TYPE x_refused_total counter\n\
             x_refused_total{reason=\"max\"} 1\nx_refused_total{reason=\"src\"} 0\n"
        );
    }

    #[test]
    fn a_gauge_guard_counts_while_it_lives() {
        let g = AtomicU64::new(0);
        let a = GaugeGuard::inc(&g);
        let b = GaugeGuard::inc(&g);
        assert_eq!(g.load(Ordering::Relaxed), 2);
        drop(a);
        assert_eq!(g.load(Ordering::Relaxed), 1);
        drop(b);
        assert_eq!(g.load(Ordering::Relaxed), 0);
    }
}
