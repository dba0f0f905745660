//! End to end: the real `canary` binary under `cargo lambda watch`, invoked with the fixtures in
//! events/canary, against the local stack with the replication simulator. Failures the simulator
//! injects reach the real `replication-events` binary (served by the same watch) over its invoke
//! endpoint, as S3 would deliver them, and the canary reads the reason from the ledger.

use replmon_tests::replication_sim::{
    Delay, LambdaInvokeSink, ReplicationSimulator, SimulatorSettings,
};
use replmon_tests::{
    build_functions, invoke, sdk_config, start_watch, MotoServer, Stack, StackNames,
};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

fn report(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn statuses(report: &Value) -> Vec<String> {
    report["buckets"][0]["probes"]
        .as_array()
        .map(|probes| {
            probes
                .iter()
                .map(|p| p["status"].as_str().unwrap_or("?").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_under_cargo_lambda_watch() {
    build_functions();
    let moto = MotoServer::start().unwrap();
    let sdk = sdk_config(&moto.endpoint()).await;
    let stack = Stack::provision(&sdk, StackNames::default()).await.unwrap();
    let source = stack.names.source_bucket.clone();
    let mut env = stack.function_env(&moto.endpoint());
    for (name, value) in [
        ("REPLMON_CANARY_BUDGET_SECONDS", "10"),
        ("REPLMON_CANARY_DEADLINE_SECONDS", "30"),
        ("REPLMON_CANARY_LATENCY_THRESHOLD_SECONDS", "20"),
    ] {
        env.push((name.into(), value.into()));
    }
    let watch = start_watch(&env).unwrap();
    let sim = ReplicationSimulator::start(
        stack.s3.clone(),
        vec![source.clone()],
        SimulatorSettings {
            delay: Delay::Fixed(Duration::from_millis(1200)),
            metrics: Some(sdk.clone()),
            failure_sink: Some(Arc::new(LambdaInvokeSink {
                port: watch.port,
                function: "replication-events".into(),
            })),
            ..Default::default()
        },
    )
    .await;

    // replication-events receives the simulator's failure events: start it now (watch starts
    // a function on its first invocation) with S3's test event, which it only acknowledges.
    let warm = invoke(watch.port, "replication-events", "sqs/test-event.json").unwrap();
    assert!(warm.success, "{}{}", warm.stdout, warm.stderr);

    // A scheduled run: the probe arrives, is timed, recorded and cleaned up.
    let run = invoke(watch.port, "canary", "canary/scheduled-event.json").unwrap();
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    let first = report(&run.stdout);
    assert_eq!(first["run_id"], "6a7e8feb-b491-4cf7-a9f1-bf3703467718");
    assert_eq!(statuses(&first), ["ARRIVED"], "{first:#}");
    let latency = first["buckets"][0]["probes"][0]["latency_ms"]
        .as_u64()
        .unwrap();
    assert!((1000..=2500).contains(&latency), "{latency}");
    // The stack's rule has neither metrics nor RTC: the audit says so, as notices.
    let notices: Vec<String> = first["buckets"][0]["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        notices.iter().any(|n| n.starts_with("metrics-off#")),
        "{notices:?}"
    );
    let pages = stack.drain_pages().await.unwrap();
    assert!(!pages.is_empty());
    assert!(pages
        .iter()
        .all(|p| p.attribute("kind") == "canary-audit" && p.attribute("urgency") == "notice"));

    // The same schedule delivered again: no second probe, no second notice.
    let again = invoke(watch.port, "canary", "canary/scheduled-event.json").unwrap();
    assert!(again.success, "{}{}", again.stdout, again.stderr);
    let again = report(&again.stdout);
    assert_eq!(again["buckets"][0]["repeated_run"], true);
    assert!(statuses(&again).is_empty());
    assert!(stack.drain_pages().await.unwrap().is_empty());
    let probes = stack.partition(&format!("PROBE#{source}")).await.unwrap();
    assert_eq!(probes.len(), 1);
    assert_eq!(probes[0]["status"], "ARRIVED");

    // A Scheduler input: a new run.
    let run = invoke(watch.port, "canary", "canary/scheduler-input.json").unwrap();
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    assert_eq!(statuses(&report(&run.stdout)), ["ARRIVED"]);

    // Metrics as Embedded Metric Format lines in the function's log.
    let log = std::fs::read_to_string(
        std::env::temp_dir().join(format!("replmon-watch-{}.log", watch.port)),
    )
    .unwrap();
    let emf: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
        .filter(|doc| doc.get("_aws").is_some())
        .collect();
    assert_eq!(emf.len(), 2, "two measured probes:\n{log}");
    for doc in &emf {
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "ReplicationMonitor/Canary"
        );
        assert_eq!(doc["SourceBucket"], source.as_str());
        assert_eq!(doc["ProbeSuccess"], 1);
        assert!(doc["ProbeLatency"].as_f64().unwrap() > 1.0);
    }

    // S3 fails the probe: the failure event goes to replication-events, the canary reads the
    // reason from the ledger and pages at once.
    sim.fail_matching(&source, "replmon-canary/", "DstKmsKeyNotFound");
    let run = invoke(
        watch.port,
        "canary",
        "canary/scheduler-input-no-run-id.json",
    )
    .unwrap();
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    assert_eq!(statuses(&report(&run.stdout)), ["FAILED"]);
    let pages = stack.drain_pages().await.unwrap();
    let canary_page = pages
        .iter()
        .find(|p| p.attribute("kind") == "canary-failed")
        .unwrap_or_else(|| panic!("{pages:#?}"));
    assert_eq!(canary_page.attribute("urgency"), "page");
    assert!(canary_page.message.contains("DstKmsKeyNotFound"));
    assert!(pages
        .iter()
        .any(|p| p.attribute("kind") == "replication-failure"));

    // Not a trigger at all: a clear error.
    let bad = invoke(watch.port, "canary", "canary/bad/not-an-object.json").unwrap();
    assert!(!bad.success);
    assert!(
        format!("{}{}", bad.stdout, bad.stderr).contains("not a JSON object"),
        "{}{}",
        bad.stdout,
        bad.stderr
    );

    // Nothing left behind in either bucket.
    let left = stack
        .s3
        .list_object_versions()
        .bucket(&source)
        .send()
        .await
        .unwrap();
    assert!(left.versions().is_empty() && left.delete_markers().is_empty());
    assert!(sim.copy_errors().is_empty(), "{:?}", sim.copy_errors());
    sim.stop().await;
}
