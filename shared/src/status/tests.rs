use super::*;
use crate::alarm::monitor::AlarmStore;
use crate::alarm::AlarmRecord;
use crate::canary::audit::Finding;
use crate::canary::ports::CanaryStore;
use crate::event::ReplicationEventKind::*;
use crate::fakes::{InMemoryLedger, ManualClock, NotificationBuilder, RecordingNotifier};
use crate::replication::{MonitorSettings, ReplicationMonitor};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap()
}

/// The builder's events happen at 03:00; the report is read an hour later.
fn now() -> DateTime<Utc> {
    at("2026-11-23T04:00:00Z")
}

/// Deliver notifications through the real replication monitor, as SQS batches.
async fn deliver(ledger: &InMemoryLedger, records: Vec<serde_json::Value>) {
    let notifier = RecordingNotifier::default();
    let clock = ManualClock::new(at("2026-11-23T03:00:05Z"));
    let monitor = ReplicationMonitor::new(ledger, &notifier, &clock, MonitorSettings::default());
    let bodies: Vec<String> = records
        .into_iter()
        .map(|r| NotificationBuilder::notification(vec![r]))
        .collect();
    for chunk in bodies.chunks(10) {
        let response = monitor
            .handle_value(&NotificationBuilder::sqs_event(chunk))
            .await
            .unwrap();
        assert_eq!(response["batchItemFailures"], serde_json::json!([]));
    }
}

fn probe(
    bucket: &str,
    rule: &str,
    minute: u32,
    status: ProbeStatus,
    latency: Option<u64>,
) -> ProbeRecord {
    let put_at = at("2026-11-23T03:00:00Z") + Duration::seconds(i64::from(minute) * 60);
    ProbeRecord {
        source_bucket: bucket.into(),
        destination_bucket: "dst".into(),
        destination_region: None,
        rule_id: rule.into(),
        run_id: format!("run-{minute}"),
        key: format!("replmon-canary/{minute}"),
        version_id: Some("v".into()),
        put_at,
        deadline: put_at + Duration::minutes(15),
        status,
        latency_ms: latency,
        latency_min_ms: latency,
        latency_max_ms: latency,
        last_miss_at: None,
        head_requests: 3,
        resolved_at: Some(put_at),
        detail: None,
        source_status: None,
        source_region: None,
        cleaned: true,
        counted: true,
        rolled_up: true,
        cleanup_attempts: 0,
        kms_refusal: None,
    }
}

#[tokio::test]
async fn an_empty_ledger_is_a_report_not_an_error() {
    let ledger = InMemoryLedger::default();
    let report = status(&ledger, now(), &StatusOptions::default())
        .await
        .unwrap();
    assert!(report.is_empty());
    assert!(
        report.to_text().contains("The ledger is empty"),
        "{}",
        report.to_text()
    );
    let page = ledger.backlog_page("src", None, None, 10).await.unwrap();
    assert_eq!(page, BacklogPage::default());
    assert!(backlog_text(&page, now()).contains("No object is missing"));
}

