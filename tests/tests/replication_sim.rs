//! The replication simulator against a real moto server: fixed delay (not before, then the same
//! object), pause and resume, injected failures delivered to SQS, baseline objects and delete
//! markers left alone, concurrent copies, prefix overrides, the Lambda invoke sink's HTTP, and
//! S3's replication metrics published in the regions where S3 publishes them.

use anyhow::{bail, Context, Result};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use replmon_tests::regions::{cloudwatch_in, replication_dimensions};
use replmon_tests::replication_sim::{
    Delay, FailureSink, LambdaInvokeSink, ReplicationSimulator, SimulatorSettings, SqsSink,
};
use replmon_tests::{sdk_config, MotoServer, Stack, StackNames};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SOURCE: &str = "replmon-demo-source";
const REPLICA: &str = "replmon-demo-replica";

async fn local_stack() -> Result<(MotoServer, aws_config::SdkConfig, Stack)> {
    let moto = MotoServer::start()?;
    let sdk = sdk_config(&moto.endpoint()).await;
    let stack = Stack::provision(&sdk, StackNames::default()).await?;
    Ok((moto, sdk, stack))
}

async fn put(s3: &aws_sdk_s3::Client, key: &str, body: &str) -> Result<String> {
    let out = s3
        .put_object()
        .bucket(SOURCE)
        .key(key)
        .body(ByteStream::from(body.as_bytes().to_vec()))
        .send()
        .await?;
    out.version_id.context("source put without version id")
}

