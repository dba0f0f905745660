//! `ledger-bench`: AWS requests per event and DynamoDB items read per page of the release
//! `replication-events` and `alarm-events` against the local stack (a benchmark, not a test: it
//! reports figures), beside the Python peer (`../shared/peers/python_peer.py`).
//!
//! Every function runs as Lambda runs it (`replmon_tests::runtime_api`), with the fault proxy
//! between it and moto counting each request by operation and the DynamoDB items each read
//! returned (no fault is injected). For each N of `--objects`, on a fresh stack:
//! 1. requests for one new failure that opens an incident and pages;
//! 2. requests for one more failure of that open incident;
//! 3. requests per event of a storm: N new failed objects (another incident) in SQS batches of
//!    ten messages of one record, then the same N records again as new messages (S3 sent the
//!    notification twice): requests / 2N;
//! 4. DynamoDB items read by the invocation that sends the storm incident's summary page (one
//!    more failure after the summary window, `--window` seconds for this invocation);
//! 5. DynamoDB items read by alarm-events to page an alarm on the storm's source bucket with the
//!    ledger backlog (the backlog Query apart).
//!
//! The Python peer gets a fresh stack of its own for figures 1 to 3 (`--peer-objects`; it has no
//! summary page and no alarm page: it pages every object).
//!
//!     cargo build --release -p replication-events -p alarm-events
//!     cargo run --release -p replmon-tests --bin ledger-bench [-- --objects 1000,10000
//!         --peer-objects 1000 --concurrency 1 --window 2 --bin-dir DIR]

use anyhow::{bail, ensure, Context, Result};
use chrono::{SubsecRound, Utc};
use replmon_shared::event::ReplicationEventKind;
use replmon_shared::fakes::NotificationBuilder;
use replmon_tests::fault_proxy::{CallCounts, FaultProxy};
use replmon_tests::runtime_api::LambdaProcess;
use replmon_tests::{numeric_option, repo_root, sdk_config, MotoServer, Stack, StackNames};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::Command;

const ALARM_FIXTURE: &str = include_str!("../../../events/alarm/metric-alarm.json");
const ALARM_NAME: &str = "replmon-demo-source-replication-latency";
/// The failure of figures 1 and 2 (one incident) and of the storm (another).
const FIRST_REASON: &str = "DstPutObjectNotPermitted";
const STORM_REASON: &str = "DstKmsKeyNotFound";
/// SQS messages per event (Lambda's default batch size for SQS).
const BATCH: usize = 10;

/// Which function handles the replication events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Replmon,
    PythonPeer,
}

impl Subject {
    fn label(self) -> &'static str {
        match self {
            Subject::Replmon => "replication-events",
            Subject::PythonPeer => "Python peer",
        }
    }
}

/// The figures of one run (one subject, one N).
#[derive(Debug, Default)]
struct Figures {
    peer: bool,
    objects: usize,
    first: BTreeMap<String, CallCounts>,
    more: BTreeMap<String, CallCounts>,
    storm_requests: u64,
    storm: BTreeMap<String, CallCounts>,
    /// The storm's first delivery (the opening batch included) and its second, apart.
    storm_first: BTreeMap<String, CallCounts>,
    storm_second: BTreeMap<String, CallCounts>,
    summary: Option<BTreeMap<String, CallCounts>>,
    summary_subject: String,
    alarm: Option<BTreeMap<String, CallCounts>>,
    alarm_backlog_line: String,
}

fn requests(counts: &BTreeMap<String, CallCounts>) -> u64 {
    counts.values().map(|c| u64::from(c.calls)).sum()
}

fn items_read(counts: &BTreeMap<String, CallCounts>) -> u64 {
    counts.values().map(|c| u64::from(c.items_read)).sum()
}

