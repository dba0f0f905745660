use super::*;
use crate::canary::ports::CanaryStore;
use crate::canary::probe::{ProbeStatus, RuleHealth};
use crate::event::ReplicationEventKind::OperationFailedReplication;
use crate::fakes::{
    FakeBatchJobs, FakeJobFiles, InMemoryLedger, ManualClock, NotificationBuilder,
    RecordingNotifier,
};
use crate::ledger::ObjectStatus;
use crate::replication::{MonitorSettings, ReplicationMonitor};
use chrono::{Duration, TimeZone};
use std::io::Write as _;

const SOURCE: &str = "src";
const DEST: &str = "dst";
const RULE: &str = "rule-1";
const REASON: &str = "DstPutObjectNotPermitted";
const REPORTS: &str = "reports";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 4, 0, 0)
        .single()
        .unwrap()
}

type Service =
    Redrives<InMemoryLedger, FakeBatchJobs, FakeJobFiles, RecordingNotifier, ManualClock>;

fn service() -> Service {
    Redrives {
        store: InMemoryLedger::default(),
        jobs: FakeBatchJobs::default(),
        files: FakeJobFiles::default(),
        notifier: RecordingNotifier::default(),
        clock: ManualClock::new(t0()),
        settings: RedriveSettings {
            role_arn: "arn:aws:iam::123456789012:role/redrive".into(),
            report_bucket: REPORTS.into(),
            ..RedriveSettings::default()
        },
    }
}

/// `n` versions of `data/<i>` failed for the same reason, recorded by the replication monitor.
async fn failures(service: &Service, n: usize) {
    let builder = NotificationBuilder::new(SOURCE, DEST, RULE);
    let records = (0..n)
        .map(|i| {
            builder.record(
                OperationFailedReplication,
                &format!("data/{i}"),
                &format!("v{i}"),
                Some(REASON),
            )
        })
        .collect();
    let notifier = RecordingNotifier::default();
    let monitor = ReplicationMonitor::new(
        &service.store,
        &notifier,
        &service.clock,
        MonitorSettings::default(),
    );
    monitor
        .handle(&NotificationBuilder::notification(records))
        .await
        .unwrap();
}

/// The canary's latest probe under the rule, put at `at`, ended `status`.
async fn probe(service: &Service, at: DateTime<Utc>, status: ProbeStatus) {
    let mut health = RuleHealth::new(SOURCE, DEST, RULE);
    health.last_status = Some(status);
    health.last_probe_at = Some(at);
    let stored = CanaryStore::health(&service.store, SOURCE, DEST, RULE)
        .await
        .unwrap()
        .map(|(_, revision)| revision);
    assert!(
        CanaryStore::put_health(&service.store, &health, stored, t0() + Duration::days(9))
            .await
            .unwrap()
    );
}

fn scope() -> Scope {
    Scope {
        source_bucket: SOURCE.into(),
        destination_bucket: Some(DEST.into()),
    }
}

fn gz(text: &str) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

