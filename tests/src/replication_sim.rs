//! A replication simulator that makes the local AWS emulator (moto server) behave like S3
//! replication, for the integration tests and the demo.
//!
//! moto stores a bucket's replication configuration but never copies an object. The simulator
//! does it: every [`SimulatorSettings::scan_interval`] it lists the object versions of each source
//! bucket (`ListObjectVersions`, every page), and each version it has not seen before is copied,
//! after an injected [`Delay`], to every destination of the bucket's replication configuration
//! (`GetBucketReplication`, read again whenever a scan finds new versions; rules with status
//! `Enabled` only; the destination bucket is taken from its ARN `arn:aws:s3:::name`). A copy is
//! `GetObject(versionId)` on the source and `PutObject` on the destination with the same body,
//! content type, user metadata, cache/content headers, tags (`GetObjectTagging`) and
//! server-side-encryption headers. Copies run concurrently, each on its own timer.
//!
//! Versions that exist when [`ReplicationSimulator::start`] returns are a baseline and are never
//! copied (S3 does not replicate objects that existed before the rule either, without Batch
//! Replication). Delete markers are never copied.
//!
//! Controls, callable from any task while it runs: [`ReplicationSimulator::set_delay`],
//! [`ReplicationSimulator::pause`] / [`ReplicationSimulator::resume`] (a paused source bucket's
//! new versions are detected and held; a copy whose timer fires while its source is paused is
//! held too; on resume each held copy runs after its own delay, counted from the resume),
//! [`ReplicationSimulator::fail_matching`] (versions detected afterwards whose key contains a
//! substring are never copied: at the time the copy would have happened, an S3
//! `Replication:OperationFailedReplication` event is handed to the [`FailureSink`], the way S3
//! notifies a Lambda function or an SQS queue), and [`ReplicationSimulator::stop`].
//!
//! For S3 Batch Replication (see [`crate::s3control_sim`]): [`ReplicationSimulator::failed_versions`]
//! (the versions whose replication FAILED and that no copy has reached since) and
//! [`ReplicationSimulator::redrive`] (copy one version again, to every destination of the current
//! configuration, as a scan's copy does, unless a failure rule still matches its key).
//!
//! # moto's replication configuration bug
//!
//! moto answers `GetBucketReplication` with `Filter {Prefix: ""}` and `DeleteMarkerReplication
//! Disabled` whatever was stored. So, against moto, every enabled rule matches every key. A test
//! that needs a prefix rule supplies it in [`SimulatorSettings::rule_prefixes`], keyed by
//! (source bucket, rule id); the override wins over whatever prefix the configuration answers.
//! (Against a store that answers the stored filter, a rule's filter prefix, `And` prefix or legacy
//! `Prefix` is honoured.) Tag filters are not evaluated. When two matching rules name the same
//! destination, the one with the highest `Priority` wins, as in S3.
//!
//! # Other limits
//!
//! - moto does not set `ReplicationStatus` (neither `PENDING`/`COMPLETED`/`FAILED` on the source
//!   nor `REPLICA` on the copy), and the replica gets a new version id, not the source's.
//! - moto's `LastModified` has whole-second precision (`...T11:22:27.000Z`): time copies with
//!   [`Replicated::detected_at`] / [`Replicated::visible_at`], never with `LastModified`.
//! - moto accepts any SSE-KMS key id (it does not check that the key exists), so an SSE-KMS source
//!   replicates with the same key id; S3 would need the rule's `ReplicaKmsKeyID`.
//! - Versions detected while a failure rule matches are decided at detection: a later
//!   `fail_matching` does not affect a copy already scheduled.

use crate::replication_metrics::{Replication, ReplicationMetrics};
use anyhow::{bail, Context, Result};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ReplicationRuleStatus, ServerSideEncryption};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::BoxFuture;
use replmon_shared::fakes::SplitMix64;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// How long a copy waits after its version was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    Fixed(Duration),
    /// Drawn uniformly in `[min, max]` from the simulator's seeded generator.
    Uniform {
        min: Duration,
        max: Duration,
    },
}

impl Default for Delay {
    fn default() -> Self {
        Delay::Fixed(Duration::ZERO)
    }
}

/// Where injected failures go, the way S3 delivers `s3:Replication:*` notifications.
pub trait FailureSink: Send + Sync {
    /// Deliver one S3 notification message (`{"Records": [...]}`).
    fn deliver<'a>(&'a self, event: &'a serde_json::Value) -> BoxFuture<'a, Result<()>>;
}

/// How the simulator runs. `Default` gives a 25 ms scan, no delay, seed 1, no sink.
#[derive(Clone)]
pub struct SimulatorSettings {
    pub scan_interval: Duration,
    pub delay: Delay,
    pub seed: u64,
    /// Prefix per (source bucket, rule id), overriding the configuration (see the module doc:
    /// moto answers an empty prefix for every rule).
    pub rule_prefixes: HashMap<(String, String), String>,
    /// `None`: failures are only recorded ([`ReplicationSimulator::failures`]).
    pub failure_sink: Option<Arc<dyn FailureSink>>,
    /// `awsRegion` of the failure events.
    pub region: String,
    /// Publish S3's replication metrics in the regions where S3 publishes them (see
    /// [`crate::replication_metrics`]), with clients built from this configuration.
    pub metrics: Option<aws_config::SdkConfig>,
}

impl Default for SimulatorSettings {
    fn default() -> Self {
        SimulatorSettings {
            scan_interval: Duration::from_millis(25),
            delay: Delay::default(),
            seed: 1,
            rule_prefixes: HashMap::new(),
            failure_sink: None,
            region: crate::REGION.to_owned(),
            metrics: None,
        }
    }
}

