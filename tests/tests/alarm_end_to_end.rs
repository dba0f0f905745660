//! End to end: the real `alarm-events` binary under `cargo lambda watch`, invoked with every
//! fixture of events/alarm/manifest.json (each alone on a fresh stack, three times: duplicates
//! must change nothing) and with the flapping and out-of-order sequences.

use anyhow::{bail, Result};
use aws_sdk_cloudwatch::types::StandardUnit;
use replmon_tests::regions::{cloudwatch_in, put_replication_metric};
use replmon_tests::{
    build_functions, invoke, repo_root, sdk_config, start_watch, MotoServer, ReceivedPage, Stack,
    StackNames,
};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
struct Manifest {
    fixtures: Vec<Fixture>,
    sequences: Vec<Sequence>,
}

#[derive(Debug, Deserialize)]
struct Fixture {
    file: String,
    outcome: String,
    pages: Vec<Expected>,
    notices: Vec<Expected>,
    incident: String,
}

#[derive(Debug, Deserialize)]
struct Sequence {
    sequence: Vec<String>,
    pages: usize,
    notices: usize,
    final_incident: String,
}

#[derive(Debug, Deserialize)]
struct Expected {
    kind: String,
    severity: String,
}

fn summary(pages: &[ReceivedPage], urgency: &str) -> Vec<(String, String)> {
    let mut list: Vec<_> = pages
        .iter()
        .filter(|p| p.attribute("urgency") == urgency)
        .map(|p| {
            (
                p.attribute("kind").to_owned(),
                p.attribute("severity").to_owned(),
            )
        })
        .collect();
    list.sort();
    list
}

fn expected(list: &[Expected]) -> Vec<(String, String)> {
    let mut list: Vec<_> = list
        .iter()
        .map(|e| (e.kind.clone(), e.severity.clone()))
        .collect();
    list.sort();
    list
}

/// "open" when an alarm record holds an open incident, "resolved" when one exists without,
/// "none" when there is no alarm record or no incident.
async fn incident_state(stack: &Stack) -> Result<String> {
    let alarms = stack.ledger_entities("alarm").await?;
    Ok(
        if alarms.iter().any(|a| a.contains_key("incident_opened_at")) {
            "open".into()
        } else if alarms.is_empty() {
            "none".into()
        } else {
            "resolved".into()
        },
    )
}

fn same_incident(actual: &str, expected: &str) -> bool {
    actual == expected || (expected == "none" && actual == "resolved")
}

async fn fresh_stack(moto: &MotoServer) -> Result<Stack> {
    moto.reset().await?;
    let sdk = sdk_config(&moto.endpoint()).await;
    Stack::provision(&sdk, StackNames::default()).await
}

async fn check_fixture(moto: &MotoServer, port: u16, fixture: &Fixture) -> Result<()> {
    let stack = fresh_stack(moto).await?;
    let mut ledger_once: Option<Vec<BTreeMap<String, String>>> = None;
    for delivery in 0..3 {
        let run = invoke(port, "alarm-events", &fixture.file)?;
        if run.success != (fixture.outcome == "ok") {
            bail!(
                "delivery {delivery}: expected {}, got: {}{}",
                fixture.outcome,
                run.stdout,
                run.stderr
            );
        }
        let pages = stack.drain_pages().await?;
        if delivery == 0 {
            if summary(&pages, "page") != expected(&fixture.pages) {
                bail!(
                    "pages {:?}, expected {:?}",
                    summary(&pages, "page"),
                    fixture.pages
                );
            }
            if summary(&pages, "notice") != expected(&fixture.notices) {
                bail!(
                    "notices {:?}, expected {:?}",
                    summary(&pages, "notice"),
                    fixture.notices
                );
            }
            for page in &pages {
                if page.subject.len() > 100 || page.attribute("alarm_name").is_empty() {
                    bail!("page without bounds or attributes: {page:?}");
                }
            }
            let state = incident_state(&stack).await?;
            if !same_incident(&state, &fixture.incident) {
                bail!("incident {state}, expected {}", fixture.incident);
            }
            ledger_once = Some(stack.ledger_items().await?);
        } else {
            if !pages.is_empty() {
                bail!(
                    "redelivery {delivery} sent {:?}",
                    pages.iter().map(|p| &p.subject).collect::<Vec<_>>()
                );
            }
            if Some(stack.ledger_items().await?) != ledger_once {
                bail!("redelivery {delivery} changed the ledger");
            }
        }
    }
    Ok(())
}

