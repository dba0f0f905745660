//! `startup-bench`: cold start, first and warm invocations, and peak memory of each function's
//! release binary (a benchmark, not a test: it reports figures).
//!
//! The harness (`replmon_tests::runtime_api`) plays the Lambda Runtime API on loopback (`GET
//! /invocation/next`, `POST /invocation/<id>/response`), starts the release `bootstrap` of each
//! function as Lambda does (the `AWS_LAMBDA_*` variables, credentials in the environment, the
//! function's own settings) against the local AWS stack, and measures, for every start:
//! - init: from just before the process is spawned to its first `GET /next` (everything the
//!   function does before it can take an event: configuration, SDK clients, pre-warming);
//! - first invocation: from handing over the first event to its response (its AWS calls included);
//! - warm invocation: the same for the following events (median of `--warm`);
//! - peak RSS: `VmHWM` of the process after its last invocation.
//!
//! Each event does real work: replication-events gets an SQS batch of ten new failed objects
//! (ledger writes, one page per new incident), alarm-events a new alarm in ALARM (incident,
//! CloudWatch trend, page), the canary a new run (probe PUT, HEADs until the simulator's copy
//! arrives, records, metrics). Responses are checked; an error response stops the benchmark.
//!
//!     cargo build --release -p replication-events -p alarm-events -p canary
//!     cargo run -p replmon-tests --bin startup-bench [-- --starts 10 --warm 5 --set KEY=VALUE
//!         --function NAME --bin-dir DIR --tls --objects 10]
//!
//! `--tls` puts the local stack behind HTTPS (a self-signed certificate the processes trust), so
//! the first call of each client pays for a TLS handshake as it does on AWS.

use anyhow::{bail, Context, Result};
use replmon_tests::replication_sim::{ReplicationSimulator, SimulatorSettings};
use replmon_tests::runtime_api::{peak_rss_kb, LambdaProcess};
use replmon_tests::{numeric_option, repo_root, sdk_config, MotoServer, Stack, StackNames};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

const SQS_FIXTURE: &str = include_str!("../../../events/sqs/failed.json");
const ALARM_FIXTURE: &str = include_str!("../../../events/alarm/metric-alarm.json");
const ALARM_NAME: &str = "replmon-demo-source-replication-latency";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    ReplicationEvents,
    AlarmEvents,
    Canary,
}

impl Function {
    const ALL: [Function; 3] = [
        Function::ReplicationEvents,
        Function::AlarmEvents,
        Function::Canary,
    ];

    fn name(self) -> &'static str {
        match self {
            Function::ReplicationEvents => "replication-events",
            Function::AlarmEvents => "alarm-events",
            Function::Canary => "canary",
        }
    }

    fn binary(self, directory: &std::path::Path) -> PathBuf {
        directory.join(self.name())
    }

    /// The `n`th event of start `start`: always new work (new objects, alarm, run).
    fn event(self, start: usize, n: usize, objects: usize) -> Result<String> {
        match self {
            Function::ReplicationEvents => failed_objects_batch(start, n, objects),
            Function::AlarmEvents => {
                let name = format!("replmon-bench-{start}-{n}-replication-latency");
                Ok(ALARM_FIXTURE.replace(ALARM_NAME, &name))
            }
            Function::Canary => Ok(json!({ "run_id": format!("bench-{start}-{n}") }).to_string()),
        }
    }

    /// What a successful response of this function says.
    fn check(self, response: &[u8]) -> Result<()> {
        let value: Value = serde_json::from_slice(response).context("response is not JSON")?;
        match self {
            Function::ReplicationEvents => {
                let failures = value["batchItemFailures"]
                    .as_array()
                    .context("no batchItemFailures")?;
                if !failures.is_empty() {
                    bail!("messages failed: {value}");
                }
            }
            Function::AlarmEvents => {}
            Function::Canary => {
                let probes: Vec<&Value> = value["buckets"]
                    .as_array()
                    .context("no buckets")?
                    .iter()
                    .flat_map(|b| b["probes"].as_array().into_iter().flatten())
                    .collect();
                if probes.is_empty() || probes.iter().any(|p| p["status"] != "ARRIVED") {
                    bail!("the canary run did not see its probes arrive: {value}");
                }
            }
        }
        Ok(())
    }
}