/// One completed copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Replicated {
    pub source_bucket: String,
    pub key: String,
    pub version_id: String,
    pub destination_bucket: String,
    pub rule_id: String,
    /// The version id the destination gave the copy (`None` when it answered none).
    pub replica_version_id: Option<String>,
    /// When the scan that found the version returned.
    pub detected_at: DateTime<Utc>,
    /// Taken right after the destination `PutObject` returned: a HEAD on the destination finds
    /// the copy at or before this time.
    pub visible_at: DateTime<Utc>,
}

/// One injected failure, reported instead of a copy.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedReplication {
    pub source_bucket: String,
    pub key: String,
    pub version_id: String,
    pub destination_bucket: String,
    pub rule_id: String,
    pub reason: String,
    pub detected_at: DateTime<Utc>,
    pub reported_at: DateTime<Utc>,
    /// The notification message handed to the sink.
    pub event: serde_json::Value,
    /// Why the sink did not take it (`None`: delivered, or no sink).
    pub delivery_error: Option<String>,
}

/// A version detected while its source bucket is paused, waiting for `resume`.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldReplication {
    pub source_bucket: String,
    pub key: String,
    pub version_id: String,
    pub destination_bucket: String,
    pub detected_at: DateTime<Utc>,
}

/// A version whose replication failed and that no copy (a re-drive) has reached since: what S3
/// reports as replication status `FAILED`.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedVersion {
    pub source_bucket: String,
    pub key: String,
    pub version_id: String,
    /// The destinations it failed to reach and has not reached since, in failure order.
    pub destination_buckets: Vec<String>,
    /// The reason of its latest failure.
    pub reason: String,
    /// When the scan that found the version returned.
    pub detected_at: DateTime<Utc>,
}

/// Why [`ReplicationSimulator::redrive`] did not copy a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveError {
    /// A failure rule still matches the key: the fault persists (the rule's reason).
    FaultPersists(String),
    /// No enabled rule of the bucket's replication configuration matches the key.
    NoMatchingRule,
    /// Reading the configuration or a copy failed (the error; also in
    /// [`ReplicationSimulator::copy_errors`] for a copy).
    Failed(String),
}

impl std::fmt::Display for RedriveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedriveError::FaultPersists(reason) => write!(f, "replication still fails: {reason}"),
            RedriveError::NoMatchingRule => write!(f, "no replication rule matches the key"),
            RedriveError::Failed(error) => write!(f, "{error}"),
        }
    }
}

/// Something that went wrong: a copy, a listing, a configuration read, a task.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyError {
    pub at: DateTime<Utc>,
    pub source_bucket: String,
    pub key: Option<String>,
    pub version_id: Option<String>,
    pub destination_bucket: Option<String>,
    pub message: String,
}

/// See the module documentation.
pub struct ReplicationSimulator {
    shared: Arc<Shared>,
    jobs: Arc<Mutex<JoinSet<()>>>,
    scan: Mutex<Option<JoinHandle<()>>>,
    runtime: tokio::runtime::Handle,
}

impl ReplicationSimulator {
    /// Take the baseline (versions already in the source buckets are never copied) and start
    /// scanning. A source whose baseline listing fails gets it from its first successful scan
    /// instead (the error is in [`Self::copy_errors`]).
    pub async fn start(
        s3: aws_sdk_s3::Client,
        sources: Vec<String>,
        settings: SimulatorSettings,
    ) -> ReplicationSimulator {
        let metrics = settings
            .metrics
            .map(|sdk| ReplicationMetrics::new(sdk, s3.clone()));
        let shared = Arc::new(Shared {
            metrics,
            s3,
            sink: settings.failure_sink,
            region: settings.region,
            rule_prefixes: settings.rule_prefixes,
            stopping: AtomicBool::new(false),
            wake: Notify::new(),
            state: Mutex::new(State {
                delay: settings.delay,
                rng: SplitMix64(settings.seed),
                paused: HashSet::new(),
                held: Vec::new(),
                failure_rules: Vec::new(),
                seen: HashMap::new(),
                putting: HashMap::new(),
                sequence: 0,
                replicated: Vec::new(),
                failures: Vec::new(),
                errors: Vec::new(),
            }),
        });
        for bucket in &sources {
            match list_versions(&shared.s3, bucket).await {
                Ok(versions) => {
                    let mut state = shared.lock();
                    let seen = state.seen.entry(bucket.clone()).or_default();
                    seen.extend(versions.into_iter().map(|v| (v.key, v.version_id)));
                }
                Err(error) => shared.record_error(CopyError {
                    at: Utc::now(),
                    source_bucket: bucket.clone(),
                    key: None,
                    version_id: None,
                    destination_bucket: None,
                    message: format!("baseline listing failed: {error:#}"),
                }),
            }
        }
        let jobs = Arc::new(Mutex::new(JoinSet::new()));
        let runtime = tokio::runtime::Handle::current();
        let scan = tokio::spawn(scan_loop(
            shared.clone(),
            jobs.clone(),
            sources,
            settings.scan_interval,
            runtime.clone(),
        ));
        ReplicationSimulator {
            shared,
            jobs,
            scan: Mutex::new(Some(scan)),
            runtime,
        }
    }

    /// The delay of versions detected from now on.
    pub fn set_delay(&self, delay: Delay) {
        self.shared.lock().delay = delay;
    }

    /// Hold the copies of this source bucket (detected versions wait for [`Self::resume`]).
    pub fn pause(&self, bucket: &str) {
        self.shared.lock().paused.insert(bucket.to_owned());
    }

    /// Release a paused bucket: each held copy runs after its delay, counted from now.
    pub fn resume(&self, bucket: &str) {
        let released: Vec<Job> = {
            let mut state = self.shared.lock();
            state.paused.remove(bucket);
            let (released, kept) = std::mem::take(&mut state.held)
                .into_iter()
                .partition(|job| job.source_bucket == bucket);
            state.held = kept;
            released
        };
        let now = Instant::now();
        let mut jobs = lock(&self.jobs);
        for job in released {
            jobs.spawn_on(run_job(self.shared.clone(), job, now), &self.runtime);
        }
    }

