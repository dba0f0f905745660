//! The S3 Batch Operations simulator through the real `aws-sdk-s3control` client, against a real
//! moto server and the replication simulator: a re-drive job's generated manifest, completion
//! report, copies, idempotency, listing and events; confirmation, cancellation, a caller's CSV
//! manifest; jobs that fail; held and delayed reports; dropped events; refused requests.

use anyhow::{bail, Context, Result};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3control::error::ProvideErrorMetadata;
use aws_sdk_s3control::operation::RequestId;
use aws_sdk_s3control::types::{
    GeneratedManifestFormat, JobDescriptor, JobManifest, JobManifestFieldName, JobManifestFormat,
    JobManifestGenerator, JobManifestGeneratorFilter, JobManifestLocation, JobManifestSpec,
    JobOperation, JobReport, JobReportFormat, JobReportScope, JobStatus, KeyNameConstraint,
    ReplicationStatus, RequestedJobStatus, S3JobManifestGenerator, S3ManifestOutputLocation,
    S3ReplicateObjectOperation, S3SetObjectTaggingOperation, S3Tag,
};
use replmon_tests::replication_sim::{ReplicationSimulator, SimulatorSettings};
use replmon_tests::s3control_sim::{
    parse_csv, s3control_client, RecordingSink, S3ControlSettings, S3ControlSimulator,
};
use replmon_tests::{replicated_pair, s3_client, sdk_config, MotoServer};
use std::collections::BTreeSet;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SOURCE: &str = "replmon-demo-source";
const REPLICA: &str = "replmon-demo-replica";
const REPORTS: &str = "replmon-batch-reports";
const ACCOUNT: &str = "123456789012";
const ROLE: &str = "arn:aws:iam::123456789012:role/replmon-batch-replication";

struct Harness {
    _moto: MotoServer,
    s3: aws_sdk_s3::Client,
    replication: Arc<ReplicationSimulator>,
    control: S3ControlSimulator,
    client: aws_sdk_s3control::Client,
    sink: Arc<RecordingSink>,
}

async fn harness(settings: S3ControlSettings) -> Result<Harness> {
    let moto = MotoServer::start()?;
    let sdk = sdk_config(&moto.endpoint()).await;
    let s3 = s3_client(&sdk);
    replicated_pair(&s3, SOURCE, REPLICA, "replicate-everything").await?;
    s3.create_bucket().bucket(REPORTS).send().await?;
    let replication = Arc::new(
        ReplicationSimulator::start(
            s3.clone(),
            vec![SOURCE.into()],
            SimulatorSettings::default(),
        )
        .await,
    );
    let sink = Arc::new(RecordingSink::default());
    let control = S3ControlSimulator::start(
        s3.clone(),
        replication.clone(),
        S3ControlSettings {
            event_sink: Some(sink.clone()),
            seed: 7,
            ..settings
        },
    )
    .await?;
    let client = s3control_client(&sdk, &control.endpoint());
    Ok(Harness {
        _moto: moto,
        s3,
        replication,
        control,
        client,
        sink,
    })
}

async fn put(s3: &aws_sdk_s3::Client, key: &str, body: &str) -> Result<String> {
    s3.put_object()
        .bucket(SOURCE)
        .key(key)
        .body(ByteStream::from(body.as_bytes().to_vec()))
        .send()
        .await?
        .version_id
        .context("no version id")
}

async fn read(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Vec<u8>> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .with_context(|| format!("reading s3://{bucket}/{key}"))?;
    Ok(out.body.collect().await?.into_bytes().to_vec())
}