/// An SQS batch of `objects` messages, each an S3 notification of one object that failed to
/// replicate.
fn failed_objects_batch(start: usize, n: usize, objects: usize) -> Result<String> {
    let fixture: Value = serde_json::from_str(SQS_FIXTURE)?;
    let message = &fixture["Records"][0];
    let body: Value = serde_json::from_str(message["body"].as_str().context("no body")?)?;
    let records: Vec<Value> = (0..objects)
        .map(|m| {
            let mut body = body.clone();
            let object = &mut body["Records"][0]["s3"]["object"];
            object["key"] = json!(format!("bench/start-{start}/event-{n}/object-{m}.csv"));
            object["versionId"] = json!(format!("v-{start}-{n}-{m}"));
            let mut record = message.clone();
            record["messageId"] = json!(format!("m-{start}-{n}-{m}"));
            record["body"] = json!(body.to_string());
            record
        })
        .collect();
    Ok(json!({ "Records": records }).to_string())
}

/// The figures of one start.
struct Sample {
    init: Duration,
    first: Duration,
    warm: Vec<Duration>,
    peak_rss_kb: u64,
}

struct Bench {
    binaries: PathBuf,
    env: Vec<(String, String)>,
    warm: usize,
    /// Objects (SQS messages) per replication-events batch.
    objects: usize,
    logs: PathBuf,
}

impl Bench {
    async fn start_once(&self, function: Function, start: usize) -> Result<Sample> {
        let log = std::fs::File::create(self.logs.join(format!("{}.log", function.name())))?;
        let binary = function.binary(&self.binaries);
        let mut command = Command::new(&binary);
        command
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let process = LambdaProcess::start(command, function.name(), &format!("bench/{start}"))
            .await
            .with_context(|| format!("starting {}", binary.display()))
            .with_context(|| format!("{} start {start}", function.name()))?;
        self.drive(function, start, process)
            .await
            .with_context(|| format!("{} start {start}", function.name()))
    }

    async fn drive(
        &self,
        function: Function,
        start: usize,
        mut process: LambdaProcess,
    ) -> Result<Sample> {
        let init = process.init;
        let mut durations = Vec::new();
        for n in 0..=self.warm {
            let request_id = format!("bench-{start}-{n}");
            let event = function.event(start, n, self.objects)?;
            let invocation = process
                .invoke(&request_id, event.as_bytes())
                .await
                .with_context(|| format!("invocation {n}"))?;
            function
                .check(&invocation.response)
                .with_context(|| format!("invocation {n}"))?;
            durations.push(invocation.elapsed);
        }
        let peak_rss_kb = peak_rss_kb(process.pid().context("the function exited")?)?;
        process.stop().await;
        Ok(Sample {
            init,
            first: durations[0],
            warm: durations[1..].to_vec(),
            peak_rss_kb,
        })
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn summary(values: &[f64], unit: &str, decimals: usize) -> String {
    let mut sorted = values.to_vec();
    let middle = median(&mut sorted);
    let low = sorted.first().copied().unwrap_or(f64::NAN);
    let high = sorted.last().copied().unwrap_or(f64::NAN);
    format!("{middle:.decimals$} {unit} ({low:.decimals$}-{high:.decimals$})")
}

/// A certificate for `localhost` (and 127.0.0.1) and the test authority that signed it, made
/// with the openssl command (webpki refuses a self-signed authority as the server's certificate).
/// Returns (authority certificate, server certificate, server key).
fn local_certificates(directory: &std::path::Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let path = |name: &str| directory.join(name);
    let openssl = |args: &[&str]| -> Result<()> {
        let status = std::process::Command::new("openssl")
            .current_dir(directory)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running openssl")?;
        if !status.success() {
            bail!("openssl {} failed", args.join(" "));
        }
        Ok(())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &["-days", "2", "-subj", "/CN=replmon bench CA"],
            &["-keyout", "ca.key", "-out", "ca.crt"],
        ]
        .concat(),
    )?;
    openssl(
        &[
            &["req"],
            &ec[..],
            &["-subj", "/CN=localhost", "-keyout", "localhost.key"],
            &["-out", "localhost.csr"],
        ]
        .concat(),
    )?;
    std::fs::write(
        path("localhost.ext"),
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "localhost.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "localhost.ext",
        "-out",
        "localhost.crt",
    ])?;
    Ok((path("ca.crt"), path("localhost.crt"), path("localhost.key")))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // With --tls the local stack answers HTTPS, as AWS does: every process that talks to it (this
    // one and the functions) trusts its certificate through SSL_CERT_FILE, which must be set
    // before any thread starts.
    let logs = repo_root().join(".local/startup-bench");
    std::fs::create_dir_all(&logs)?;
    let tls = if args.iter().any(|a| a == "--tls") {
        let (authority, certificate, key) = local_certificates(&logs)?;
        std::env::set_var("SSL_CERT_FILE", &authority);
        Some((authority, certificate, key))
    } else {
        None
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench(args, logs, tls))
}

