//! S3 replication metrics, published by the replication simulator where S3 publishes them (S3
//! user guide, "Using S3 Replication metrics", "Which Region is this metric published in?"):
//!
//! - `ReplicationLatency` (seconds, one datapoint per replicated version), and
//!   `OperationsPendingReplication` / `BytesPendingReplication` (the versions detected and not yet
//!   replicated or failed, and their bytes): in the **destination** bucket's region;
//! - `OperationsFailedReplication` (1 per failed version): in the **source** bucket's region.
//!
//! Namespace `AWS/S3`, dimensions `SourceBucket`, `DestinationBucket`, `RuleId` (published in
//! name order: moto matches GetMetricData dimensions by list order). A bucket's region comes from
//! `GetBucketLocation`, asked once per bucket. Unlike S3, every rule publishes (S3 needs the rule's
//! metrics or RTC turned on), and datapoints are sent as things happen rather than each minute.

use crate::regions::{cloudwatch_in, replication_dimensions};
use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_sdk_cloudwatch::primitives::DateTime as AwsDateTime;
use aws_sdk_cloudwatch::types::{MetricDatum, StandardUnit};
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

/// One version on its way to one destination under one rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Replication {
    pub source_bucket: String,
    pub destination_bucket: String,
    pub rule_id: String,
    pub key: String,
    pub version_id: String,
    pub size: i64,
}

impl Replication {
    fn rule(&self) -> RuleKey {
        (
            self.source_bucket.clone(),
            self.destination_bucket.clone(),
            self.rule_id.clone(),
        )
    }
}

/// (source bucket, destination bucket, rule id): the dimensions of one rule's metrics.
type RuleKey = (String, String, String);
/// (key, version id, size) of a version not yet replicated.
type PendingVersion = (String, String, i64);

#[derive(Default)]
struct State {
    locations: HashMap<String, String>,
    clients: HashMap<String, aws_sdk_cloudwatch::Client>,
    /// Versions pending per (source, destination, rule).
    pending: HashMap<RuleKey, HashSet<PendingVersion>>,
}

/// See the module documentation.
pub struct ReplicationMetrics {
    sdk: SdkConfig,
    s3: aws_sdk_s3::Client,
    state: Mutex<State>,
}

impl ReplicationMetrics {
    pub fn new(sdk: SdkConfig, s3: aws_sdk_s3::Client) -> Self {
        ReplicationMetrics {
            sdk,
            s3,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The version was detected: it is pending until [`Self::replicated`] or [`Self::failed`].
    /// A version already pending (a held copy released) is not counted twice.
    pub async fn detected(&self, job: &Replication) -> Result<()> {
        let added = self.lock().pending.entry(job.rule()).or_default().insert((
            job.key.clone(),
            job.version_id.clone(),
            job.size,
        ));
        if added {
            self.publish_pending(job).await?;
        }
        Ok(())
    }

    /// The copy is visible in the destination, `seconds` after the version was detected.
    pub async fn replicated(&self, job: &Replication, seconds: f64) -> Result<()> {
        self.settle(job);
        let now = chrono::Utc::now().timestamp();
        let latency = datum(
            job,
            "ReplicationLatency",
            seconds,
            StandardUnit::Seconds,
            now,
        );
        let region = self.region_of(&job.destination_bucket).await?;
        self.put(&region, vec![latency]).await?;
        self.publish_pending(job).await
    }

    /// The version failed to replicate (S3 never retries it).
    pub async fn failed(&self, job: &Replication) -> Result<()> {
        self.settle(job);
        let now = chrono::Utc::now().timestamp();
        let failed = datum(
            job,
            "OperationsFailedReplication",
            1.0,
            StandardUnit::Count,
            now,
        );
        let region = self.region_of(&job.source_bucket).await?;
        self.put(&region, vec![failed]).await?;
        self.publish_pending(job).await
    }

    /// The version is no longer pending (a copy that went wrong in the simulator itself).
    pub fn settle(&self, job: &Replication) {
        if let Some(pending) = self.lock().pending.get_mut(&job.rule()) {
            pending.remove(&(job.key.clone(), job.version_id.clone(), job.size));
        }
    }

    async fn publish_pending(&self, job: &Replication) -> Result<()> {
        let (operations, bytes) = self
            .lock()
            .pending
            .get(&job.rule())
            .map(|p| {
                (
                    p.len(),
                    p.iter().map(|(_, _, size)| size.max(&0)).sum::<i64>(),
                )
            })
            .unwrap_or_default();
        let now = chrono::Utc::now().timestamp();
        let data = vec![
            datum(
                job,
                "OperationsPendingReplication",
                operations as f64,
                StandardUnit::Count,
                now,
            ),
            datum(
                job,
                "BytesPendingReplication",
                bytes as f64,
                StandardUnit::Bytes,
                now,
            ),
        ];
        let region = self.region_of(&job.destination_bucket).await?;
        self.put(&region, data).await
    }

    async fn put(&self, region: &str, data: Vec<MetricDatum>) -> Result<()> {
        let client = {
            let mut state = self.lock();
            state
                .clients
                .entry(region.to_owned())
                .or_insert_with(|| cloudwatch_in(&self.sdk, region))
                .clone()
        };
        client
            .put_metric_data()
            .namespace("AWS/S3")
            .set_metric_data(Some(data))
            .send()
            .await
            .with_context(|| format!("PutMetricData in {region}"))?;
        Ok(())
    }

    /// The bucket's region (`GetBucketLocation`: none means us-east-1, `EU` eu-west-1).
    pub async fn region_of(&self, bucket: &str) -> Result<String> {
        if let Some(region) = self.lock().locations.get(bucket) {
            return Ok(region.clone());
        }
        let out = self
            .s3
            .get_bucket_location()
            .bucket(bucket)
            .send()
            .await
            .with_context(|| format!("GetBucketLocation {bucket}"))?;
        let region = match out.location_constraint.as_ref().map(|c| c.as_str()) {
            None | Some("") => "us-east-1".to_owned(),
            Some("EU") => "eu-west-1".to_owned(),
            Some(other) => other.to_owned(),
        };
        self.lock()
            .locations
            .insert(bucket.to_owned(), region.clone());
        Ok(region)
    }
}

fn datum(job: &Replication, name: &str, value: f64, unit: StandardUnit, at: i64) -> MetricDatum {
    MetricDatum::builder()
        .metric_name(name)
        .set_dimensions(Some(replication_dimensions(
            &job.source_bucket,
            &job.destination_bucket,
            &job.rule_id,
        )))
        .timestamp(AwsDateTime::from_secs(at))
        .value(value)
        .unit(unit)
        .build()
}
