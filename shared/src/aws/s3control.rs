//! S3 Batch Operations (s3control) for re-drives: `CreateJob` of an `S3ReplicateObject` job with
//! a generated manifest, `DescribeJob` to follow it.
//!
//! The SDK puts the account ID in front of the s3control host (`<account>.s3-control.<region>
//! .amazonaws.com`), even for a custom endpoint URL. `REPLMON_S3CONTROL_ENDPOINT` replaces the
//! resolver with one that answers the URL as it is given (a local simulator, a proxy).

use super::{describe, is_transient};
use crate::redrive::{BatchJobs, JobRequest, JobState, JobStatus, JobsError};
use aws_config::SdkConfig;
use aws_sdk_s3control::config::endpoint::{Endpoint, EndpointFuture, Params, ResolveEndpoint};
use aws_sdk_s3control::error::ProvideErrorMetadata;
use aws_sdk_s3control::types::{
    GeneratedManifestFormat, JobManifestGenerator, JobManifestGeneratorFilter, JobOperation,
    JobReport, JobReportFormat, JobReportScope, ReplicationStatus, S3JobManifestGenerator,
    S3ManifestOutputLocation, S3ReplicateObjectOperation,
};
use aws_sdk_s3control::Client;

/// An endpoint used as it is: no account prefix, no region in the host.
#[derive(Debug, Clone)]
struct FixedEndpoint(String);

impl ResolveEndpoint for FixedEndpoint {
    fn resolve_endpoint<'a>(&'a self, _params: &'a Params) -> EndpointFuture<'a> {
        EndpointFuture::ready(Ok(Endpoint::builder().url(self.0.clone()).build()))
    }
}

pub struct S3ControlJobs {
    client: Client,
}

impl S3ControlJobs {
    /// `endpoint`: `REPLMON_S3CONTROL_ENDPOINT`, taken as it is.
    pub fn new(sdk: &SdkConfig, endpoint: Option<&str>) -> Self {
        let mut config = aws_sdk_s3control::config::Builder::from(sdk);
        if let Some(url) = endpoint {
            config = config.endpoint_resolver(FixedEndpoint(url.to_owned()));
        }
        S3ControlJobs {
            client: Client::from_conf(config.build()),
        }
    }
}

fn bucket_arn(bucket: &str) -> String {
    format!("arn:aws:s3:::{bucket}")
}

fn jobs_error<E>(
    operation: &'static str,
    error: &aws_sdk_s3control::error::SdkError<E, aws_sdk_s3control::config::http::HttpResponse>,
) -> JobsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = describe(error);
    if is_transient(error) {
        JobsError::Unavailable { operation, detail }
    } else {
        JobsError::Refused { operation, detail }
    }
}

fn invalid(operation: &'static str, error: impl std::fmt::Display) -> JobsError {
    JobsError::Refused {
        operation,
        detail: error.to_string(),
    }
}

impl BatchJobs for S3ControlJobs {
    async fn create_job(&self, request: &JobRequest) -> Result<String, JobsError> {
        const OP: &str = "CreateJob";
        let output = S3ManifestOutputLocation::builder()
            .bucket(bucket_arn(&request.report_bucket))
            .manifest_prefix(&request.manifest_prefix)
            .manifest_format(GeneratedManifestFormat::S3InventoryReportCsv20211130)
            .build()
            .map_err(|e| invalid(OP, e))?;
        let filter = JobManifestGeneratorFilter::builder()
            .eligible_for_replication(true)
            .created_after(aws_smithy_types::DateTime::from_millis(
                request.created_after.timestamp_millis(),
            ))
            .object_replication_statuses(ReplicationStatus::Failed)
            .build();
        let generator = S3JobManifestGenerator::builder()
            .source_bucket(bucket_arn(&request.source_bucket))
            .enable_manifest_output(true)
            .manifest_output_location(output)
            .filter(filter)
            .build()
            .map_err(|e| invalid(OP, e))?;
        let report = JobReport::builder()
            .enabled(true)
            .bucket(bucket_arn(&request.report_bucket))
            .prefix(&request.report_prefix)
            .format(JobReportFormat::ReportCsv20180820)
            .report_scope(JobReportScope::FailedTasksOnly)
            .build();
        let answer = self
            .client
            .create_job()
            .account_id(&request.account_id)
            .confirmation_required(false)
            .operation(
                JobOperation::builder()
                    .s3_replicate_object(S3ReplicateObjectOperation::builder().build())
                    .build(),
            )
            .report(report)
            .client_request_token(&request.token)
            .manifest_generator(JobManifestGenerator::S3JobManifestGenerator(generator))
            .description(&request.description)
            .priority(request.priority)
            .role_arn(&request.role_arn)
            .send()
            .await
            .map_err(|e| jobs_error(OP, &e))?;
        answer
            .job_id
            .ok_or_else(|| invalid(OP, "the answer has no job id"))
    }

    async fn describe_job(&self, account_id: &str, job_id: &str) -> Result<JobState, JobsError> {
        const OP: &str = "DescribeJob";
        let answer = self
            .client
            .describe_job()
            .account_id(account_id)
            .job_id(job_id)
            .send()
            .await
            .map_err(|e| match e.code() {
                Some("NoSuchJob" | "NotFoundException") => JobsError::NoSuchJob {
                    job_id: job_id.to_owned(),
                },
                _ => jobs_error(OP, &e),
            })?;
        let Some(job) = answer.job else {
            return Err(invalid(OP, "the answer has no job"));
        };
        let progress = job.progress_summary();
        let count = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
        Ok(JobState {
            status: JobStatus::parse(job.status().map(|s| s.as_str()).unwrap_or("New")),
            failure_reasons: job
                .failure_reasons()
                .iter()
                .map(|f| {
                    format!(
                        "{}: {}",
                        f.failure_code().unwrap_or("?"),
                        f.failure_reason().unwrap_or("")
                    )
                })
                .collect(),
            manifest: job
                .generated_manifest_descriptor()
                .and_then(|d| d.location())
                .and_then(|l| object_of_arn(l.object_arn())),
            tasks_total: count(progress.and_then(|p| p.total_number_of_tasks())),
            tasks_succeeded: count(progress.and_then(|p| p.number_of_tasks_succeeded())),
            tasks_failed: count(progress.and_then(|p| p.number_of_tasks_failed())),
        })
    }
}

/// `arn:aws:s3:::bucket/key` -> (bucket, key).
fn object_of_arn(arn: &str) -> Option<(String, String)> {
    let path = arn.split_once(":::")?.1;
    let (bucket, key) = path.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then(|| (bucket.to_owned(), key.to_owned()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn manifest_arns_split_into_bucket_and_key() {
        assert_eq!(
            super::object_of_arn("arn:aws:s3:::reports/replmon-redrive/m/job-1/manifest.json"),
            Some((
                "reports".to_owned(),
                "replmon-redrive/m/job-1/manifest.json".to_owned()
            ))
        );
        assert_eq!(super::object_of_arn("arn:aws:s3:::reports"), None);
    }
}
