//! Lambda entry point: CloudWatch alarm state changes -> incidents, pages and recovery notices.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use replmon_shared::alarm::monitor::AlarmMonitor;
use replmon_shared::aws::{
    sdk_config, warm_up, CloudWatchMetrics, DynamoDbLedger, SnsNotifier, WarmUpCall,
};
use replmon_shared::clock::SystemClock;
use replmon_shared::config::{AlarmEventsConfig, ProcessEnvironment};
use serde_json::value::RawValue;

#[global_allocator]
static ALLOCATOR: replmon_shared::allocator::Allocator = replmon_shared::allocator::Allocator;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    replmon_shared::allocator::retain_freed_memory();
    lambda_runtime::tracing::init_default_subscriber();
    let config = AlarmEventsConfig::from_env(&ProcessEnvironment)
        .inspect_err(
            |error| tracing::error!(%error, "invalid configuration; the function cannot start"),
        )
        .map_err(|error| Error::from(error.to_string()))?;
    let sdk = sdk_config(&config.aws, "replmon-alarm-events").await;
    let ledger = DynamoDbLedger::new(&sdk, &config.table);
    let notifier = SnsNotifier::new(&sdk, &config.page_topic_arn);
    let metrics = CloudWatchMetrics::new(&sdk);
    if config.aws.warm_up {
        let calls = vec![
            WarmUpCall::new("dynamodb", ledger.warm_up()),
            WarmUpCall::new("sns", notifier.warm_up()),
            WarmUpCall::new("cloudwatch", metrics.warm_up()),
        ];
        warm_up(calls, config.aws.attempt_timeout).await;
    }
    let monitor = AlarmMonitor::new(ledger, notifier, metrics, SystemClock, config.alarm);
    let monitor = &monitor;
    run(service_fn(
        move |event: LambdaEvent<Box<RawValue>>| async move {
            monitor
                .handle(event.payload.get())
                .await
                .map_err(Error::from)
        },
    ))
    .await
}