    /// Versions of `bucket` detected from now on whose key contains `key_substring` are never
    /// copied; a `Replication:OperationFailedReplication` event with `failureReason` `reason`
    /// goes to the sink instead (one per destination), when the copy would have happened.
    pub fn fail_matching(&self, bucket: &str, key_substring: &str, reason: &str) {
        self.shared.lock().failure_rules.push(FailureRule {
            bucket: bucket.to_owned(),
            key_substring: key_substring.to_owned(),
            reason: reason.to_owned(),
        });
    }

    /// Forget every failure rule of `bucket` (versions detected from now on replicate again).
    pub fn clear_failures(&self, bucket: &str) {
        self.shared
            .lock()
            .failure_rules
            .retain(|rule| rule.bucket != bucket);
    }

    /// End the scanning task and wait for every copy in progress or waiting for its delay.
    /// Copies held by a paused bucket are not run (see [`Self::held`]).
    pub async fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        let scan = lock(&self.scan).take();
        if let Some(scan) = scan {
            if let Err(error) = scan.await {
                if error.is_panic() {
                    self.shared.task_failed("scan task", &error);
                }
            }
        }
        loop {
            // A `resume` from another task may add copies while we wait: drain until empty.
            let mut pending = std::mem::take(&mut *lock(&self.jobs));
            if pending.is_empty() {
                return;
            }
            while let Some(result) = pending.join_next().await {
                if let Err(error) = result {
                    self.shared.task_failed("copy task", &error);
                }
            }
        }
    }

    /// Every completed copy, in completion order.
    pub fn replicated(&self) -> Vec<Replicated> {
        self.shared.lock().replicated.clone()
    }

    /// Every injected failure reported so far, in report order.
    pub fn failures(&self) -> Vec<FailedReplication> {
        self.shared.lock().failures.clone()
    }

    /// Copies waiting for their paused source bucket to resume.
    pub fn held(&self) -> Vec<HeldReplication> {
        self.shared
            .lock()
            .held
            .iter()
            .map(|job| HeldReplication {
                source_bucket: job.source_bucket.clone(),
                key: job.key.clone(),
                version_id: job.version_id.clone(),
                destination_bucket: job.destination_bucket.clone(),
                detected_at: job.detected_at,
            })
            .collect()
    }

    /// Every error met (failed copies, listings, configuration reads), oldest first.
    pub fn copy_errors(&self) -> Vec<CopyError> {
        self.shared.lock().errors.clone()
    }

    /// The versions of `bucket` whose replication failed (a reported failure) and that no copy has
    /// reached since, in the order of their first failure. Live replication never copies a version
    /// it reported failed, so only [`Self::redrive`] takes a version off this list.
    pub fn failed_versions(&self, bucket: &str) -> Vec<FailedVersion> {
        let state = self.shared.lock();
        let copied: HashSet<(&str, &str, &str)> = state
            .replicated
            .iter()
            .filter(|r| r.source_bucket == bucket)
            .map(|r| {
                (
                    r.key.as_str(),
                    r.version_id.as_str(),
                    r.destination_bucket.as_str(),
                )
            })
            .collect();
        let mut versions: Vec<FailedVersion> = Vec::new();
        for failure in state.failures.iter().filter(|f| f.source_bucket == bucket) {
            let reached = copied.contains(&(
                failure.key.as_str(),
                failure.version_id.as_str(),
                failure.destination_bucket.as_str(),
            ));
            if reached {
                continue;
            }
            match versions
                .iter_mut()
                .find(|v| v.key == failure.key && v.version_id == failure.version_id)
            {
                Some(version) => {
                    if !version
                        .destination_buckets
                        .contains(&failure.destination_bucket)
                    {
                        version
                            .destination_buckets
                            .push(failure.destination_bucket.clone());
                    }
                    version.reason = failure.reason.clone();
                }
                None => versions.push(FailedVersion {
                    source_bucket: failure.source_bucket.clone(),
                    key: failure.key.clone(),
                    version_id: failure.version_id.clone(),
                    destination_buckets: vec![failure.destination_bucket.clone()],
                    reason: failure.reason.clone(),
                    detected_at: failure.detected_at,
                }),
            }
        }
        versions
    }

    /// The reason of the first failure rule of `bucket` whose substring `key` contains (the rule a
    /// scan would apply to a new version of the key now), if any.
    pub fn failure_reason(&self, bucket: &str, key: &str) -> Option<String> {
        self.shared
            .lock()
            .failure_rules
            .iter()
            .find(|rule| rule.bucket == bucket && key.contains(&rule.key_substring))
            .map(|rule| rule.reason.clone())
    }

    /// The destinations (rule id, destination bucket) the bucket's current replication
    /// configuration gives `key`: the highest-priority matching rule per destination, with
    /// [`SimulatorSettings::rule_prefixes`] applied. Empty when no rule matches or the bucket has
    /// no configuration.
    pub async fn destinations(&self, bucket: &str, key: &str) -> Result<Vec<(String, String)>> {
        let rules = replication_rules(&self.shared.s3, bucket).await?;
        Ok(targets(&rules, &self.shared.rule_prefixes, bucket, key)
            .into_iter()
            .map(|t| (t.rule_id, t.destination_bucket))
            .collect())
    }

    /// Replicate one version again, as S3 Batch Replication does: unless a failure rule still
    /// matches its key ([`RedriveError::FaultPersists`], nothing copied nor reported), copy it to
    /// every destination the current configuration gives it, exactly as a scan's copy (same
    /// `GetObject`/`PutObject`, recorded in [`Self::replicated`], so the version leaves
    /// [`Self::failed_versions`]). No failure event and no replication metric: S3 Batch
    /// Replication reports through its completion report. Answers the copies made.
    pub async fn redrive(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<Vec<Replicated>, RedriveError> {
        if let Some(reason) = self.failure_reason(bucket, key) {
            return Err(RedriveError::FaultPersists(reason));
        }
        let targets = self.destinations(bucket, key).await.map_err(|e| {
            RedriveError::Failed(format!("reading the replication configuration: {e:#}"))
        })?;
        if targets.is_empty() {
            return Err(RedriveError::NoMatchingRule);
        }
        // The detection time of the failed version when there is one (the copy's latency then
        // counts from when S3 first saw it), else now.
        let detected_at = self
            .shared
            .lock()
            .failures
            .iter()
            .find(|f| f.source_bucket == bucket && f.key == key && f.version_id == version_id)
            .map_or_else(Utc::now, |f| f.detected_at);
        let mut copies = Vec::new();
        for (rule_id, destination_bucket) in targets {
            let job = Job {
                source_bucket: bucket.to_owned(),
                key: key.to_owned(),
                version_id: version_id.to_owned(),
                size: 0,
                e_tag: None,
                rule_id,
                destination_bucket,
                detected_at,
                delay: Duration::ZERO,
                failure: None,
                sequencer: String::new(),
            };
            copies.push(redrive_copy(&self.shared, job).await?);
        }
        Ok(copies)
    }
}

