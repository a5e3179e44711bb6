//! Turning an outcome into figures: one run as text or a JSON line, and many runs as a
//! side-by-side table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::load::Outcome;
use crate::percentile::percentile;

/// The figures of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// `meridian` or `etcd`.
    pub system: String,
    /// `leader` or `all`.
    pub target: String,
    /// Workers in the closed loop.
    pub concurrency: usize,
    /// Seconds measured.
    pub seconds: f64,
    /// 2xx answers in the measured window.
    pub ok: u64,
    /// Everything else in the measured window.
    pub errors: u64,
    /// Successes per second.
    pub throughput: f64,
    /// Latency percentiles of successes, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest success, ms.
    pub max_ms: f64,
}

fn ms(us: Option<u64>) -> f64 {
    us.map(|u| u as f64 / 1000.0).unwrap_or(0.0)
}

impl Summary {
    /// Figures for `outcome`, labelled with what was run.
    pub fn new(system: &str, target: &str, concurrency: usize, outcome: &Outcome) -> Self {
        let l = &outcome.latencies_us;
        let seconds = outcome.measured.as_secs_f64();
        let ok = l.len() as u64;
        Self {
            system: system.into(),
            target: target.into(),
            concurrency,
            seconds,
            ok,
            errors: outcome.errors,
            throughput: if seconds > 0.0 {
                ok as f64 / seconds
            } else {
                0.0
            },
            p50_ms: ms(percentile(l, 50.0)),
            p90_ms: ms(percentile(l, 90.0)),
            p99_ms: ms(percentile(l, 99.0)),
            max_ms: ms(l.last().copied()),
        }
    }

    /// A human-readable block.
    pub fn text(&self) -> String {
        format!(
            "{} (target {}, concurrency {}, {:.1} s)\n  requests ok  {}\n  errors       {}\n  \
             throughput   {:.0} ok/s\n  latency ms   p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}\n",
            self.system,
            self.target,
            self.concurrency,
            self.seconds,
            self.ok,
            self.errors,
            self.throughput,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms
        )
    }
}

/// A table with one row per (target, concurrency) and each system's figures side by side,
/// from JSON lines written by `--json`. Lines that are not summaries are skipped.
pub fn side_by_side(jsonl: &str) -> String {
    let runs: Vec<Summary> = jsonl
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut systems: Vec<String> = Vec::new();
    for r in &runs {
        if !systems.contains(&r.system) {
            systems.push(r.system.clone());
        }
    }
    // Leader runs first, then by concurrency.
    let mut rows: BTreeMap<(bool, usize), BTreeMap<&str, &Summary>> = BTreeMap::new();
    for r in &runs {
        rows.entry((r.target != "leader", r.concurrency))
            .or_default()
            .insert(&r.system, r);
    }
    let mut out = String::new();
    let _ = write!(out, "{:<7} {:>5} |", "target", "conc");
    for s in &systems {
        let _ = write!(out, " {s:>9} ops/s  p50 ms  p99 ms  err |");
    }
    // Every system beside the last one (the anchor, run last by the scripts).
    let (anchor, others) = match systems.split_last() {
        Some((a, rest)) if !rest.is_empty() => (Some(a), rest),
        _ => (None, &[][..]),
    };
    if let Some(a) = anchor {
        for s in others {
            let _ = write!(out, " {s} / {a}");
        }
    }
    out.push('\n');
    for ((_, conc), by_system) in &rows {
        let target = by_system.values().next().map_or("?", |r| r.target.as_str());
        let _ = write!(out, "{target:<7} {conc:>5} |");
        for s in &systems {
            match by_system.get(s.as_str()) {
                Some(r) => {
                    let _ = write!(
                        out,
                        " {:>15.0} {:>7.2} {:>7.2} {:>4} |",
                        r.throughput, r.p50_ms, r.p99_ms, r.errors
                    );
                }
                None => {
                    let _ = write!(out, " {:>15} {:>7} {:>7} {:>4} |", "-", "-", "-", "-");
                }
            }
        }
        if let Some(a) = anchor {
            for s in others {
                match (by_system.get(s.as_str()), by_system.get(a.as_str())) {
                    (Some(x), Some(y)) if y.throughput > 0.0 => {
                        let width = s.len() + a.len() + 3;
                        let _ = write!(
                            out,
                            " {:>width$}",
                            format!("{:.2}x", x.throughput / y.throughput)
                        );
                    }
                    _ => {
                        let _ = write!(out, " {:>width$}", "-", width = s.len() + a.len() + 3);
                    }
                }
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn outcome(latencies_us: Vec<u64>) -> Outcome {
        Outcome {
            latencies_us,
            measured: Duration::from_secs(2),
            ..Outcome::default()
        }
    }

    #[test]
    fn summary_counts_and_rates() {
        let s = Summary::new(
            "meridian",
            "leader",
            4,
            &outcome((1..=100).map(|i| i * 1000).collect()),
        );
        assert_eq!(s.ok, 100);
        assert!((s.throughput - 50.0).abs() < 1e-9);
        assert!((s.p50_ms - 50.0).abs() < 1e-9);
        assert!((s.p99_ms - 99.0).abs() < 1e-9);
        assert!((s.max_ms - 100.0).abs() < 1e-9);
    }

    #[test]
    fn table_pairs_systems_by_concurrency() {
        let a = Summary::new("meridian", "leader", 16, &outcome(vec![1000; 10]));
        let b = Summary::new("etcd", "leader", 16, &outcome(vec![1000; 20]));
        let lines = format!(
            "noise\n{}\n{}\n",
            serde_json::to_string(&a).unwrap_or_default(),
            serde_json::to_string(&b).unwrap_or_default()
        );
        let table = side_by_side(&lines);
        assert_eq!(table.lines().count(), 2, "{table}");
        assert!(table.contains("0.50x"), "{table}");
    }
}
