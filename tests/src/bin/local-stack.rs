//! `local-stack`: provision the local AWS stack and show what the monitor wrote, for the demo and
//! for people poking at the functions by hand.
//!
//!     local-stack provision --endpoint http://127.0.0.1:PORT --env-file .local/functions.env
//!     local-stack pages     --endpoint http://127.0.0.1:PORT
//!     local-stack ledger    --endpoint http://127.0.0.1:PORT
//!     local-stack latency   --endpoint http://127.0.0.1:PORT   (demo datapoints for the latency alarm)
//!     local-stack replicate --endpoint http://127.0.0.1:PORT [--delay-ms 1500]
//!                           [--fail-key-containing TEXT --reason CODE] [--faults-file PATH]
//!                           [--lambda-port PORT [--events-queue NAME]] [--s3control-port PORT]
//!         (the replication simulator, until stopped: moto does not replicate. Failure events go
//!         to replication-events directly, or through an SQS queue and a local event source
//!         mapping. The faults file is re-read while it runs: lines `<bucket> <reason> [key text]`.
//!         With --s3control-port, the S3 Batch Operations simulator listens there and sends its
//!         job status events to the redrive function.)
//!     local-stack put-objects --endpoint http://127.0.0.1:PORT --count N --prefix P
//!                           [--wait-backlog N]   (a workload on the source bucket)

use anyhow::{bail, Context, Result};
use replmon_tests::regions::{cloudwatch_in, put_replication_metric};
use replmon_tests::{render_page, sdk_config, Stack, StackNames};
use std::collections::BTreeMap;

/// The bucket of re-drive manifests and reports (tools/iam-proof/local-stack.mjs names it too).
const REDRIVE_REPORTS: &str = "replmon-redrive-reports";

