//! Two regions in the local stack, as a real deployment has them: the source bucket (and the
//! monitor) in [`crate::REGION`], the replica in [`REPLICA_REGION`]. moto serves every region on
//! one port and keeps each region's CloudWatch metrics, KMS keys and bucket locations apart (the
//! SigV4 region of a request decides), so a client of the wrong region finds nothing, as on AWS.

use anyhow::{Context, Result};
use aws_config::{Region, SdkConfig};
use aws_sdk_cloudwatch::primitives::DateTime as AwsDateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

/// Where the local stack's replica bucket lives.
pub const REPLICA_REGION: &str = "us-west-2";

/// The configuration `sdk` with another region (same endpoint, credentials and HTTP client).
pub fn in_region(sdk: &SdkConfig, region: &str) -> SdkConfig {
    sdk.to_builder()
        .region(Region::new(region.to_owned()))
        .build()
}

/// A CloudWatch client of `region`.
pub fn cloudwatch_in(sdk: &SdkConfig, region: &str) -> aws_sdk_cloudwatch::Client {
    aws_sdk_cloudwatch::Client::new(&in_region(sdk, region))
}

/// A symmetric customer managed KMS key in `region`; answers its ARN.
pub async fn kms_key(sdk: &SdkConfig, region: &str, description: &str) -> Result<String> {
    aws_sdk_kms::Client::new(&in_region(sdk, region))
        .create_key()
        .description(description)
        .send()
        .await
        .with_context(|| format!("creating a KMS key in {region}"))?
        .key_metadata
        .and_then(|key| key.arn)
        .context("CreateKey answered no ARN")
}

/// The three dimensions of S3's replication metrics, in name order: moto matches GetMetricData
/// dimensions by list order (AWS treats them as a set), and the monitor queries them as an
/// alarm's configuration lists them, sorted by name.
pub fn replication_dimensions(source: &str, destination: &str, rule_id: &str) -> Vec<Dimension> {
    [
        ("DestinationBucket", destination),
        ("RuleId", rule_id),
        ("SourceBucket", source),
    ]
    .into_iter()
    .map(|(name, value)| Dimension::builder().name(name).value(value).build())
    .collect()
}

/// One S3 replication metric (`AWS/S3`), datapoints `(unix seconds, value)`, published in
/// `region` as S3 does: latency and pending metrics where the destination is, failures where
/// the source is.
pub async fn put_replication_metric(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    (source, destination, rule_id): (&str, &str, &str),
    metric: &str,
    unit: StandardUnit,
    points: &[(i64, f64)],
) -> Result<()> {
    // PutMetricData takes at most 1,000 datapoints per call.
    for chunk in points.chunks(500) {
        let data: Vec<MetricDatum> = chunk
            .iter()
            .map(|(at, value)| {
                MetricDatum::builder()
                    .metric_name(metric)
                    .set_dimensions(Some(replication_dimensions(source, destination, rule_id)))
                    .timestamp(AwsDateTime::from_secs(*at))
                    .value(*value)
                    .unit(unit.clone())
                    .build()
            })
            .collect();
        cloudwatch
            .put_metric_data()
            .namespace("AWS/S3")
            .set_metric_data(Some(data))
            .send()
            .await
            .with_context(|| format!("publishing {metric}"))?;
    }
    Ok(())
}
