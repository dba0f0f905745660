//! The report against a seeded ledger (the in-memory fakes): a month of canary roll-ups and S3
//! events around its edges, checked against figures computed straight from the raw seed.

use super::*;
use crate::canary::ports::CanaryStore;
use crate::canary::rollup::histogram_error;
use crate::canary::setup::CanarySegment;
use crate::fakes::{
    Expected, InMemoryLedger, ManualClock, RecordingNotifier, ReportSeed, SEED_THRESHOLD_MS,
};
use crate::replication::{MonitorSettings, ReplicationMonitor};
use chrono::{DateTime, Duration, TimeZone, Utc};

const SOURCE: &str = "photos-prod";
const A: &str = "photos-dr";
const B: &str = "photos-archive";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap()
}

/// The seed written through the ports: roll-ups as the canary writes them, events through the
/// replication monitor (its clock at each event's time, as if they arrived then).
async fn seeded() -> (InMemoryLedger, ReportSeed) {
    let seed = ReportSeed::november(SOURCE, A, B);
    let ledger = InMemoryLedger::default();
    for rollup in seed.rollups() {
        assert!(ledger
            .put_daily_rollup(&rollup, None, now() + Duration::days(400))
            .await
            .unwrap());
    }
    let notifications = seed.notifications();
    let clock = ManualClock::new(notifications[0].0);
    let notifier = RecordingNotifier::default();
    let monitor = ReplicationMonitor::new(&ledger, &notifier, &clock, MonitorSettings::default());
    for (at, body) in notifications {
        clock.advance(at - clock_now(&clock));
        monitor.handle(&body).await.unwrap();
    }
    (ledger, seed)
}

fn clock_now(clock: &ManualClock) -> DateTime<Utc> {
    use crate::clock::Clock;
    clock.now()
}

async fn november(ledger: &InMemoryLedger) -> Report {
    let options = ReportOptions {
        period: Period::month(2026, 11).unwrap(),
        buckets: vec![],
        canary_segment: Some(CanarySegment::new("replmon-canary/").unwrap()),
    };
    report(ledger, &options, now()).await.unwrap()
}

fn rule<'a>(report: &'a Report, rule: &str, destination: &str) -> &'a RuleReport {
    report.sources[0]
        .rules
        .iter()
        .find(|r| r.rule_id == rule && r.destination_bucket == destination)
        .unwrap_or_else(|| panic!("no {rule} -> {destination} in the report"))
}

/// An independent 95% interval: the roots of (p - x)^2 = z^2 x (1 - x) / n.
fn wilson_roots(hits: u64, n: u64) -> (f64, f64) {
    let (p, n, z) = (hits as f64 / n as f64, n as f64, 1.96f64);
    let (a, b, c) = (1.0 + z * z / n, -(2.0 * p + z * z / n), p * p);
    let d = (b * b - 4.0 * a * c).sqrt();
    ((-b - d) / (2.0 * a), (-b + d) / (2.0 * a))
}

fn check_rule(got: &RuleReport, want: &Expected) {
    let o = &got.canary.outcomes;
    assert_eq!(
        [
            o.arrived,
            o.slow,
            o.missing,
            o.stalled,
            o.failed,
            o.cannot_verify
        ],
        want.outcomes,
        "{}",
        got.rule_id
    );
    let latency = got.canary.latency.as_ref().unwrap();
    assert_eq!(latency.samples, want.latencies.len() as u64);
    assert_eq!(
        latency.max_ms,
        want.percentile(1.0).unwrap(),
        "the maximum is exact"
    );
    for (q, value) in [
        (0.5, latency.p50_ms),
        (0.95, latency.p95_ms),
        (0.99, latency.p99_ms),
    ] {
        let exact = want.percentile(q).unwrap() as f64;
        let off = (value as f64 - exact).abs();
        assert!(
            off <= exact * histogram_error() + 1.0,
            "{} p{}: {value} against exact {exact}",
            got.rule_id,
            q * 100.0
        );
    }
    let target = got.canary.within_target.as_ref().unwrap();
    assert_eq!(
        (target.hits, target.of),
        (want.within_target, want.verified)
    );
    let (low, high) = wilson_roots(want.within_target, want.verified);
    assert!(
        (target.low - low).abs() < 1e-3 && (target.high - high).abs() < 1e-3,
        "{target:?} vs {low}..{high}"
    );
    assert!(target.low <= target.share && target.share <= target.high);
    let threshold = got.canary.within_threshold.as_ref().unwrap();
    assert_eq!(
        (threshold.hits, threshold.of),
        (want.within_threshold, want.verified)
    );
    assert_eq!(got.canary.threshold_seconds, vec![SEED_THRESHOLD_MS / 1000]);
    assert_eq!(
        got.canary.blind.as_ref().map(|b| b.seconds),
        want.blind_seconds
    );
}