#[tokio::test]
async fn incidents_backlog_and_failures_by_reason_come_from_the_recorded_events() {
    let ledger = InMemoryLedger::default();
    let b = NotificationBuilder::new("src", "dst", "rule-1");
    let mut records: Vec<_> = (0..12)
        .map(|i| {
            b.record(
                OperationFailedReplication,
                &format!("data/f{i}"),
                &format!("v{i}"),
                Some("DstPutObjectNotPermitted"),
            )
        })
        .collect();
    records.push(b.record(
        OperationFailedReplication,
        "kms/k",
        "v1",
        Some("DstKmsKeyNotFound"),
    ));
    // Two late objects; one of them arrives later.
    records.push(b.record(OperationMissedThreshold, "late/a", "v1", None));
    records.push(b.record(OperationMissedThreshold, "late/b", "v1", None));
    records.push(b.record(OperationReplicatedAfterThreshold, "late/b", "v1", None));
    // A second destination of the same bucket.
    let other = NotificationBuilder::new("src", "dst-eu", "rule-2");
    records.push(other.record(
        OperationFailedReplication,
        "eu/x",
        "v1",
        Some("DstBucketNotFound"),
    ));
    // A redelivery changes nothing.
    records.push(b.record(
        OperationFailedReplication,
        "data/f0",
        "v0",
        Some("DstPutObjectNotPermitted"),
    ));
    deliver(&ledger, records).await;

    let report = status(&ledger, now(), &StatusOptions::default())
        .await
        .unwrap();
    assert_eq!(report.source_buckets, vec!["src".to_owned()]);

    let missing = |cause: &str| {
        report
            .incidents
            .iter()
            .find(|i| i.cause == cause)
            .and_then(|i| i.objects_missing)
    };
    assert_eq!(missing("FAILED:DstPutObjectNotPermitted"), Some(12));
    assert_eq!(missing("FAILED:DstKmsKeyNotFound"), Some(1));
    assert_eq!(missing("FAILED:DstBucketNotFound"), Some(1));
    assert_eq!(missing("LATE"), Some(1), "late/b arrived");
    let permissions = report
        .incidents
        .iter()
        .find(|i| i.cause == "FAILED:DstPutObjectNotPermitted")
        .unwrap();
    assert_eq!(permissions.events, Some(12));
    assert_eq!(permissions.pages_sent, Some(1));
    assert_eq!(permissions.subject, "src -> dst (rule rule-1)");
    assert!(permissions.meaning.as_deref().unwrap_or("").len() > 10);

    assert_eq!(report.backlog.len(), 2);
    let dst = &report.backlog[0];
    assert_eq!(
        (
            dst.destination_bucket.as_str(),
            dst.objects,
            dst.failed,
            dst.late
        ),
        ("dst", 14, 13, 1)
    );
    assert_eq!(dst.bytes, 14 * 1024, "the builder's objects are 1 KiB");
    assert_eq!(dst.objects_without_size, 0);
    assert_eq!(dst.oldest_since, at("2026-11-23T03:00:00Z"));
    assert_eq!(dst.oldest_age_seconds, 3600);
    assert_eq!(report.backlog[1].destination_bucket, "dst-eu");

    let reasons: Vec<(&str, u64)> = report
        .failures_by_reason
        .iter()
        .map(|f| (f.reason.as_str(), f.objects))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("DstPutObjectNotPermitted", 12),
            ("DstBucketNotFound", 1),
            ("DstKmsKeyNotFound", 1)
        ]
    );

    // A day later the failures leave the window, but the backlog stays: nobody fixed it.
    let later = status(
        &ledger,
        now() + Duration::days(2),
        &StatusOptions::default(),
    )
    .await
    .unwrap();
    assert!(later.failures_by_reason.is_empty());
    assert_eq!(later.backlog[0].objects, 14);
    assert!(later
        .incidents
        .iter()
        .any(|i| i.cause == "FAILED:DstKmsKeyNotFound"));

    let text = report.to_text();
    for expected in [
        "OPEN INCIDENTS (4)",
        "FAILED:DstPutObjectNotPermitted",
        "14.0 KiB",
        "1h 0m",
        "DstBucketNotFound",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from\n{text}");
    }
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["backlog"][0]["objects"], 14);
    assert_eq!(json["incidents"][0]["source"], "replication");
}

