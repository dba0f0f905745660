//! Recent datapoints from CloudWatch `GetMetricData` (metric stats and metric-math expressions).

use super::{describe, is_transient};
use crate::alarm::AlarmMetric;
use crate::metrics::{MetricsError, MetricsSource, Series};
use aws_config::SdkConfig;
use aws_sdk_cloudwatch::primitives::DateTime as AwsDateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use aws_sdk_cloudwatch::Client;
use chrono::{DateTime, TimeZone, Utc};

#[derive(Debug, Clone)]
pub struct CloudWatchMetrics {
    client: Client,
}

impl CloudWatchMetrics {
    pub fn new(sdk: &SdkConfig) -> Self {
        CloudWatchMetrics {
            client: Client::new(sdk),
        }
    }

    /// Warm-up during init (see [`super::warm_up`]): one S3 replication metric over the last
    /// minute, the cheapest read that the function's `cloudwatch:GetMetricData` permission allows.
    pub async fn warm_up(&self) -> Result<(), String> {
        let now = Utc::now().timestamp();
        let query = MetricDataQuery::builder()
            .id("warm_up")
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace("AWS/S3")
                            .metric_name("ReplicationLatency")
                            .build(),
                    )
                    .period(60)
                    .stat("Maximum")
                    .build(),
            )
            .build();
        self.client
            .get_metric_data()
            .metric_data_queries(query)
            .start_time(AwsDateTime::from_secs(now - 60))
            .end_time(AwsDateTime::from_secs(now))
            .send()
            .await
            .map(|_| ())
            .map_err(|error| describe(&error))
    }
}

/// GetMetricData ids must start with a lower-case letter and hold only letters, digits and `_`;
/// single-metric alarms carry a UUID there, so such ids are replaced by their position.
fn query_id(metric: &AlarmMetric, index: usize) -> String {
    let mut chars = metric.id.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        metric.id.clone()
    } else {
        format!("replmon_q{index}")
    }
}

fn query(metric: &AlarmMetric, index: usize) -> MetricDataQuery {
    let builder = MetricDataQuery::builder()
        .id(query_id(metric, index))
        .return_data(metric.return_data)
        .set_label(metric.label.clone());
    match &metric.expression {
        Some(expression) => builder.expression(expression).build(),
        None => {
            let dimensions = metric
                .dimensions
                .iter()
                .map(|(name, value)| Dimension::builder().name(name).value(value).build())
                .collect();
            let stat = MetricStat::builder()
                .metric(
                    Metric::builder()
                        .set_namespace(metric.namespace.clone())
                        .set_metric_name(metric.name.clone())
                        .set_dimensions(Some(dimensions))
                        .build(),
                )
                .period(metric.period_seconds.unwrap_or(60).max(1) as i32)
                .stat(metric.stat.clone().unwrap_or_else(|| "Average".to_owned()))
                .build();
            builder.metric_stat(stat).build()
        }
    }
}

impl MetricsSource for CloudWatchMetrics {
    async fn recent(
        &self,
        metrics: &[AlarmMetric],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<Series>, MetricsError> {
        let mut series: Vec<Series> = Vec::new();
        let mut next_token: Option<String> = None;
        // A few pages at most: the window holds a few hundred datapoints per query.
        for _ in 0..5 {
            let out = self
                .client
                .get_metric_data()
                .set_metric_data_queries(Some(
                    metrics
                        .iter()
                        .enumerate()
                        .map(|(i, m)| query(m, i))
                        .collect(),
                ))
                .start_time(AwsDateTime::from_secs(start.timestamp()))
                .end_time(AwsDateTime::from_secs(end.timestamp()))
                .scan_by(ScanBy::TimestampAscending)
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|e| {
                    if is_transient(&e) {
                        MetricsError::Unavailable(describe(&e))
                    } else {
                        MetricsError::Refused(describe(&e))
                    }
                })?;
            for result in out.metric_data_results.unwrap_or_default() {
                let id = result.id.clone().unwrap_or_default();
                let points = result
                    .timestamps
                    .unwrap_or_default()
                    .iter()
                    .zip(result.values.unwrap_or_default())
                    .filter_map(|(t, v)| Utc.timestamp_opt(t.secs(), 0).single().map(|t| (t, v)))
                    .collect::<Vec<_>>();
                match series.iter_mut().find(|s| s.id == id) {
                    Some(existing) => existing.points.extend(points),
                    None => series.push(Series {
                        label: result.label.clone().unwrap_or_else(|| id.clone()),
                        id,
                        points,
                    }),
                }
            }
            match out.next_token {
                Some(token) if !token.is_empty() => next_token = Some(token),
                _ => break,
            }
        }
        for s in &mut series {
            s.points.sort_by_key(|(t, _)| *t);
        }
        Ok(series)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_query_ids_are_replaced() {
        let metric = |id: &str| AlarmMetric {
            id: id.into(),
            ..Default::default()
        };
        assert_eq!(query_id(&metric("m1"), 0), "m1");
        assert_eq!(query_id(&metric("5a7e1c0d-3f2b"), 2), "replmon_q2");
        assert_eq!(query_id(&metric(""), 1), "replmon_q1");
    }
}