impl Drop for ReplicationSimulator {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(scan) = lock(&self.scan).take() {
            scan.abort();
        }
        lock(&self.jobs).abort_all();
    }
}

/// POSTs the event to `cargo lambda watch`'s invoke endpoint
/// (`/2015-03-31/functions/{function}/invocations`), as a direct S3 -> Lambda notification.
#[derive(Debug, Clone)]
pub struct LambdaInvokeSink {
    pub port: u16,
    pub function: String,
}

/// `cargo lambda watch` compiles a function on its first invocation: give it minutes.
pub const LAMBDA_INVOKE_TIMEOUT: Duration = Duration::from_secs(300);

impl FailureSink for LambdaInvokeSink {
    fn deliver<'a>(&'a self, event: &'a serde_json::Value) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let path = format!(
                "/2015-03-31/functions/{}/invocations",
                url_encode(&self.function, false)
            );
            let body = serde_json::to_vec(event)?;
            let (status, response) = tokio::time::timeout(
                LAMBDA_INVOKE_TIMEOUT,
                post(self.port, &path, "application/json", &body),
            )
            .await
            .with_context(|| format!("invoking {} timed out", self.function))??;
            if !(200..300).contains(&status) {
                bail!(
                    "invoking {} answered HTTP {status}: {}",
                    self.function,
                    response.chars().take(500).collect::<String>()
                );
            }
            Ok(())
        })
    }
}

/// Sends the event as the body of one SQS message (an S3 notification to a queue).
#[derive(Debug, Clone)]
pub struct SqsSink {
    pub client: aws_sdk_sqs::Client,
    pub queue_url: String,
}

impl FailureSink for SqsSink {
    fn deliver<'a>(&'a self, event: &'a serde_json::Value) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.client
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(event.to_string())
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))
                .with_context(|| format!("sending the event to {}", self.queue_url))?;
            Ok(())
        })
    }
}