#[tokio::test]
async fn backlog_pages_cover_every_missing_object_once_in_order() {
    let ledger = InMemoryLedger::default();
    let b = NotificationBuilder::new("src", "dst", "rule-1");
    let other = NotificationBuilder::new("src", "dst-eu", "rule-2");
    let mut records: Vec<_> = (0..23)
        .map(|i| {
            b.record(
                OperationFailedReplication,
                &format!("k/{i:02} name with spaces"),
                "v1",
                Some("DstKmsKeyNotFound"),
            )
        })
        .collect();
    records.extend(
        (0..4).map(|i| other.record(OperationMissedThreshold, &format!("eu/{i}"), "v1", None)),
    );
    deliver(&ledger, records).await;

    let mut seen = Vec::new();
    let mut after: Option<BacklogCursor> = None;
    let mut pages = 0;
    loop {
        let page = ledger
            .backlog_page("src", None, after.as_ref(), 10)
            .await
            .unwrap();
        pages += 1;
        assert!(page.objects.len() <= 10);
        seen.extend(page.objects.iter().map(|o| o.sort_key()));
        match page.next {
            Some(next) => after = Some(BacklogCursor::decode(&next.encode()).unwrap()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 27);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "in key order, no repeats");

    let eu = ledger
        .backlog_page("src", Some("dst-eu"), None, 100)
        .await
        .unwrap();
    assert_eq!(eu.objects.len(), 4);
    assert!(eu.next.is_none());
    assert!(eu.objects.iter().all(|o| o.destination_bucket == "dst-eu"));
    let text = backlog_text(&eu, now());
    assert!(text.contains("LATE") && text.contains("eu/3"), "{text}");
}

#[test]
fn cursors_round_trip_and_bad_ones_are_refused() {
    let cursor = BacklogCursor("dst#dir/ä key#v1".into());
    assert_eq!(BacklogCursor::decode(&cursor.encode()), Ok(cursor));
    for bad in ["", "abc", "zz", "ff"] {
        let error = BacklogCursor::decode(bad).unwrap_err();
        assert!(error.contains("not a cursor"), "{error}");
    }
}

#[test]
fn percentiles_are_nearest_rank() {
    let values: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&values, 50), Some(50));
    assert_eq!(percentile(&values, 95), Some(95));
    assert_eq!(percentile(&values, 99), Some(99));
    assert_eq!(percentile(&[7], 99), Some(7));
    assert_eq!(percentile(&[], 50), None);
    assert_eq!(percentile(&[1, 2, 3], 50), Some(2));
}

#[tokio::test]
async fn canary_latency_last_result_incident_and_findings() {
    let ledger = InMemoryLedger::default();
    let expires = now() + Duration::days(90);
    // 20 good probes on rule-1 with latencies 1..=20 s, then a missing one.
    for minute in 0..20u32 {
        let p = probe(
            "src",
            "rule-1",
            minute,
            ProbeStatus::Arrived,
            Some(u64::from(minute + 1) * 1000),
        );
        ledger.save_probe(&p, expires).await.unwrap();
    }
    let mut last = probe("src", "rule-1", 30, ProbeStatus::Missing, None);
    last.detail = Some("not in dst after 900 s".into());
    ledger.save_probe(&last, expires).await.unwrap();
    // An old probe, outside the window, is left out of the figures.
    let mut old = probe("src", "rule-1", 0, ProbeStatus::Arrived, Some(99_000));
    old.put_at = now() - Duration::days(3);
    old.run_id = "old".into();
    ledger.save_probe(&old, expires).await.unwrap();

    let mut health = RuleHealth::new("src", "dst", "rule-1");
    health.incident_opened_at = Some(last.put_at);
    health.incident_cause = Some(ProbeStatus::Missing);
    health.last_status = Some(ProbeStatus::Missing);
    health.last_probe_at = Some(last.put_at);
    assert!(ledger.put_health(&health, None, expires).await.unwrap());
    ledger
        .save_audit(
            &AuditRecord {
                source_bucket: "src".into(),
                audited_at: at("2026-11-23T03:30:00Z"),
                findings: vec![Finding {
                    id: "rtc-off#rule-1".into(),
                    severity: Severity::Warning,
                    summary: "rule rule-1 of src has no Replication Time Control".into(),
                    detail: "d".into(),
                }],
            },
            expires,
        )
        .await
        .unwrap();

    let report = status(&ledger, now(), &StatusOptions::default())
        .await
        .unwrap();
    assert_eq!(report.canary.len(), 1);
    let c = &report.canary[0];
    assert_eq!((c.probes, c.arrived), (21, 20));
    assert_eq!(
        (c.p50_ms, c.p95_ms, c.p99_ms),
        (Some(10_000), Some(19_000), Some(20_000))
    );
    assert_eq!(c.last_status, Some(ProbeStatus::Missing));
    assert_eq!(c.last_detail.as_deref(), Some("not in dst after 900 s"));
    let canary = report
        .incidents
        .iter()
        .find(|i| i.source == IncidentSource::Canary)
        .unwrap();
    assert_eq!(canary.cause, "MISSING");
    assert_eq!(canary.severity, Severity::Critical);
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].id, "rtc-off#rule-1");
    let text = report.to_text();
    for expected in [
        "10.0 s",
        "19.0 s",
        "MISSING",
        "no Replication Time Control",
        "not in dst after 900 s",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from\n{text}");
    }
}