/// The job's files as S3 writes them: the manifest of `in_job` versions, and a report of
/// `failed` ones (`FailedTasksOnly`).
fn job_files(service: &Service, job_id: &str, in_job: &[usize], failed: &[usize]) -> JobState {
    let manifest_key = format!("replmon-redrive/manifests/{SOURCE}/job-{job_id}/manifest.json");
    let data_key = format!("replmon-redrive/manifests/{SOURCE}/job-{job_id}/data/a.csv.gz");
    let rows: String = in_job
        .iter()
        .map(|i| format!("{SOURCE},data%2F{i},v{i}\n"))
        .collect();
    service.files.put(REPORTS, &data_key, &gz(&rows));
    service.files.put(
        REPORTS,
        &manifest_key,
        serde_json::json!({"sourceBucket": SOURCE, "fileFormat": "CSV", "fileSchema": "Bucket, Key, VersionId",
            "files": [{"key": data_key, "size": 1, "MD5checksum": "x"}]})
        .to_string()
        .as_bytes(),
    );
    let report_prefix = format!("replmon-redrive/reports/{SOURCE}/job-{job_id}");
    let failed_key = format!("{report_prefix}/results/f.csv");
    let rows: String = failed
        .iter()
        .map(|i| format!("{SOURCE},data%2F{i},v{i},failed,PermanentFailure,403,{REASON}\n"))
        .collect();
    service.files.put(REPORTS, &failed_key, rows.as_bytes());
    let results = if failed.is_empty() {
        serde_json::json!([])
    } else {
        serde_json::json!([{"TaskExecutionStatus": "failed", "Bucket": REPORTS, "MD5Checksum": "x", "Key": failed_key}])
    };
    service.files.put(
        REPORTS,
        &format!("{report_prefix}/manifest.json"),
        serde_json::json!({"Format": "Report_CSV_20180820", "Results": results})
            .to_string()
            .as_bytes(),
    );
    JobState {
        status: JobStatus::Complete,
        failure_reasons: Vec::new(),
        manifest: Some((REPORTS.into(), manifest_key)),
        tasks_total: in_job.len() as u64,
        tasks_succeeded: (in_job.len() - failed.len()) as u64,
        tasks_failed: failed.len() as u64,
    }
}

fn incident(service: &Service) -> crate::incident::Incident {
    service.store.incidents().into_iter().next().unwrap()
}

#[tokio::test]
async fn the_guard_wants_a_probe_that_arrived_after_the_last_failure() {
    let service = service();
    failures(&service, 3).await;
    let plan = service.plan(&scope(), "123456789012").await.unwrap();
    assert_eq!(plan.versions, 3);
    assert_eq!(plan.not_cleared().len(), 1, "no canary evidence at all");
    let refused = service.start(&plan, false, "cli").await.unwrap_err();
    assert!(matches!(refused, RedriveError::NotCleared(_)), "{refused}");
    assert!(service.jobs.requests().is_empty());

    let last_failure = incident(&service).last_seen.unwrap();
    probe(
        &service,
        last_failure - Duration::minutes(1),
        ProbeStatus::Arrived,
    )
    .await;
    let plan = service.plan(&scope(), "123456789012").await.unwrap();
    assert!(
        plan.not_cleared()[0].contains("since the last failure"),
        "{:?}",
        plan.not_cleared()
    );
    probe(
        &service,
        last_failure + Duration::minutes(5),
        ProbeStatus::Failed,
    )
    .await;
    let plan = service.plan(&scope(), "123456789012").await.unwrap();
    assert!(
        plan.not_cleared()[0].contains("did not arrive"),
        "{:?}",
        plan.not_cleared()
    );
    probe(
        &service,
        last_failure + Duration::minutes(10),
        ProbeStatus::Arrived,
    )
    .await;
    let plan = service.plan(&scope(), "123456789012").await.unwrap();
    assert!(plan.not_cleared().is_empty());
    assert!((plan.estimated_cost_usd - (0.25 + 3.0 * 0.000_001)).abs() < 1e-9);
    assert!(plan.request.created_after < incident(&service).first_seen.unwrap());
    assert_eq!(plan.request.token.len(), 64);
    assert_eq!(
        plan.request.token,
        service
            .plan(&scope(), "123456789012")
            .await
            .unwrap()
            .request
            .token,
        "the same re-drive asks with the same token"
    );
}

#[tokio::test]
async fn forced_without_evidence_and_never_two_jobs_for_one_incident() {
    let service = service();
    failures(&service, 2).await;
    let plan = service.plan(&scope(), "123456789012").await.unwrap();
    // The answer to CreateJob is lost: the job exists, its id is not recorded.
    service
        .jobs
        .lose_creates
        .store(1, std::sync::atomic::Ordering::SeqCst);
    assert!(service
        .start(&plan, true, "cli")
        .await
        .unwrap_err()
        .retryable());
    // A second `replmon redrive`, and the sweep, carry on with the same token: the same job.
    let started = service.start(&plan, true, "cli").await.unwrap();
    assert_eq!(started.job_id.as_deref(), Some("job-1"));
    assert!(started.forced);
    let again = service.plan(&scope(), "123456789012").await.unwrap();
    assert!(matches!(
        service.start(&again, true, "cli").await.unwrap_err(),
        RedriveError::AlreadyRunning { .. }
    ));
    let swept = service.sweep().await;
    assert!(matches!(swept[0].1, Ok(Followed::Running(_))), "{swept:?}");
    assert_eq!(
        service.jobs.requests().len(),
        1,
        "one job, whatever was retried"
    );
    assert_eq!(service.jobs.create_calls(), 2);
}