/// One HTTP/1.1 POST to 127.0.0.1 over a plain socket: (status, body text).
pub(crate) async fn post(
    port: u16,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let (head, body) = match response.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => (&response[..at], &response[at + 4..]),
        None => (&response[..], &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let status_line = head.lines().next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .with_context(|| format!("not an HTTP response: {status_line:?}"))?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The payload of a chunked HTTP/1.1 body (decoded as bytes: a chunk may end inside a character).
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        let rest = &body[line_end + 2..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        body = rest[size..].strip_prefix(b"\r\n").unwrap_or(&rest[size..]);
    }
    out
}

struct Shared {
    s3: aws_sdk_s3::Client,
    metrics: Option<ReplicationMetrics>,
    sink: Option<Arc<dyn FailureSink>>,
    region: String,
    rule_prefixes: HashMap<(String, String), String>,
    stopping: AtomicBool,
    wake: Notify,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn record_error(&self, error: CopyError) {
        eprintln!(
            "replication simulator: {} {} {} -> {}: {}",
            error.source_bucket,
            error.key.as_deref().unwrap_or("-"),
            error.version_id.as_deref().unwrap_or("-"),
            error.destination_bucket.as_deref().unwrap_or("-"),
            error.message
        );
        self.lock().errors.push(error);
    }

    /// A metric that could not be published is an error of the simulator, like a failed copy.
    fn metric_error(&self, job: &Job, result: Result<()>) {
        if let Err(e) = result {
            self.record_error(CopyError {
                at: Utc::now(),
                source_bucket: job.source_bucket.clone(),
                key: Some(job.key.clone()),
                version_id: Some(job.version_id.clone()),
                destination_bucket: Some(job.destination_bucket.clone()),
                message: format!("publishing replication metrics: {e:#}"),
            });
        }
    }

    fn task_failed(&self, what: &str, error: &tokio::task::JoinError) {
        self.record_error(CopyError {
            at: Utc::now(),
            source_bucket: String::new(),
            key: None,
            version_id: None,
            destination_bucket: None,
            message: format!("{what} failed: {error}"),
        });
    }
}

struct State {
    delay: Delay,
    rng: SplitMix64,
    paused: HashSet<String>,
    held: Vec<Job>,
    failure_rules: Vec<FailureRule>,
    /// Per bucket, the (key, version id) pairs already handled. A bucket without an entry has no
    /// baseline yet.
    seen: HashMap<String, HashSet<(String, String)>>,
    /// (bucket, key) -> copies being written there: a scan leaves new versions of such a key for
    /// the next scan, so a replica in a bucket that is also a source is recognised as one.
    putting: HashMap<(String, String), usize>,
    sequence: u64,
    replicated: Vec<Replicated>,
    failures: Vec<FailedReplication>,
    errors: Vec<CopyError>,
}

struct FailureRule {
    bucket: String,
    key_substring: String,
    reason: String,
}

#[derive(Debug, Clone)]
struct Job {
    source_bucket: String,
    key: String,
    version_id: String,
    size: i64,
    e_tag: Option<String>,
    rule_id: String,
    destination_bucket: String,
    detected_at: DateTime<Utc>,
    delay: Duration,
    failure: Option<String>,
    sequencer: String,
}

impl Job {
    fn replication(&self) -> Replication {
        Replication {
            source_bucket: self.source_bucket.clone(),
            destination_bucket: self.destination_bucket.clone(),
            rule_id: self.rule_id.clone(),
            key: self.key.clone(),
            version_id: self.version_id.clone(),
            size: self.size,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn scan_loop(
    shared: Arc<Shared>,
    jobs: Arc<Mutex<JoinSet<()>>>,
    sources: Vec<String>,
    interval: Duration,
    runtime: tokio::runtime::Handle,
) {
    while !shared.stopping.load(Ordering::SeqCst) {
        for bucket in &sources {
            scan_bucket(&shared, &jobs, bucket, &runtime).await;
        }
        let mut panicked = Vec::new();
        {
            let mut jobs = lock(&jobs);
            while let Some(result) = jobs.try_join_next() {
                if let Err(error) = result {
                    if error.is_panic() {
                        panicked.push(error);
                    }
                }
            }
        }
        for error in panicked {
            shared.task_failed("copy task", &error);
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shared.wake.notified() => {}
        }
    }
}

async fn scan_bucket(
    shared: &Arc<Shared>,
    jobs: &Mutex<JoinSet<()>>,
    bucket: &str,
    runtime: &tokio::runtime::Handle,
) {
    let error = |message: String| CopyError {
        at: Utc::now(),
        source_bucket: bucket.to_owned(),
        key: None,
        version_id: None,
        destination_bucket: None,
        message,
    };
    let versions = match list_versions(&shared.s3, bucket).await {
        Ok(versions) => versions,
        Err(e) => return shared.record_error(error(format!("listing versions: {e:#}"))),
    };
    let detected_at = Utc::now();
    let detected_instant = Instant::now();
    let fresh: Vec<VersionInfo> = {
        let mut state = shared.lock();
        let State { seen, putting, .. } = &mut *state;
        match seen.get_mut(bucket) {
            None => {
                // No baseline yet (its listing failed in `start`): this listing is the baseline.
                seen.insert(
                    bucket.to_owned(),
                    versions
                        .into_iter()
                        .map(|v| (v.key, v.version_id))
                        .collect(),
                );
                return;
            }
            Some(seen) => versions
                .into_iter()
                .filter(|v| {
                    !seen.contains(&(v.key.clone(), v.version_id.clone()))
                        && !putting.contains_key(&(bucket.to_owned(), v.key.clone()))
                })
                .collect(),
        }
    };
    if fresh.is_empty() {
        return;
    }
    // Unreadable configuration: leave the versions unseen, the next scan retries.
    let rules = match replication_rules(&shared.s3, bucket).await {
        Ok(rules) => rules,
        Err(e) => {
            return shared.record_error(error(format!(
                "reading the replication configuration: {e:#}"
            )))
        }
    };
    let mut guard = shared.lock();
    let state = &mut *guard;
    let mut jobs = lock(jobs);
    for version in fresh {
        state
            .seen
            .entry(bucket.to_owned())
            .or_default()
            .insert((version.key.clone(), version.version_id.clone()));
        let failure = state
            .failure_rules
            .iter()
            .find(|rule| rule.bucket == bucket && version.key.contains(&rule.key_substring))
            .map(|rule| rule.reason.clone());
        for target in targets(&rules, &shared.rule_prefixes, bucket, &version.key) {
            let delay = draw(&mut state.rng, state.delay);
            state.sequence += 1;
            let sequencer = format!(
                "{:012X}{:06X}",
                detected_at.timestamp_millis().max(0) as u64 & 0xFFFF_FFFF_FFFF,
                state.sequence & 0xFF_FFFF
            );
            let job = Job {
                source_bucket: bucket.to_owned(),
                key: version.key.clone(),
                version_id: version.version_id.clone(),
                size: version.size,
                e_tag: version.e_tag.clone(),
                rule_id: target.rule_id.clone(),
                destination_bucket: target.destination_bucket.clone(),
                detected_at,
                delay,
                failure: failure.clone(),
                sequencer,
            };
            // The delay counts from detection, not from the end of the configuration read.
            jobs.spawn_on(run_job(shared.clone(), job, detected_instant), runtime);
        }
    }
}

/// Wait for the job's time, then copy it, report its failure, or hold it if its bucket is paused.
async fn run_job(shared: Arc<Shared>, job: Job, start: Instant) {
    if let Some(metrics) = &shared.metrics {
        shared.metric_error(&job, metrics.detected(&job.replication()).await);
    }
    tokio::time::sleep_until(start + job.delay).await;
    {
        let mut state = shared.lock();
        if state.paused.contains(&job.source_bucket) {
            state.held.push(job);
            return;
        }
        if job.failure.is_none() {
            *state
                .putting
                .entry((job.destination_bucket.clone(), job.key.clone()))
                .or_default() += 1;
        }
    }
    if let Some(reason) = job.failure.clone() {
        return report_failure(&shared, job, reason).await;
    }
    let result = copy(&shared.s3, &job).await;
    let visible_at = Utc::now();
    if let Some(metrics) = &shared.metrics {
        let replication = job.replication();
        match &result {
            Ok(_) => {
                let seconds = (visible_at - job.detected_at).num_milliseconds() as f64 / 1000.0;
                shared.metric_error(&job, metrics.replicated(&replication, seconds).await);
            }
            Err(_) => metrics.settle(&replication),
        }
    }
    // Its error is recorded in `copy_errors`.
    let _ = record_copy(&shared, job, result, visible_at, "copy failed");
}

/// The end of a copy, a scan's or a re-drive's: the destination key no longer being written,
/// the replica seen (a replica is not replicated again: the destination may be a source too),
/// and the copy recorded in `replicated`, or its error in `copy_errors` (`what` says which copy).
fn record_copy(
    shared: &Shared,
    job: Job,
    result: Result<Option<String>>,
    visible_at: DateTime<Utc>,
    what: &str,
) -> Result<Replicated, String> {
    let mut state = shared.lock();
    let putting_key = (job.destination_bucket.clone(), job.key.clone());
    if let Some(count) = state.putting.get_mut(&putting_key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            state.putting.remove(&putting_key);
        }
    }
    match result {
        Ok(replica_version_id) => {
            if let Some(replica) = &replica_version_id {
                if let Some(seen) = state.seen.get_mut(&job.destination_bucket) {
                    seen.insert((job.key.clone(), replica.clone()));
                }
            }
            let replicated = Replicated {
                source_bucket: job.source_bucket,
                key: job.key,
                version_id: job.version_id,
                destination_bucket: job.destination_bucket,
                rule_id: job.rule_id,
                replica_version_id,
                detected_at: job.detected_at,
                visible_at,
            };
            state.replicated.push(replicated.clone());
            Ok(replicated)
        }
        Err(e) => {
            drop(state);
            let message = format!("{what}: {e:#}");
            shared.record_error(CopyError {
                at: visible_at,
                source_bucket: job.source_bucket,
                key: Some(job.key),
                version_id: Some(job.version_id),
                destination_bucket: Some(job.destination_bucket),
                message: message.clone(),
            });
            Err(message)
        }
    }
}

/// One copy of a re-drive, bracketed like a scan's copy in [`run_job`] (the destination key is
/// marked as being written, the replica is recorded as seen) and recorded in `replicated`.
async fn redrive_copy(shared: &Shared, job: Job) -> Result<Replicated, RedriveError> {
    *shared
        .lock()
        .putting
        .entry((job.destination_bucket.clone(), job.key.clone()))
        .or_default() += 1;
    let result = copy(&shared.s3, &job).await;
    record_copy(shared, job, result, Utc::now(), "re-drive copy failed")
        .map_err(RedriveError::Failed)
}

/// GetObject(versionId) + GetObjectTagging on the source, PutObject on the destination.
/// Answers the replica's version id.
async fn copy(s3: &aws_sdk_s3::Client, job: &Job) -> Result<Option<String>> {
    let object = s3
        .get_object()
        .bucket(&job.source_bucket)
        .key(&job.key)
        .version_id(&job.version_id)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("GetObject: {}", DisplayErrorContext(e)))?;
    let tags = s3
        .get_object_tagging()
        .bucket(&job.source_bucket)
        .key(&job.key)
        .version_id(&job.version_id)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("GetObjectTagging: {}", DisplayErrorContext(e)))?
        .tag_set;
    let body = object
        .body
        .collect()
        .await
        .context("reading the source object's body")?
        .into_bytes();
    let mut put = s3
        .put_object()
        .bucket(&job.destination_bucket)
        .key(&job.key)
        .body(ByteStream::from(body))
        .set_content_type(object.content_type)
        .set_metadata(object.metadata)
        .set_cache_control(object.cache_control)
        .set_content_disposition(object.content_disposition)
        .set_content_encoding(object.content_encoding)
        .set_content_language(object.content_language);
    if let Some(sse) = object.server_side_encryption {
        let kms = !matches!(sse, ServerSideEncryption::Aes256);
        put = put.server_side_encryption(sse);
        if kms {
            put = put
                .set_ssekms_key_id(object.ssekms_key_id)
                .set_bucket_key_enabled(object.bucket_key_enabled.filter(|enabled| *enabled));
        }
    }
    if !tags.is_empty() {
        let tagging: Vec<String> = tags
            .iter()
            .map(|tag| {
                format!(
                    "{}={}",
                    url_encode(&tag.key, false),
                    url_encode(&tag.value, false)
                )
            })
            .collect();
        put = put.tagging(tagging.join("&"));
    }
    let out = put
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("PutObject: {}", DisplayErrorContext(e)))?;
    Ok(out.version_id)
}

