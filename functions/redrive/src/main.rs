//! Lambda entry point: Batch Operations job events and the schedule -> re-drives followed,
//! settled in the ledger and noticed; automatic re-drives started.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use replmon_shared::aws::{sdk_config, DynamoDbLedger, S3ControlJobs, S3ObjectStore, SnsNotifier};
use replmon_shared::clock::SystemClock;
use replmon_shared::config::{table_name, topic_arn, ProcessEnvironment, RedriveConfig};
use replmon_shared::redrive::Redrives;
use serde_json::value::RawValue;

// The system allocator: a few calls per invocation, nothing allocation-heavy.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let startup = |error: &dyn std::fmt::Display| {
        tracing::error!(%error, "invalid configuration; the function cannot start");
        Error::from(error.to_string())
    };
    let config = RedriveConfig::from_env(&ProcessEnvironment).map_err(|e| startup(&e))?;
    let table = table_name(&ProcessEnvironment).map_err(|e| startup(&e))?;
    let topic = topic_arn(&ProcessEnvironment).map_err(|e| startup(&e))?;
    let sdk = sdk_config(&config.aws, "replmon-redrive").await;
    let redrives = Redrives {
        store: DynamoDbLedger::new(&sdk, &table),
        jobs: S3ControlJobs::new(&sdk, config.s3control_endpoint.as_deref()),
        files: S3ObjectStore::new(&sdk),
        notifier: SnsNotifier::new(&sdk, &topic),
        clock: SystemClock,
        settings: config.settings.clone(),
    };
    let (redrives, auto, account) = (&redrives, config.auto, config.account_id.as_str());
    run(service_fn(
        move |event: LambdaEvent<Box<RawValue>>| async move {
            redrives
                .handle(event.payload.get(), auto, account)
                .await
                .map_err(Error::from)
        },
    ))
    .await
}