#[tokio::test]
async fn a_finished_job_moves_the_backlog_and_notices_once() {
    let service = service();
    failures(&service, 5).await;
    let last_failure = incident(&service).last_seen.unwrap();
    probe(
        &service,
        last_failure + Duration::minutes(1),
        ProbeStatus::Arrived,
    )
    .await;
    let plan = service.plan(&scope(), "123456789012").await.unwrap();
    let started = service.start(&plan, false, "cli").await.unwrap();
    let job = started.job_id.clone().unwrap();
    assert!(!started.forced);

    // The report is not there yet: nothing is marked, the re-drive stays open.
    let mut state = job_files(&service, &job, &[0, 1, 2, 3, 4], &[3, 4]);
    let complete = state.clone();
    state.manifest = None;
    service.jobs.set_state(&job, state);
    assert!(matches!(
        service.on_job_event(&job).await.unwrap_err(),
        RedriveError::ReportPending(_)
    ));
    assert_eq!(incident(&service).backlog_count, 5);
    assert!(service.notifier.pages().is_empty());

    service.jobs.set_state(&job, complete);
    let Some(Followed::Finished(record)) = service.on_job_event(&job).await.unwrap() else {
        panic!("not finished");
    };
    assert_eq!((record.replicated, record.still_failing_count()), (3, 2));
    assert_eq!(record.still_failing[0].code, REASON);
    let objects = service.store.objects();
    let redriven: Vec<_> = objects
        .iter()
        .filter(|o| o.status() == ObjectStatus::Redriven)
        .collect();
    assert_eq!(redriven.len(), 3);
    assert!(redriven
        .iter()
        .all(|o| o.redrive_job() == Some(job.as_str())));
    let failing: Vec<_> = objects
        .iter()
        .filter(|o| o.status() == ObjectStatus::Failed)
        .collect();
    assert_eq!(
        failing.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
        ["data/3", "data/4"],
        "never marked replicated when the report lists it failed"
    );
    assert!(failing.iter().all(|o| o.redrive_failure() == Some(REASON)));
    assert_eq!(incident(&service).backlog_count, 2);
    let pages = service.notifier.pages();
    assert_eq!(pages.len(), 1);
    assert!(
        pages[0].body().contains(
            "re-drive of src -> dst finished: 3 of 5 object versions replicated; 2 still failing"
        ),
        "{}",
        pages[0].body()
    );

    // The same event again, and the sweep: nothing moves twice, no second notice.
    assert_eq!(service.on_job_event(&job).await.unwrap(), None);
    assert!(service.sweep().await.is_empty());
    assert_eq!(incident(&service).backlog_count, 2);
    assert_eq!(service.notifier.pages().len(), 1);
}

#[tokio::test]
async fn a_second_redrive_after_the_fix_empties_the_backlog() {
    let service = service();
    failures(&service, 3).await;
    let plan = service.plan(&scope(), "123456789012").await.unwrap();
    let first = service.start(&plan, true, "cli").await.unwrap();
    let job = first.job_id.unwrap();
    let state = job_files(&service, &job, &[0, 1, 2], &[2]);
    service.jobs.set_state(&job, state);
    service.sweep().await;
    assert_eq!(incident(&service).backlog_count, 1);

    let plan = service.plan(&scope(), "123456789012").await.unwrap();
    assert_eq!((plan.attempt, plan.versions), (2, 1));
    let second = service.start(&plan, true, "cli").await.unwrap();
    let job2 = second.job_id.unwrap();
    assert_ne!(job, job2);
    let state = job_files(&service, &job2, &[2], &[]);
    service.jobs.set_state(&job2, state);
    service.sweep().await;
    assert_eq!(incident(&service).backlog_count, 0);
    let pages = service.notifier.pages();
    assert!(
        pages[1]
            .body()
            .contains("1 of 1 object versions replicated."),
        "{}",
        pages[1].body()
    );
    let plan = service.plan(&scope(), "123456789012").await.unwrap();
    assert!(plan.incidents.is_empty(), "nothing left to re-drive");
}