async fn check_sequence(moto: &MotoServer, port: u16, sequence: &Sequence) -> Result<()> {
    let stack = fresh_stack(moto).await?;
    let mut pages = Vec::new();
    for file in &sequence.sequence {
        let run = invoke(port, "alarm-events", file)?;
        if !run.success {
            bail!("{file} failed: {}{}", run.stdout, run.stderr);
        }
        pages.extend(stack.drain_pages().await?);
    }
    let (paged, noticed) = (
        summary(&pages, "page").len(),
        summary(&pages, "notice").len(),
    );
    if (paged, noticed) != (sequence.pages, sequence.notices) {
        bail!(
            "{paged} pages and {noticed} notices, expected {} and {}: {:?}",
            sequence.pages,
            sequence.notices,
            pages.iter().map(|p| &p.subject).collect::<Vec<_>>()
        );
    }
    let state = incident_state(&stack).await?;
    if !same_incident(&state, &sequence.final_incident) {
        bail!(
            "final incident {state}, expected {}",
            sequence.final_incident
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alarm_fixture_under_cargo_lambda_watch() {
    let manifest: Manifest = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("events/alarm/manifest.json")).unwrap(),
    )
    .unwrap();
    assert!(manifest.fixtures.len() >= 20 && manifest.sequences.len() >= 2);
    build_functions();
    let moto = MotoServer::start().unwrap();
    let stack = fresh_stack(&moto).await.unwrap();
    let watch = start_watch(&stack.function_env(&moto.endpoint())).unwrap();

    let mut failures = Vec::new();
    for fixture in &manifest.fixtures {
        match check_fixture(&moto, watch.port, fixture).await {
            Ok(()) => eprintln!("ok    {}", fixture.file),
            Err(error) => {
                eprintln!("FAIL  {}: {error:#}", fixture.file);
                failures.push(format!("{}: {error:#}", fixture.file));
            }
        }
    }
    for sequence in &manifest.sequences {
        let name = sequence.sequence.first().cloned().unwrap_or_default();
        match check_sequence(&moto, watch.port, sequence).await {
            Ok(()) => eprintln!("ok    sequence from {name}"),
            Err(error) => {
                eprintln!("FAIL  sequence from {name}: {error:#}");
                failures.push(format!("sequence from {name}: {error:#}"));
            }
        }
    }
    match check_trends_in_each_alarms_region(&moto, watch.port).await {
        Ok(()) => eprintln!("ok    trends read in each alarm's region"),
        Err(error) => failures.push(format!("trends: {error:#}")),
    }
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The function runs in the source region (its `AWS_REGION`). The latency alarm arrives from the
/// replica's region (forwarded by EventBridge, `"region": "us-west-2"`), where its datapoints are;
/// the failed-operations alarm from the source's. Each page's trend shows its own datapoints,
/// which exist nowhere else: a function reading its own region would page "no datapoints".
async fn check_trends_in_each_alarms_region(moto: &MotoServer, port: u16) -> Result<()> {
    let stack = fresh_stack(moto).await?;
    let sdk = sdk_config(&moto.endpoint()).await;
    let names = &stack.names;
    let rule = (
        names.source_bucket.as_str(),
        names.replica_bucket.as_str(),
        names.rule_id.as_str(),
    );
    let now = chrono::Utc::now().timestamp();
    let latency: Vec<(i64, f64)> = (1..=12)
        .map(|i| (now - 60 * (13 - i), 100.0 * i as f64))
        .collect();
    let failed: Vec<(i64, f64)> = (1..=7).map(|i| (now - 60 * (8 - i), i as f64)).collect();
    let replica_cloudwatch = cloudwatch_in(&sdk, &names.replica_region);
    let source_cloudwatch = cloudwatch_in(&sdk, &names.source_region);
    put_replication_metric(
        &replica_cloudwatch,
        rule,
        "ReplicationLatency",
        StandardUnit::Seconds,
        &latency,
    )
    .await?;
    put_replication_metric(
        &source_cloudwatch,
        rule,
        "OperationsFailedReplication",
        StandardUnit::Count,
        &failed,
    )
    .await?;

    for (fixture, expected) in [
        (
            "alarm/metric-alarm.json",
            "12 points) ReplicationLatency Maximum: last 1200, min 100, max 1200",
        ),
        (
            "alarm/failed-operations-alarm.json",
            "7 points) OperationsFailedReplication Sum: last 7, min 1, max 7",
        ),
    ] {
        let run = invoke(port, "alarm-events", fixture)?;
        if !run.success {
            bail!("{fixture} failed: {}{}", run.stdout, run.stderr);
        }
        let pages = stack.drain_pages().await?;
        if !pages.iter().any(|p| p.message.contains(expected)) {
            bail!(
                "{fixture}: no page with {expected:?}: {:?}",
                pages.iter().map(|p| &p.message).collect::<Vec<_>>()
            );
        }
    }
    Ok(())
}
