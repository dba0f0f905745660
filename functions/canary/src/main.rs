//! Lambda entry point: scheduled runs -> probes, latency records and metrics, pages and notices.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use replmon_shared::aws::{sdk_config, DynamoDbLedger, S3ObjectStore, SnsNotifier};
use replmon_shared::canary::emf::EmfMetrics;
use replmon_shared::canary::Canary;
use replmon_shared::clock::SystemClock;
use replmon_shared::config::{CanaryConfig, ProcessEnvironment};
use serde_json::value::RawValue;

#[global_allocator]
static ALLOCATOR: replmon_shared::allocator::Allocator = replmon_shared::allocator::Allocator;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    replmon_shared::allocator::retain_freed_memory();
    lambda_runtime::tracing::init_default_subscriber();
    let config = CanaryConfig::from_env(&ProcessEnvironment)
        .inspect_err(
            |error| tracing::error!(%error, "invalid configuration; the function cannot start"),
        )
        .map_err(|error| Error::from(error.to_string()))?;
    let sdk = sdk_config(&config.aws).await;
    let canary = Canary::new(
        S3ObjectStore::new(&sdk),
        DynamoDbLedger::new(&sdk, &config.table),
        SnsNotifier::new(&sdk, &config.page_topic_arn),
        EmfMetrics::new(&config.metrics_namespace),
        SystemClock,
        config.buckets,
        config.canary,
    );
    let canary = &canary;
    run(service_fn(
        move |event: LambdaEvent<Box<RawValue>>| async move {
            let report = canary
                .handle(event.payload.get(), &event.context.request_id)
                .await
                .map_err(Error::from)?;
            serde_json::to_value(report).map_err(Error::from)
        },
    ))
    .await
}