async fn report_failure(shared: &Shared, job: Job, reason: String) {
    if let Some(metrics) = &shared.metrics {
        shared.metric_error(&job, metrics.failed(&job.replication()).await);
    }
    let reported_at = Utc::now();
    let event = failure_event(&shared.region, &job, &reason, reported_at);
    let delivery_error = match &shared.sink {
        Some(sink) => sink.deliver(&event).await.err().map(|e| format!("{e:#}")),
        None => None,
    };
    if let Some(error) = &delivery_error {
        eprintln!(
            "replication simulator: failure event for {}/{} not delivered: {error}",
            job.source_bucket, job.key
        );
    }
    shared.lock().failures.push(FailedReplication {
        source_bucket: job.source_bucket,
        key: job.key,
        version_id: job.version_id,
        destination_bucket: job.destination_bucket,
        rule_id: job.rule_id,
        reason,
        detected_at: job.detected_at,
        reported_at,
        event,
        delivery_error,
    });
}

/// The S3 notification message for a failed replication (the shape of
/// `events/direct/failed.json`).
fn failure_event(
    region: &str,
    job: &Job,
    reason: &str,
    reported_at: DateTime<Utc>,
) -> serde_json::Value {
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut object = serde_json::json!({
        "key": url_encode(&job.key, true),
        "size": job.size,
        "versionId": job.version_id,
        "sequencer": job.sequencer,
    });
    if let Some(e_tag) = &job.e_tag {
        object["eTag"] = serde_json::Value::from(e_tag.trim_matches('"'));
    }
    serde_json::json!({
        "Records": [{
            "eventVersion": "2.2",
            "eventSource": "aws:s3",
            "awsRegion": region,
            "eventTime": time(reported_at),
            "eventName": "Replication:OperationFailedReplication",
            "userIdentity": {"principalId": "s3.amazonaws.com"},
            "requestParameters": {"sourceIPAddress": "s3.amazonaws.com"},
            "responseElements": {
                "x-amz-request-id": job.sequencer,
                "x-amz-id-2": "replmon-replication-simulator"
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "replmon-replication-events",
                "bucket": {
                    "name": job.source_bucket,
                    "ownerIdentity": {"principalId": "A2QX7RJ9KM4TZ8"},
                    "arn": format!("arn:aws:s3:::{}", job.source_bucket),
                },
                "object": object,
            },
            "replicationEventData": {
                "replicationRuleId": job.rule_id,
                "destinationBucket": format!("arn:aws:s3:::{}", job.destination_bucket),
                "s3Operation": "OBJECT_PUT",
                "requestTime": time(job.detected_at),
                "failureReason": reason,
            }
        }]
    })
}

