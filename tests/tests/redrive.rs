//! Re-drive through the real adapters (DynamoDB ledger, s3control client with
//! `REPLMON_S3CONTROL_ENDPOINT`'s fixed endpoint, S3 job files, SNS pages) against moto, the
//! replication simulator and the Batch Operations simulator: failures recorded by the
//! replication monitor, a job started once even when its CreateJob answer is lost, its report
//! applied (replicated versions leave the backlog, persisting ones keep their reason), one
//! notice, a redelivered event changing nothing, a report not readable yet marking nothing, a
//! second re-drive after the fix emptying the backlog, and `replmon status` showing it.

use anyhow::{bail, Context, Result};
use aws_sdk_s3::primitives::ByteStream;
use replmon_shared::aws::{DynamoDbLedger, S3ControlJobs, S3ObjectStore, SnsNotifier};
use replmon_shared::canary::ports::CanaryStore;
use replmon_shared::canary::probe::{ProbeStatus, RuleHealth};
use replmon_shared::clock::SystemClock;
use replmon_shared::ledger::ObjectStatus;
use replmon_shared::redrive::{
    BatchJobs, Followed, RedriveRecord, RedriveSettings, RedriveState, Redrives, Scope,
};
use replmon_shared::replication::{MonitorSettings, ReplicationMonitor};
use replmon_shared::status::{status, LedgerReader, StatusOptions};
use replmon_tests::replication_sim::{ReplicationSimulator, SimulatorSettings};
use replmon_tests::s3control_sim::{RecordingSink, S3ControlSettings, S3ControlSimulator};
use replmon_tests::{sdk_config, MotoServer, Stack, StackNames};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REASON: &str = "DstPutObjectNotPermitted";
const REPORTS: &str = "replmon-redrive-reports";
const ACCOUNT: &str = "123456789012";

type Service = Redrives<DynamoDbLedger, S3ControlJobs, S3ObjectStore, SnsNotifier, SystemClock>;

async fn put(stack: &Stack, key: &str) -> Result<()> {
    stack
        .s3
        .put_object()
        .bucket(&stack.names.source_bucket)
        .key(key)
        .body(ByteStream::from(format!("body of {key}").into_bytes()))
        .send()
        .await?;
    Ok(())
}