fn check_events(got: &RuleReport, want: &Expected) {
    let by_reason: std::collections::BTreeMap<String, u64> = got
        .events
        .failed_by_reason
        .iter()
        .map(|r| (r.reason.clone(), r.versions))
        .collect();
    assert_eq!(by_reason, want.failed_by_reason, "{}", got.rule_id);
    assert_eq!(got.events.missed_threshold, want.missed_threshold);
    assert_eq!(
        got.events.replicated_after_threshold,
        want.replicated_after_threshold
    );
    assert_eq!(got.exposure.versions_at_end, want.missing_at_end);
    assert_eq!(got.exposure.bytes_at_end, want.bytes_at_end);
}

#[tokio::test]
async fn a_month_of_history_gives_the_figures_the_raw_seed_gives() {
    let (ledger, seed) = seeded().await;
    let report = november(&ledger).await;
    let (from, to) = (report.period.from, report.period.to);
    assert_eq!(from.to_rfc3339(), "2026-11-01T00:00:00+00:00");
    assert_eq!(to.to_rfc3339(), "2026-12-01T00:00:00+00:00");
    for (name, destination) in [("whole-month", A), ("starts-mid", B), ("stops-mid", A)] {
        let got = rule(&report, name, destination);
        let want = seed.expected(name, destination, from, to, to);
        assert!(
            want.outcomes.iter().sum::<u64>() > 100,
            "the seed probes {name}"
        );
        check_rule(got, &want);
        check_events(got, &want);
        assert_eq!(
            got.canary.days.len(),
            30,
            "every day of November, probed or not"
        );
        for day in &got.canary.days {
            let start = day.day.and_hms_opt(0, 0, 0).unwrap().and_utc();
            let exact = seed.expected(name, destination, start, start + Duration::days(1), to);
            assert_eq!(
                day.probes,
                exact.outcomes.iter().sum::<u64>(),
                "{name} {}",
                day.day
            );
            match (day.p99_ms, exact.percentile(0.99)) {
                (Some(read), Some(exact)) => assert!(
                    (read as f64 - exact as f64).abs() <= exact as f64 * histogram_error() + 1.0,
                    "{name} {}: p99 {read} against {exact}",
                    day.day
                ),
                (None, None) => {}
                other => panic!("{name} {}: {other:?}", day.day),
            }
        }
    }
    // Rules that start or stop mid-month: their probes and blind time cover their own days.
    let starts = rule(&report, "starts-mid", B);
    assert_eq!(
        starts
            .canary
            .first_probe_at
            .map(|t| t.date_naive().to_string()),
        Some("2026-11-15".into())
    );
    assert!(starts.canary.days[..14]
        .iter()
        .all(|d| d.probes == 0 && d.p99_ms.is_none()));
    assert!(
        starts
            .verdict
            .text
            .contains("probed only from 2026-11-15 12:0"),
        "{}",
        starts.verdict.text
    );
    let stops = rule(&report, "stops-mid", A);
    assert!(
        stops
            .verdict
            .text
            .contains("probed only from 2026-11-01 00:0")
            && stops.verdict.text.contains("to 2026-11-10 05:30"),
        "{}",
        stops.verdict.text
    );
    assert!(!rule(&report, "whole-month", A)
        .verdict
        .text
        .contains("probed only"));
    assert_eq!(
        stops
            .canary
            .last_probe_at
            .map(|t| t.date_naive().to_string()),
        Some("2026-11-10".into())
    );
    assert!(stops.canary.days[10..].iter().all(|d| d.probes == 0));

    // The outage: ten missing probes in a row on Nov 20 are the longest blind stretch and a
    // canary incident that paged at the second one and closed with the next arrival.
    let whole = rule(&report, "whole-month", A);
    let blind = whole.canary.blind.as_ref().unwrap();
    assert!(blind.seconds >= 5 * 3600, "{blind:?}");
    let outage = whole
        .incidents
        .iter()
        .find(|i| {
            i.source == IncidentSource::Canary && i.cause == "canary: MISSING" && i.count >= 10
        })
        .unwrap_or_else(|| panic!("{:#?}", whole.incidents));
    assert_eq!(
        outage.first_failure_at.map(|t| t.date_naive().to_string()),
        Some("2026-11-20".into())
    );
    assert!(outage.resolved_at.is_some() && outage.seconds_to_page.is_some_and(|s| s > 0));
    // The outage across the month's start is shown from its first bad probe, in October.
    let across = whole
        .incidents
        .iter()
        .find(|i| {
            i.source == IncidentSource::Canary
                && i.first_failure_at.map(|t| t.date_naive().to_string())
                    == Some("2026-10-31".into())
        })
        .unwrap_or_else(|| panic!("{:#?}", whole.incidents));
    assert!(across.count >= 8, "{across:?}");
    assert!(across
        .resolved_at
        .is_some_and(|t| t.date_naive().to_string() == "2026-11-01"));
    assert!(
        whole
            .incidents
            .iter()
            .all(|i| i.resolved_at.is_none_or(|t| t >= report.period.from)),
        "only incidents open during the period"
    );
    // Events: the canary's own failed probe is not data; failures before and after the month
    // are outside it, but those before it are still missing at its end.
    assert_eq!(whole.events.failed_versions, 7);
    assert_eq!(
        whole.exposure.versions_at_end,
        3 + 7 + 1,
        "3 before, 7 in, late/3 never arrived"
    );
    assert_eq!(whole.exposure.versions_now, 3 + 7 + 1 + 2);
    assert_eq!(whole.events.late_versions.len(), 4);
    let late = &whole.events.late_versions;
    assert_eq!(late[0].key, "late/3", "still missing: first");
    assert!(late[0].replicated_at.is_none());
    assert_eq!(
        late[1].replication_seconds,
        Some(2000.0),
        "then the slowest"
    );
    assert_eq!(whole.verdict.level, VerdictLevel::Missed);
    // Judged as of the month's end: the late incident of starts-mid was resolved then (its one
    // late version arrived on the 20th), though a December version keeps it open now.
    let late = rule(&report, "starts-mid", B)
        .incidents
        .iter()
        .find(|i| i.cause == "LATE")
        .unwrap();
    assert_eq!(
        late.resolved_at.map(|t| t.to_rfc3339()),
        Some("2026-11-20T10:40:00+00:00".into()),
        "{late:?}"
    );
    assert_eq!(
        late.resolution.as_deref(),
        Some("every late version arrived")
    );
    assert_eq!(late.count, 1);
    let events = whole
        .incidents
        .iter()
        .filter(|i| i.source == IncidentSource::Events)
        .count();
    assert!(
        events >= 3,
        "two failure reasons and the late incident: {:#?}",
        whole.incidents
    );
    let denied = whole
        .incidents
        .iter()
        .find(|i| i.cause == "FAILED:DstPutObjectNotPermitted")
        .unwrap();
    assert_eq!(
        denied.first_failure_at.map(|t| t.to_rfc3339()),
        Some("2026-10-31T10:00:00+00:00".into())
    );
    assert!(
        denied.paged_at.is_some() && denied.resolved_at.is_none(),
        "{denied:?}"
    );

    // A rule with events and no probes: its failures judged, no canary figures invented.
    let keyless = rule(&report, "events-only", B);
    assert_eq!(keyless.canary.outcomes.total, 0);
    assert!(keyless.canary.latency.is_none() && keyless.canary.within_target.is_none());
    assert!(keyless.canary.blind.is_none());
    assert_eq!(keyless.events.failed_versions, 6);
    assert_eq!(keyless.verdict.level, VerdictLevel::Missed);

    // The summary: one row per rule, worst first.
    assert_eq!(report.summary.len(), 4);
    assert!(report
        .summary
        .windows(2)
        .all(|w| w[0].verdict.level <= w[1].verdict.level));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["summary"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn a_range_of_days_and_an_empty_month_are_reported_as_such() {
    let (ledger, seed) = seeded().await;
    let options = |period: Period| ReportOptions {
        period,
        buckets: vec![SOURCE.into()],
        canary_segment: Some(CanarySegment::new("replmon-canary/").unwrap()),
    };
    let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
    let period = Period::days(day(19), day(21)).unwrap();
    let (from, to) = (period.from, period.to);
    let got = report(&ledger, &options(period), now()).await.unwrap();
    let whole = rule(&got, "whole-month", A);
    check_rule(whole, &seed.expected("whole-month", A, from, to, to));
    assert_eq!(whole.canary.days.len(), 3);
    assert!(
        got.sources[0]
            .rules
            .iter()
            .all(|r| r.rule_id != "stops-mid"),
        "it stopped before"
    );

    // A mistyped bucket and a period still running are said, not silently empty.
    let mut typo = options(Period::month(2026, 12).unwrap());
    typo.buckets = vec!["photos-prd".into()];
    let got = report(&ledger, &typo, now()).await.unwrap();
    assert!(got.sources[0].rules.is_empty());
    assert!(
        got.notes
            .iter()
            .any(|n| n.contains("no record of bucket photos-prd")),
        "{:?}",
        got.notes
    );
    assert!(
        got.notes.iter().any(|n| n.contains("has not ended")),
        "{:?}",
        got.notes
    );

    let empty = report(&ledger, &options(Period::month(2025, 1).unwrap()), now())
        .await
        .unwrap();
    assert!(empty.summary.is_empty() && empty.sources[0].rules.is_empty());
}

#[test]
fn periods_are_utc_months_and_inclusive_day_ranges() {
    let december = Period::month(2026, 12).unwrap();
    assert_eq!(december.to.to_rfc3339(), "2027-01-01T00:00:00+00:00");
    assert_eq!(december.last_day().to_string(), "2026-12-31");
    let last = Period::last_month(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()).unwrap();
    assert_eq!(last.label, "2026-12");
    assert!(Period::month(2026, 13).is_none());
    let d = |day: u32| chrono::NaiveDate::from_ymd_opt(2026, 2, day).unwrap();
    assert!(Period::days(d(3), d(2)).is_none());
    assert_eq!(
        Period::days(d(28), d(28)).unwrap().to.to_rfc3339(),
        "2026-03-01T00:00:00+00:00"
    );
}
