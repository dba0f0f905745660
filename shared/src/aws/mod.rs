//! AWS adapters of the ports. Clients are built once per process from one [`SdkConfig`] with
//! timeouts and standard retries, so every call has a bound and transient faults are retried.

pub mod cloudwatch;
pub mod dynamodb;
pub mod s3;
pub mod s3control;
pub mod sns;
pub mod warm_up;

use crate::config::AwsSettings;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{AppName, BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::SharedHttpClient;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls;

pub use cloudwatch::CloudWatchMetrics;
pub use dynamodb::{DynamoDbLedger, Migration, MigrationReport};
pub use s3::S3ObjectStore;
pub use s3control::S3ControlJobs;
pub use sns::SnsNotifier;
pub use warm_up::{warm_up, WarmUpCall};

/// The HTTP client every SDK client of a process shares (one connection pool): hyper with rustls
/// on ring. Trusted roots are the system's (`SSL_CERT_FILE` honoured), loaded on first use.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// The shared SDK configuration: region and credentials from the usual chain, `AWS_ENDPOINT_URL`
/// honoured (the local stack), timeouts and retries from [`AwsSettings`]. `app` names the caller
/// in every request's user agent (`app/replmon-canary`): CloudTrail shows which function made a
/// call, and the local IAM proof attributes each recorded request to a function's role.
pub async fn sdk_config(settings: &AwsSettings, app: &str) -> SdkConfig {
    let loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client());
    // A name the SDK refuses (it is a constant of each binary) only loses the tag.
    let loader = match AppName::new(app.to_owned()) {
        Ok(name) => loader.app_name(name),
        Err(_) => loader,
    };
    loader
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(settings.connect_timeout)
                .operation_attempt_timeout(settings.attempt_timeout)
                .operation_timeout(settings.operation_timeout)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts))
        .load()
        .await
}

/// SDK errors rendered with their whole chain of causes (the top level alone says "service error").
pub fn describe<E: std::error::Error>(error: &E) -> String {
    aws_smithy_types::error::display::DisplayErrorContext(error).to_string()
}

/// Whether an SDK failure may pass: no response, a timeout, throttling or a 5xx.
pub(crate) fn is_transient<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            service.raw().status().as_u16() >= 500
                || code.contains("Throttl")
                || code.contains("ProvisionedThroughputExceeded")
                || code == "RequestLimitExceeded"
                || code == "TransactionConflict"
                // A plain write to an item a transaction holds, and a transaction sent again
                // (same token) while the first is still being applied: both pass.
                || code == "TransactionConflictException"
                || code == "TransactionInProgressException"
                || code == "InternalServerError"
        }
        _ => false,
    }
}