/// Hand the simulator's failure events (from `from` on) to the replication monitor, as S3's
/// notifications would.
async fn record_failures(
    replication: &ReplicationSimulator,
    ledger: &DynamoDbLedger,
    notifier: &SnsNotifier,
    from: usize,
) -> Result<usize> {
    let monitor =
        ReplicationMonitor::new(ledger, notifier, SystemClock, MonitorSettings::default());
    let failures = replication.failures();
    for failure in &failures[from..] {
        monitor
            .handle(&failure.event.to_string())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(failures.len())
}

async fn wait_failures(replication: &ReplicationSimulator, count: usize) -> Result<()> {
    let start = Instant::now();
    while replication.failures().len() < count {
        if start.elapsed() > Duration::from_secs(15) {
            bail!("{} failures, not {count}", replication.failures().len());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}

/// The canary's latest probe under the rule arrived now (after every failure so far).
async fn canary_arrived(ledger: &DynamoDbLedger, names: &StackNames) -> Result<()> {
    let stored = ledger
        .health(&names.source_bucket, &names.replica_bucket, &names.rule_id)
        .await?;
    let mut health = stored.as_ref().map(|(h, _)| h.clone()).unwrap_or_else(|| {
        RuleHealth::new(&names.source_bucket, &names.replica_bucket, &names.rule_id)
    });
    health.last_status = Some(ProbeStatus::Arrived);
    health.last_probe_at = Some(chrono::Utc::now());
    let written = ledger
        .put_health(
            &health,
            stored.map(|(_, r)| r),
            chrono::Utc::now() + chrono::Duration::days(1),
        )
        .await?;
    anyhow::ensure!(written, "canary health not written");
    Ok(())
}

/// Sweep until the source's re-drive is finished (a report not there yet only means later).
async fn finished(service: &Service, source: &str) -> Result<RedriveRecord> {
    let start = Instant::now();
    loop {
        for (bucket, result) in service.sweep().await {
            match result {
                Ok(Followed::Finished(record)) if bucket == source => return Ok(*record),
                Ok(_) => {}
                Err(e) if e.retryable() => {}
                Err(e) => bail!("sweep of {bucket}: {e}"),
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the re-drive of {source} did not finish");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn incident_backlog(ledger: &DynamoDbLedger, source: &str) -> Result<i64> {
    let incidents = ledger.incidents(source).await?;
    Ok(incidents
        .iter()
        .filter(|i| i.key.cause.code().starts_with("FAILED:"))
        .map(|i| i.backlog_count)
        .sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_repairs_what_it_can_once_and_proves_it_in_the_ledger() -> Result<()> {
    let moto = MotoServer::start()?;
    let sdk = sdk_config(&moto.endpoint()).await;
    let stack = Stack::provision(&sdk, StackNames::default()).await?;
    let names = stack.names.clone();
    let source = names.source_bucket.clone();
    stack.s3.create_bucket().bucket(REPORTS).send().await?;
    let ledger = DynamoDbLedger::new(&sdk, &names.table);
    let notifier = SnsNotifier::new(&sdk, &stack.topic_arn);

    // Five objects fail; then the fault is fixed for all but two.
    let replication = Arc::new(
        ReplicationSimulator::start(
            stack.s3.clone(),
            vec![source.clone()],
            SimulatorSettings::default(),
        )
        .await,
    );
    replication.fail_matching(&source, "data/", REASON);
    for key in ["data/a", "data/b", "data/c", "data/keep-1", "data/keep-2"] {
        put(&stack, key).await?;
    }
    wait_failures(&replication, 5).await?;
    let recorded = record_failures(&replication, &ledger, &notifier, 0).await?;
    replication.clear_failures(&source);
    replication.fail_matching(&source, "data/keep", REASON);
    stack.drain_pages().await?;

    let sink = Arc::new(RecordingSink::default());
    let control = S3ControlSimulator::start(
        stack.s3.clone(),
        replication.clone(),
        S3ControlSettings {
            event_sink: Some(sink.clone()),
            ..S3ControlSettings::default()
        },
    )
    .await?;
    let service: Service = Redrives {
        store: DynamoDbLedger::new(&sdk, &names.table),
        jobs: S3ControlJobs::new(&sdk, Some(&control.endpoint())),
        files: S3ObjectStore::new(&sdk),
        notifier: SnsNotifier::new(&sdk, &stack.topic_arn),
        clock: SystemClock,
        settings: RedriveSettings {
            role_arn: format!("arn:aws:iam::{ACCOUNT}:role/replmon-redrive"),
            report_bucket: REPORTS.into(),
            ..RedriveSettings::default()
        },
    };
    let scope = Scope {
        source_bucket: source.clone(),
        destination_bucket: None,
    };

    // The guard: no canary evidence yet.
    let plan = service.plan(&scope, ACCOUNT).await?;
    assert_eq!(plan.versions, 5);
    assert_eq!(plan.not_cleared().len(), 1, "{:?}", plan.not_cleared());
    assert!(service.start(&plan, false, "test").await.is_err());
    assert_eq!(control.create_job_requests(), 0);

    canary_arrived(&ledger, &names).await?;
    let plan = service.plan(&scope, ACCOUNT).await?;
    assert!(plan.not_cleared().is_empty());
    // A CreateJob whose answer was lost (the job exists, nothing recorded it), then the real
    // start: the same token, the same job.
    let lost = service.jobs.create_job(&plan.request).await?;
    let started = service.start(&plan, false, "test").await?;
    assert_eq!(started.job_id.as_deref(), Some(lost.as_str()));
    assert_eq!(
        (control.create_job_requests(), control.jobs_created()),
        (2, 1)
    );
    let again = service.plan(&scope, ACCOUNT).await?;
    assert!(again.running.is_some());
    assert!(
        service.start(&again, true, "test").await.is_err(),
        "never two jobs"
    );

    let record = finished(&service, &source).await?;
    assert_eq!(record.state, RedriveState::Finished);
    assert_eq!((record.replicated, record.still_failing_count()), (3, 2));
    assert_eq!(record.still_failing[0].code, REASON);
    assert_eq!(incident_backlog(&ledger, &source).await?, 2);
    let backlog = ledger.backlog_page(&source, None, None, 100).await?;
    let mut keys: Vec<&str> = backlog.objects.iter().map(|o| o.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["data/keep-1", "data/keep-2"]);
    assert!(backlog
        .objects
        .iter()
        .all(|o| o.status() == ObjectStatus::Failed && o.redrive_failure() == Some(REASON)));
    for key in ["data/a", "data/b", "data/c"] {
        stack
            .s3
            .head_object()
            .bucket(&names.replica_bucket)
            .key(key)
            .send()
            .await
            .with_context(|| format!("{key} not on the replica"))?;
    }
    let pages = stack.drain_pages().await?;
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert!(
        pages[0].message.contains(&format!(
            "re-drive of {source} -> all destinations finished: 3 of 5 object versions replicated; 2 still failing"
        )),
        "{}",
        pages[0].message
    );
    assert!(pages[0].message.contains(REASON));

    // The job's events again (redelivered): nothing moves, no second notice.
    for event in sink.events() {
        service
            .handle(&event.to_string(), false, ACCOUNT)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    assert!(stack.drain_pages().await?.is_empty());
    assert_eq!(incident_backlog(&ledger, &source).await?, 2);

    // Fixed for good: a second re-drive, whose report is not readable at first.
    replication.clear_failures(&source);
    canary_arrived(&ledger, &names).await?;
    control.hold_reports(true);
    let plan = service.plan(&scope, ACCOUNT).await?;
    assert_eq!((plan.attempt, plan.versions), (2, 2));
    let second = service.start(&plan, false, "test").await?;
    assert_ne!(second.job_id, started.job_id);
    let start = Instant::now();
    loop {
        let job = control
            .job(second.job_id.as_deref().unwrap_or_default())
            .context("no such job")?;
        if format!("{:?}", job.status).contains("Complete") {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(20),
            "job never completed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pending = service.sweep().await;
    assert_eq!(pending.len(), 1);
    assert!(
        pending
            .iter()
            .all(|(_, r)| r.as_ref().is_err_and(|e| e.retryable())),
        "{pending:?}"
    );
    assert_eq!(
        incident_backlog(&ledger, &source).await?,
        2,
        "nothing marked before the report"
    );
    control.hold_reports(false);
    let record = finished(&service, &source).await?;
    assert_eq!((record.replicated, record.still_failing_count()), (2, 0));
    assert_eq!(incident_backlog(&ledger, &source).await?, 0);

    let report = status(
        &ledger,
        chrono::Utc::now(),
        &StatusOptions {
            window: chrono::Duration::hours(24),
            buckets: vec![source.clone()],
            canary_segment: None,
        },
    )
    .await?;
    assert_eq!(report.redrives.len(), 1);
    assert_eq!(report.redrives[0].record.attempt, 2);
    assert_eq!(report.redrives[0].resolved_incidents.len(), 1);
    assert!(
        !report.incidents.iter().any(|i| i.cause.starts_with(REASON)),
        "the incident is resolved: {:?}",
        report.incidents
    );
    let text = report.to_text();
    assert!(
        text.contains("RE-DRIVES (1)") && text.contains("resolved by re-drive"),
        "{text}"
    );
    // The month's report lists both re-drives (each kept when it finished) and the incident
    // resolved by the second.
    let month = replmon_shared::report::Period::month(
        chrono::Datelike::year(&chrono::Utc::now()),
        chrono::Datelike::month(&chrono::Utc::now()),
    )
    .expect("this month");
    let evidence = replmon_shared::report::report(
        &ledger,
        &replmon_shared::report::ReportOptions {
            period: month,
            buckets: vec![source.clone()],
            canary_segment: None,
        },
        chrono::Utc::now(),
    )
    .await?;
    let attempts: Vec<(u32, u64)> = evidence.sources[0]
        .redrives
        .iter()
        .map(|r| (r.attempt, r.replicated))
        .collect();
    assert_eq!(attempts, [(1, 3), (2, 2)]);
    let repaired = evidence.sources[0]
        .rules
        .iter()
        .flat_map(|r| &r.incidents)
        .find(|i| i.cause.starts_with("FAILED:"))
        .expect("the failure incident");
    assert_eq!(repaired.resolution.as_deref(), Some("re-drive attempt 2"));
    // Repaired when the re-drive's report was applied (the ledger keeps milliseconds).
    let gap = repaired.resolved_at.expect("resolved") - record.finished_at.expect("finished");
    assert!(gap.num_milliseconds().abs() <= 1, "{gap}");
    assert_eq!(recorded, 5);
    Ok(())
}