/// URL-encoding as in S3 notifications: `+` for space, unreserved characters (and `/` in keys
/// when `keep_slash`) as they are, every other byte `%XX`.
pub fn url_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(byte as char)
            }
            b'/' if keep_slash => out.push('/'),
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

struct VersionInfo {
    key: String,
    version_id: String,
    size: i64,
    e_tag: Option<String>,
}

/// Every object version (not delete markers) of a bucket, all pages.
async fn list_versions(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<Vec<VersionInfo>> {
    let mut versions = Vec::new();
    let mut key_marker: Option<String> = None;
    let mut version_marker: Option<String> = None;
    loop {
        let out = s3
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("ListObjectVersions: {}", DisplayErrorContext(e)))?;
        for version in out.versions.unwrap_or_default() {
            let Some(key) = version.key else { continue };
            versions.push(VersionInfo {
                key,
                version_id: version.version_id.unwrap_or_else(|| "null".to_owned()),
                size: version.size.unwrap_or(0),
                e_tag: version.e_tag,
            });
        }
        if out.is_truncated != Some(true) {
            return Ok(versions);
        }
        key_marker = out.next_key_marker;
        version_marker = out.next_version_id_marker;
        if key_marker.is_none() {
            bail!("ListObjectVersions of {bucket} is truncated but gives no next key marker");
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    id: String,
    priority: i32,
    prefix: String,
    destination_bucket: String,
}

/// The enabled rules of a bucket's replication configuration (none when it has none).
async fn replication_rules(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<Vec<Rule>> {
    let out = match s3.get_bucket_replication().bucket(bucket).send().await {
        Ok(out) => out,
        Err(e) if e.code() == Some("ReplicationConfigurationNotFoundError") => {
            return Ok(Vec::new())
        }
        Err(e) => bail!("GetBucketReplication: {}", DisplayErrorContext(e)),
    };
    let Some(configuration) = out.replication_configuration else {
        return Ok(Vec::new());
    };
    Ok(configuration
        .rules
        .into_iter()
        .filter(|rule| rule.status == ReplicationRuleStatus::Enabled)
        .filter_map(|rule| {
            let legacy = legacy_prefix(&rule);
            let destination = rule.destination?;
            let prefix = rule
                .filter
                .as_ref()
                .and_then(|f| {
                    f.prefix
                        .clone()
                        .or_else(|| f.and.as_ref().and_then(|a| a.prefix.clone()))
                })
                .or(legacy)
                .unwrap_or_default();
            Some(Rule {
                id: rule.id.unwrap_or_default(),
                priority: rule.priority.unwrap_or(0),
                prefix,
                destination_bucket: bucket_from_arn(&destination.bucket).to_owned(),
            })
        })
        .collect())
}

/// The rule-level `Prefix` of V1 replication configurations (deprecated by `Filter`, still
/// answered by S3 for configurations written that way).
#[allow(deprecated)]
fn legacy_prefix(rule: &aws_sdk_s3::types::ReplicationRule) -> Option<String> {
    rule.prefix.clone()
}

/// `arn:aws:s3:::name` -> `name` (a bare name stays as it is).
fn bucket_from_arn(arn: &str) -> &str {
    arn.rsplit_once(":::").map_or(arn, |(_, name)| name)
}

struct Target {
    rule_id: String,
    destination_bucket: String,
}

/// Per destination, the matching rule with the highest priority.
fn targets(
    rules: &[Rule],
    prefixes: &HashMap<(String, String), String>,
    bucket: &str,
    key: &str,
) -> Vec<Target> {
    let mut chosen: Vec<(&Rule, i32)> = Vec::new();
    for rule in rules {
        let prefix = prefixes
            .get(&(bucket.to_owned(), rule.id.clone()))
            .unwrap_or(&rule.prefix);
        if !key.starts_with(prefix.as_str()) {
            continue;
        }
        match chosen
            .iter_mut()
            .find(|(r, _)| r.destination_bucket == rule.destination_bucket)
        {
            Some(slot) if slot.1 < rule.priority => *slot = (rule, rule.priority),
            Some(_) => {}
            None => chosen.push((rule, rule.priority)),
        }
    }
    chosen
        .into_iter()
        .map(|(rule, _)| Target {
            rule_id: rule.id.clone(),
            destination_bucket: rule.destination_bucket.clone(),
        })
        .collect()
}

fn draw(rng: &mut SplitMix64, delay: Delay) -> Duration {
    match delay {
        Delay::Fixed(delay) => delay,
        Delay::Uniform { min, max } if max <= min => min,
        Delay::Uniform { min, max } => {
            let span = (max - min).as_nanos();
            let offset = u128::from(rng.next_u64()) % (span + 1);
            min + Duration::from_nanos(u64::try_from(offset).unwrap_or(u64::MAX))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunked_bodies_are_joined_even_inside_a_character() {
        let text = "é ok";
        let bytes = text.as_bytes();
        let mut body = Vec::new();
        body.extend_from_slice(b"1\r\n");
        body.push(bytes[0]);
        body.extend_from_slice(b"\r\n4\r\n");
        body.extend_from_slice(&bytes[1..]);
        body.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(super::dechunk(&body), bytes);
        assert_eq!(super::dechunk(b"zz\r\nabc"), b"");
        assert_eq!(super::dechunk(b"ff\r\nshort"), b"");
    }

    use super::*;

    fn job(key: &str) -> Job {
        Job {
            source_bucket: "replmon-demo-source".into(),
            key: key.into(),
            version_id: "v1".into(),
            size: 12,
            e_tag: Some("\"abc\"".into()),
            rule_id: "replicate-everything".into(),
            destination_bucket: "replmon-demo-replica".into(),
            detected_at: Utc::now(),
            delay: Duration::ZERO,
            failure: Some("DstPutObjectNotPermitted".into()),
            sequencer: "0000000000000000001".into(),
        }
    }

    #[test]
    fn keys_are_encoded_like_s3_notifications() {
        assert_eq!(
            url_encode("reports/2026/q3 summary(2).csv", true),
            "reports/2026/q3+summary%282%29.csv"
        );
        assert_eq!(url_encode("a/b+c=d&é", false), "a%2Fb%2Bc%3Dd%26%C3%A9");
        for key in ["plain.txt", "a b/c+d%e(f)~g", "ünï cødé/ key"] {
            assert_eq!(
                replmon_shared::event::decode_key(&url_encode(key, true)),
                key
            );
        }
    }

    #[test]
    fn the_failure_event_parses_as_the_function_parses_it() {
        let job = job("reports/q3 summary(2).csv");
        let event = failure_event("us-east-1", &job, "DstPutObjectNotPermitted", Utc::now());
        let parsed = replmon_shared::event::S3Notification::from_value(&event);
        let Ok(replmon_shared::event::S3Notification::Records(records)) = parsed else {
            panic!("not parsed: {parsed:?}");
        };
        let [replmon_shared::event::NotificationRecord::Replication(event)] = records.as_slice()
        else {
            panic!("not one replication record: {records:?}");
        };
        assert_eq!(event.key, "reports/q3 summary(2).csv");
        assert_eq!(event.source_bucket, "replmon-demo-source");
        assert_eq!(event.destination_bucket, "replmon-demo-replica");
        assert_eq!(event.destination_arn, "arn:aws:s3:::replmon-demo-replica");
        assert_eq!(event.rule_id, "replicate-everything");
        assert_eq!(
            event.failure_reason.as_deref(),
            Some("DstPutObjectNotPermitted")
        );
        assert_eq!(event.version_id.as_deref(), Some("v1"));
        assert_eq!(event.size, Some(12));
    }

    #[test]
    fn uniform_delays_stay_in_bounds_and_repeat_with_the_seed() {
        let delay = Delay::Uniform {
            min: Duration::from_millis(100),
            max: Duration::from_millis(300),
        };
        let mut a = SplitMix64(7);
        let mut b = SplitMix64(7);
        let drawn: Vec<Duration> = (0..1000).map(|_| draw(&mut a, delay)).collect();
        let again: Vec<Duration> = (0..1000).map(|_| draw(&mut b, delay)).collect();
        assert_eq!(drawn, again);
        assert!(drawn
            .iter()
            .all(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_millis(300)));
        let low = drawn
            .iter()
            .filter(|d| **d < Duration::from_millis(200))
            .count();
        assert!((400..600).contains(&low), "{low} of 1000 below the middle");
        assert_eq!(
            draw(
                &mut a,
                Delay::Uniform {
                    min: Duration::from_secs(2),
                    max: Duration::from_secs(1)
                }
            ),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn the_highest_priority_matching_rule_wins_per_destination() {
        let rule = |id: &str, priority, prefix: &str, destination: &str| Rule {
            id: id.into(),
            priority,
            prefix: prefix.into(),
            destination_bucket: destination.into(),
        };
        let rules = vec![
            rule("all", 1, "", "replica"),
            rule("logs", 5, "logs/", "replica"),
            rule("archive", 1, "", "archive"),
        ];
        let names = |key: &str, prefixes: &HashMap<(String, String), String>| {
            targets(&rules, prefixes, "source", key)
                .into_iter()
                .map(|t| format!("{}:{}", t.rule_id, t.destination_bucket))
                .collect::<Vec<_>>()
        };
        let none = HashMap::new();
        assert_eq!(names("logs/a", &none), ["logs:replica", "archive:archive"]);
        assert_eq!(names("data/a", &none), ["all:replica", "archive:archive"]);
        let prefixes = HashMap::from([(
            ("source".to_owned(), "archive".to_owned()),
            "cold/".to_owned(),
        )]);
        assert_eq!(names("data/a", &prefixes), ["all:replica"]);
        assert_eq!(bucket_from_arn("arn:aws:s3:::replica"), "replica");
        assert_eq!(bucket_from_arn("replica"), "replica");
    }
}
