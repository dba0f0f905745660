//! `replmon report` on the local stack: a month of history seeded through the real adapters
//! (the canary's daily roll-ups, S3 events through the replication monitor, audit findings)
//! into moto's DynamoDB, read by the real `replmon` binary as JSON, Markdown and HTML; the HTML
//! rendered by headless Chromium (Debian's `chromium`), whose screenshot must show the charts
//! drawn and whose DOM must carry the figures. Figures are checked against what the raw seed
//! gives (`ReportSeed::expected`, no code shared with the report).

use chrono::{DateTime, Duration, TimeZone, Utc};
use replmon_shared::aws::{DynamoDbLedger, SnsNotifier};
use replmon_shared::canary::audit::{AuditRecord, Finding};
use replmon_shared::canary::ports::CanaryStore;
use replmon_shared::canary::rollup::histogram_error;
use replmon_shared::fakes::{ManualClock, ReportSeed};
use replmon_shared::replication::{MonitorSettings, ReplicationMonitor};
use replmon_shared::report::palette;
use replmon_shared::severity::Severity;
use replmon_tests::browser::{self, pixels_near};
use replmon_tests::{build_replmon, sdk_config, MotoServer, Stack, StackNames};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const ARCHIVE: &str = "photos-archive";

fn replmon(binary: &Path, env: &[(String, String)], args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("running replmon");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

fn rule<'a>(report: &'a Value, rule: &str) -> &'a Value {
    report["sources"][0]["rules"]
        .as_array()
        .and_then(|rules| rules.iter().find(|r| r["rule_id"] == rule))
        .unwrap_or_else(|| panic!("no rule {rule} in {report:#}"))
}