/// HEAD status on the replica: true found, false 404.
async fn on_replica(s3: &aws_sdk_s3::Client, key: &str) -> Result<bool> {
    match s3.head_object().bucket(REPLICA).key(key).send().await {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

async fn wait_until_on_replica(s3: &aws_sdk_s3::Client, key: &str, limit: Duration) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if on_replica(s3, key).await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("{key} not on the replica after {limit:?}")
}

fn settings(delay: Delay) -> SimulatorSettings {
    SimulatorSettings {
        delay,
        ..SimulatorSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_delay_copies_the_same_object_after_the_delay_and_not_before() -> Result<()> {
    let (_moto, _sdk, stack) = local_stack().await?;
    let s3 = stack.s3.clone();
    let delay = Duration::from_millis(1500);
    let sim = ReplicationSimulator::start(
        s3.clone(),
        vec![SOURCE.into()],
        settings(Delay::Fixed(delay)),
    )
    .await;

    let key = "reports/q3 summary(2).csv";
    let before_put = Instant::now();
    let version = s3
        .put_object()
        .bucket(SOURCE)
        .key(key)
        .body(ByteStream::from_static(b"region,total\neu,42\n"))
        .content_type("text/csv")
        .metadata("owner", "finance")
        .tagging("class=confidential&team=fin%20ops")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await?
        .version_id
        .context("no version id")?;
    let kms_key = "kms.bin";
    s3.put_object()
        .bucket(SOURCE)
        .key(kms_key)
        .body(ByteStream::from_static(b"\x00\x01binary"))
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id("arn:aws:kms:us-east-1:123456789012:key/replmon-test")
        .send()
        .await?;

    assert!(!on_replica(&s3, key).await?, "copied at once");
    tokio::time::sleep_until((before_put + delay - Duration::from_millis(300)).into()).await;
    assert!(!on_replica(&s3, key).await?, "copied before the delay");

    wait_until_on_replica(&s3, key, Duration::from_secs(10)).await?;
    assert!(before_put.elapsed() >= delay);
    wait_until_on_replica(&s3, kms_key, Duration::from_secs(5)).await?;

    let copy = s3.get_object().bucket(REPLICA).key(key).send().await?;
    assert_eq!(copy.content_type.as_deref(), Some("text/csv"));
    assert_eq!(
        copy.metadata
            .as_ref()
            .and_then(|m| m.get("owner"))
            .map(String::as_str),
        Some("finance")
    );
    assert_eq!(
        copy.server_side_encryption,
        Some(ServerSideEncryption::Aes256)
    );
    let body = copy.body.collect().await?.into_bytes();
    assert_eq!(&body[..], b"region,total\neu,42\n");
    let mut tags: Vec<(String, String)> = s3
        .get_object_tagging()
        .bucket(REPLICA)
        .key(key)
        .send()
        .await?
        .tag_set
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect();
    tags.sort();
    assert_eq!(
        tags,
        [
            ("class".to_owned(), "confidential".to_owned()),
            ("team".to_owned(), "fin ops".to_owned())
        ]
    );
    let kms_copy = s3.get_object().bucket(REPLICA).key(kms_key).send().await?;
    assert_eq!(
        kms_copy.server_side_encryption,
        Some(ServerSideEncryption::AwsKms)
    );
    assert_eq!(
        kms_copy.ssekms_key_id.as_deref(),
        Some("arn:aws:kms:us-east-1:123456789012:key/replmon-test")
    );
    assert_eq!(
        &kms_copy.body.collect().await?.into_bytes()[..],
        b"\x00\x01binary"
    );

    sim.stop().await;
    let replicated = sim.replicated();
    assert_eq!(replicated.len(), 2, "{replicated:?}");
    let record = replicated
        .iter()
        .find(|r| r.key == key)
        .context("no record of the copy")?;
    assert_eq!(record.source_bucket, SOURCE);
    assert_eq!(record.destination_bucket, REPLICA);
    assert_eq!(record.version_id, version);
    assert_eq!(record.rule_id, "replicate-everything");
    assert!(record.replica_version_id.is_some());
    assert!(record.visible_at - record.detected_at >= chrono::Duration::from_std(delay)?);
    assert!(sim.copy_errors().is_empty(), "{:?}", sim.copy_errors());
    assert!(sim.failures().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_bucket_holds_its_copies_until_resumed() -> Result<()> {
    let (_moto, _sdk, stack) = local_stack().await?;
    let s3 = stack.s3.clone();
    let delay = Duration::from_millis(300);
    let sim = Arc::new(
        ReplicationSimulator::start(
            s3.clone(),
            vec![SOURCE.into()],
            settings(Delay::Fixed(delay)),
        )
        .await,
    );
    sim.pause(SOURCE);
    let version = put(&s3, "held.txt", "held").await?;

    let start = Instant::now();
    while sim.held().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "never detected while paused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held = sim.held();
    assert_eq!(held.len(), 1);
    assert_eq!(
        (held[0].key.as_str(), held[0].version_id.as_str()),
        ("held.txt", version.as_str())
    );
    assert_eq!(held[0].destination_bucket, REPLICA);
    tokio::time::sleep(delay * 2).await;
    assert!(!on_replica(&s3, "held.txt").await?, "copied while paused");
    assert!(sim.replicated().is_empty());

    // Resume from another task, as a test driver or the demo would.
    let resumed_at = chrono::Utc::now();
    let controller = sim.clone();
    tokio::spawn(async move { controller.resume(SOURCE) }).await?;
    wait_until_on_replica(&s3, "held.txt", Duration::from_secs(5)).await?;
    assert!(sim.held().is_empty());
    let replicated = sim.replicated();
    assert_eq!(replicated.len(), 1);
    assert!(replicated[0].visible_at - resumed_at >= chrono::Duration::from_std(delay)?);

    // Not paused any more: the next version replicates without a resume.
    put(&s3, "after.txt", "after").await?;
    wait_until_on_replica(&s3, "after.txt", Duration::from_secs(5)).await?;
    sim.stop().await;
    assert!(sim.copy_errors().is_empty(), "{:?}", sim.copy_errors());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_failure_goes_to_sqs_and_the_object_never_replicates() -> Result<()> {
    let (_moto, sdk, stack) = local_stack().await?;
    let s3 = stack.s3.clone();
    let queue_url = stack
        .sqs
        .create_queue()
        .queue_name("replmon-replication-events")
        .send()
        .await?
        .queue_url
        .context("no queue url")?;
    let sink = SqsSink {
        client: aws_sdk_sqs::Client::new(&sdk),
        queue_url: queue_url.clone(),
    };
    let sim = ReplicationSimulator::start(
        s3.clone(),
        vec![SOURCE.into()],
        SimulatorSettings {
            delay: Delay::Fixed(Duration::from_millis(100)),
            failure_sink: Some(Arc::new(sink)),
            ..SimulatorSettings::default()
        },
    )
    .await;
    sim.fail_matching(SOURCE, "secret", "DstPutObjectNotPermitted");
    let key = "reports/secret report(1).csv";
    let version = put(&s3, key, "nope").await?;
    put(&s3, "reports/ok.csv", "fine").await?;
    wait_until_on_replica(&s3, "reports/ok.csv", Duration::from_secs(5)).await?;

    let mut body = None;
    let start = Instant::now();
    while body.is_none() && start.elapsed() < Duration::from_secs(5) {
        let out = stack
            .sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await?;
        let messages = out.messages.unwrap_or_default();
        assert!(messages.len() <= 1, "{messages:?}");
        body = messages.into_iter().next().and_then(|m| m.body);
    }
    let body = body.context("no failure event in the queue")?;
    let event: serde_json::Value = serde_json::from_str(&body)?;
    let record = &event["Records"][0];
    assert_eq!(
        record["eventName"],
        "Replication:OperationFailedReplication"
    );
    assert_eq!(record["eventVersion"], "2.2");
    assert_eq!(record["eventSource"], "aws:s3");
    assert_eq!(record["awsRegion"], "us-east-1");
    assert_eq!(record["s3"]["bucket"]["name"], SOURCE);
    assert_eq!(
        record["s3"]["bucket"]["arn"],
        "arn:aws:s3:::replmon-demo-source"
    );
    assert_eq!(
        record["s3"]["object"]["key"],
        "reports/secret+report%281%29.csv"
    );
    assert_eq!(record["s3"]["object"]["versionId"], version.as_str());
    assert_eq!(record["s3"]["object"]["size"], 4);
    let data = &record["replicationEventData"];
    assert_eq!(data["failureReason"], "DstPutObjectNotPermitted");
    assert_eq!(
        data["destinationBucket"],
        "arn:aws:s3:::replmon-demo-replica"
    );
    assert_eq!(data["replicationRuleId"], "replicate-everything");
    assert_eq!(data["s3Operation"], "OBJECT_PUT");

    // What the replication-events function makes of it.
    let parsed = replmon_shared::event::S3Notification::from_json(&body)?;
    let replmon_shared::event::S3Notification::Records(records) = parsed else {
        bail!("not records: {parsed:?}");
    };
    let [replmon_shared::event::NotificationRecord::Replication(parsed)] = records.as_slice()
    else {
        bail!("not one replication record: {records:?}");
    };
    assert_eq!(parsed.key, key);
    assert_eq!(parsed.destination_bucket, REPLICA);

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!on_replica(&s3, key).await?, "a failed object was copied");
    sim.stop().await;
    let failures = sim.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].key, key);
    assert_eq!(failures[0].reason, "DstPutObjectNotPermitted");
    assert_eq!(failures[0].delivery_error, None);
    let replicated: Vec<String> = sim.replicated().into_iter().map(|r| r.key).collect();
    assert_eq!(replicated, ["reports/ok.csv"]);
    assert!(sim.copy_errors().is_empty(), "{:?}", sim.copy_errors());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_present_before_start_and_delete_markers_are_not_copied() -> Result<()> {
    let (_moto, _sdk, stack) = local_stack().await?;
    let s3 = stack.s3.clone();
    put(&s3, "old.txt", "old").await?;
    put(&s3, "old.txt", "old, second version").await?;
    // moto keeps the stored filter to itself (it answers Prefix ""): the prefix comes from here.
    let prefixes = HashMap::from([(
        (SOURCE.to_owned(), "replicate-everything".to_owned()),
        "data/".to_owned(),
    )]);
    let sim = ReplicationSimulator::start(
        s3.clone(),
        vec![SOURCE.into()],
        SimulatorSettings {
            rule_prefixes: prefixes,
            ..SimulatorSettings::default()
        },
    )
    .await;
    s3.delete_object()
        .bucket(SOURCE)
        .key("old.txt")
        .send()
        .await?;
    put(&s3, "logs/outside-the-prefix.txt", "not replicated").await?;
    put(&s3, "data/new.txt", "new").await?;
    wait_until_on_replica(&s3, "data/new.txt", Duration::from_secs(5)).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    sim.stop().await;

    assert!(!on_replica(&s3, "old.txt").await?);
    assert!(!on_replica(&s3, "logs/outside-the-prefix.txt").await?);
    let replica_versions = s3.list_object_versions().bucket(REPLICA).send().await?;
    assert_eq!(replica_versions.versions.unwrap_or_default().len(), 1);
    assert!(replica_versions
        .delete_markers
        .unwrap_or_default()
        .is_empty());
    let replicated: Vec<String> = sim.replicated().into_iter().map(|r| r.key).collect();
    assert_eq!(replicated, ["data/new.txt"]);
    assert!(sim.copy_errors().is_empty(), "{:?}", sim.copy_errors());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_wait_concurrently_and_stop_waits_for_them() -> Result<()> {
    let (_moto, _sdk, stack) = local_stack().await?;
    let s3 = stack.s3.clone();
    let sim = ReplicationSimulator::start(
        s3.clone(),
        vec![SOURCE.into()],
        SimulatorSettings {
            delay: Delay::Fixed(Duration::from_secs(10)),
            seed: 42,
            ..SimulatorSettings::default()
        },
    )
    .await;
    // Changed while running: versions detected from now on use it.
    let (min, max) = (Duration::from_millis(800), Duration::from_millis(1200));
    sim.set_delay(Delay::Uniform { min, max });
    let start = Instant::now();
    for i in 0..8 {
        put(&s3, &format!("batch/{i}.txt"), &format!("object {i}")).await?;
    }
    // Give the scanner time to see the last put, then let stop() await the outstanding copies.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sim.stop().await;
    let elapsed = start.elapsed();
    let replicated = sim.replicated();
    assert_eq!(replicated.len(), 8, "{replicated:?}");
    // Serialised copies would take 8 x 0.8 s at least.
    let first_detected = replicated.iter().map(|r| r.detected_at).min();
    let last_visible = replicated.iter().map(|r| r.visible_at).max();
    if let (Some(first), Some(last)) = (first_detected, last_visible) {
        assert!(
            last - first < chrono::Duration::seconds(4),
            "{replicated:?}"
        );
    }
    assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");
    for record in &replicated {
        let waited = (record.visible_at - record.detected_at).to_std()?;
        assert!(waited >= min, "{record:?}");
        assert!(waited < max + Duration::from_secs(2), "{record:?}");
    }
    for i in 0..8 {
        assert!(on_replica(&s3, &format!("batch/{i}.txt")).await?);
    }
    assert!(sim.copy_errors().is_empty(), "{:?}", sim.copy_errors());
    Ok(())
}

/// A one-request HTTP server: answers `status`, hands back the request it read.
async fn one_request_server(
    status: &'static str,
) -> Result<(u16, tokio::task::JoinHandle<Result<String>>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        // Read the head, then Content-Length bytes of body.
        loop {
            let n = socket.read(&mut buffer).await?;
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&request).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_owned())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .context("no Content-Length")?;
                if body.len() >= length {
                    break;
                }
            }
        }
        socket
            .write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}")
                    .as_bytes(),
            )
            .await?;
        socket.shutdown().await?;
        Ok(String::from_utf8_lossy(&request).into_owned())
    });
    Ok((port, server))
}