/// The local stack's TLS files: (authority certificate, server certificate, server key).
type LocalTls = Option<(PathBuf, PathBuf, PathBuf)>;

async fn bench(args: Vec<String>, logs: PathBuf, tls: LocalTls) -> Result<()> {
    let starts = numeric_option(&args, "--starts", 10)? as usize;
    let warm = (numeric_option(&args, "--warm", 5)? as usize).max(1);
    let objects = (numeric_option(&args, "--objects", 10)? as usize).clamp(1, 10);
    let extra: Vec<(String, String)> = args
        .iter()
        .enumerate()
        .filter(|(_, a)| *a == "--set")
        .map(|(i, _)| {
            args.get(i + 1)
                .and_then(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .context("--set expects KEY=VALUE")
        })
        .collect::<Result<_>>()?;
    let only: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|(_, a)| *a == "--function")
        .filter_map(|(i, _)| args.get(i + 1).map(String::as_str))
        .collect();
    let binaries = match args.iter().position(|a| a == "--bin-dir") {
        Some(i) => PathBuf::from(args.get(i + 1).context("--bin-dir expects a directory")?),
        None => repo_root().join("target/release"),
    };
    for function in Function::ALL {
        if !function.binary(&binaries).is_file() {
            bail!(
                "{} is missing: cargo build --release -p replication-events -p alarm-events -p canary",
                function.binary(&binaries).display()
            );
        }
    }

    let (_moto, endpoint) = match &tls {
        Some((_, certificate, key)) => {
            let moto = MotoServer::start_tls(certificate, key)?;
            let endpoint = moto.tls_endpoint();
            (moto, endpoint)
        }
        None => {
            let moto = MotoServer::start()?;
            let endpoint = moto.endpoint();
            (moto, endpoint)
        }
    };
    let sdk = sdk_config(&endpoint).await;
    let stack = Stack::provision(&sdk, StackNames::default()).await?;
    // The canary's probes must arrive: the simulator copies them as soon as it sees them.
    let simulator = ReplicationSimulator::start(
        stack.s3.clone(),
        vec![stack.names.source_bucket.clone()],
        SimulatorSettings::default(),
    )
    .await;
    let mut env = stack.function_env(&endpoint);
    if let Some((authority, _, _)) = &tls {
        env.push(("SSL_CERT_FILE".into(), authority.display().to_string()));
    }
    // As on Lambda: temporary credentials in the environment.
    env.push(("AWS_SESSION_TOKEN".into(), "bench-session".into()));
    env.extend(extra.iter().cloned());
    let bench = Bench {
        binaries: binaries.clone(),
        env,
        warm,
        objects,
        logs,
    };

    println!(
        "{starts} starts per function, {warm} warm invocations each, {objects} objects per \
         replication-events batch, local stack at {endpoint}; extra settings: {extra:?}\n"
    );
    println!("| function | binary | init | first invocation | warm invocation | peak RSS |");
    println!("|---|---|---|---|---|---|");
    for function in Function::ALL {
        if !only.is_empty() && !only.contains(&function.name()) {
            continue;
        }
        let mut init = Vec::new();
        let mut first = Vec::new();
        let mut warm = Vec::new();
        let mut rss = Vec::new();
        for start in 0..starts {
            let sample = bench.start_once(function, start).await?;
            init.push(ms(sample.init));
            first.push(ms(sample.first));
            warm.push(median(
                &mut sample.warm.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            ));
            rss.push(sample.peak_rss_kb as f64 / 1024.0);
        }
        let size = std::fs::metadata(function.binary(&binaries))?.len() as f64 / 1_048_576.0;
        println!(
            "| {} | {size:.2} MiB | {} | {} | {} | {} |",
            function.name(),
            summary(&init, "ms", 1),
            summary(&first, "ms", 1),
            summary(&warm, "ms", 1),
            summary(&rss, "MiB", 1),
        );
    }
    println!(
        "\nmedian (min-max) over the starts; warm: each start's median of its warm invocations"
    );
    simulator.stop().await;
    let pages = stack.drain_pages().await?;
    println!("pages sent during the benchmark: {}", pages.len());
    Ok(())
}