fn usage() -> &'static str {
    "usage: local-stack (provision [--env-file PATH] | pages | ledger | latency | replicate [--delay-ms MS] [--fail-key-containing TEXT --reason CODE] [--faults-file PATH] [--lambda-port PORT [--events-queue NAME]] [--s3control-port PORT] | put-objects --count N --prefix P [--wait-backlog N]) --endpoint URL"
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().map(String::as_str).unwrap_or("");
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let Some(endpoint) = option("--endpoint") else {
        bail!("{}", usage());
    };
    let sdk = sdk_config(&endpoint).await;
    match command {
        "provision" => {
            let stack = Stack::provision(&sdk, StackNames::default()).await?;
            // Re-drives: the bucket their manifests and reports go to (the template's
            // RedriveReports), and the role their jobs run as (its BatchReplicationRole).
            stack
                .s3
                .create_bucket()
                .bucket(REDRIVE_REPORTS)
                .send()
                .await?;
            let mut env: Vec<String> = stack
                .function_env(&endpoint)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            env.push(format!("REPLMON_REDRIVE_REPORT_BUCKET={REDRIVE_REPORTS}"));
            env.push(
                "REPLMON_REDRIVE_ROLE_ARN=arn:aws:iam::123456789012:role/replmon-BatchReplicationRole"
                    .into(),
            );
            if let Some(path) = option("--env-file") {
                if let Some(dir) = std::path::Path::new(&path).parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&path, env.join("\n") + "\n")
                    .with_context(|| format!("writing {path}"))?;
            }
            println!("provisioned on {endpoint}:");
            println!("  table   {}", stack.names.table);
            println!("  topic   {} (pages)", stack.topic_arn);
            println!(
                "  queue   {} (subscribed to the topic: pages land here)",
                stack.names.inbox_queue
            );
            println!(
                "  buckets {} -> {} (versioned, rule {})",
                stack.names.source_bucket, stack.names.replica_bucket, stack.names.rule_id
            );
        }
        "pages" => {
            let stack = Stack::attach(&sdk, StackNames::default()).await?;
            let pages = stack.drain_pages().await?;
            if pages.is_empty() {
                println!("(no pages)");
            }
            for (i, page) in pages.iter().enumerate() {
                println!(
                    "==================== message {} of {} ====================",
                    i + 1,
                    pages.len()
                );
                println!("{}\n", render_page(page));
            }
        }
        "latency" => {
            // Datapoints for the demo's latency alarm, rising over the last 30 minutes up to now,
            // in the replica's region: S3 publishes ReplicationLatency where the destination is.
            let names = StackNames::default();
            let now = chrono::Utc::now().timestamp();
            let points: Vec<(i64, f64)> = (0..30)
                .map(|i| (now - 60 * (29 - i), (20 + i * i * 2) as f64))
                .collect();
            put_replication_metric(
                &cloudwatch_in(&sdk, &names.replica_region),
                (&names.source_bucket, &names.replica_bucket, &names.rule_id),
                "ReplicationLatency",
                aws_sdk_cloudwatch::types::StandardUnit::Seconds,
                &points,
            )
            .await?;
            println!(
                "put 30 ReplicationLatency datapoints for {} -> {} in {} (the replica's region)",
                names.source_bucket, names.replica_bucket, names.replica_region
            );
        }
        "ledger" => {
            let stack = Stack::attach(&sdk, StackNames::default()).await?;
            let items = stack.ledger_items().await?;
            print_ledger(&items);
        }
        "replicate" => {
            use replmon_tests::replication_sim::{
                Delay, LambdaInvokeSink, ReplicationSimulator, SimulatorSettings,
            };
            let delay_ms: u64 = option("--delay-ms")
                .map(|v| v.parse())
                .transpose()
                .context("--delay-ms expects milliseconds")?
                .unwrap_or(1500);
            let names = StackNames::default();
            let mut settings = SimulatorSettings {
                delay: Delay::Fixed(std::time::Duration::from_millis(delay_ms)),
                // Latency and pending in the replica's region, failures in the source's.
                metrics: Some(sdk.clone()),
                ..Default::default()
            };
            let mut mapping = None;
            if let Some(port) = option("--lambda-port") {
                let port: u16 = port.parse().context("--lambda-port expects a port")?;
                let function = "replication-events".to_owned();
                settings.failure_sink = Some(match option("--events-queue") {
                    // S3 -> SQS -> Lambda, as recommended for production.
                    Some(queue) => {
                        use replmon_tests::event_source::{
                            create_event_queue, SqsEventSourceMapping,
                        };
                        use replmon_tests::replication_sim::SqsSink;
                        let sqs = aws_sdk_sqs::Client::new(&sdk);
                        let (url, arn) = create_event_queue(&sqs, &queue).await?;
                        mapping = Some(SqsEventSourceMapping::start(
                            sqs.clone(),
                            url.clone(),
                            arn,
                            port,
                            function,
                        ));
                        std::sync::Arc::new(SqsSink {
                            client: sqs,
                            queue_url: url,
                        })
                    }
                    None => std::sync::Arc::new(LambdaInvokeSink { port, function }),
                });
            }
            let lambda_port: Option<u16> = option("--lambda-port").and_then(|p| p.parse().ok());
            let sim = std::sync::Arc::new(
                ReplicationSimulator::start(
                    replmon_tests::s3_client(&sdk),
                    vec![names.source_bucket.clone()],
                    settings,
                )
                .await,
            );
            // S3 Batch Operations beside it (moto has none): re-drive jobs replicate what the
            // simulator failed; their status events go to the redrive function.
            let control = match option("--s3control-port") {
                Some(port) => {
                    use replmon_tests::s3control_sim::{S3ControlSettings, S3ControlSimulator};
                    let port: u16 = port.parse().context("--s3control-port expects a port")?;
                    let control = S3ControlSimulator::start(
                        replmon_tests::s3_client(&sdk),
                        sim.clone(),
                        S3ControlSettings {
                            port,
                            event_sink: lambda_port.map(|port| {
                                std::sync::Arc::new(LambdaInvokeSink {
                                    port,
                                    function: "redrive".into(),
                                })
                                    as std::sync::Arc<
                                        dyn replmon_tests::s3control_sim::JobEventSink,
                                    >
                            }),
                            ..S3ControlSettings::default()
                        },
                    )
                    .await?;
                    println!("S3 Batch Operations simulator on {}", control.endpoint());
                    Some(control)
                }
                None => None,
            };
            let fixed_fault = option("--fail-key-containing").map(|text| {
                let reason =
                    option("--reason").unwrap_or_else(|| "DstPutObjectNotPermitted".into());
                (names.source_bucket.clone(), reason, text)
            });
            let apply = |faults: &[(String, String, String)]| {
                sim.clear_failures(&names.source_bucket);
                for (bucket, reason, text) in fixed_fault.iter().chain(faults) {
                    sim.fail_matching(bucket, text, reason);
                }
            };
            apply(&[]);
            println!(
                "replicating {} -> {} after {delay_ms} ms (stop with SIGTERM)",
                names.source_bucket, names.replica_bucket
            );
            let faults_file = option("--faults-file");
            let mut applied: Option<String> = None;
            let stop = tokio::signal::ctrl_c();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                }
                let Some(path) = &faults_file else { continue };
                let text = std::fs::read_to_string(path).unwrap_or_default();
                if applied.as_deref() == Some(text.as_str()) {
                    continue;
                }
                let faults: Vec<(String, String, String)> = text
                    .lines()
                    .filter_map(|line| {
                        let mut words = line.split_whitespace();
                        let bucket = words.next()?.to_owned();
                        let reason = words.next()?.to_owned();
                        Some((bucket, reason, words.next().unwrap_or("").to_owned()))
                    })
                    .collect();
                apply(&faults);
                println!("faults now: {faults:?}");
                applied = Some(text);
            }
            if let Some(control) = control {
                for job in control.jobs() {
                    println!("batch job {}: {:?}", job.id, job.status);
                }
                control.stop().await;
            }
            sim.stop().await;
            if let Some(mapping) = mapping {
                use std::sync::atomic::Ordering;
                println!(
                    "event source mapping: {} invocations, {} messages delivered, {} retried",
                    mapping.counters.invocations.load(Ordering::SeqCst),
                    mapping.counters.delivered.load(Ordering::SeqCst),
                    mapping.counters.retried.load(Ordering::SeqCst)
                );
                mapping.stop().await;
            }
        }
        "put-objects" => {
            let names = StackNames::default();
            let count: usize = option("--count")
                .context("--count is required")?
                .parse()
                .context("--count expects a number")?;
            let prefix = option("--prefix").unwrap_or_else(|| "workload/".into());
            let s3 = replmon_tests::s3_client(&sdk);
            for i in 0..count {
                s3.put_object()
                    .bucket(&names.source_bucket)
                    .key(format!("{prefix}{i:04}.json"))
                    .body(aws_sdk_s3::primitives::ByteStream::from(
                        format!("{{\"invoice\": {i}, \"pad\": \"{}\"}}", "x".repeat(2000))
                            .into_bytes(),
                    ))
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(e))
                    })?;
            }
            println!(
                "put {count} objects under s3://{}/{prefix}",
                names.source_bucket
            );
            if let Some(wanted) = option("--wait-backlog") {
                use replmon_shared::alarm::monitor::BacklogCounter;
                let wanted: u64 = wanted.parse().context("--wait-backlog expects a number")?;
                let ledger = replmon_shared::aws::DynamoDbLedger::new(&sdk, &names.table);
                let started = std::time::Instant::now();
                loop {
                    let backlog = ledger
                        .count_backlog(&names.source_bucket, None, None)
                        .await?;
                    if backlog >= wanted {
                        println!(
                            "the ledger lists {backlog} objects missing from the replica after {:.1} s",
                            started.elapsed().as_secs_f64()
                        );
                        break;
                    }
                    if started.elapsed() > std::time::Duration::from_secs(180) {
                        bail!("after 3 minutes the ledger lists {backlog} missing objects, not {wanted}");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                }
            }
        }
        _ => bail!("{}", usage()),
    }
    Ok(())
}

