//! Recent datapoints from CloudWatch `GetMetricData` (metric stats and metric-math expressions),
//! read in the alarm's own region: S3 publishes `ReplicationLatency` and the pending metrics in
//! the destination bucket's region, so a monitor in the source region must ask there.

use super::{describe, is_transient};
use crate::alarm::AlarmMetric;
use crate::metrics::{MetricsError, MetricsSource, Series};
use aws_config::{Region, SdkConfig};
use aws_sdk_cloudwatch::primitives::DateTime as AwsDateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use aws_sdk_cloudwatch::Client;
use chrono::{DateTime, TimeZone, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// AWS has a few dozen regions; more distinct names than this in one process are not regions
/// worth a cached client (each would keep a connection pool alive).
const MAX_CACHED_REGIONS: usize = 64;

#[derive(Debug, Clone)]
pub struct CloudWatchMetrics {
    sdk: SdkConfig,
    /// The client of the monitor's own region, built at init.
    home: Client,
    home_region: Option<String>,
    /// Clients of other regions, built on first use and kept for the life of the process.
    elsewhere: Arc<Mutex<HashMap<String, Client>>>,
}

impl CloudWatchMetrics {
    pub fn new(sdk: &SdkConfig) -> Self {
        CloudWatchMetrics {
            sdk: sdk.clone(),
            home: Client::new(sdk),
            home_region: sdk.region().map(|r| r.as_ref().to_owned()),
            elsewhere: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The client for `region` (empty: the monitor's own). The name comes from an event, so it
    /// must look like a region before it picks an endpoint.
    fn client(&self, region: &str) -> Result<Client, MetricsError> {
        if region.is_empty() || self.home_region.as_deref() == Some(region) {
            return Ok(self.home.clone());
        }
        if !is_region_name(region) {
            return Err(MetricsError::Refused(format!(
                "the alarm's region {:?} is not an AWS region name",
                region.escape_debug().to_string()
            )));
        }
        let mut clients = self.elsewhere.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(region) {
            return Ok(client.clone());
        }
        // Same credentials, timeouts, retries, HTTP client and endpoint override; other region.
        let config = aws_sdk_cloudwatch::config::Builder::from(&self.sdk)
            .region(Region::new(region.to_owned()))
            .build();
        let client = Client::from_conf(config);
        if clients.len() < MAX_CACHED_REGIONS {
            clients.insert(region.to_owned(), client.clone());
        }
        Ok(client)
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
        self.home
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

/// `us-east-1`, `ap-southeast-2`, `us-gov-west-1`, `eu-isoe-west-1`: lower-case words and a
/// number, joined by hyphens.
fn is_region_name(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    region.len() <= 32
        && parts.len() >= 3
        && parts
            .last()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && parts[..parts.len() - 1]
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
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
                .period(query_period(metric.period_seconds))
                .stat(metric.stat.clone().unwrap_or_else(|| "Average".to_owned()))
                .build();
            builder.metric_stat(stat).build()
        }
    }
}

impl MetricsSource for CloudWatchMetrics {
    async fn recent(
        &self,
        region: &str,
        metrics: &[AlarmMetric],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<Series>, MetricsError> {
        let client = self.client(region)?;
        let mut series: Vec<Series> = Vec::new();
        let mut next_token: Option<String> = None;
        // A few pages at most: the window holds a few hundred datapoints per query.
        for _ in 0..5 {
            let out = client
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

/// The period of a query for the alarm's metric: its own (one minute if unknown), never wrapped
/// into a negative or another number.
fn query_period(period_seconds: Option<u32>) -> i32 {
    i32::try_from(period_seconds.unwrap_or(60).max(1)).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_checked_not_wrapped() {
        assert_eq!(query_period(None), 60);
        assert_eq!(query_period(Some(0)), 1);
        assert_eq!(query_period(Some(300)), 300);
        assert_eq!(query_period(Some(3_000_000_000)), i32::MAX);
    }

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

    #[test]
    fn region_names() {
        for good in [
            "us-east-1",
            "ap-southeast-2",
            "us-gov-west-1",
            "eu-isoe-west-1",
        ] {
            assert!(is_region_name(good), "{good}");
        }
        for bad in [
            "",
            "us-east",
            "US-EAST-1",
            "us-east-1.evil.example",
            "us--1",
            "us-east-x",
            "us-east-1/",
            "-us-east-1",
            "us-east-1\n",
            "a-b-1-",
        ] {
            assert!(!is_region_name(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn clients_are_built_once_per_region_and_bad_names_refused() {
        let sdk = SdkConfig::builder()
            .region(Region::new("us-east-1"))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let metrics = CloudWatchMetrics::new(&sdk);
        assert!(metrics.client("").is_ok());
        assert!(metrics.client("us-east-1").is_ok());
        assert_eq!(metrics.elsewhere.lock().map(|c| c.len()).unwrap_or(99), 0);
        let west = metrics
            .client("us-west-2")
            .map(|c| c.config().region().cloned());
        assert_eq!(west, Ok(Some(Region::new("us-west-2"))));
        assert!(metrics.client("us-west-2").is_ok());
        assert_eq!(metrics.elsewhere.lock().map(|c| c.len()).unwrap_or(99), 1);
        assert!(matches!(
            metrics.client("evil.example/x"),
            Err(MetricsError::Refused(_))
        ));
    }
}