#[tokio::test]
async fn alarms_in_alarm_or_with_an_open_incident_are_listed() {
    let ledger = InMemoryLedger::default();
    let record = |name: &str, state: AlarmState, open: bool| AlarmRecord {
        alarm_key: format!("123#us-east-1#{name}"),
        alarm_name: name.into(),
        state,
        state_time: at("2026-11-23T03:10:00Z"),
        incident_opened_at: open.then(|| at("2026-11-23T03:10:00Z")),
        transitions: Vec::new(),
        flapping_since: None,
        pending: None,
        pending_since: None,
    };
    let expires = now() + Duration::days(90);
    for r in [
        record("latency-high", AlarmState::Alarm, true),
        record("healthy", AlarmState::Ok, false),
        record("no-data-while-open", AlarmState::InsufficientData, true),
    ] {
        assert!(ledger.put_alarm(&r, None, expires).await.unwrap());
    }
    let report = status(&ledger, now(), &StatusOptions::default())
        .await
        .unwrap();
    let names: Vec<&str> = report
        .incidents
        .iter()
        .filter(|i| i.source == IncidentSource::Alarm)
        .map(|i| i.subject.as_str())
        .collect();
    assert_eq!(names, vec!["latency-high", "no-data-while-open"]);
    assert!(!report.is_empty());
}

#[tokio::test]
async fn failed_canary_probes_are_not_counted_as_missing_data() {
    let ledger = InMemoryLedger::default();
    let b = NotificationBuilder::new("src", "dst", "rule-1");
    deliver(
        &ledger,
        vec![
            b.record(
                OperationFailedReplication,
                "data/a",
                "v1",
                Some("DstKmsKeyNotFound"),
            ),
            b.record(
                OperationFailedReplication,
                "replmon-canary/rule-1/run-7",
                "v1",
                Some("DstKmsKeyNotFound"),
            ),
        ],
    )
    .await;
    let report = status(&ledger, now(), &StatusOptions::default())
        .await
        .unwrap();
    assert_eq!(report.backlog[0].objects, 1);
    assert_eq!(report.incidents[0].objects_missing, Some(1));
    assert_eq!(
        report.incidents[0].events,
        Some(2),
        "the incident still counts both events"
    );
    let page = ledger.backlog_page("src", None, None, 10).await.unwrap();
    assert_eq!(page.objects.len(), 2);
    let page = without_probes(page, StatusOptions::default().canary_segment.as_ref());
    assert_eq!(page.objects.len(), 1);
    assert_eq!(page.objects[0].key, "data/a");
    // Without a segment nothing is left out.
    let all = StatusOptions {
        canary_segment: None,
        ..StatusOptions::default()
    };
    assert_eq!(
        status(&ledger, now(), &all).await.unwrap().backlog[0].objects,
        2
    );
}

#[tokio::test]
async fn failures_without_a_reason_keep_their_incident_open() {
    let ledger = InMemoryLedger::default();
    let b = NotificationBuilder::new("src", "dst", "rule-1");
    deliver(
        &ledger,
        vec![
            b.record(OperationFailedReplication, "data/no-reason", "v1", None),
            b.record(
                OperationFailedReplication,
                "data/empty-reason",
                "v1",
                Some(""),
            ),
        ],
    )
    .await;
    // Two days on: outside the window, but the replica still lacks both objects.
    let report = status(
        &ledger,
        now() + Duration::days(2),
        &StatusOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.incidents.len(), 1);
    assert_eq!(report.incidents[0].cause, "FAILED:NoFailureReasonGiven");
    assert_eq!(report.incidents[0].objects_missing, Some(2));
    let recent = status(&ledger, now(), &StatusOptions::default())
        .await
        .unwrap();
    assert_eq!(recent.failures_by_reason.len(), 1);
    assert_eq!(recent.failures_by_reason[0].reason, "NoFailureReasonGiven");
    assert_eq!(recent.failures_by_reason[0].objects, 2);
}