async fn exists(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<bool> {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Until the replication simulator has reported `count` failed versions of the source.
async fn wait_failed(replication: &ReplicationSimulator, count: usize) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if replication.failed_versions(SOURCE).len() >= count {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!(
        "{} failed versions, not {count}",
        replication.failed_versions(SOURCE).len()
    )
}

/// DescribeJob until the job has `status`; fails on another terminal status.
async fn wait_status(
    client: &aws_sdk_s3control::Client,
    id: &str,
    status: JobStatus,
) -> Result<JobDescriptor> {
    let start = Instant::now();
    loop {
        let job = client
            .describe_job()
            .account_id(ACCOUNT)
            .job_id(id)
            .send()
            .await?
            .job
            .context("DescribeJob without a job")?;
        let current = job.status.clone().context("a job without status")?;
        if current == status {
            return Ok(job);
        }
        let terminal = matches!(
            current,
            JobStatus::Complete | JobStatus::Failed | JobStatus::Cancelled
        );
        if terminal || start.elapsed() > Duration::from_secs(20) {
            bail!("job {id} is {current:?}, waiting for {status:?}: {job:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Until the sink has received an event of `status` for the job; answers its (name, status) list.
async fn wait_events(sink: &RecordingSink, id: &str, last: &str) -> Vec<(String, String)> {
    let start = Instant::now();
    loop {
        let events = sink.statuses_of(id);
        let done = events.last().is_some_and(|(_, status)| status == last);
        if done || start.elapsed() > Duration::from_secs(5) {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn statuses(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .enumerate()
        .map(|(i, status)| {
            let event = if i == 0 {
                "JobCreated"
            } else {
                "JobStatusChanged"
            };
            (event.to_owned(), (*status).to_owned())
        })
        .collect()
}

fn replicate() -> JobOperation {
    JobOperation::builder()
        .s3_replicate_object(S3ReplicateObjectOperation::builder().build())
        .build()
}

fn generator(
    filter: JobManifestGeneratorFilter,
    output_prefix: Option<&str>,
) -> Result<JobManifestGenerator> {
    let mut generator = S3JobManifestGenerator::builder()
        .source_bucket(format!("arn:aws:s3:::{SOURCE}"))
        .filter(filter)
        .enable_manifest_output(output_prefix.is_some());
    if let Some(prefix) = output_prefix {
        generator = generator.manifest_output_location(
            S3ManifestOutputLocation::builder()
                .bucket(format!("arn:aws:s3:::{REPORTS}"))
                .manifest_prefix(prefix)
                .manifest_format(GeneratedManifestFormat::S3InventoryReportCsv20211130)
                .build()?,
        );
    }
    Ok(JobManifestGenerator::S3JobManifestGenerator(
        generator.build()?,
    ))
}

fn failed_filter() -> JobManifestGeneratorFilter {
    JobManifestGeneratorFilter::builder()
        .object_replication_statuses(ReplicationStatus::Failed)
        .eligible_for_replication(true)
        .build()
}

fn report(bucket: &str, scope: JobReportScope) -> JobReport {
    JobReport::builder()
        .enabled(true)
        .bucket(format!("arn:aws:s3:::{bucket}"))
        .prefix("reports")
        .format(JobReportFormat::ReportCsv20180820)
        .report_scope(scope)
        .build()
}

fn no_report() -> JobReport {
    JobReport::builder().enabled(false).build()
}

async fn create_job(
    client: &aws_sdk_s3control::Client,
    token: &str,
    manifest: JobManifestGenerator,
    report: JobReport,
    confirmation: bool,
) -> Result<String> {
    client
        .create_job()
        .account_id(ACCOUNT)
        .client_request_token(token)
        .confirmation_required(confirmation)
        .operation(replicate())
        .manifest_generator(manifest)
        .report(report)
        .priority(10)
        .role_arn(ROLE)
        .description("replmon re-drive")
        .send()
        .await?
        .job_id
        .context("CreateJob without a job id")
}

/// (bucket, decoded key, version) of each row.
fn rows_of(csv: &str) -> BTreeSet<(String, String, String)> {
    parse_csv(csv)
        .into_iter()
        .map(|row| {
            (
                row[0].clone(),
                replmon_shared::event::decode_key(&row[1]),
                row[2].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_job_replicates_what_no_longer_fails_and_reports_what_still_does() -> Result<()> {
    let h = harness(S3ControlSettings::default()).await?;
    h.replication
        .fail_matching(SOURCE, "fixed/", "DstPutObjectNotPermitted");
    h.replication
        .fail_matching(SOURCE, "stuck/", "DstPutObjectNotPermitted");
    let fixed_key = "fixed/q3 summary,final(2).csv";
    let fixed_v1 = put(&h.s3, fixed_key, "first").await?;
    wait_failed(&h.replication, 1).await?;
    let fixed_v2 = put(&h.s3, fixed_key, "second").await?;
    let stuck_key = "stuck/ledger.csv";
    let stuck = put(&h.s3, stuck_key, "never").await?;
    put(&h.s3, "ok/plain.txt", "live").await?;
    wait_failed(&h.replication, 3).await?;
    // The fault of fixed/ is repaired; stuck/ still fails.
    h.replication.clear_failures(SOURCE);
    h.replication
        .fail_matching(SOURCE, "stuck/", "DstPutObjectNotPermitted");

    let id = create_job(
        &h.client,
        "redrive-0001",
        generator(failed_filter(), Some("manifests"))?,
        report(REPORTS, JobReportScope::FailedTasksOnly),
        false,
    )
    .await?;
    let again = create_job(
        &h.client,
        "redrive-0001",
        generator(failed_filter(), Some("manifests"))?,
        report(REPORTS, JobReportScope::FailedTasksOnly),
        false,
    )
    .await?;
    assert_eq!(again, id, "the same token must answer the same job");
    assert_eq!(h.control.jobs_created(), 1);
    assert_eq!(h.control.create_job_requests(), 2);

    let job = wait_status(&h.client, &id, JobStatus::Complete).await?;
    let progress = job.progress_summary.clone().context("no progress")?;
    assert_eq!(progress.total_number_of_tasks, Some(3));
    assert_eq!(progress.number_of_tasks_succeeded, Some(2));
    assert_eq!(progress.number_of_tasks_failed, Some(1));
    assert_eq!(
        job.job_arn.as_deref(),
        Some(format!("arn:aws:s3:us-east-1:{ACCOUNT}:job/{id}").as_str())
    );
    assert!(job.creation_time.is_some() && job.termination_date.is_some());
    assert_eq!(job.confirmation_required, Some(false));
    assert_eq!(job.role_arn.as_deref(), Some(ROLE));
    assert!(job
        .operation
        .as_ref()
        .is_some_and(|o| o.s3_replicate_object.is_some()));
    let echoed = job.report.clone().context("no report echoed")?;
    assert_eq!(echoed.report_scope, Some(JobReportScope::FailedTasksOnly));
    let Some(JobManifestGenerator::S3JobManifestGenerator(echoed)) = &job.manifest_generator else {
        bail!("no manifest generator echoed: {job:?}");
    };
    assert_eq!(echoed.source_bucket, format!("arn:aws:s3:::{SOURCE}"));
    let filter = echoed.filter.clone().context("no filter echoed")?;
    assert_eq!(
        filter.object_replication_statuses,
        Some(vec![ReplicationStatus::Failed])
    );

    // The generated manifest lists exactly the failed versions.
    let descriptor = job
        .generated_manifest_descriptor
        .clone()
        .context("no generated manifest")?;
    assert_eq!(
        descriptor.format,
        Some(GeneratedManifestFormat::S3InventoryReportCsv20211130)
    );
    let location = descriptor.location.context("no manifest location")?;
    let manifest_key = format!("manifests/job-{id}/manifest.json");
    assert_eq!(
        location.object_arn,
        format!("arn:aws:s3:::{REPORTS}/{manifest_key}")
    );
    let head =
        h.s3.head_object()
            .bucket(REPORTS)
            .key(&manifest_key)
            .send()
            .await?;
    assert_eq!(
        Some(location.e_tag.as_str()),
        head.e_tag.as_deref().map(|t| t.trim_matches('"'))
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&read(&h.s3, REPORTS, &manifest_key).await?)?;
    assert_eq!(manifest["sourceBucket"], SOURCE);
    assert_eq!(
        manifest["destinationBucket"],
        format!("arn:aws:s3:::{REPORTS}")
    );
    assert_eq!(manifest["fileFormat"], "CSV");
    assert_eq!(manifest["fileSchema"], "Bucket, Key, VersionId");
    let files = manifest["files"].as_array().context("no files")?;
    assert_eq!(files.len(), 1);
    let data_key = files[0]["key"].as_str().context("no data key")?;
    assert!(
        data_key.starts_with(&format!("manifests/job-{id}/data/")) && data_key.ends_with(".csv.gz"),
        "{data_key}"
    );
    let gzipped = read(&h.s3, REPORTS, data_key).await?;
    assert_eq!(files[0]["size"], gzipped.len());
    let data_head =
        h.s3.head_object()
            .bucket(REPORTS)
            .key(data_key)
            .send()
            .await?;
    assert_eq!(
        files[0]["MD5checksum"].as_str(),
        data_head.e_tag.as_deref().map(|t| t.trim_matches('"'))
    );
    let mut csv = String::new();
    flate2::read::GzDecoder::new(&gzipped[..]).read_to_string(&mut csv)?;
    let version =
        |key: &str, version: &str| (SOURCE.to_owned(), key.to_owned(), version.to_owned());
    assert_eq!(
        rows_of(&csv),
        BTreeSet::from([
            version(fixed_key, &fixed_v1),
            version(fixed_key, &fixed_v2),
            version(stuck_key, &stuck),
        ])
    );
    assert!(csv.contains("q3+summary%2Cfinal%282%29.csv"), "{csv}");

    // The report lists exactly the version whose fault persists.
    let report_key = format!("reports/job-{id}/manifest.json");
    let report_json: serde_json::Value =
        serde_json::from_slice(&read(&h.s3, REPORTS, &report_key).await?)?;
    assert_eq!(report_json["Format"], "Report_CSV_20180820");
    assert_eq!(
        report_json["ReportSchema"],
        "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage"
    );
    assert!(report_json["ReportCreationDate"].is_string());
    let results = report_json["Results"].as_array().context("no results")?;
    assert_eq!(results.len(), 1, "{report_json}");
    assert_eq!(results[0]["TaskExecutionStatus"], "failed");
    assert_eq!(results[0]["Bucket"], REPORTS);
    let result_key = results[0]["Key"].as_str().context("no result key")?;
    assert!(result_key.starts_with(&format!("reports/job-{id}/results/")));
    let rows = parse_csv(&String::from_utf8(read(&h.s3, REPORTS, result_key).await?)?);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0],
        [
            SOURCE,
            stuck_key,
            stuck.as_str(),
            "failed",
            "403",
            "DstPutObjectNotPermitted",
            "Replication failed, failure reason: DstPutObjectNotPermitted"
        ]
    );

    // The repaired versions are on the replica, each with its own body.
    let replicated = h.replication.replicated();
    for (version, body) in [(&fixed_v1, "first"), (&fixed_v2, "second")] {
        let copy = replicated
            .iter()
            .find(|r| &r.version_id == version)
            .with_context(|| format!("{version} not re-driven: {replicated:?}"))?;
        assert_eq!(copy.destination_bucket, REPLICA);
        let replica =
            h.s3.get_object()
                .bucket(REPLICA)
                .key(fixed_key)
                .version_id(
                    copy.replica_version_id
                        .clone()
                        .context("no replica version")?,
                )
                .send()
                .await?;
        assert_eq!(
            &replica.body.collect().await?.into_bytes()[..],
            body.as_bytes()
        );
    }
    // Oldest first: the replica's current version is the source's.
    assert_eq!(read(&h.s3, REPLICA, fixed_key).await?, b"second");
    assert!(!exists(&h.s3, REPLICA, stuck_key).await?);
    let still_failed: Vec<String> = h
        .replication
        .failed_versions(SOURCE)
        .into_iter()
        .map(|v| v.version_id)
        .collect();
    assert_eq!(still_failed, [stuck.as_str()]);

    // The events, one per status, in order.
    assert_eq!(
        wait_events(&h.sink, &id, "Complete").await,
        statuses(&[
            "New",
            "Preparing",
            "Ready",
            "Active",
            "Completing",
            "Complete"
        ])
    );
    let complete = h.sink.events().into_iter().last().context("no event")?;
    assert_eq!(complete["detail-type"], "AWS Service Event via CloudTrail");
    assert_eq!(complete["source"], "aws.s3");
    assert_eq!(complete["account"], ACCOUNT);
    assert_eq!(complete["region"], "us-east-1");
    assert_eq!(complete["detail"]["eventSource"], "s3.amazonaws.com");
    assert_eq!(complete["detail"]["recipientAccountId"], ACCOUNT);
    let details = &complete["detail"]["serviceEventDetails"];
    assert_eq!(details["jobId"], id.as_str());
    assert_eq!(
        details["jobArn"],
        format!("arn:aws:s3:us-east-1:{ACCOUNT}:job/{id}")
    );
    assert_eq!(details["failureCodes"], serde_json::json!([]));

    // A second job finds only what still fails; a filter without FAILED finds nothing.
    let second = create_job(
        &h.client,
        "redrive-0002",
        generator(
            JobManifestGeneratorFilter::builder()
                .object_replication_statuses(ReplicationStatus::Failed)
                .key_name_constraint(
                    KeyNameConstraint::builder()
                        .match_any_prefix("stuck/")
                        .match_any_prefix("other/")
                        .build(),
                )
                .created_after(aws_sdk_s3control::primitives::DateTime::from_secs(0))
                .build(),
            None,
        )?,
        report(REPORTS, JobReportScope::AllTasks),
        false,
    )
    .await?;
    let second_job = wait_status(&h.client, &second, JobStatus::Complete).await?;
    let progress = second_job.progress_summary.context("no progress")?;
    assert_eq!(progress.total_number_of_tasks, Some(1));
    assert_eq!(progress.number_of_tasks_failed, Some(1));
    assert!(second_job.generated_manifest_descriptor.is_none());
    let snapshot = h.control.job(&second).context("no snapshot")?;
    assert_eq!(snapshot.manifest.len(), 1);
    assert_eq!(snapshot.manifest[0].version_id, stuck);
    let completed_only = create_job(
        &h.client,
        "redrive-0003",
        generator(
            JobManifestGeneratorFilter::builder()
                .object_replication_statuses(ReplicationStatus::Completed)
                .build(),
            None,
        )?,
        report(REPORTS, JobReportScope::AllTasks),
        false,
    )
    .await?;
    let none = wait_status(&h.client, &completed_only, JobStatus::Complete).await?;
    assert_eq!(
        none.progress_summary.and_then(|p| p.total_number_of_tasks),
        Some(0)
    );
    assert!(
        !exists(
            &h.s3,
            REPORTS,
            &format!("reports/job-{completed_only}/manifest.json")
        )
        .await?
    );

    // ListJobs: newest first, by status, in pages.
    let complete_jobs = h
        .client
        .list_jobs()
        .account_id(ACCOUNT)
        .job_statuses(JobStatus::Complete)
        .send()
        .await?
        .jobs
        .unwrap_or_default();
    let listed: Vec<&str> = complete_jobs
        .iter()
        .filter_map(|j| j.job_id.as_deref())
        .collect();
    assert_eq!(
        listed,
        [completed_only.as_str(), second.as_str(), id.as_str()]
    );
    let first = &complete_jobs[2];
    assert_eq!(
        first.operation,
        Some(aws_sdk_s3control::types::OperationName::S3ReplicateObject)
    );
    assert_eq!(first.priority, 10);
    assert_eq!(first.description.as_deref(), Some("replmon re-drive"));
    assert_eq!(
        first
            .progress_summary
            .as_ref()
            .and_then(|p| p.number_of_tasks_succeeded),
        Some(2)
    );
    let page = h
        .client
        .list_jobs()
        .account_id(ACCOUNT)
        .max_results(2)
        .send()
        .await?;
    assert_eq!(page.jobs.unwrap_or_default().len(), 2);
    let rest = h
        .client
        .list_jobs()
        .account_id(ACCOUNT)
        .max_results(2)
        .next_token(page.next_token.context("no next token")?)
        .send()
        .await?;
    assert_eq!(
        rest.jobs
            .unwrap_or_default()
            .iter()
            .filter_map(|j| j.job_id.clone())
            .collect::<Vec<_>>(),
        [id.as_str()]
    );
    assert!(rest.next_token.is_none());
    let active = h
        .client
        .list_jobs()
        .account_id(ACCOUNT)
        .job_statuses(JobStatus::Active)
        .send()
        .await?;
    assert!(active.jobs.unwrap_or_default().is_empty());
    let other_account = h
        .client
        .list_jobs()
        .account_id("210987654321")
        .send()
        .await?;
    assert!(other_account.jobs.unwrap_or_default().is_empty());
    assert_eq!(h.control.jobs_created(), 3);
    h.control.stop().await;
    h.replication.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_needing_confirmation_waits_suspended_until_made_ready_or_cancelled() -> Result<()> {
    let h = harness(S3ControlSettings::default()).await?;
    h.replication
        .fail_matching(SOURCE, "x/", "DstPutObjectNotPermitted");
    let key = "x/a b.txt";
    let version = put(&h.s3, key, "payload").await?;
    wait_failed(&h.replication, 1).await?;
    h.replication.clear_failures(SOURCE);

    // A caller's CSV manifest this time (keys URL-encoded, as S3 wants them).
    let csv = format!("{SOURCE},x/a+b.txt,{version}\n");
    let manifest_key = "manifests/mine.csv";
    let e_tag =
        h.s3.put_object()
            .bucket(REPORTS)
            .key(manifest_key)
            .body(ByteStream::from(csv.into_bytes()))
            .send()
            .await?
            .e_tag
            .context("no etag")?;
    let manifest = JobManifest::builder()
        .spec(
            JobManifestSpec::builder()
                .format(JobManifestFormat::S3BatchOperationsCsv20180820)
                .fields(JobManifestFieldName::Bucket)
                .fields(JobManifestFieldName::Key)
                .fields(JobManifestFieldName::VersionId)
                .build()?,
        )
        .location(
            JobManifestLocation::builder()
                .object_arn(format!("arn:aws:s3:::{REPORTS}/{manifest_key}"))
                .e_tag(e_tag.trim_matches('"'))
                .build()?,
        )
        .build();
    let id = h
        .client
        .create_job()
        .account_id(ACCOUNT)
        .client_request_token("confirm-1")
        .confirmation_required(true)
        .operation(replicate())
        .manifest(manifest)
        .report(no_report())
        .priority(1)
        .role_arn(ROLE)
        .send()
        .await?
        .job_id
        .context("no job id")?;
    let suspended = wait_status(&h.client, &id, JobStatus::Suspended).await?;
    assert!(suspended.suspended_date.is_some());
    assert_eq!(suspended.confirmation_required, Some(true));
    assert!(suspended.manifest.is_some(), "the manifest is echoed");
    tokio::time::sleep(Duration::from_millis(400)).await;
    wait_status(&h.client, &id, JobStatus::Suspended).await?;
    assert!(
        !exists(&h.s3, REPLICA, key).await?,
        "ran before confirmation"
    );

    let updated = h
        .client
        .update_job_status()
        .account_id(ACCOUNT)
        .job_id(&id)
        .requested_job_status(RequestedJobStatus::Ready)
        .status_update_reason("approved by on-call")
        .send()
        .await?;
    assert_eq!(updated.status, Some(JobStatus::Ready));
    assert_eq!(updated.job_id.as_deref(), Some(id.as_str()));
    let done = wait_status(&h.client, &id, JobStatus::Complete).await?;
    assert_eq!(
        done.progress_summary
            .and_then(|p| p.number_of_tasks_succeeded),
        Some(1)
    );
    assert_eq!(
        done.status_update_reason.as_deref(),
        Some("approved by on-call")
    );
    assert_eq!(read(&h.s3, REPLICA, key).await?, b"payload");
    assert_eq!(
        wait_events(&h.sink, &id, "Complete").await,
        statuses(&[
            "New",
            "Preparing",
            "Suspended",
            "Ready",
            "Active",
            "Completing",
            "Complete"
        ])
    );
    let again = h
        .client
        .update_job_status()
        .account_id(ACCOUNT)
        .job_id(&id)
        .requested_job_status(RequestedJobStatus::Ready)
        .send()
        .await
        .expect_err("a complete job cannot be made ready");
    assert!(
        again
            .as_service_error()
            .is_some_and(|e| e.is_job_status_exception()),
        "{again:?}"
    );

    // Cancelled while suspended: never runs.
    let cancelled = create_job(
        &h.client,
        "confirm-2",
        generator(failed_filter(), None)?,
        no_report(),
        true,
    )
    .await?;
    wait_status(&h.client, &cancelled, JobStatus::Suspended).await?;
    let answer = h
        .client
        .update_job_status()
        .account_id(ACCOUNT)
        .job_id(&cancelled)
        .requested_job_status(RequestedJobStatus::Cancelled)
        .send()
        .await?;
    assert_eq!(answer.status, Some(JobStatus::Cancelling));
    let job = wait_status(&h.client, &cancelled, JobStatus::Cancelled).await?;
    assert!(job.termination_date.is_some());
    assert_eq!(
        wait_events(&h.sink, &cancelled, "Cancelled").await,
        statuses(&["New", "Preparing", "Suspended", "Cancelling", "Cancelled"])
    );
    h.control.stop().await;
    h.replication.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_report_or_manifest_bucket_is_missing_fails_with_a_reason() -> Result<()> {
    let h = harness(S3ControlSettings::default()).await?;
    h.replication
        .fail_matching(SOURCE, "x/", "DstPutObjectNotPermitted");
    put(&h.s3, "x/a.txt", "payload").await?;
    wait_failed(&h.replication, 1).await?;
    h.replication.clear_failures(SOURCE);

    let id = create_job(
        &h.client,
        "no-report-bucket",
        generator(failed_filter(), Some("manifests"))?,
        report("replmon-no-such-bucket", JobReportScope::AllTasks),
        false,
    )
    .await?;
    let job = wait_status(&h.client, &id, JobStatus::Failed).await?;
    let reasons = job.failure_reasons.unwrap_or_default();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(
        reasons[0].failure_code.as_deref(),
        Some("ReportBucketInaccessible")
    );
    assert!(reasons[0]
        .failure_reason
        .as_deref()
        .is_some_and(|r| r.contains("replmon-no-such-bucket")));
    assert!(job.termination_date.is_some());
    assert_eq!(
        wait_events(&h.sink, &id, "Failed").await,
        statuses(&["New", "Preparing", "Failing", "Failed"])
    );
    let failed_event = h.sink.events().into_iter().last().context("no event")?;
    assert_eq!(
        failed_event["detail"]["serviceEventDetails"]["failureCodes"],
        serde_json::json!(["ReportBucketInaccessible"])
    );

    let no_output = S3JobManifestGenerator::builder()
        .source_bucket(format!("arn:aws:s3:::{SOURCE}"))
        .enable_manifest_output(true)
        .manifest_output_location(
            S3ManifestOutputLocation::builder()
                .bucket("arn:aws:s3:::replmon-no-such-bucket")
                .manifest_format(GeneratedManifestFormat::S3InventoryReportCsv20211130)
                .build()?,
        )
        .build()?;
    let id = create_job(
        &h.client,
        "no-manifest-bucket",
        JobManifestGenerator::S3JobManifestGenerator(no_output),
        no_report(),
        false,
    )
    .await?;
    let job = wait_status(&h.client, &id, JobStatus::Failed).await?;
    let reasons = job.failure_reasons.unwrap_or_default();
    assert_eq!(
        reasons.first().and_then(|r| r.failure_code.as_deref()),
        Some("ManifestWriteFailed"),
        "{reasons:?}"
    );
    assert!(job.generated_manifest_descriptor.is_none());
    // Neither job ran a task: the version is still failed and not on the replica.
    assert_eq!(h.replication.failed_versions(SOURCE).len(), 1);
    assert!(!exists(&h.s3, REPLICA, "x/a.txt").await?);
    h.control.stop().await;
    h.replication.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_report_appears_only_when_released_and_dropped_events_never_arrive() -> Result<()> {
    let h = harness(S3ControlSettings::default()).await?;
    h.control.hold_reports(true);
    h.control.set_drop_events(true);
    h.replication
        .fail_matching(SOURCE, "x/", "DstPutObjectNotPermitted");
    let version = put(&h.s3, "x/a.txt", "payload").await?;
    wait_failed(&h.replication, 1).await?;
    h.replication.clear_failures(SOURCE);

    let id = create_job(
        &h.client,
        "held-report",
        generator(failed_filter(), None)?,
        report(REPORTS, JobReportScope::AllTasks),
        false,
    )
    .await?;
    wait_status(&h.client, &id, JobStatus::Complete).await?;
    let report_key = format!("reports/job-{id}/manifest.json");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !exists(&h.s3, REPORTS, &report_key).await?,
        "a held report was written"
    );
    assert_eq!(h.control.job(&id).context("no job")?.report, None);

    h.control.hold_reports(false);
    let start = Instant::now();
    while !exists(&h.s3, REPORTS, &report_key).await? {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the released report never came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report: serde_json::Value =
        serde_json::from_slice(&read(&h.s3, REPORTS, &report_key).await?)?;
    let results = report["Results"].as_array().context("no results")?;
    assert_eq!(results.len(), 1, "{report}");
    assert_eq!(results[0]["TaskExecutionStatus"], "succeeded");
    let key = results[0]["Key"].as_str().context("no key")?;
    let rows = parse_csv(&String::from_utf8(read(&h.s3, REPORTS, key).await?)?);
    assert_eq!(
        rows,
        [[
            SOURCE,
            "x/a.txt",
            version.as_str(),
            "succeeded",
            "200",
            "",
            "Successful"
        ]]
    );

    // Every status change was emitted and dropped: the sink saw nothing.
    let start = Instant::now();
    while h.control.events().len() < 6 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = h.control.events();
    assert_eq!(events.len(), 6, "{events:?}");
    assert!(events
        .iter()
        .all(|e| e.dropped && e.delivery_error.is_none()));
    assert!(h.sink.events().is_empty());
    h.control.stop().await;
    h.replication.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_report_is_written_after_the_job_completes() -> Result<()> {
    let delay = Duration::from_millis(600);
    let h = harness(S3ControlSettings {
        report_delay: Some(delay),
        ..S3ControlSettings::default()
    })
    .await?;
    h.replication
        .fail_matching(SOURCE, "x/", "DstPutObjectNotPermitted");
    put(&h.s3, "x/a.txt", "payload").await?;
    wait_failed(&h.replication, 1).await?;
    let id = create_job(
        &h.client,
        "delayed-report",
        generator(failed_filter(), None)?,
        report(REPORTS, JobReportScope::FailedTasksOnly),
        false,
    )
    .await?;
    wait_status(&h.client, &id, JobStatus::Complete).await?;
    let complete_at = Instant::now();
    let report_key = format!("reports/job-{id}/manifest.json");
    assert!(
        !exists(&h.s3, REPORTS, &report_key).await?,
        "written before the delay"
    );
    while !exists(&h.s3, REPORTS, &report_key).await? {
        assert!(
            complete_at.elapsed() < Duration::from_secs(5),
            "never written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // DescribeJob saw Complete at most one step and a poll after it happened.
    assert!(complete_at.elapsed() >= delay - Duration::from_millis(150));
    let report: serde_json::Value =
        serde_json::from_slice(&read(&h.s3, REPORTS, &report_key).await?)?;
    assert_eq!(report["Results"][0]["TaskExecutionStatus"], "failed");
    h.control.stop().await;
    h.replication.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_s3_refuses_are_refused_in_its_error_shape() -> Result<()> {
    // No S3 behind it: validation happens before anything is read.
    let sdk = sdk_config("http://127.0.0.1:9").await;
    let replication = Arc::new(
        ReplicationSimulator::start(s3_client(&sdk), Vec::new(), SimulatorSettings::default())
            .await,
    );
    let control =
        S3ControlSimulator::start(s3_client(&sdk), replication, S3ControlSettings::default())
            .await?;
    let client = s3control_client(&sdk, &control.endpoint());
    let base = || {
        client
            .create_job()
            .account_id(ACCOUNT)
            .client_request_token("t")
            .operation(replicate())
            .report(no_report())
            .priority(1)
            .role_arn(ROLE)
    };
    let manifest = generator(failed_filter(), None)?;
    let refusals = [
        (
            "a 65-character token",
            base()
                .client_request_token("t".repeat(65))
                .manifest_generator(manifest.clone()),
            "ClientRequestToken",
        ),
        (
            "no operation",
            base()
                .set_operation(None)
                .manifest_generator(manifest.clone()),
            "Operation",
        ),
        (
            "no report",
            base().set_report(None).manifest_generator(manifest.clone()),
            "Report",
        ),
        (
            "no priority",
            base()
                .set_priority(None)
                .manifest_generator(manifest.clone()),
            "Priority",
        ),
        (
            "no role",
            base()
                .set_role_arn(None)
                .manifest_generator(manifest.clone()),
            "RoleArn",
        ),
        (
            "a role that is not a role",
            base()
                .role_arn("arn:aws:s3:::bucket")
                .manifest_generator(manifest.clone()),
            "RoleArn",
        ),
        ("no manifest", base(), "Manifest"),
        (
            "a manifest and a generator",
            base().manifest_generator(manifest.clone()).manifest(
                JobManifest::builder()
                    .spec(
                        JobManifestSpec::builder()
                            .format(JobManifestFormat::S3BatchOperationsCsv20180820)
                            .fields(JobManifestFieldName::Bucket)
                            .fields(JobManifestFieldName::Key)
                            .build()?,
                    )
                    .location(
                        JobManifestLocation::builder()
                            .object_arn("arn:aws:s3:::b/k")
                            .e_tag("e")
                            .build()?,
                    )
                    .build(),
            ),
            "not both",
        ),
        (
            "an enabled report without a bucket",
            base()
                .report(
                    JobReport::builder()
                        .enabled(true)
                        .format(JobReportFormat::ReportCsv20180820)
                        .build(),
                )
                .manifest_generator(manifest.clone()),
            "Report.Bucket",
        ),
    ];
    for (what, request, named) in refusals {
        let error = request.send().await.expect_err(what);
        let status = error.raw_response().map(|r| r.status().as_u16());
        assert_eq!(status, Some(400), "{what}: {error:?}");
        assert_eq!(error.code(), Some("InvalidRequest"), "{what}: {error:?}");
        assert!(
            error.message().is_some_and(|m| m.contains(named)),
            "{what}: {:?}",
            error.message()
        );
    }
    let tagging = base()
        .operation(
            JobOperation::builder()
                .s3_put_object_tagging(
                    S3SetObjectTaggingOperation::builder()
                        .tag_set(S3Tag::builder().key("k").value("v").build()?)
                        .build(),
                )
                .build(),
        )
        .manifest_generator(manifest.clone())
        .send()
        .await
        .expect_err("another operation");
    assert_eq!(tagging.code(), Some("NotImplemented"));
    assert_eq!(control.jobs_created(), 0);
    assert_eq!(control.create_job_requests(), 10);

    let missing = client
        .describe_job()
        .account_id(ACCOUNT)
        .job_id("00000000-0000-4000-8000-000000000000")
        .send()
        .await
        .expect_err("no such job");
    assert_eq!(missing.code(), Some("NoSuchJob"));
    assert_eq!(
        missing.raw_response().map(|r| r.status().as_u16()),
        Some(404)
    );
    assert!(missing.request_id().is_some(), "{missing:?}");
    let missing = client
        .update_job_status()
        .account_id(ACCOUNT)
        .job_id("nope")
        .requested_job_status(RequestedJobStatus::Cancelled)
        .send()
        .await
        .expect_err("no such job");
    assert_eq!(missing.code(), Some("NoSuchJob"));
    let token = client
        .list_jobs()
        .account_id(ACCOUNT)
        .next_token("bogus")
        .send()
        .await
        .expect_err("a token never given");
    assert!(token
        .as_service_error()
        .is_some_and(|e| e.is_invalid_next_token_exception()));
    let too_many = client
        .list_jobs()
        .account_id(ACCOUNT)
        .max_results(1001)
        .send()
        .await
        .expect_err("over 1000");
    assert!(too_many
        .as_service_error()
        .is_some_and(|e| e.is_invalid_request_exception()));
    control.stop().await;
    Ok(())
}