#[tokio::test]
async fn the_lambda_sink_posts_to_the_invoke_endpoint_and_fails_on_errors() -> Result<()> {
    let event =
        serde_json::json!({"Records": [{"eventName": "Replication:OperationFailedReplication"}]});

    let (port, server) = one_request_server("200 OK").await?;
    let sink = LambdaInvokeSink {
        port,
        function: "replication-events".into(),
    };
    sink.deliver(&event).await?;
    let request = server.await??;
    let (head, body) = request.split_once("\r\n\r\n").context("no head")?;
    assert!(
        head.starts_with("POST /2015-03-31/functions/replication-events/invocations HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains(&format!("Content-Length: {}", body.len())));
    assert!(head.contains("Connection: close"));
    assert_eq!(serde_json::from_str::<serde_json::Value>(body)?, event);

    let (port, server) = one_request_server("500 Internal Server Error").await?;
    let sink = LambdaInvokeSink {
        port,
        function: "replication-events".into(),
    };
    let error = sink.deliver(&event).await.err().context("500 accepted")?;
    assert!(error.to_string().contains("500"), "{error:#}");
    server.await??;

    // Nothing listening: an error, not a hang or a panic.
    let closed = replmon_tests::free_port()?;
    assert!(LambdaInvokeSink {
        port: closed,
        function: "replication-events".into()
    }
    .deliver(&event)
    .await
    .is_err());
    Ok(())
}

/// The datapoints of one replication metric of the stack's rule, read in `region`.
async fn datapoints(
    sdk: &aws_config::SdkConfig,
    region: &str,
    metric: &str,
    stat: &str,
) -> Result<Vec<f64>> {
    use aws_sdk_cloudwatch::primitives::DateTime as AwsDateTime;
    use aws_sdk_cloudwatch::types::{Metric, MetricDataQuery, MetricStat};
    let names = StackNames::default();
    let now = chrono::Utc::now().timestamp();
    let query = MetricDataQuery::builder()
        .id("m")
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace("AWS/S3")
                        .metric_name(metric)
                        .set_dimensions(Some(replication_dimensions(
                            &names.source_bucket,
                            &names.replica_bucket,
                            &names.rule_id,
                        )))
                        .build(),
                )
                .period(60)
                .stat(stat)
                .build(),
        )
        .build();
    let out = cloudwatch_in(sdk, region)
        .get_metric_data()
        .metric_data_queries(query)
        .start_time(AwsDateTime::from_secs(now - 600))
        .end_time(AwsDateTime::from_secs(now + 60))
        .send()
        .await?;
    Ok(out
        .metric_data_results
        .unwrap_or_default()
        .into_iter()
        .flat_map(|r| r.values.unwrap_or_default())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_published_where_s3_publishes_them() -> Result<()> {
    // Latency and pending in the destination's region, failures in the source's: a monitor that
    // reads the wrong region finds nothing, here as on AWS.
    let (_moto, sdk, stack) = local_stack().await?;
    let (source_region, replica_region) = (&stack.names.source_region, &stack.names.replica_region);
    assert_ne!(source_region, replica_region);
    let simulator = ReplicationSimulator::start(
        stack.s3.clone(),
        vec![SOURCE.into()],
        SimulatorSettings {
            metrics: Some(sdk.clone()),
            ..settings(Delay::Fixed(Duration::from_millis(300)))
        },
    )
    .await;
    simulator.fail_matching(SOURCE, "broken/", "DstPutObjectNotPermitted");
    put(&stack.s3, "fine/a.csv", "a").await?;
    put(&stack.s3, "fine/b.csv", "bb").await?;
    put(&stack.s3, "broken/c.csv", "ccc").await?;
    let start = Instant::now();
    while simulator.replicated().len() < 2 || simulator.failures().is_empty() {
        if start.elapsed() > Duration::from_secs(10) {
            bail!(
                "the simulator did not finish: {:?}",
                simulator.copy_errors()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    simulator.stop().await;
    assert!(
        simulator.copy_errors().is_empty(),
        "{:?}",
        simulator.copy_errors()
    );

    let copies = datapoints(&sdk, replica_region, "ReplicationLatency", "SampleCount").await?;
    assert_eq!(copies.iter().sum::<f64>(), 2.0, "{copies:?}");
    let latency = datapoints(&sdk, replica_region, "ReplicationLatency", "Maximum").await?;
    assert!(
        latency.iter().all(|s| (0.25..10.0).contains(s)),
        "{latency:?}"
    );
    let pending = datapoints(
        &sdk,
        replica_region,
        "OperationsPendingReplication",
        "Maximum",
    )
    .await?;
    assert!(pending.iter().any(|n| *n >= 1.0), "{pending:?}");
    let failed = datapoints(&sdk, source_region, "OperationsFailedReplication", "Sum").await?;
    assert_eq!(failed.iter().sum::<f64>(), 1.0, "{failed:?}");

    // Nothing where S3 does not publish it.
    for (region, metric, stat) in [
        (source_region, "ReplicationLatency", "Maximum"),
        (source_region, "OperationsPendingReplication", "Maximum"),
        (source_region, "BytesPendingReplication", "Maximum"),
        (replica_region, "OperationsFailedReplication", "Sum"),
    ] {
        let points = datapoints(&sdk, region, metric, stat).await?;
        assert!(points.is_empty(), "{metric} in {region}: {points:?}");
    }
    Ok(())
}