/// `dynamodb:PutItem 1, sns:Publish 1`.
fn per_operation(counts: &BTreeMap<String, CallCounts>) -> String {
    counts
        .iter()
        .filter(|(_, c)| c.calls > 0)
        .map(|(name, c)| format!("{name} {}", c.calls))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `dynamodb:GetItem 1, dynamodb:Query 3` (the operations that read something).
fn reads_per_operation(counts: &BTreeMap<String, CallCounts>) -> String {
    let reads: Vec<String> = counts
        .iter()
        .filter(|(_, c)| c.items_read > 0)
        .map(|(name, c)| format!("{name} {}", c.items_read))
        .collect();
    if reads.is_empty() {
        "none".to_owned()
    } else {
        reads.join(", ")
    }
}

/// Builds the SQS events: every message new (`ApproximateReceiveCount` 1) with an id of its own.
struct Events {
    builder: NotificationBuilder,
    next_message: AtomicUsize,
}

impl Events {
    fn new(stack: &Stack) -> Self {
        let mut builder = NotificationBuilder::new(
            &stack.names.source_bucket,
            &stack.names.replica_bucket,
            &stack.names.rule_id,
        );
        // Milliseconds, as S3 writes `eventTime`.
        builder.event_time = Utc::now().trunc_subsecs(3);
        Events {
            builder,
            next_message: AtomicUsize::new(0),
        }
    }

    /// The record of a failed object.
    fn failure(&self, key: &str, reason: &str) -> Value {
        let version = format!("v-{:016x}", fnv(key));
        self.builder.record(
            ReplicationEventKind::OperationFailedReplication,
            key,
            &version,
            Some(reason),
        )
    }

    /// One SQS event, one message per record (each a new message: first receive).
    fn sqs_event(&self, records: &[Value]) -> String {
        let now = Utc::now().timestamp_millis().to_string();
        let messages: Vec<Value> = records
            .iter()
            .map(|record| {
                let n = self.next_message.fetch_add(1, Ordering::Relaxed);
                json!({
                    "messageId": format!("00000000-0000-4000-8000-{n:012}"),
                    "receiptHandle": format!("handle-{n}"),
                    "body": NotificationBuilder::notification(vec![record.clone()]),
                    "attributes": {
                        "ApproximateReceiveCount": "1",
                        "SentTimestamp": now,
                        "SenderId": "AIDAJQR6QDGQ7PATMSYEY",
                        "ApproximateFirstReceiveTimestamp": now,
                    },
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:replmon-demo-replication-events",
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        json!({ "Records": messages }).to_string()
    }
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, byte| {
        (h ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A successful answer of the subject to an event of `records` records.
fn check_replication_response(subject: Subject, response: &[u8], records: usize) -> Result<()> {
    let value: Value = serde_json::from_slice(response).context("response is not JSON")?;
    if value.get("errorType").is_some() || value.get("errorMessage").is_some() {
        bail!("error response: {value}");
    }
    match subject {
        Subject::Replmon => {
            let failures = value["batchItemFailures"]
                .as_array()
                .with_context(|| format!("no batchItemFailures: {value}"))?;
            ensure!(failures.is_empty(), "messages failed: {value}");
        }
        Subject::PythonPeer => {
            ensure!(
                value["records"].as_u64() == Some(records as u64),
                "the peer handled other than {records} records: {value}"
            );
        }
    }
    Ok(())
}

/// A local stack of its own: moto, the counting proxy in front of it, the provisioned resources.
struct LocalStack {
    // Dropped last: the proxy and clients need it.
    proxy: FaultProxy,
    stack: Stack,
    _moto: MotoServer,
}

impl LocalStack {
    async fn start() -> Result<Self> {
        let moto = MotoServer::start()?;
        let proxy = FaultProxy::start(&moto.endpoint()).await?;
        // Provisioning and reading back go straight to moto: only the functions are counted.
        let sdk = sdk_config(&moto.endpoint()).await;
        let stack = Stack::provision(&sdk, StackNames::default()).await?;
        Ok(LocalStack {
            proxy,
            stack,
            _moto: moto,
        })
    }

    /// What a function needs to run against this stack, through the proxy.
    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.stack.function_env(&self.proxy.endpoint());
        // As on Lambda: temporary credentials in the environment.
        env.push(("AWS_SESSION_TOKEN".into(), "bench-session".into()));
        env.push(("AWS_DEFAULT_REGION".into(), replmon_tests::REGION.into()));
        env
    }
}

struct Bench {
    binaries: PathBuf,
    logs: PathBuf,
    concurrency: usize,
    window: u64,
    started: Instant,
}

impl Bench {
    fn progress(&self, message: &str) {
        eprintln!(
            "[{:>6.1} s] {message}",
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Start one process of the subject (or of alarm-events) against the stack.
    async fn start_process(
        &self,
        local: &LocalStack,
        name: &str,
        instance: &str,
        extra: &[(&str, String)],
    ) -> Result<LambdaProcess> {
        let log = std::fs::File::create(self.logs.join(format!("{name}-{instance}.log")))?;
        let mut command = if name == "python-peer" {
            let mut command = Command::new(repo_root().join(".venv/bin/python"));
            command.arg(repo_root().join("../shared/peers/python_peer.py"));
            command
        } else {
            Command::new(self.binaries.join(name))
        };
        command
            .env_clear()
            .envs(local.env())
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        LambdaProcess::start(command, name, &format!("ledger-bench/{instance}")).await
    }

    async fn replication_processes(
        &self,
        local: &LocalStack,
        subject: Subject,
        count: usize,
        extra: &[(&str, String)],
        tag: &str,
    ) -> Result<Vec<LambdaProcess>> {
        let name = match subject {
            Subject::Replmon => "replication-events",
            Subject::PythonPeer => "python-peer",
        };
        let mut processes = Vec::new();
        for i in 0..count {
            processes.push(
                self.start_process(local, name, &format!("{tag}-{i}"), extra)
                    .await?,
            );
        }
        Ok(processes)
    }

    /// Hand the events to the processes (each takes the next event when it is free); returns
    /// the processes once every event is answered.
    async fn run_events(
        &self,
        subject: Subject,
        processes: Vec<LambdaProcess>,
        events: Arc<Vec<(String, usize)>>,
        label: &str,
    ) -> Result<Vec<LambdaProcess>> {
        let next = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for (worker, mut process) in processes.into_iter().enumerate() {
            let events = events.clone();
            let next = next.clone();
            let done = done.clone();
            let started = self.started;
            let label = label.to_owned();
            workers.push(tokio::spawn(async move {
                let step = (events.len() / 10).max(1);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((event, records)) = events.get(i) else {
                        return Ok::<_, anyhow::Error>(process);
                    };
                    let id = format!(
                        "{}-{worker}-{i}",
                        label.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
                    );
                    let invocation = process
                        .invoke(&id, event.as_bytes())
                        .await
                        .with_context(|| format!("{label}: event {i}"))?;
                    check_replication_response(subject, &invocation.response, *records)
                        .with_context(|| format!("{label}: event {i}"))?;
                    let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if finished.is_multiple_of(step) || finished == events.len() {
                        eprintln!(
                            "[{:>6.1} s]   {label}: {finished}/{} events",
                            started.elapsed().as_secs_f64(),
                            events.len()
                        );
                    }
                }
            }));
        }
        let mut processes = Vec::new();
        for worker in workers {
            processes.push(worker.await??);
        }
        Ok(processes)
    }

    /// One event of one failure, on the first process; the requests it made.
    async fn one_failure(
        &self,
        local: &LocalStack,
        subject: Subject,
        process: &mut LambdaProcess,
        events: &Events,
        key: &str,
        reason: &str,
    ) -> Result<BTreeMap<String, CallCounts>> {
        let event = events.sqs_event(&[events.failure(key, reason)]);
        local.proxy.reset_counts();
        let invocation = process
            .invoke(&format!("one-{}", fnv(key)), event.as_bytes())
            .await?;
        check_replication_response(subject, &invocation.response, 1)
            .with_context(|| format!("failure of {key}"))?;
        Ok(local.proxy.all_counts())
    }

    /// Figures 1 to 3 (and, for replication-events, 4 and 5) on a fresh stack.
    async fn run(&self, subject: Subject, objects: usize) -> Result<Figures> {
        let tag = match subject {
            Subject::Replmon => format!("replmon-{objects}"),
            Subject::PythonPeer => format!("peer-{objects}"),
        };
        self.progress(&format!(
            "{}, N = {objects}: starting a fresh local stack",
            subject.label()
        ));
        let local = LocalStack::start().await?;
        let events = Events::new(&local.stack);
        let mut figures = Figures {
            peer: subject == Subject::PythonPeer,
            objects,
            ..Figures::default()
        };
        let mut processes = self
            .replication_processes(&local, subject, self.concurrency, &[], &tag)
            .await?;

        // 1 and 2: a new incident, then one more failure of it.
        figures.first = self
            .one_failure(
                &local,
                subject,
                &mut processes[0],
                &events,
                &format!("{tag}/first/object-0.csv"),
                FIRST_REASON,
            )
            .await
            .context("figure 1")?;
        figures.more = self
            .one_failure(
                &local,
                subject,
                &mut processes[0],
                &events,
                &format!("{tag}/first/object-1.csv"),
                FIRST_REASON,
            )
            .await
            .context("figure 2")?;
        self.progress(&format!(
            "  figure 1: {} requests ({}); figure 2: {} requests ({})",
            requests(&figures.first),
            per_operation(&figures.first),
            requests(&figures.more),
            per_operation(&figures.more)
        ));
        if subject == Subject::Replmon {
            let pages = local.stack.drain_pages().await?;
            ensure!(
                pages.len() == 1,
                "figures 1 and 2 should page once (the new incident), paged {}",
                pages.len()
            );
        }

        if subject == Subject::PythonPeer {
            // The peer's pages are not read back: without the inbox subscription moto does not
            // pile N pages into a queue (which slows it down more with every page). The Publish
            // requests are counted all the same.
            let subscriptions = local
                .stack
                .sns
                .list_subscriptions_by_topic()
                .topic_arn(&local.stack.topic_arn)
                .send()
                .await?;
            for subscription in subscriptions.subscriptions() {
                if let Some(arn) = subscription.subscription_arn() {
                    local
                        .stack
                        .sns
                        .unsubscribe()
                        .subscription_arn(arn)
                        .send()
                        .await?;
                }
            }
        }

        // 3: the storm, each object delivered twice.
        let records: Vec<Value> = (0..objects)
            .map(|i| events.failure(&format!("{tag}/storm/object-{i:06}.csv"), STORM_REASON))
            .collect();
        let batches: Vec<(String, usize)> = records
            .chunks(BATCH)
            .map(|chunk| (events.sqs_event(chunk), chunk.len()))
            .collect();
        let again: Vec<(String, usize)> = records
            .chunks(BATCH)
            .map(|chunk| (events.sqs_event(chunk), chunk.len()))
            .collect();
        drop(records);
        local.proxy.reset_counts();
        // The first batch alone: it opens the storm's incident (no race between processes).
        let (first, rest) = batches.split_at(1);
        let started = Instant::now();
        processes = self
            .run_events(
                subject,
                processes,
                Arc::new(first.to_vec()),
                &format!("{tag} storm opening"),
            )
            .await?;
        processes = self
            .run_events(
                subject,
                processes,
                Arc::new(rest.to_vec()),
                &format!("{tag} storm, first delivery"),
            )
            .await?;
        figures.storm_first = local.proxy.all_counts();
        processes = self
            .run_events(
                subject,
                processes,
                Arc::new(again),
                &format!("{tag} storm, second delivery"),
            )
            .await?;
        figures.storm = local.proxy.all_counts();
        figures.storm_requests = requests(&figures.storm);
        figures.storm_second = figures
            .storm
            .iter()
            .map(|(name, total)| {
                let first = figures.storm_first.get(name).copied().unwrap_or_default();
                let second = CallCounts {
                    calls: total.calls - first.calls,
                    faulted: total.faulted - first.faulted,
                    forwarded: total.forwarded - first.forwarded,
                    abandoned: total.abandoned - first.abandoned,
                    items_read: total.items_read - first.items_read,
                };
                (name.clone(), second)
            })
            .collect();
        self.progress(&format!(
            "  figure 3: {} requests for {} events in {:.0} s ({})",
            figures.storm_requests,
            2 * objects,
            started.elapsed().as_secs_f64(),
            per_operation(&figures.storm)
        ));
        for process in processes {
            process.stop().await;
        }
        if subject == Subject::PythonPeer {
            return Ok(figures);
        }
        let pages = local.stack.drain_pages().await?;
        self.progress(&format!("  pages during the storm: {}", pages.len()));

        // 4: the storm incident's summary page, after its window.
        tokio::time::sleep(Duration::from_secs(self.window) + Duration::from_millis(1500)).await;
        let window = [("REPLMON_SUMMARY_WINDOW_SECONDS", self.window.to_string())];
        let mut summary = self
            .replication_processes(&local, subject, 1, &window, &format!("{tag}-summary"))
            .await?;
        let counts = self
            .one_failure(
                &local,
                subject,
                &mut summary[0],
                &events,
                &format!("{tag}/storm/object-after-window.csv"),
                STORM_REASON,
            )
            .await
            .context("figure 4")?;
        for process in summary {
            process.stop().await;
        }
        let pages = local.stack.drain_pages().await?;
        ensure!(
            pages.len() == 1,
            "figure 4: expected one summary page, got {} ({:?})",
            pages.len(),
            pages.iter().map(|p| &p.subject).collect::<Vec<_>>()
        );
        figures.summary_subject = pages[0].subject.clone();
        self.progress(&format!(
            "  figure 4: {} items read ({}); {} requests ({}); page: {}",
            items_read(&counts),
            reads_per_operation(&counts),
            requests(&counts),
            per_operation(&counts),
            figures.summary_subject
        ));
        figures.summary = Some(counts);

        // 5: an alarm on the storm's source bucket, paged with the ledger backlog.
        let mut alarm = self
            .start_process(&local, "alarm-events", &format!("{tag}-alarm"), &[])
            .await?;
        let event = ALARM_FIXTURE.replace(ALARM_NAME, &format!("replmon-bench-{tag}-latency"));
        local.proxy.reset_counts();
        let invocation = alarm
            .invoke(&format!("{tag}-alarm"), event.as_bytes())
            .await
            .context("figure 5")?;
        let counts = local.proxy.all_counts();
        alarm.stop().await;
        let value: Value =
            serde_json::from_slice(&invocation.response).context("figure 5: response")?;
        ensure!(
            value.get("errorType").is_none() && value.get("errorMessage").is_none(),
            "figure 5: error response {value}"
        );
        let pages = local.stack.drain_pages().await?;
        let line = pages
            .iter()
            .flat_map(|p| p.message.lines())
            .find(|line| line.trim_start().starts_with("Ledger: "))
            .with_context(|| {
                format!(
                    "figure 5: no page mentions the ledger backlog ({} pages: {:?})",
                    pages.len(),
                    pages.iter().map(|p| &p.message).collect::<Vec<_>>()
                )
            })?;
        figures.alarm_backlog_line = line.trim().to_owned();
        // Two failures of the first incident, the storm and the one after the window.
        let expected = objects + 3;
        let mentioned = figures
            .alarm_backlog_line
            .strip_prefix("Ledger: ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse::<usize>().ok());
        if mentioned != Some(expected) {
            eprintln!(
                "WARNING: the alarm page's backlog is not the {expected} failed objects recorded: {}",
                figures.alarm_backlog_line
            );
        }
        self.progress(&format!(
            "  figure 5: {} items read ({}); {} requests ({}); page line: {}",
            items_read(&counts),
            reads_per_operation(&counts),
            requests(&counts),
            per_operation(&counts),
            figures.alarm_backlog_line
        ));
        figures.alarm = Some(counts);
        Ok(figures)
    }
}

fn list_option(args: &[String], name: &str, default: &[usize]) -> Result<Vec<usize>> {
    match args.iter().position(|a| a == name) {
        Some(i) => {
            let text = args
                .get(i + 1)
                .with_context(|| format!("{name} expects a list"))?;
            if text == "none" {
                return Ok(Vec::new());
            }
            text.split(',')
                .map(|n| {
                    n.trim()
                        .replace('_', "")
                        .parse::<usize>()
                        .with_context(|| format!("{name} expects numbers: {text}"))
                })
                .collect()
        }
        None => Ok(default.to_vec()),
    }
}

fn thousands(n: usize) -> String {
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

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench(std::env::args().skip(1).collect()))
}

async fn bench(args: Vec<String>) -> Result<()> {
    let objects = list_option(&args, "--objects", &[1000, 10_000])?;
    let peer_objects = list_option(&args, "--peer-objects", &[1000])?;
    // One process by default: moto applies concurrent UpdateItems to one item without isolation (two
    // processes lost a few of the incident's ADDs in one run of two, with no failed condition and
    // no retry), and it is not slower: moto is the bottleneck.
    let concurrency = (numeric_option(&args, "--concurrency", 1)? as usize).clamp(1, 8);
    let window = numeric_option(&args, "--window", 2)?.max(1);
    let binaries = match args.iter().position(|a| a == "--bin-dir") {
        Some(i) => PathBuf::from(args.get(i + 1).context("--bin-dir expects a directory")?),
        None => repo_root().join("target/release"),
    };
    for name in ["replication-events", "alarm-events"] {
        if !binaries.join(name).is_file() {
            bail!(
                "{} is missing: cargo build --release -p replication-events -p alarm-events",
                binaries.join(name).display()
            );
        }
    }
    let peer = repo_root().join("../shared/peers/python_peer.py");
    if !peer_objects.is_empty() && !peer.is_file() {
        bail!(
            "{} is missing (or pass --peer-objects none)",
            peer.display()
        );
    }
    if !peer_objects.is_empty() && !repo_root().join(".venv/bin/python").is_file() {
        bail!(".venv/bin/python is missing: run scripts/setup");
    }
    let logs = repo_root().join(".local/ledger-bench");
    std::fs::create_dir_all(&logs)?;
    let bench = Bench {
        binaries,
        logs: logs.clone(),
        concurrency,
        window,
        started: Instant::now(),
    };
    let mut ours = Vec::new();
    for &n in &objects {
        ours.push(bench.run(Subject::Replmon, n).await?);
    }
    let mut peers = Vec::new();
    for &n in &peer_objects {
        peers.push(bench.run(Subject::PythonPeer, n).await?);
    }
    bench.progress("done");
    print_report(&ours, &peers, concurrency, window, &logs);
    Ok(())
}

fn print_report(ours: &[Figures], peers: &[Figures], concurrency: usize, window: u64, logs: &Path) {
    println!(
        "AWS requests through the counting proxy (moto behind it); {concurrency} process(es) for \
         the storm; summary window {window} s for figure 4; function logs in {}\n",
        logs.display()
    );
    let mut header = "| figure |".to_owned();
    let mut rule = "|---|".to_owned();
    for f in ours {
        header.push_str(&format!(" N={} |", thousands(f.objects)));
        rule.push_str("---|");
    }
    for f in peers {
        header.push_str(&format!(" Python peer, N={} |", thousands(f.objects)));
        rule.push_str("---|");
    }
    println!("{header}\n{rule}");
    let not_applicable = "n/a (no summary / no alarm page; it pages every object)";
    let row = |name: &str, cell: &dyn Fn(&Figures, bool) -> String| {
        let mut line = format!("| {name} |");
        for f in ours {
            line.push_str(&format!(" {} |", cell(f, false)));
        }
        for f in peers {
            line.push_str(&format!(" {} |", cell(f, true)));
        }
        println!("{line}");
    };
    row(
        "1. requests, one new failure (new incident, page)",
        &|f, _| requests(&f.first).to_string(),
    );
    row(
        "2. requests, one more failure of the open incident",
        &|f, _| requests(&f.more).to_string(),
    );
    row(
        "3. requests per event, storm of N objects each delivered twice",
        &|f, _| {
            format!(
                "{:.3} ({} / {})",
                f.storm_requests as f64 / (2 * f.objects) as f64,
                f.storm_requests,
                2 * f.objects
            )
        },
    );
    row(
        "4. DynamoDB items read to send one summary page (incident of N objects)",
        &|f, peer| match (&f.summary, peer) {
            (Some(counts), _) => {
                format!("{} ({})", items_read(counts), reads_per_operation(counts))
            }
            (None, true) => not_applicable.to_owned(),
            (None, false) => "-".to_owned(),
        },
    );
    row(
        "5. DynamoDB items read to page an alarm with the backlog (backlog Query)",
        &|f, peer| match (&f.alarm, peer) {
            (Some(counts), _) => format!(
                "{} (backlog Query {}; {})",
                items_read(counts),
                counts.get("dynamodb:Query").map_or(0, |c| c.items_read),
                reads_per_operation(counts)
            ),
            (None, true) => not_applicable.to_owned(),
            (None, false) => "-".to_owned(),
        },
    );
    println!();
    for f in ours.iter().chain(peers) {
        let who = if f.peer {
            "Python peer"
        } else {
            "replication-events"
        };
        println!("{who}, N={}:", thousands(f.objects));
        println!("- figure 1: {}", per_operation(&f.first));
        println!("- figure 2: {}", per_operation(&f.more));
        println!(
            "- figure 3: {} (first delivery: {}; second delivery: {})",
            per_operation(&f.storm),
            per_operation(&f.storm_first),
            per_operation(&f.storm_second)
        );
        if let Some(counts) = &f.summary {
            println!(
                "- figure 4: requests {}; page: {}",
                per_operation(counts),
                f.summary_subject
            );
        }
        if let Some(counts) = &f.alarm {
            println!(
                "- figure 5: requests {}; page: {}",
                per_operation(counts),
                f.alarm_backlog_line
            );
        }
    }
}
