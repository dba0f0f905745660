//! Probe metrics as CloudWatch Embedded Metric Format log lines.
//!
//! Why EMF rather than PutMetricData: the canary runs every few minutes per rule; EMF costs no API
//! call (no latency, no throttling, no extra IAM permission, no request charges), cannot fail the
//! run, and CloudWatch Logs turns each line into metrics asynchronously. The metrics are
//! `ProbeLatency` (seconds, the midpoint estimate), `ProbeLatencyUncertainty` (seconds) and
//! `ProbeSuccess` (1 when the probe arrived within the threshold, else 0), with dimensions
//! `SourceBucket`, `DestinationBucket`, `RuleId`, and also without dimensions (for a heartbeat
//! alarm over all rules).

use super::ports::{ProbeMeasurement, ProbeMetrics};
use serde_json::{json, Map, Value};
use std::io::Write;

/// Writes EMF lines to stdout (the function's log stream).
#[derive(Debug, Clone)]
pub struct EmfMetrics {
    namespace: String,
}

impl EmfMetrics {
    pub fn new(namespace: &str) -> Self {
        EmfMetrics {
            namespace: namespace.to_owned(),
        }
    }
}

/// One EMF document for one measurement.
pub fn emf_document(namespace: &str, m: &ProbeMeasurement<'_>) -> Value {
    let mut metrics = vec![json!({"Name": "ProbeSuccess", "Unit": "Count"})];
    let mut document = Map::new();
    if m.latency_seconds.is_some() {
        metrics.push(json!({"Name": "ProbeLatency", "Unit": "Seconds"}));
        metrics.push(json!({"Name": "ProbeLatencyUncertainty", "Unit": "Seconds"}));
    }
    document.insert(
        "_aws".into(),
        json!({
            "Timestamp": m.at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                // Per rule, and once more without dimensions: the stack's heartbeat alarm
                // watches that one (an alarm cannot watch a search over all rules).
                "Dimensions": [["SourceBucket", "DestinationBucket", "RuleId"], []],
                "Metrics": metrics,
            }],
        }),
    );
    document.insert("SourceBucket".into(), json!(m.source_bucket));
    document.insert("DestinationBucket".into(), json!(m.destination_bucket));
    document.insert("RuleId".into(), json!(m.rule_id));
    document.insert("ProbeSuccess".into(), json!(u8::from(m.success)));
    if let Some(latency) = m.latency_seconds {
        document.insert("ProbeLatency".into(), json!(latency));
        document.insert(
            "ProbeLatencyUncertainty".into(),
            json!(m.uncertainty_seconds.unwrap_or(0.0)),
        );
    }
    Value::Object(document)
}

impl ProbeMetrics for EmfMetrics {
    fn record(&self, measurement: &ProbeMeasurement<'_>) {
        let line = emf_document(&self.namespace, measurement).to_string();
        // One write per line: Lambda captures stdout line by line. A failed write loses a metric,
        // never the run.
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn document_follows_the_emf_specification() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 3, 0, 0).unwrap();
        let m = ProbeMeasurement {
            source_bucket: "src",
            destination_bucket: "dst",
            rule_id: "r",
            at,
            success: true,
            latency_seconds: Some(2.5),
            uncertainty_seconds: Some(0.5),
        };
        let doc = emf_document("ReplicationMonitor", &m);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(doc["_aws"]["Timestamp"], at.timestamp_millis());
        assert_eq!(directive["Namespace"], "ReplicationMonitor");
        // Every dimension and metric the directive names is a top-level member.
        assert_eq!(directive["Dimensions"][1], json!([]));
        for dimension in directive["Dimensions"][0].as_array().unwrap() {
            assert!(doc[dimension.as_str().unwrap()].is_string());
        }
        for metric in directive["Metrics"].as_array().unwrap() {
            assert!(doc[metric["Name"].as_str().unwrap()].is_number());
        }
        assert_eq!(doc["ProbeLatency"], 2.5);
        let failed = emf_document(
            "N",
            &ProbeMeasurement {
                success: false,
                latency_seconds: None,
                uncertainty_seconds: None,
                ..m
            },
        );
        assert_eq!(failed["ProbeSuccess"], 0);
        assert!(failed.get("ProbeLatency").is_none());
        assert_eq!(
            failed["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}
