//! Lambda entry point: scheduled runs -> probes, latency records and metrics, pages and notices.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use replmon_shared::aws::{
    sdk_config, warm_up, DynamoDbLedger, S3ObjectStore, SnsNotifier, WarmUpCall,
};
use replmon_shared::canary::emf::EmfMetrics;
use replmon_shared::canary::Canary;
use replmon_shared::clock::SystemClock;
use replmon_shared::config::{CanaryConfig, ProcessEnvironment};
use serde_json::value::RawValue;

// The system allocator: a run makes a few dozen S3 and DynamoDB calls and sleeps between them,
// so mimalloc (the event functions' allocator) would only add to the binary.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = CanaryConfig::from_env(&ProcessEnvironment)
        .inspect_err(
            |error| tracing::error!(%error, "invalid configuration; the function cannot start"),
        )
        .map_err(|error| Error::from(error.to_string()))?;
    let sdk = sdk_config(&config.aws, "replmon-canary").await;
    let store = S3ObjectStore::new(&sdk);
    let ledger = DynamoDbLedger::new(&sdk, &config.table);
    let notifier = SnsNotifier::new(&sdk, &config.page_topic_arn);
    if config.aws.warm_up {
        let mut calls = vec![
            WarmUpCall::new("dynamodb", ledger.warm_up()),
            WarmUpCall::new("sns", notifier.warm_up()),
        ];
        // Every run starts with each bucket's region: learn the first one now.
        if let Some(bucket) = config.buckets.first() {
            calls.push(WarmUpCall::new("s3", store.warm_up(bucket)));
        }
        warm_up(calls, config.aws.attempt_timeout).await;
    }
    let canary = Canary::new(
        store,
        ledger,
        notifier,
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
