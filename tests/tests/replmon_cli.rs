//! The `replmon` command line against the local stack, reading a ledger filled by the real
//! functions: `replication-events`, `alarm-events` and `canary` under `cargo lambda watch`, with
//! S3's failure events delivered through SQS and a local event source mapping.

use replmon_shared::alarm::monitor::BacklogCounter;
use replmon_shared::aws::DynamoDbLedger;
use replmon_tests::event_source::{create_event_queue, SqsEventSourceMapping};
use replmon_tests::replication_sim::{Delay, ReplicationSimulator, SimulatorSettings, SqsSink};
use replmon_tests::{
    build_functions, build_replmon, invoke, sdk_config, start_watch, MotoServer, Stack, StackNames,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const STORM: usize = 25;
const OBJECT_BYTES: u64 = 700;

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn replmon(binary: &Path, env: &[(String, String)], args: &[&str]) -> Output {
    let out = Command::new(binary)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("running replmon");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn json(out: &Output) -> Value {
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replmon_reports_what_the_functions_recorded() {
    build_functions();
    let binary = build_replmon();
    let moto = MotoServer::start().unwrap();
    let sdk = sdk_config(&moto.endpoint()).await;
    let stack = Stack::provision(&sdk, StackNames::default()).await.unwrap();
    let source = stack.names.source_bucket.clone();
    let mut env = stack.function_env(&moto.endpoint());
    env.push(("REPLMON_CANARY_BUDGET_SECONDS".into(), "10".into()));

    // Errors and the empty ledger, before anything ran.
    let empty = replmon(&binary, &env, &["status"]);
    assert_eq!(empty.code, 0, "{}", empty.stderr);
    assert!(
        empty.stdout.contains("The ledger is empty"),
        "{}",
        empty.stdout
    );
    let empty = json(&replmon(&binary, &env, &["status", "--json"]));
    assert_eq!(empty["source_buckets"], serde_json::json!([]));
    let nothing = json(&replmon(
        &binary,
        &env,
        &["backlog", "--bucket", &source, "--json"],
    ));
    assert_eq!(nothing["objects"], serde_json::json!([]));
    let missing = replmon(&binary, &env, &["--table", "no-such-table", "status"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("\"no-such-table\" does not exist"),
        "{}",
        missing.stderr
    );
    let no_table: Vec<_> = env
        .iter()
        .filter(|(k, _)| k != "REPLMON_TABLE")
        .cloned()
        .collect();
    let unnamed = replmon(&binary, &no_table, &["status"]);
    assert_eq!(unnamed.code, 1);
    assert!(
        unnamed.stderr.contains("REPLMON_TABLE"),
        "{}",
        unnamed.stderr
    );
    let no_credentials: Vec<_> = env
        .iter()
        .filter(|(k, _)| !k.starts_with("AWS_ACCESS_KEY_ID") && !k.starts_with("AWS_SECRET"))
        .cloned()
        .chain([("HOME".to_owned(), "/nonexistent".to_owned())])
        .collect();
    let anonymous = replmon(&binary, &no_credentials, &["status"]);
    assert_eq!(anonymous.code, 1);
    assert!(
        anonymous.stderr.contains("no AWS credentials"),
        "{}",
        anonymous.stderr
    );
    let bad_cursor = replmon(
        &binary,
        &env,
        &["backlog", "--bucket", &source, "--after", "zz"],
    );
    assert_eq!(bad_cursor.code, 2, "a usage error");
    assert!(
        bad_cursor.stderr.contains("not a cursor"),
        "{}",
        bad_cursor.stderr
    );

    // The real functions fill the ledger.
    let watch = start_watch(&env).unwrap();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let (queue_url, queue_arn) = create_event_queue(&sqs, "replmon-replication-events")
        .await
        .unwrap();
    let mapping = SqsEventSourceMapping::start(
        sqs.clone(),
        queue_url.clone(),
        queue_arn,
        watch.port,
        "replication-events".into(),
    );
    let sim = ReplicationSimulator::start(
        stack.s3.clone(),
        vec![source.clone()],
        SimulatorSettings {
            delay: Delay::Fixed(Duration::from_millis(800)),
            failure_sink: Some(Arc::new(SqsSink {
                client: sqs.clone(),
                queue_url,
            })),
            ..Default::default()
        },
    )
    .await;

    let healthy = invoke(watch.port, "canary", "canary/scheduled-event.json").unwrap();
    assert!(healthy.success, "{}", healthy.stderr);
    assert!(healthy.stdout.contains("ARRIVED"), "{}", healthy.stdout);

    // A permissions failure on the bucket: every new object fails to replicate.
    sim.fail_matching(&source, "", "DstPutObjectNotPermitted");
    let mut keys = BTreeSet::new();
    for i in 0..STORM {
        let key = format!("invoices/{i:03} q{}.json", i % 3);
        stack
            .s3
            .put_object()
            .bucket(&source)
            .key(&key)
            .body(vec![b'x'; OBJECT_BYTES as usize].into())
            .send()
            .await
            .unwrap();
        keys.insert(key);
    }
    let ledger = DynamoDbLedger::new(&sdk, &stack.names.table);
    let started = Instant::now();
    while ledger.count_backlog(&source, None, None).await.unwrap() < STORM as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the storm never reached the ledger"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let alarm = invoke(watch.port, "alarm-events", "alarm/metric-alarm.json").unwrap();
    assert!(alarm.success, "{}", alarm.stderr);
    let failing = invoke(watch.port, "canary", "canary/demo-failing-run.json").unwrap();
    assert!(failing.success, "{}", failing.stderr);
    assert!(failing.stdout.contains("FAILED"), "{}", failing.stdout);

    // status, as JSON: every section from what the functions wrote.
    let report = json(&replmon(&binary, &env, &["status", "--json"]));
    assert_eq!(report["source_buckets"], serde_json::json!([source]));
    let incidents = report["incidents"].as_array().unwrap();
    let storm = incidents
        .iter()
        .find(|i| i["cause"] == "FAILED:DstPutObjectNotPermitted" && i["source"] == "replication")
        .unwrap_or_else(|| panic!("{incidents:#?}"));
    assert_eq!(
        storm["objects_missing"], STORM as u64,
        "the canary's failed probe is not data"
    );
    assert_eq!(
        storm["events"],
        STORM as u64 + 1,
        "the storm and the probe's failure event"
    );
    assert_eq!(storm["pages_sent"], 1);
    assert!(incidents.iter().any(
        |i| i["source"] == "alarm" && i["subject"] == "replmon-demo-source-replication-latency"
    ));
    assert!(incidents
        .iter()
        .any(|i| i["source"] == "canary" && i["cause"] == "FAILED"));
    let backlog = &report["backlog"][0];
    assert_eq!(backlog["destination_bucket"], stack.names.replica_bucket);
    assert_eq!(backlog["objects"], STORM as u64);
    assert_eq!(backlog["failed"], STORM as u64);
    assert_eq!(backlog["bytes"], STORM as u64 * OBJECT_BYTES);
    assert!(backlog["oldest_age_seconds"].as_i64().unwrap() < 600);
    let canary = &report["canary"][0];
    assert_eq!(canary["probes"], 2);
    assert_eq!(canary["arrived"], 1);
    // The probe's latency is the midpoint of its bounds (last miss, first hit), which hold the
    // simulator's 800 ms delay (plus its scan); the midpoint may sit on either side of it.
    let p50 = canary["p50_ms"].as_u64().unwrap();
    assert!(
        (300..10_000).contains(&p50),
        "p50 {p50} ms with an 800 ms replication delay"
    );
    assert_eq!(canary["last_status"], "FAILED");
    assert_eq!(
        report["failures_by_reason"][0]["reason"],
        "DstPutObjectNotPermitted"
    );
    assert_eq!(
        report["failures_by_reason"][0]["objects"], STORM as u64,
        "probes left out"
    );
    let findings: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["id"].as_str())
        .collect();
    assert!(
        findings.iter().any(|f| f.starts_with("metrics-off")),
        "{findings:?}"
    );

    // status, as tables.
    let text = replmon(&binary, &env, &["status"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    for expected in [
        "OPEN INCIDENTS (3)",
        "FAILED:DstPutObjectNotPermitted",
        "UNREPLICATED BACKLOG",
        "CANARY (probes over the last 24h)",
        "FAILURES BY REASON",
        "replication metrics off",
    ] {
        assert!(
            text.stdout.contains(expected),
            "{expected:?} missing from\n{}",
            text.stdout
        );
    }

    // backlog: pages of 10 cover every failed object once; --all and --destination agree.
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = vec!["backlog", "--bucket", &source, "--limit", "10", "--json"];
        if let Some(token) = &after {
            args.extend(["--after", token.as_str()]);
        }
        let page = json(&replmon(&binary, &env, &args));
        pages += 1;
        for object in page["objects"].as_array().unwrap() {
            assert_eq!(object["status"], "FAILED");
            assert_eq!(object["failure_reason"], "DstPutObjectNotPermitted");
            listed.push(object["key"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(token) => after = Some(token.to_owned()),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(listed.iter().cloned().collect::<BTreeSet<_>>(), keys);
    assert_eq!(listed.len(), STORM, "no object twice");
    let all = json(&replmon(
        &binary,
        &env,
        &["backlog", "--bucket", &source, "--all", "--json"],
    ));
    assert_eq!(all["objects"].as_array().unwrap().len(), STORM);
    let other = json(&replmon(
        &binary,
        &env,
        &[
            "backlog",
            "--bucket",
            &source,
            "--destination",
            "elsewhere",
            "--json",
        ],
    ));
    assert_eq!(other["objects"], serde_json::json!([]));
    let table = replmon(
        &binary,
        &env,
        &["backlog", "--bucket", &source, "--limit", "5"],
    );
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(
        table.stdout.contains("invoices/000 q0.json"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("more: replmon backlog"),
        "{}",
        table.stdout
    );

    // A ledger written before the catalog existed: status finds nothing until catalog-rebuild.
    let catalog = stack
        .dynamodb
        .query()
        .table_name(&stack.names.table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S("CATALOG".into()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(catalog.items().len(), 2, "the source bucket and the alarm");
    for item in catalog.items() {
        stack
            .dynamodb
            .delete_item()
            .table_name(&stack.names.table)
            .key("pk", item["pk"].clone())
            .key("sk", item["sk"].clone())
            .send()
            .await
            .unwrap();
    }
    let blind = json(&replmon(&binary, &env, &["status", "--json"]));
    assert_eq!(blind["source_buckets"], serde_json::json!([]));
    let rebuilt = replmon(&binary, &env, &["catalog-rebuild"]);
    assert_eq!(rebuilt.code, 0, "{}", rebuilt.stderr);
    assert!(
        rebuilt
            .stdout
            .contains("1 source buckets (replmon-demo-source), 1 alarms"),
        "{}",
        rebuilt.stdout
    );
    let again = json(&replmon(&binary, &env, &["status", "--json"]));
    assert_eq!(again["incidents"], report["incidents"]);
    for field in ["objects", "failed", "bytes", "oldest_since"] {
        assert_eq!(
            again["backlog"][0][field], report["backlog"][0][field],
            "{field}"
        );
    }

    // One page for the storm, whatever the batching.
    let pages = stack.drain_pages().await.unwrap();
    let storm_pages = pages
        .iter()
        .filter(|p| p.attribute("kind") == "replication-failure")
        .count();
    assert_eq!(
        storm_pages,
        1,
        "{:?}",
        pages.iter().map(|p| &p.subject).collect::<Vec<_>>()
    );

    sim.stop().await;
    mapping.stop().await;
    drop(watch);
}