fn print_ledger(items: &[BTreeMap<String, String>]) {
    let field = |item: &BTreeMap<String, String>, name: &str| {
        item.get(name).cloned().unwrap_or_else(|| "-".into())
    };
    let of = |entity: &'static str| {
        items
            .iter()
            .filter(move |i| i.get("entity").map(String::as_str) == Some(entity))
    };
    println!("INCIDENTS");
    println!(
        "  {:<22} {:<22} {:<22} {:<28} {:<9} {:>5}  FIRST SEEN .. LAST SEEN",
        "SOURCE", "DESTINATION", "RULE", "CAUSE", "SEVERITY", "PAGES"
    );
    for item in of("incident") {
        println!(
            "  {:<22} {:<22} {:<22} {:<28} {:<9} {:>5}  {} .. {}",
            field(item, "source_bucket"),
            field(item, "destination_bucket"),
            field(item, "rule_id"),
            field(item, "cause"),
            field(item, "severity"),
            field(item, "pages_sent"),
            field(item, "first_seen"),
            field(item, "last_seen")
        );
    }
    println!("\nFAILED AND LATE OBJECTS");
    println!(
        "  {:<16} {:<22} {:<40} {:<34} {:<26}",
        "STATUS", "DESTINATION", "KEY", "VERSION", "REASON"
    );
    for item in of("object") {
        println!(
            "  {:<16} {:<22} {:<40} {:<34} {:<26}",
            field(item, "status"),
            field(item, "destination_bucket"),
            field(item, "key"),
            field(item, "version_id"),
            field(item, "failure_reason")
        );
    }
    println!("\nCANARY PROBES");
    println!(
        "  {:<13} {:<22} {:<22} {:>10} {:>13}  {:<22} PROBE KEY",
        "STATUS", "DESTINATION", "RULE", "LATENCY", "UNCERTAINTY", "PUT AT"
    );
    for item in of("probe") {
        let ms = |name: &str| {
            item.get(name)
                .map(|v| format!("{v} ms"))
                .unwrap_or_else(|| "-".into())
        };
        let uncertainty = match (item.get("latency_min_ms"), item.get("latency_max_ms")) {
            (Some(lo), Some(hi)) => match (lo.parse::<i64>(), hi.parse::<i64>()) {
                (Ok(lo), Ok(hi)) => format!("{} ms", hi - lo),
                _ => "-".into(),
            },
            _ => "-".into(),
        };
        println!(
            "  {:<13} {:<22} {:<22} {:>10} {:>13}  {:<22} {}",
            field(item, "status"),
            field(item, "destination_bucket"),
            field(item, "rule_id"),
            ms("latency_ms"),
            uncertainty,
            field(item, "put_at").chars().take(22).collect::<String>(),
            field(item, "key")
        );
    }
    println!("\nALARMS");
    println!(
        "  {:<45} {:<18} {:<26} INCIDENT OPEN SINCE",
        "ALARM", "STATE", "STATE SINCE"
    );
    for item in of("alarm") {
        println!(
            "  {:<45} {:<18} {:<26} {}",
            field(item, "alarm_name"),
            field(item, "state"),
            field(item, "state_time"),
            field(item, "incident_opened_at")
        );
    }
    let members = of("member").count();
    println!(
        "\n{} items in all ({members} event memberships)",
        items.len()
    );
}