#[tokio::test]
async fn a_failed_job_pages_with_its_reasons() {
    let service = service();
    failures(&service, 1).await;
    let plan = service.plan(&scope(), "123456789012").await.unwrap();
    let job = service
        .start(&plan, true, "cli")
        .await
        .unwrap()
        .job_id
        .unwrap();
    service.jobs.set_state(
        &job,
        JobState {
            status: JobStatus::Failed,
            failure_reasons: vec!["AccessDenied: Reading the manifest is forbidden\n".into()],
            manifest: None,
            tasks_total: 0,
            tasks_succeeded: 0,
            tasks_failed: 0,
        },
    );
    let swept = service.sweep().await;
    let Ok(Followed::Finished(record)) = &swept[0].1 else {
        panic!("{swept:?}");
    };
    assert_eq!(record.state, RedriveState::Failed);
    let pages = service.notifier.pages();
    assert_eq!(pages.len(), 1);
    assert!(pages[0]
        .body()
        .contains("AccessDenied: Reading the manifest is forbidden\\n"));
    assert_eq!(incident(&service).backlog_count, 1);
}

#[tokio::test]
async fn automatic_mode_starts_what_the_canary_handed_over_and_events_follow_it() {
    let service = service();
    failures(&service, 2).await;
    let last_failure = incident(&service).last_seen.unwrap();
    let sweep = r#"{"version":"0","id":"s1","detail-type":"Scheduled Event","source":"aws.events","detail":{}}"#;
    // Nothing handed over: the sweep starts nothing, automatic or not.
    service.handle(sweep, true, "123456789012").await.unwrap();
    assert!(service.jobs.requests().is_empty());

    let probe_at = last_failure + Duration::minutes(3);
    probe(&service, probe_at, ProbeStatus::Arrived).await;
    let hand = HandOver {
        source_bucket: SOURCE.into(),
        destination_bucket: DEST.into(),
        rule_id: RULE.into(),
        probe_at,
    };
    CanaryStore::hand_over_redrive(&service.store, &hand)
        .await
        .unwrap();
    // Off: the hand-over waits, nothing starts.
    service.handle(sweep, false, "123456789012").await.unwrap();
    assert!(service.jobs.requests().is_empty());
    let answer = service.handle(sweep, true, "123456789012").await.unwrap();
    assert_eq!(service.jobs.requests().len(), 1, "{answer}");
    assert!(service.store.hand_overs().is_empty(), "handled once");
    let record = service.store.current(SOURCE).await.unwrap().unwrap().0;
    assert_eq!(record.requested_by, "auto");

    let job = record.job_id.unwrap();
    let state = job_files(&service, &job, &[0, 1], &[]);
    service.jobs.set_state(&job, state);
    let event = serde_json::json!({"version": "0", "id": "e1", "detail-type": "AWS Service Event via CloudTrail",
        "source": "aws.s3", "account": "123456789012", "time": "2026-12-07T10:00:00Z", "region": "us-east-1",
        "resources": [], "detail": {"eventSource": "s3.amazonaws.com", "eventName": "JobStatusChanged",
        "serviceEventDetails": {"jobId": job, "status": "Complete"}}})
    .to_string();
    service.handle(&event, true, "123456789012").await.unwrap();
    assert_eq!(incident(&service).backlog_count, 0);
    // Redelivered: acknowledged, nothing more.
    let again = service.handle(&event, true, "123456789012").await.unwrap();
    assert!(
        again.to_string().contains("not a running re-drive"),
        "{again}"
    );
    assert_eq!(service.notifier.pages().len(), 1);
    assert!(service.handle("[]", true, "123456789012").await.is_err());
}
