//! The Prometheus recorder: installed once per process behind the `metrics` facade, so
//! `metrics::counter!` in any crate lands here. Every metric of [`coffer_core::metrics::ALL`]
//! is described (its `# HELP` line) and its histograms get buckets that fit what it measures.

use coffer_core::metrics::{self as names, ALL, MetricKind};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::TelemetryError;

/// Seconds: from a fast task to a long backup.
const DURATION_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
];
/// Seconds a message waited in the queue (second resolution).
const LAG_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
];
/// Shares of a daily allocation.
const RATIO_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0];

/// Installs the global recorder and returns the handle `/metrics` renders from.
pub fn install_prometheus() -> Result<PrometheusHandle, TelemetryError> {
    let built = PrometheusBuilder::new()
        .set_buckets(DURATION_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(names::QUEUE_LAG_SECONDS.into()), LAG_BUCKETS)
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(names::SALESFORCE_API_USAGE_RATIO.into()),
                RATIO_BUCKETS,
            )
        })
        .map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))?;
    let handle = built
        .install_recorder()
        .map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))?;
    describe_all();
    Ok(handle)
}

/// Registers the help text of every metric, and zeroes the label-free counters so a scrape
/// shows them before anything happened (a rate over a series that appears late starts wrong).
fn describe_all() {
    for m in ALL {
        match m.kind {
            MetricKind::Counter => {
                metrics::describe_counter!(m.name, m.help);
                if m.labels.is_empty() {
                    metrics::counter!(m.name).absolute(0);
                }
            }
            MetricKind::Gauge => {
                metrics::describe_gauge!(m.name, m.help);
                if m.labels.is_empty() {
                    metrics::gauge!(m.name).set(0.0);
                }
            }
            MetricKind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The operations guide's metrics table lists exactly the metrics the code emits, with
    /// their labels: an operator writing alerts from it writes them against real series.
    #[test]
    fn the_operations_guide_lists_every_metric_and_no_other() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/operations.md");
        let guide = std::fs::read_to_string(path).unwrap();
        let rows: Vec<&str> = guide
            .lines()
            .filter(|l| l.starts_with("| `coffer_"))
            .collect();
        for m in ALL {
            let row = rows
                .iter()
                .find(|r| r.starts_with(&format!("| `{}` |", m.name)))
                .unwrap_or_else(|| panic!("{} is missing from docs/operations.md", m.name));
            for label in m.labels {
                assert!(
                    row.contains(&format!("`{label}`")),
                    "{}: label {label}",
                    m.name
                );
            }
        }
        assert_eq!(
            rows.len(),
            ALL.len(),
            "the guide lists a metric the code lacks"
        );
    }
}