/// 12345 as "12,345", as the page writes counts.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn near(read: &Value, exact: u64) -> bool {
    let read = read.as_u64().unwrap_or(u64::MAX) as f64;
    (read - exact as f64).abs() <= exact as f64 * histogram_error() + 1.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_month_reads_right_as_json_markdown_and_in_a_browser() {
    let binary = build_replmon();
    let moto = MotoServer::start().unwrap();
    let sdk = sdk_config(&moto.endpoint()).await;
    let stack = Stack::provision(&sdk, StackNames::default()).await.unwrap();
    let names = &stack.names;
    let ledger = DynamoDbLedger::new(&sdk, &names.table);
    let seed = ReportSeed::november(&names.source_bucket, &names.replica_bucket, ARCHIVE);
    let expires = Utc::now() + Duration::days(400);
    for rollup in seed.rollups() {
        assert!(ledger
            .put_daily_rollup(&rollup, None, expires)
            .await
            .unwrap());
    }
    let notifications = seed.notifications();
    let clock = ManualClock::new(notifications[0].0);
    let monitor = ReplicationMonitor::new(
        &ledger,
        SnsNotifier::new(&sdk, &stack.topic_arn),
        &clock,
        MonitorSettings::default(),
    );
    let mut now = notifications[0].0;
    for (event_at, body) in &notifications {
        clock.advance(*event_at - now);
        now = *event_at;
        monitor.handle(body).await.unwrap();
    }
    let unversioned = Finding {
        id: "destination-unversioned".into(),
        severity: Severity::Critical,
        summary: format!("{ARCHIVE} has versioning suspended"),
        detail: "Replication into it fails.".into(),
    };
    for day in [5, 6, 6] {
        let audit = AuditRecord {
            source_bucket: names.source_bucket.clone(),
            audited_at: at(day, 12),
            findings: vec![unversioned.clone()],
        };
        ledger.note_findings(&audit, expires).await.unwrap();
    }

    let env = stack.function_env(&moto.endpoint());
    let (code, out, err) = replmon(
        &binary,
        &env,
        &["report", "--month", "2026-11", "--format", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let (from, to) = (
        at(1, 0),
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
    );
    assert_eq!(report["period"]["label"], "2026-11");
    for (name, destination) in [
        ("whole-month", names.replica_bucket.as_str()),
        ("starts-mid", ARCHIVE),
        ("stops-mid", names.replica_bucket.as_str()),
    ] {
        let got = rule(&report, name);
        let want = seed.expected(name, destination, from, to, to);
        let outcomes = &got["canary"]["outcomes"];
        let read: Vec<u64> = [
            "arrived",
            "slow",
            "missing",
            "stalled",
            "failed",
            "cannot_verify",
        ]
        .iter()
        .map(|k| outcomes[k].as_u64().unwrap())
        .collect();
        assert_eq!(read, want.outcomes, "{name}");
        let latency = &got["canary"]["latency"];
        assert_eq!(latency["max_ms"].as_u64(), want.percentile(1.0), "{name}");
        for (field, q) in [("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)] {
            let exact = want.percentile(q).unwrap();
            assert!(
                near(&latency[field], exact),
                "{name} {field}: {} vs {exact}",
                latency[field]
            );
        }
        let within = &got["canary"]["within_target"];
        assert_eq!(within["hits"].as_u64(), Some(want.within_target), "{name}");
        assert_eq!(within["of"].as_u64(), Some(want.verified), "{name}");
        assert_eq!(
            got["canary"]["blind"]["seconds"].as_i64(),
            want.blind_seconds,
            "{name}"
        );
        assert_eq!(
            got["exposure"]["versions_at_end"].as_u64(),
            Some(want.missing_at_end),
            "{name}"
        );
        assert_eq!(
            got["events"]["missed_threshold"].as_u64(),
            Some(want.missed_threshold)
        );
        let failed: u64 = want.failed_by_reason.values().sum();
        assert_eq!(
            got["events"]["failed_versions"].as_u64(),
            Some(failed),
            "{name}"
        );
    }
    assert_eq!(rule(&report, "events-only")["events"]["failed_versions"], 6);
    let findings = &report["sources"][0]["audit_findings"];
    assert_eq!(findings[0]["id"], "destination-unversioned");
    assert_eq!(
        findings[0]["days"], 2,
        "noted on two days, twice on one: {findings:#}"
    );
    assert_eq!(report["summary"].as_array().map(Vec::len), Some(4));
    // Bounded reads: the roll-ups of November's days and the week before (whose marks replay
    // the canary's incidents), by key range; not December's.
    let look_back = from - Duration::days(7);
    let november = seed
        .rollups()
        .iter()
        .filter(|r| r.day >= look_back.date_naive() && r.day < to.date_naive())
        .count();
    assert!(seed.rollups().len() > november);
    let read = format!("Read {november} daily roll-ups");
    assert!(
        report["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap_or("").starts_with(&read)),
        "{read}: {:#}",
        report["notes"]
    );

    // UTC throughout: the machine's time zone changes nothing but the time it was generated.
    let elsewhere: Vec<(String, String)> = env
        .iter()
        .cloned()
        .chain([("TZ".to_owned(), "Pacific/Kiritimati".to_owned())])
        .collect();
    let (code, out, err) = replmon(
        &binary,
        &elsewhere,
        &["report", "--month", "2026-11", "--format", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let mut shifted: Value = serde_json::from_str(&out).unwrap();
    let mut plain = report.clone();
    shifted["generated_at"] = Value::Null;
    plain["generated_at"] = Value::Null;
    assert_eq!(shifted, plain, "the report depends on the time zone");

    // Markdown: the summary table has a row per rule.
    let (code, md, err) = replmon(
        &binary,
        &env,
        &["report", "--month", "2026-11", "--format", "md"],
    );
    assert_eq!(code, 0, "{err}");
    for name in ["whole-month", "starts-mid", "stops-mid", "events-only"] {
        assert!(
            md.lines().any(|l| l.starts_with('|') && l.contains(name)),
            "{name}: {md}"
        );
    }

    // HTML into a file: the path and the summary table printed; rendered in Chromium.
    let dir = browser::ScratchDir::new("report").unwrap();
    let page = dir.path().join("report.html");
    let page_arg = page.to_string_lossy().into_owned();
    let (code, out, err) = replmon(
        &binary,
        &env,
        &["report", "--month", "2026-11", "--out", &page_arg],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("wrote {page_arg}")), "{out}");
    assert!(
        out.contains("MISSED") && out.contains("whole-month"),
        "{out}"
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<script"), "no scripts");
    let rendered = browser::render(&page, 1280, 9000).unwrap();
    if let Ok(keep) = std::env::var("REPLMON_REPORT_SCREENSHOT") {
        // For the README's picture: the screenshot and the page beside it.
        std::fs::write(&keep, &rendered.png).unwrap();
        std::fs::write(format!("{keep}.html"), &html).unwrap();
    }
    assert!(!browser::is_blank(&rendered));
    for id in ["summary", "latency-0", "histogram-0", "timeline-0"] {
        assert!(
            rendered.dom.contains(&format!("id=\"{id}\"")),
            "{id} not in the DOM"
        );
    }
    // The figures are on the page: the p99 of the whole month and its verdict.
    let whole = rule(&report, "whole-month");
    assert!(rendered.dom.contains("MISSED"));
    assert!(rendered.dom.contains("DstPutObjectNotPermitted"));
    assert!(rendered.dom.contains(&names.replica_bucket));
    let within = &whole["canary"]["within_target"];
    let of = format!(
        "{} of {} probes",
        grouped(within["hits"].as_u64().unwrap()),
        grouped(within["of"].as_u64().unwrap())
    );
    assert!(
        rendered.dom.contains(&of),
        "{of} (within 15 minutes) is not on the page"
    );
    let percent = format!("{:.1}%", within["share"].as_f64().unwrap() * 100.0);
    assert!(
        rendered.dom.contains(&percent),
        "{percent} is not on the page"
    );
    // It prints: a PDF of several pages (the page's print styles keep charts whole).
    let pdf = browser::print_to_pdf(&page).unwrap();
    let pages = browser::pdf_pages(&pdf);
    assert!((2..=40).contains(&pages), "{pages} pages printed");
    // The charts drew: each colour covers real pixels in the screenshot.
    for (what, colour, least) in [
        ("daily p50 line", palette::P50, 300),
        ("daily p99 line", palette::P99, 300),
        ("15-minute line", palette::TARGET, 300),
        ("histogram bars", palette::HISTOGRAM, 1_000),
        ("event incident bars", palette::EVENT_INCIDENT, 100),
        ("canary incident bars", palette::CANARY_INCIDENT, 30),
    ] {
        let found = pixels_near(&rendered, colour, 24);
        assert!(found >= least, "{what}: {found} pixels of {colour}");
    }
}
