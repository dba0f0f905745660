//! An S3 Batch Operations (S3 control `CreateJob`, `DescribeJob`, `ListJobs`, `UpdateJobStatus`)
//! simulator for the local stack: moto has no Batch Operations, and the product re-drives failed
//! replications with S3 Batch Replication jobs.
//!
//! [`S3ControlSimulator::start`] listens on 127.0.0.1 (a port of its own) and answers the REST-XML
//! shapes `aws-sdk-s3control` sends and reads (`/v20180820/jobs...`, the account in
//! `x-amz-account-id`, errors as `<ErrorResponse><Error><Code>`); point the real client at it with
//! [`s3control_client`] (the SDK would otherwise put the account id in front of the host). What a
//! job does comes from the [`ReplicationSimulator`] it is given and is written to the local S3
//! (moto) through the `aws-sdk-s3` client it is given.
//!
//! # Modelled
//!
//! - `CreateJob` with operation `S3ReplicateObject` only (another operation: 501 `NotImplemented`).
//!   Validated as S3 does: `ClientRequestToken` (1..=64 characters), `Operation`, `Report` (with
//!   `Enabled`; `Bucket` and `Format` when enabled), `Priority` (>= 0), `RoleArn` (an IAM role
//!   ARN), exactly one of `Manifest` / `ManifestGenerator`, `ConfirmationRequired` (a boolean when
//!   present; absent is false); 400 `InvalidRequest` otherwise. A second `CreateJob` of the same
//!   account with the same token answers the first job's id and starts nothing (whatever else the
//!   request says). [`S3ControlSimulator::create_job_requests`] and
//!   [`S3ControlSimulator::jobs_created`] count them.
//! - A job runs on its own task, one status per [`S3ControlSettings::step`]: `New` -> `Preparing`
//!   -> (`Suspended` when `ConfirmationRequired`, until `UpdateJobStatus` `Ready`) -> `Ready` ->
//!   `Active` -> `Completing` -> `Complete`. It fails (`Failing` -> `Failed`, with
//!   `FailureReasons`) when its manifest cannot be made, read or written, or its report bucket
//!   cannot be reached, both checked while `Preparing`. `UpdateJobStatus` `Cancelled` moves any job
//!   not yet `Completing` or terminal to `Cancelling`, then `Cancelled` (tasks already run stay
//!   done). The failure codes are the simulator's own (`ManifestGenerationFailed`,
//!   `ManifestWriteFailed`, `ManifestReadFailed`, `ReportBucketInaccessible`, `ReportWriteFailed`):
//!   S3 documents none.
//! - The generated manifest (`ManifestGenerator.S3JobManifestGenerator`): the versions of
//!   `SourceBucket` whose replication the [`ReplicationSimulator`] reported failed and that no copy
//!   has reached since ([`ReplicationSimulator::failed_versions`]), filtered by `Filter`:
//!   `ObjectReplicationStatuses` (only `FAILED` is modelled: a list without it selects nothing; an
//!   absent list selects the failed versions too), `CreatedAfter` / `CreatedBefore` (compared with
//!   the version's detection time, [`FailedVersion::detected_at`], which the simulator knows to
//!   the millisecond, where moto's `LastModified` has whole seconds: both bounds exclusive),
//!   `KeyNameConstraint` (a key must match one of the prefixes if any are given, and one of the
//!   suffixes if any, and one of the substrings if any), `EligibleForReplication` (an enabled rule
//!   of the current configuration matches the key), `ObjectSizeGreaterThanBytes` /
//!   `ObjectSizeLessThanBytes` and `MatchAnyStorageClass` (read with `HeadObject`). The source
//!   bucket must have a replication configuration (S3 fails the job otherwise). Versions are
//!   listed in the order their replication failed (a key's versions oldest first, so the replica's
//!   current version is the source's). With `EnableManifestOutput`, it is written to
//!   `ManifestOutputLocation` as S3 writes it (S3 Inventory CSV layout): `<prefix>/job-<id>/manifest.json` (`sourceBucket`,
//!   `destinationBucket` (the ARN), `version`, `creationTimestamp` (epoch milliseconds),
//!   `fileFormat` `CSV`, `fileSchema` `Bucket, Key, VersionId`, `files` [{`key`, `size`,
//!   `MD5checksum`}]) and one gzip CSV `<prefix>/job-<id>/data/<uuid>.csv.gz` of rows
//!   `bucket,key,versionId` (keys URL-encoded as in S3 notifications: `+` for a space). DescribeJob
//!   then answers `GeneratedManifestDescriptor` (`S3InventoryReport_CSV_20211130`, the ARN and
//!   ETag of the manifest.json).
//! - A `Manifest` of format `S3BatchOperations_CSV_20180820` (fields `Bucket`, `Key`, optional
//!   `VersionId`, `Ignore`), read while `Preparing`; its `ETag` must match the object's.
//! - Each task re-drives one version with [`ReplicationSimulator::redrive`]: while a failure rule
//!   still matches the key the task fails (error code: the rule's reason, e.g.
//!   `DstPutObjectNotPermitted`; HTTP 403 for `...NotPermitted` and `AssumeRole...` reasons, else
//!   400; result message `Replication failed, failure reason: <reason>`), else the version is copied
//!   to every destination exactly as the replication simulator copies, and leaves the failed
//!   versions (a later job does not list it).
//! - The completion report (`Report.Enabled`), written to `Report.Bucket` + `Report.Prefix` as S3
//!   documents it: `<prefix>/job-<id>/results/<40 hex>.csv`, one per task status present
//!   (`ReportScope` `FailedTasksOnly`: failed tasks only), and `<prefix>/job-<id>/manifest.json`
//!   (`Format` `Report_CSV_20180820`, `ReportCreationDate`, `Results` [{`TaskExecutionStatus`,
//!   `Bucket`, `MD5Checksum`, `Key`}], `ReportSchema`). Rows are `bucket,key,versionId,status,
//!   httpStatus,errorCode,resultMessage` (keys URL-encoded, RFC 4180 quoting): in that order, as
//!   in S3's own example reports (`...,failed,200,PermanentFailure,"Lambda returned ..."`), whose
//!   `ReportSchema` string names `ErrorCode` before `HTTPStatusCode` all the same. A succeeded row
//!   is `...,succeeded,200,,Successful`. As S3, no report when no task ran. It is written while
//!   the job is `Completing` (or `Cancelling`); [`S3ControlSettings::report_delay`] writes it that
//!   long after `Complete` instead, and [`S3ControlSimulator::hold_reports`] holds it until
//!   released (a report that cannot be read yet).
//! - Job status events as S3 records them in CloudTrail and EventBridge delivers them (detail-type
//!   `AWS Service Event via CloudTrail`, source `aws.s3`, `detail.eventName` `JobCreated` then
//!   `JobStatusChanged`, `detail.serviceEventDetails` {`jobId`, `jobArn`, `status`, `jobEventId`,
//!   `failureCodes`, `statusChangeReason`}), one per status, handed to the [`JobEventSink`] in
//!   status order (EventBridge promises no order; a test that needs disorder reorders itself).
//!   [`S3ControlSimulator::set_drop_events`] drops them (as a rule that never matched would), and
//!   [`S3ControlSimulator::events`] records every one, delivered or not.
//! - `ListJobs` with `jobStatuses`, `maxResults` (1..=1000, default 1000) and `nextToken`, newest
//!   job first; `DescribeJob` / `UpdateJobStatus` of an unknown id (or another account's): 404
//!   `NoSuchJob`; an impossible status change: 400 `JobStatusException`.
//!
//! # Not modelled
//!
//! Other operations, job tags, `UpdateJobPriority`, `Pausing`/`Paused`, failure thresholds (S3
//! fails a job whose tasks fail too often), replication statuses other than `FAILED` (`COMPLETED`,
//! `NONE`, `REPLICA`), `MatchAnyObjectEncryption` (refused with 501), `ExpectedBucketOwner` and
//! manifest encryption (ignored), request signatures (not checked), `S3InventoryReport` manifests
//! given by the caller, and the 90-day expiry of finished jobs. A generated manifest that selects
//! nothing gives a job that completes with no task and no report.

use crate::replication_sim::{
    url_encode, FailedVersion, LambdaInvokeSink, RedriveError, ReplicationSimulator, SqsSink,
};
use anyhow::{bail, Context, Result};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use replmon_shared::fakes::SplitMix64;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

/// Where job status events go, the way an EventBridge rule delivers them to its target.
pub trait JobEventSink: Send + Sync {
    /// Deliver one EventBridge event (`{"version": "0", "detail-type": ..., "detail": {...}}`).
    fn deliver<'a>(&'a self, event: &'a serde_json::Value) -> BoxFuture<'a, Result<()>>;
}

/// An EventBridge rule with an SQS target: the event is the message body.
impl JobEventSink for SqsSink {
    fn deliver<'a>(&'a self, event: &'a serde_json::Value) -> BoxFuture<'a, Result<()>> {
        crate::replication_sim::FailureSink::deliver(self, event)
    }
}

/// An EventBridge rule with a Lambda target: the event is the invocation payload.
impl JobEventSink for LambdaInvokeSink {
    fn deliver<'a>(&'a self, event: &'a serde_json::Value) -> BoxFuture<'a, Result<()>> {
        crate::replication_sim::FailureSink::deliver(self, event)
    }
}

/// Keeps every event delivered to it, in delivery order.
#[derive(Debug, Default)]
pub struct RecordingSink {
    events: Mutex<Vec<serde_json::Value>>,
}

impl RecordingSink {
    pub fn events(&self) -> Vec<serde_json::Value> {
        lock(&self.events).clone()
    }

    /// `(eventName, status)` of each event of one job, in delivery order.
    pub fn statuses_of(&self, job_id: &str) -> Vec<(String, String)> {
        lock(&self.events)
            .iter()
            .filter(|e| e["detail"]["serviceEventDetails"]["jobId"] == job_id)
            .map(|e| {
                let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
                (
                    text(&e["detail"]["eventName"]),
                    text(&e["detail"]["serviceEventDetails"]["status"]),
                )
            })
            .collect()
    }
}

impl JobEventSink for RecordingSink {
    fn deliver<'a>(&'a self, event: &'a serde_json::Value) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            lock(&self.events).push(event.clone());
            Ok(())
        })
    }
}

/// How the simulator runs. `Default`: 50 ms steps, no task delay, report written while
/// `Completing`, no sink, [`crate::REGION`], a seed from the clock (job ids differ between runs).
#[derive(Clone)]
pub struct S3ControlSettings {
    /// Time between two status changes of a job.
    pub step: Duration,
    /// Time after each task of an `Active` job (a job with many tasks stays `Active` that long).
    pub task_delay: Duration,
    /// `None`: the report is written while the job is `Completing`, before `Complete`, as S3 does.
    /// `Some(d)`: `d` after the job reports `Complete`.
    pub report_delay: Option<Duration>,
    /// `None`: events are only recorded ([`S3ControlSimulator::events`]).
    pub event_sink: Option<Arc<dyn JobEventSink>>,
    /// The region of job ARNs and events.
    pub region: String,
    /// Seeds job ids, event ids and file names.
    pub seed: u64,
    /// The port to listen on (0: any free one).
    pub port: u16,
}

impl Default for S3ControlSettings {
    fn default() -> Self {
        let clock = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        S3ControlSettings {
            step: Duration::from_millis(50),
            task_delay: Duration::ZERO,
            report_delay: None,
            event_sink: None,
            region: crate::REGION.to_owned(),
            seed: clock.unsigned_abs(),
            port: 0,
        }
    }
}

/// A job's status, as S3 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    New,
    Preparing,
    Suspended,
    Ready,
    Active,
    Completing,
    Complete,
    Failing,
    Failed,
    Cancelling,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::New => "New",
            JobStatus::Preparing => "Preparing",
            JobStatus::Suspended => "Suspended",
            JobStatus::Ready => "Ready",
            JobStatus::Active => "Active",
            JobStatus::Completing => "Completing",
            JobStatus::Complete => "Complete",
            JobStatus::Failing => "Failing",
            JobStatus::Failed => "Failed",
            JobStatus::Cancelling => "Cancelling",
            JobStatus::Cancelled => "Cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Complete | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// One line of a job's manifest: an object version to act on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManifestEntry {
    pub bucket: String,
    pub key: String,
    pub version_id: String,
}

/// What one task did (a line of the completion report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskResult {
    pub entry: ManifestEntry,
    pub succeeded: bool,
    pub http_status: u16,
    /// Empty when the task succeeded.
    pub error_code: String,
    pub message: String,
}

/// A job as the simulator holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSnapshot {
    pub id: String,
    pub account: String,
    pub client_request_token: String,
    pub status: JobStatus,
    /// Every status it has had, `New` first.
    pub history: Vec<JobStatus>,
    pub confirmation_required: bool,
    pub priority: i32,
    pub created_at: DateTime<Utc>,
    pub terminated_at: Option<DateTime<Utc>>,
    /// The versions it acts on, once `Preparing` made or read its manifest.
    pub manifest: Vec<ManifestEntry>,
    /// (bucket, key) of the generated manifest.json, once written.
    pub generated_manifest: Option<(String, String)>,
    pub results: Vec<TaskResult>,
    /// (FailureCode, FailureReason).
    pub failure_reasons: Vec<(String, String)>,
    /// (bucket, keys) of the completion report, once written: its CSV files, then its
    /// manifest.json.
    pub report: Option<(String, Vec<String>)>,
}

/// One job status event the simulator emitted.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    pub event: serde_json::Value,
    /// Dropped by [`S3ControlSimulator::set_drop_events`]: never handed to the sink.
    pub dropped: bool,
    /// Why the sink did not take it.
    pub delivery_error: Option<String>,
}

/// See the module documentation. Stops (its server and its jobs) when dropped.
pub struct S3ControlSimulator {
    inner: Arc<Inner>,
    address: SocketAddr,
    accept: JoinHandle<()>,
    delivery: JoinHandle<()>,
}

impl S3ControlSimulator {
    /// Listen on 127.0.0.1 (`settings.port`, or a free port). `s3` writes manifests and reports (path-style, as
    /// [`crate::s3_client`] builds it); `replication` gives the failed versions and re-drives them.
    pub async fn start(
        s3: aws_sdk_s3::Client,
        replication: Arc<ReplicationSimulator>,
        settings: S3ControlSettings,
    ) -> Result<S3ControlSimulator> {
        let listener = TcpListener::bind(("127.0.0.1", settings.port))
            .await
            .context("binding the S3 control simulator")?;
        let address = listener.local_addr()?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (hold, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            s3,
            replication,
            sink: settings.event_sink.clone(),
            state: Mutex::new(State {
                jobs: Vec::new(),
                tokens: HashMap::new(),
                rng: SplitMix64(settings.seed),
                requests: 0,
                events: Vec::new(),
                errors: Vec::new(),
            }),
            settings,
            events_tx,
            hold,
            drop_events: AtomicBool::new(false),
            create_requests: AtomicUsize::new(0),
            tasks: Mutex::new(Vec::new()),
        });
        let delivery = tokio::spawn(deliver_events(inner.clone(), events_rx));
        let accept = tokio::spawn({
            let inner = inner.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let inner = inner.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            handle(inner.clone(), request)
                        });
                        // Errors here are clients hanging up.
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Ok(S3ControlSimulator {
            inner,
            address,
            accept,
            delivery,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Vec<JobSnapshot> {
        lock(&self.inner.state)
            .jobs
            .iter()
            .map(JobRecord::snapshot)
            .collect()
    }

    pub fn job(&self, id: &str) -> Option<JobSnapshot> {
        lock(&self.inner.state)
            .jobs
            .iter()
            .find(|job| job.id == id)
            .map(JobRecord::snapshot)
    }

    /// `CreateJob` requests received, refused and repeated ones included.
    pub fn create_job_requests(&self) -> usize {
        self.inner.create_requests.load(Ordering::SeqCst)
    }

    /// Jobs created (a repeated `ClientRequestToken` creates none).
    pub fn jobs_created(&self) -> usize {
        lock(&self.inner.state).jobs.len()
    }

    /// Drop the events of status changes from now on (recorded as dropped, never delivered).
    pub fn set_drop_events(&self, drop: bool) {
        self.inner.drop_events.store(drop, Ordering::SeqCst);
    }

    /// Hold completion reports (`true`): a job completes, its report is written once released
    /// (`false`), each after its own [`S3ControlSettings::report_delay`].
    pub fn hold_reports(&self, hold: bool) {
        self.inner.hold.send_replace(hold);
    }

    /// Every event emitted so far, in emission order, once delivered or dropped.
    pub fn events(&self) -> Vec<JobEvent> {
        lock(&self.inner.state).events.clone()
    }

    /// What went wrong outside a job's own outcome (a delayed report that could not be written).
    pub fn errors(&self) -> Vec<String> {
        lock(&self.inner.state).errors.clone()
    }

    /// Stop serving and end every job where it is.
    pub async fn stop(&self) {
        self.accept.abort();
        let tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        self.delivery.abort();
    }
}

impl Drop for S3ControlSimulator {
    fn drop(&mut self) {
        self.accept.abort();
        self.delivery.abort();
        for task in lock(&self.inner.tasks).drain(..) {
            task.abort();
        }
    }
}

/// An `aws-sdk-s3control` client that sends every request to `endpoint` as it is: the SDK's own
/// endpoint rules put the account id in front of the host (`123456789012.127.0.0.1`), which does
/// not resolve.
pub fn s3control_client(sdk: &aws_config::SdkConfig, endpoint: &str) -> aws_sdk_s3control::Client {
    let config = aws_sdk_s3control::config::Builder::from(sdk)
        .endpoint_resolver(FixedEndpoint(endpoint.to_owned()))
        .build();
    aws_sdk_s3control::Client::from_conf(config)
}

#[derive(Debug)]
struct FixedEndpoint(String);

impl aws_sdk_s3control::config::endpoint::ResolveEndpoint for FixedEndpoint {
    fn resolve_endpoint<'a>(
        &'a self,
        _params: &'a aws_sdk_s3control::config::endpoint::Params,
    ) -> aws_sdk_s3control::config::endpoint::EndpointFuture<'a> {
        aws_sdk_s3control::config::endpoint::EndpointFuture::ready(Ok(
            aws_sdk_s3control::config::endpoint::Endpoint::builder()
                .url(self.0.clone())
                .build(),
        ))
    }
}

/// Rows of a CSV text (RFC 4180: quoted fields may hold commas, doubled quotes and line breaks).
/// Blank lines are skipped.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                if !(row.len() == 1 && row[0].is_empty()) {
                    rows.push(std::mem::take(&mut row));
                }
                row.clear();
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// State

struct Inner {
    s3: aws_sdk_s3::Client,
    replication: Arc<ReplicationSimulator>,
    settings: S3ControlSettings,
    sink: Option<Arc<dyn JobEventSink>>,
    state: Mutex<State>,
    events_tx: mpsc::UnboundedSender<QueuedEvent>,
    hold: watch::Sender<bool>,
    drop_events: AtomicBool,
    create_requests: AtomicUsize,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

struct State {
    jobs: Vec<JobRecord>,
    /// (account, ClientRequestToken) -> job id.
    tokens: HashMap<(String, String), String>,
    rng: SplitMix64,
    requests: u64,
    events: Vec<JobEvent>,
    errors: Vec<String>,
}

struct JobRecord {
    id: String,
    account: String,
    spec: Arc<JobSpec>,
    status: JobStatus,
    history: Vec<JobStatus>,
    created_at: DateTime<Utc>,
    terminated_at: Option<DateTime<Utc>>,
    suspended_at: Option<DateTime<Utc>>,
    active_since: Option<DateTime<Utc>>,
    active_until: Option<DateTime<Utc>>,
    status_update_reason: Option<String>,
    manifest: Vec<ManifestEntry>,
    total: Option<usize>,
    generated_manifest: Option<GeneratedManifest>,
    results: Vec<TaskResult>,
    failure_reasons: Vec<(String, String)>,
    report: Option<(String, Vec<String>)>,
    wake: Arc<Notify>,
}

#[derive(Clone)]
struct GeneratedManifest {
    bucket: String,
    key: String,
    e_tag: String,
}

impl JobRecord {
    fn snapshot(&self) -> JobSnapshot {
        JobSnapshot {
            id: self.id.clone(),
            account: self.account.clone(),
            client_request_token: self.spec.token.clone(),
            status: self.status,
            history: self.history.clone(),
            confirmation_required: self.spec.confirmation_required,
            priority: self.spec.priority,
            created_at: self.created_at,
            terminated_at: self.terminated_at,
            manifest: self.manifest.clone(),
            generated_manifest: self
                .generated_manifest
                .as_ref()
                .map(|m| (m.bucket.clone(), m.key.clone())),
            results: self.results.clone(),
            failure_reasons: self.failure_reasons.clone(),
            report: self.report.clone(),
        }
    }

    fn arn(&self, region: &str) -> String {
        format!("arn:aws:s3:{region}:{}:job/{}", self.account, self.id)
    }
}

/// Why a job failed: (FailureCode, FailureReason).
type JobFailure = (String, String);

fn failure(code: &str, reason: String) -> JobFailure {
    (code.to_owned(), reason)
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn random_hex(&self, digits: usize) -> String {
        let mut state = self.lock();
        random_hex(&mut state.rng, digits)
    }

    fn uuid(state: &mut State) -> String {
        let hex = random_hex(&mut state.rng, 32);
        format!(
            "{}-{}-4{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[13..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    /// Set a job's status and emit its event (`JobCreated` for `New`, else `JobStatusChanged`).
    fn set_status(&self, state: &mut State, index: usize, to: JobStatus) {
        let now = Utc::now();
        let event = {
            let Some(job) = state.jobs.get_mut(index) else {
                return;
            };
            job.status = to;
            job.history.push(to);
            match to {
                JobStatus::Suspended => job.suspended_at = Some(now),
                JobStatus::Active => job.active_since = Some(now),
                _ => {}
            }
            if job.active_since.is_some()
                && job.active_until.is_none()
                && !matches!(to, JobStatus::Active)
            {
                job.active_until = Some(now);
            }
            if to.is_terminal() {
                job.terminated_at = Some(now);
            }
            job.wake.notify_one();
            (
                job.id.clone(),
                job.arn(&self.settings.region),
                job.account.clone(),
                job.failure_reasons
                    .iter()
                    .map(|(code, _)| code.clone())
                    .collect::<Vec<_>>(),
                job.status_update_reason.clone(),
            )
        };
        let (id, arn, account, failure_codes, reason) = event;
        let event_id = Self::uuid(state);
        let detail_id = Self::uuid(state);
        let job_event_id = random_hex(&mut state.rng, 32);
        let event = status_event(StatusEvent {
            region: &self.settings.region,
            account: &account,
            job_id: &id,
            job_arn: &arn,
            status: to,
            at: now,
            event_id: &event_id,
            detail_id: &detail_id,
            job_event_id: &job_event_id,
            failure_codes: &failure_codes,
            reason: reason.as_deref(),
        });
        let dropped = self.drop_events.load(Ordering::SeqCst);
        // Sent under the lock: the delivery order is the order of the changes.
        if self.events_tx.send(QueuedEvent { event, dropped }).is_err() {
            state
                .errors
                .push(format!("job {id}: the event delivery task has stopped"));
        }
    }

    /// Move the job to `to`, unless it is being cancelled (answers false: the caller ends it).
    fn advance(&self, id: &str, to: JobStatus) -> bool {
        let mut state = self.lock();
        let Some(index) = state.jobs.iter().position(|job| job.id == id) else {
            return false;
        };
        if state.jobs[index].status == JobStatus::Cancelling {
            return false;
        }
        self.set_status(&mut state, index, to);
        true
    }

    fn status(&self, id: &str) -> Option<JobStatus> {
        self.lock()
            .jobs
            .iter()
            .find(|job| job.id == id)
            .map(|job| job.status)
    }

    fn with_job<T>(&self, id: &str, f: impl FnOnce(&mut JobRecord) -> T) -> Option<T> {
        self.lock().jobs.iter_mut().find(|job| job.id == id).map(f)
    }

    fn record_error(&self, message: String) {
        eprintln!("s3control simulator: {message}");
        self.lock().errors.push(message);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn random_hex(rng: &mut SplitMix64, digits: usize) -> String {
    let mut out = String::with_capacity(digits + 16);
    while out.len() < digits {
        out.push_str(&format!("{:016x}", rng.next_u64()));
    }
    out.truncate(digits);
    out
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

// ---------------------------------------------------------------------------------------------
// Events

struct QueuedEvent {
    event: serde_json::Value,
    dropped: bool,
}

struct StatusEvent<'a> {
    region: &'a str,
    account: &'a str,
    job_id: &'a str,
    job_arn: &'a str,
    status: JobStatus,
    at: DateTime<Utc>,
    event_id: &'a str,
    detail_id: &'a str,
    job_event_id: &'a str,
    failure_codes: &'a [String],
    reason: Option<&'a str>,
}

/// The EventBridge event of a CloudTrail `JobCreated` / `JobStatusChanged` record (the shape of
/// S3's "Tracking an S3 Batch Operations job in Amazon EventBridge through AWS CloudTrail").
fn status_event(e: StatusEvent<'_>) -> serde_json::Value {
    let seconds = e.at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let name = if e.status == JobStatus::New {
        "JobCreated"
    } else {
        "JobStatusChanged"
    };
    let reasons: Vec<&str> = e.reason.into_iter().collect();
    serde_json::json!({
        "version": "0",
        "id": e.event_id,
        "detail-type": "AWS Service Event via CloudTrail",
        "source": "aws.s3",
        "account": e.account,
        "time": seconds,
        "region": e.region,
        "resources": [],
        "detail": {
            "eventVersion": "1.05",
            "userIdentity": {"accountId": e.account, "invokedBy": "s3.amazonaws.com"},
            "eventTime": seconds,
            "eventSource": "s3.amazonaws.com",
            "eventName": name,
            "awsRegion": e.region,
            "sourceIPAddress": "s3.amazonaws.com",
            "userAgent": "s3.amazonaws.com",
            "requestParameters": null,
            "responseElements": null,
            "eventID": e.detail_id,
            "readOnly": false,
            "eventType": "AwsServiceEvent",
            "managementEvent": true,
            "recipientAccountId": e.account,
            "serviceEventDetails": {
                "jobId": e.job_id,
                "jobArn": e.job_arn,
                "status": e.status.as_str(),
                "jobEventId": e.job_event_id,
                "failureCodes": e.failure_codes,
                "statusChangeReason": reasons,
            }
        }
    })
}

async fn deliver_events(inner: Arc<Inner>, mut events: mpsc::UnboundedReceiver<QueuedEvent>) {
    while let Some(queued) = events.recv().await {
        let delivery_error = match (&inner.sink, queued.dropped) {
            (Some(sink), false) => sink
                .deliver(&queued.event)
                .await
                .err()
                .map(|e| format!("{e:#}")),
            _ => None,
        };
        if let Some(error) = &delivery_error {
            eprintln!("s3control simulator: job event not delivered: {error}");
        }
        inner.lock().events.push(JobEvent {
            event: queued.event,
            dropped: queued.dropped,
            delivery_error,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The request, parsed and validated

struct JobSpec {
    token: String,
    confirmation_required: bool,
    description: Option<String>,
    priority: i32,
    role_arn: String,
    /// Echoed by DescribeJob as they came (REST-XML shapes read and write alike).
    operation_xml: Element,
    report_xml: Element,
    source_xml: Element,
    report: ReportSpec,
    source: JobSource,
}

struct ReportSpec {
    enabled: bool,
    bucket: String,
    prefix: Option<String>,
    failed_only: bool,
}

enum JobSource {
    Generator(GeneratorSpec),
    Manifest(ManifestSpec),
}

struct GeneratorSpec {
    source_bucket: String,
    /// (bucket, prefix) when `EnableManifestOutput`.
    output: Option<(String, Option<String>)>,
    filter: FilterSpec,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct FilterSpec {
    statuses: Option<Vec<String>>,
    created_after: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
    eligible: Option<bool>,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
    substrings: Vec<String>,
    size_greater_than: Option<i64>,
    size_less_than: Option<i64>,
    storage_classes: Vec<String>,
}

impl FilterSpec {
    /// What can be decided without reading the object.
    fn selects(&self, version: &FailedVersion) -> bool {
        if let Some(statuses) = &self.statuses {
            if !statuses.iter().any(|s| s == "FAILED") {
                return false;
            }
        }
        if self.created_after.is_some_and(|t| version.detected_at <= t)
            || self
                .created_before
                .is_some_and(|t| version.detected_at >= t)
        {
            return false;
        }
        let key = version.key.as_str();
        let any = |list: &[String], matches: &dyn Fn(&str) -> bool| {
            list.is_empty() || list.iter().any(|s| matches(s))
        };
        any(&self.prefixes, &|p| key.starts_with(p))
            && any(&self.suffixes, &|s| key.ends_with(s))
            && any(&self.substrings, &|s| key.contains(s))
    }

    fn needs_head(&self) -> bool {
        self.size_greater_than.is_some()
            || self.size_less_than.is_some()
            || !self.storage_classes.is_empty()
    }
}

struct ManifestSpec {
    bucket: String,
    key: String,
    version_id: Option<String>,
    e_tag: String,
    fields: Vec<String>,
}

/// An answer in S3 control's error shape.
#[derive(Debug)]
struct ApiError {
    status: u16,
    code: &'static str,
    message: String,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError {
        status: 400,
        code: "InvalidRequest",
        message: message.into(),
    }
}

fn parse_job_spec(body: &[u8]) -> Result<JobSpec, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| invalid("The body is not UTF-8"))?;
    let root = parse_xml(text).map_err(|e| ApiError {
        status: 400,
        code: "MalformedXML",
        message: format!("The XML you provided was not well-formed: {e:#}"),
    })?;
    if root.name != "CreateJobRequest" {
        return Err(ApiError {
            status: 400,
            code: "MalformedXML",
            message: format!("Expected CreateJobRequest, got {}", root.name),
        });
    }
    let token = root
        .text_of("ClientRequestToken")
        .ok_or_else(|| invalid("ClientRequestToken is required"))?;
    let token_length = token.chars().count();
    if !(1..=64).contains(&token_length) {
        return Err(invalid(format!(
            "ClientRequestToken must be 1 to 64 characters long, not {token_length}"
        )));
    }
    let confirmation_required = match root.text_of("ConfirmationRequired") {
        None => false,
        Some(text) => parse_bool(text, "ConfirmationRequired")?,
    };
    let description = root.text_of("Description").map(str::to_owned);
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 256)
    {
        return Err(invalid("Description is longer than 256 characters"));
    }
    let priority: i32 = root
        .text_of("Priority")
        .ok_or_else(|| invalid("Priority is required"))?
        .trim()
        .parse()
        .map_err(|_| invalid("Priority must be an integer"))?;
    if priority < 0 {
        return Err(invalid("Priority must be 0 or more"));
    }
    let role_arn = root
        .text_of("RoleArn")
        .ok_or_else(|| invalid("RoleArn is required"))?
        .to_owned();
    if !(role_arn.starts_with("arn:") && role_arn.contains(":iam::") && role_arn.contains(":role/"))
        || role_arn.len() > 2048
    {
        return Err(invalid(format!(
            "RoleArn {role_arn} is not an IAM role ARN"
        )));
    }
    let operation_xml = root
        .child("Operation")
        .ok_or_else(|| invalid("Operation is required"))?
        .clone();
    match operation_xml.children.as_slice() {
        [one] if one.name == "S3ReplicateObject" => {}
        [one] => {
            return Err(ApiError {
                status: 501,
                code: "NotImplemented",
                message: format!(
                    "The S3 control simulator models S3ReplicateObject only, not {}",
                    one.name
                ),
            })
        }
        _ => return Err(invalid("Operation must name exactly one operation")),
    }
    let report_xml = root
        .child("Report")
        .ok_or_else(|| invalid("Report is required (with Enabled false for no report)"))?
        .clone();
    let report = parse_report(&report_xml)?;
    let (source_xml, source) = match (root.child("Manifest"), root.child("ManifestGenerator")) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "Specify either Manifest or ManifestGenerator, not both",
            ))
        }
        (None, None) => return Err(invalid("Manifest or ManifestGenerator is required")),
        (Some(manifest), None) => (
            manifest.clone(),
            JobSource::Manifest(parse_manifest(manifest)?),
        ),
        (None, Some(generator)) => (
            generator.clone(),
            JobSource::Generator(parse_generator(generator)?),
        ),
    };
    Ok(JobSpec {
        token: token.to_owned(),
        confirmation_required,
        description,
        priority,
        role_arn,
        operation_xml,
        report_xml,
        source_xml,
        report,
        source,
    })
}

fn parse_bool(text: &str, name: &str) -> Result<bool, ApiError> {
    match text.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(invalid(format!(
            "{name} must be true or false, not {other:?}"
        ))),
    }
}

/// `arn:aws:s3:::name` -> `name`.
fn bucket_arn(arn: &str, what: &str) -> Result<String, ApiError> {
    match arn.strip_prefix("arn:aws:s3:::") {
        Some(name) if !name.is_empty() && !name.contains('/') => Ok(name.to_owned()),
        _ => Err(invalid(format!(
            "{what} must be a bucket ARN (arn:aws:s3:::name), not {arn:?}"
        ))),
    }
}

fn parse_report(report: &Element) -> Result<ReportSpec, ApiError> {
    let enabled = parse_bool(
        report
            .text_of("Enabled")
            .ok_or_else(|| invalid("Report.Enabled is required"))?,
        "Report.Enabled",
    )?;
    if !enabled {
        return Ok(ReportSpec {
            enabled,
            bucket: String::new(),
            prefix: None,
            failed_only: false,
        });
    }
    let bucket = bucket_arn(
        report
            .text_of("Bucket")
            .ok_or_else(|| invalid("Report.Bucket is required when the report is enabled"))?,
        "Report.Bucket",
    )?;
    match report.text_of("Format") {
        Some("Report_CSV_20180820") => {}
        Some(other) => return Err(invalid(format!("Report.Format {other} is not supported"))),
        None => {
            return Err(invalid(
                "Report.Format is required when the report is enabled",
            ))
        }
    }
    let failed_only = match report.text_of("ReportScope") {
        None | Some("AllTasks") => false,
        Some("FailedTasksOnly") => true,
        Some(other) => return Err(invalid(format!("Report.ReportScope {other} is not valid"))),
    };
    Ok(ReportSpec {
        enabled,
        bucket,
        prefix: report.text_of("Prefix").map(str::to_owned),
        failed_only,
    })
}

fn parse_generator(generator: &Element) -> Result<GeneratorSpec, ApiError> {
    let s3 = generator
        .child("S3JobManifestGenerator")
        .ok_or_else(|| invalid("ManifestGenerator.S3JobManifestGenerator is required"))?;
    let source_bucket = bucket_arn(
        s3.text_of("SourceBucket")
            .ok_or_else(|| invalid("S3JobManifestGenerator.SourceBucket is required"))?,
        "SourceBucket",
    )?;
    let enable = parse_bool(
        s3.text_of("EnableManifestOutput")
            .ok_or_else(|| invalid("S3JobManifestGenerator.EnableManifestOutput is required"))?,
        "EnableManifestOutput",
    )?;
    let output = if enable {
        let location = s3.child("ManifestOutputLocation").ok_or_else(|| {
            invalid("ManifestOutputLocation is required when EnableManifestOutput is true")
        })?;
        let bucket = bucket_arn(
            location
                .text_of("Bucket")
                .ok_or_else(|| invalid("ManifestOutputLocation.Bucket is required"))?,
            "ManifestOutputLocation.Bucket",
        )?;
        match location.text_of("ManifestFormat") {
            Some("S3InventoryReport_CSV_20211130") => {}
            Some(other) => return Err(invalid(format!("ManifestFormat {other} is not valid"))),
            None => return Err(invalid("ManifestOutputLocation.ManifestFormat is required")),
        }
        Some((
            bucket,
            location.text_of("ManifestPrefix").map(str::to_owned),
        ))
    } else {
        None
    };
    let filter = match s3.child("Filter") {
        None => FilterSpec::default(),
        Some(filter) => parse_filter(filter)?,
    };
    Ok(GeneratorSpec {
        source_bucket,
        output,
        filter,
    })
}

fn parse_filter(filter: &Element) -> Result<FilterSpec, ApiError> {
    if filter.child("MatchAnyObjectEncryption").is_some() {
        return Err(ApiError {
            status: 501,
            code: "NotImplemented",
            message: "The S3 control simulator does not model MatchAnyObjectEncryption".into(),
        });
    }
    let time = |name: &str| -> Result<Option<DateTime<Utc>>, ApiError> {
        filter
            .text_of(name)
            .map(|text| {
                DateTime::parse_from_rfc3339(text.trim())
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| invalid(format!("{name} {text:?} is not a timestamp")))
            })
            .transpose()
    };
    let number = |name: &str| -> Result<Option<i64>, ApiError> {
        filter
            .text_of(name)
            .map(|text| {
                text.trim()
                    .parse()
                    .map_err(|_| invalid(format!("{name} must be an integer")))
            })
            .transpose()
    };
    let statuses = match filter.child("ObjectReplicationStatuses") {
        None => None,
        Some(list) => {
            let statuses: Vec<String> = list.member_texts();
            if let Some(bad) = statuses
                .iter()
                .find(|s| !["NONE", "FAILED", "COMPLETED", "REPLICA"].contains(&s.as_str()))
            {
                return Err(invalid(format!("{bad} is not a replication status")));
            }
            Some(statuses)
        }
    };
    let constraint = filter.child("KeyNameConstraint");
    let list = |name: &str| {
        constraint
            .and_then(|c| c.child(name))
            .map(Element::member_texts)
            .unwrap_or_default()
    };
    Ok(FilterSpec {
        statuses,
        created_after: time("CreatedAfter")?,
        created_before: time("CreatedBefore")?,
        eligible: filter
            .text_of("EligibleForReplication")
            .map(|t| parse_bool(t, "EligibleForReplication"))
            .transpose()?,
        prefixes: list("MatchAnyPrefix"),
        suffixes: list("MatchAnySuffix"),
        substrings: list("MatchAnySubstring"),
        size_greater_than: number("ObjectSizeGreaterThanBytes")?,
        size_less_than: number("ObjectSizeLessThanBytes")?,
        storage_classes: filter
            .child("MatchAnyStorageClass")
            .map(Element::member_texts)
            .unwrap_or_default(),
    })
}

fn parse_manifest(manifest: &Element) -> Result<ManifestSpec, ApiError> {
    let spec = manifest
        .child("Spec")
        .ok_or_else(|| invalid("Manifest.Spec is required"))?;
    match spec.text_of("Format") {
        Some("S3BatchOperations_CSV_20180820") => {}
        Some(other) => {
            return Err(ApiError {
                status: 501,
                code: "NotImplemented",
                message: format!("The S3 control simulator reads CSV manifests only, not {other}"),
            })
        }
        None => return Err(invalid("Manifest.Spec.Format is required")),
    }
    let fields = spec
        .child("Fields")
        .map(Element::member_texts)
        .ok_or_else(|| invalid("Manifest.Spec.Fields is required for a CSV manifest"))?;
    if !(fields.iter().any(|f| f == "Bucket") && fields.iter().any(|f| f == "Key")) {
        return Err(invalid("Manifest.Spec.Fields must name Bucket and Key"));
    }
    let location = manifest
        .child("Location")
        .ok_or_else(|| invalid("Manifest.Location is required"))?;
    let arn = location
        .text_of("ObjectArn")
        .ok_or_else(|| invalid("Manifest.Location.ObjectArn is required"))?;
    let (bucket, key) = arn
        .strip_prefix("arn:aws:s3:::")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
        .ok_or_else(|| invalid(format!("ObjectArn {arn:?} is not an object ARN")))?;
    Ok(ManifestSpec {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        version_id: location.text_of("ObjectVersionId").map(str::to_owned),
        e_tag: location
            .text_of("ETag")
            .ok_or_else(|| invalid("Manifest.Location.ETag is required"))?
            .trim_matches('"')
            .to_owned(),
        fields,
    })
}

// ---------------------------------------------------------------------------------------------
// HTTP

const NAMESPACE: &str = "http://awss3control.amazonaws.com/doc/2018-08-20/";

async fn handle(
    inner: Arc<Inner>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let request_id = {
        let mut state = inner.lock();
        state.requests += 1;
        format!("S3CTLSIM{:08X}", state.requests)
    };
    let answer = match route(&inner, request).await {
        Ok(body) => xml_response(200, body),
        Err(error) => xml_response(
            error.status,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse><Error><Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId><HostId>s3control-simulator</HostId></ErrorResponse>",
                error.code,
                escape(&error.message)
            ),
        ),
    };
    let mut answer = answer;
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        answer.headers_mut().insert("x-amz-request-id", id);
    }
    answer.headers_mut().insert(
        "x-amz-id-2",
        HeaderValue::from_static("s3control-simulator"),
    );
    Ok(answer)
}

/// The IAM proof's recording (`crate::iam_record`): moto records what it serves, this simulator
/// what it serves, in moto's document format, into the same directory when one is named.
fn record_for_iam_proof(parts: &hyper::http::request::Parts, body: &[u8]) {
    use base64::Engine;
    use std::io::Write;
    let Some(dir) = std::env::var_os(crate::iam_record::RECORDINGS_ENV).filter(|d| !d.is_empty())
    else {
        return;
    };
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.into())))
        .collect();
    let host = parts
        .headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    let document = serde_json::json!({
        "headers": headers,
        "method": parts.method.as_str(),
        "url": format!("http://{host}{}", parts.uri),
        "body": base64::engine::general_purpose::STANDARD.encode(body),
        "body_encoded": true,
    });
    let path =
        std::path::PathBuf::from(dir).join(format!("s3control-{}.jsonl", std::process::id()));
    // One write per document, as moto does, so concurrent requests never interleave.
    let line = format!("{document}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(error) = written {
        eprintln!(
            "s3control simulator: cannot record for the IAM proof in {}: {error}",
            path.display()
        );
    }
}

fn xml_response(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    response
}

async fn route(inner: &Arc<Inner>, request: Request<Incoming>) -> Result<String, ApiError> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| invalid(format!("reading the body: {e}")))?
        .to_bytes();
    record_for_iam_proof(&parts, &body);
    let account = parts
        .headers
        .get("x-amz-account-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| invalid("Missing required header for this request: x-amz-account-id"))?;
    if account.is_empty() || account.len() > 64 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!(
            "x-amz-account-id {account:?} is not an account id"
        )));
    }
    let query = parse_query(parts.uri.query().unwrap_or(""));
    let path = parts.uri.path();
    let rest = path
        .strip_prefix("/v20180820/jobs")
        .ok_or_else(|| ApiError {
            status: 501,
            code: "NotImplemented",
            message: format!(
                "The S3 control simulator serves Batch Operations jobs only, not {path}"
            ),
        })?;
    let segments: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    match (&parts.method, segments.as_slice()) {
        (&Method::POST, []) => create_job(inner, &account, &body),
        (&Method::GET, []) => list_jobs(inner, &account, &query),
        (&Method::GET, [id]) => describe_job(inner, &account, id),
        (&Method::POST, [id, status]) if status == "status" => {
            update_job_status(inner, &account, id, &query)
        }
        (method, _) => Err(ApiError {
            status: 405,
            code: "MethodNotAllowed",
            message: format!("{method} {path} is not a Batch Operations job operation"),
        }),
    }
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(name), decode(value))
        })
        .collect()
}

fn query_value<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn create_job(inner: &Arc<Inner>, account: &str, body: &[u8]) -> Result<String, ApiError> {
    inner.create_requests.fetch_add(1, Ordering::SeqCst);
    let spec = parse_job_spec(body)?;
    let id = {
        let mut state = inner.lock();
        let token_key = (account.to_owned(), spec.token.clone());
        if let Some(id) = state.tokens.get(&token_key) {
            // The same request again (a retry): the first job, nothing started.
            return Ok(create_job_result(id));
        }
        let id = Inner::uuid(&mut state);
        state.tokens.insert(token_key, id.clone());
        state.jobs.push(JobRecord {
            id: id.clone(),
            account: account.to_owned(),
            spec: Arc::new(spec),
            status: JobStatus::New,
            history: Vec::new(),
            created_at: Utc::now(),
            terminated_at: None,
            suspended_at: None,
            active_since: None,
            active_until: None,
            status_update_reason: None,
            manifest: Vec::new(),
            total: None,
            generated_manifest: None,
            results: Vec::new(),
            failure_reasons: Vec::new(),
            report: None,
            wake: Arc::new(Notify::new()),
        });
        let index = state.jobs.len() - 1;
        inner.set_status(&mut state, index, JobStatus::New);
        id
    };
    let task = tokio::spawn(run_job(inner.clone(), id.clone()));
    lock(&inner.tasks).push(task);
    Ok(create_job_result(&id))
}

fn create_job_result(id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CreateJobResult xmlns=\"{NAMESPACE}\"><JobId>{}</JobId></CreateJobResult>",
        escape(id)
    )
}

fn no_such_job(id: &str) -> ApiError {
    ApiError {
        status: 404,
        code: "NoSuchJob",
        message: format!("The specified job does not exist: {id}"),
    }
}

fn describe_job(inner: &Arc<Inner>, account: &str, id: &str) -> Result<String, ApiError> {
    let state = inner.lock();
    let job = state
        .jobs
        .iter()
        .find(|job| job.id == id && job.account == account)
        .ok_or_else(|| no_such_job(id))?;
    let spec = &job.spec;
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeJobResult xmlns=\"{NAMESPACE}\"><Job>"
    );
    leaf(&mut out, "JobId", &job.id);
    leaf(
        &mut out,
        "ConfirmationRequired",
        &spec.confirmation_required.to_string(),
    );
    if let Some(description) = &spec.description {
        leaf(&mut out, "Description", description);
    }
    leaf(&mut out, "JobArn", &job.arn(&inner.settings.region));
    leaf(&mut out, "Status", job.status.as_str());
    if matches!(spec.source, JobSource::Manifest(_)) {
        write_element(&mut out, &spec.source_xml);
    }
    write_element(&mut out, &spec.operation_xml);
    leaf(&mut out, "Priority", &spec.priority.to_string());
    progress_summary(&mut out, job);
    if let Some(reason) = &job.status_update_reason {
        leaf(&mut out, "StatusUpdateReason", reason);
    }
    if !job.failure_reasons.is_empty() {
        out.push_str("<FailureReasons>");
        for (code, reason) in &job.failure_reasons {
            out.push_str("<member>");
            leaf(&mut out, "FailureCode", code);
            leaf(&mut out, "FailureReason", reason);
            out.push_str("</member>");
        }
        out.push_str("</FailureReasons>");
    }
    write_element(&mut out, &spec.report_xml);
    leaf(&mut out, "CreationTime", &timestamp(job.created_at));
    if let Some(at) = job.terminated_at {
        leaf(&mut out, "TerminationDate", &timestamp(at));
    }
    leaf(&mut out, "RoleArn", &spec.role_arn);
    if let Some(at) = job.suspended_at {
        leaf(&mut out, "SuspendedDate", &timestamp(at));
        leaf(&mut out, "SuspendedCause", "AwaitingConfirmation");
    }
    if matches!(spec.source, JobSource::Generator(_)) {
        write_element(&mut out, &spec.source_xml);
    }
    if let Some(manifest) = &job.generated_manifest {
        out.push_str("<GeneratedManifestDescriptor><Format>S3InventoryReport_CSV_20211130</Format><Location>");
        leaf(
            &mut out,
            "ObjectArn",
            &format!("arn:aws:s3:::{}/{}", manifest.bucket, manifest.key),
        );
        leaf(&mut out, "ETag", &manifest.e_tag);
        out.push_str("</Location></GeneratedManifestDescriptor>");
    }
    out.push_str("</Job></DescribeJobResult>");
    Ok(out)
}

fn progress_summary(out: &mut String, job: &JobRecord) {
    let succeeded = job.results.iter().filter(|r| r.succeeded).count();
    let failed = job.results.len() - succeeded;
    out.push_str("<ProgressSummary>");
    if let Some(total) = job.total {
        leaf(out, "TotalNumberOfTasks", &total.to_string());
    }
    leaf(out, "NumberOfTasksSucceeded", &succeeded.to_string());
    leaf(out, "NumberOfTasksFailed", &failed.to_string());
    let active_seconds = job.active_since.map_or(0, |since| {
        (job.active_until.unwrap_or_else(Utc::now) - since)
            .num_seconds()
            .max(0)
    });
    out.push_str("<Timers>");
    leaf(
        out,
        "ElapsedTimeInActiveSeconds",
        &active_seconds.to_string(),
    );
    out.push_str("</Timers></ProgressSummary>");
}

const STATUS_NAMES: [&str; 13] = [
    "Active",
    "Cancelled",
    "Cancelling",
    "Complete",
    "Completing",
    "Failed",
    "Failing",
    "New",
    "Paused",
    "Pausing",
    "Preparing",
    "Ready",
    "Suspended",
];

fn list_jobs(
    inner: &Arc<Inner>,
    account: &str,
    query: &[(String, String)],
) -> Result<String, ApiError> {
    let list_error = |code, message: String| ApiError {
        status: 400,
        code,
        message,
    };
    let statuses: Vec<&str> = query
        .iter()
        .filter(|(name, _)| name == "jobStatuses")
        .map(|(_, value)| value.as_str())
        .collect();
    if let Some(bad) = statuses.iter().find(|s| !STATUS_NAMES.contains(s)) {
        return Err(list_error(
            "InvalidRequestException",
            format!("{bad} is not a job status"),
        ));
    }
    let max_results = match query_value(query, "maxResults") {
        None => 1000,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                list_error(
                    "InvalidRequestException",
                    format!("maxResults must be 1 to 1000, not {text}"),
                )
            })?,
    };
    let start = match query_value(query, "nextToken") {
        None => 0,
        Some(token) => token
            .strip_prefix("sim-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                list_error(
                    "InvalidNextTokenException",
                    format!("The next token {token:?} is not valid"),
                )
            })?,
    };
    let state = inner.lock();
    let matching: Vec<&JobRecord> = state
        .jobs
        .iter()
        .rev()
        .filter(|job| job.account == account)
        .filter(|job| statuses.is_empty() || statuses.contains(&job.status.as_str()))
        .collect();
    let page: Vec<&&JobRecord> = matching.iter().skip(start).take(max_results).collect();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListJobsResult xmlns=\"{NAMESPACE}\">"
    );
    if start + page.len() < matching.len() {
        leaf(
            &mut out,
            "NextToken",
            &format!("sim-{}", start + page.len()),
        );
    }
    out.push_str("<Jobs>");
    for job in page {
        out.push_str("<member>");
        leaf(&mut out, "JobId", &job.id);
        if let Some(description) = &job.spec.description {
            leaf(&mut out, "Description", description);
        }
        leaf(&mut out, "Operation", "S3ReplicateObject");
        leaf(&mut out, "Priority", &job.spec.priority.to_string());
        leaf(&mut out, "Status", job.status.as_str());
        leaf(&mut out, "CreationTime", &timestamp(job.created_at));
        if let Some(at) = job.terminated_at {
            leaf(&mut out, "TerminationDate", &timestamp(at));
        }
        progress_summary(&mut out, job);
        out.push_str("</member>");
    }
    out.push_str("</Jobs></ListJobsResult>");
    Ok(out)
}

fn update_job_status(
    inner: &Arc<Inner>,
    account: &str,
    id: &str,
    query: &[(String, String)],
) -> Result<String, ApiError> {
    let requested = query_value(query, "requestedJobStatus")
        .ok_or_else(|| invalid("requestedJobStatus is required"))?;
    let reason = query_value(query, "statusUpdateReason").map(str::to_owned);
    let mut state = inner.lock();
    let index = state
        .jobs
        .iter()
        .position(|job| job.id == id && job.account == account)
        .ok_or_else(|| no_such_job(id))?;
    let current = state.jobs[index].status;
    let refuse = |message: String| ApiError {
        status: 400,
        code: "JobStatusException",
        message,
    };
    let to = match requested {
        "Ready" if current == JobStatus::Suspended => JobStatus::Ready,
        "Ready" => {
            return Err(refuse(format!(
                "Job {id} is {}: only a Suspended job can be made Ready",
                current.as_str()
            )))
        }
        "Cancelled"
            if matches!(
                current,
                JobStatus::New
                    | JobStatus::Preparing
                    | JobStatus::Suspended
                    | JobStatus::Ready
                    | JobStatus::Active
            ) =>
        {
            JobStatus::Cancelling
        }
        "Cancelled" => {
            return Err(refuse(format!(
                "Job {id} is {}: it can no longer be cancelled",
                current.as_str()
            )))
        }
        other => {
            return Err(invalid(format!(
                "requestedJobStatus must be Ready or Cancelled, not {other}"
            )))
        }
    };
    state.jobs[index].status_update_reason = reason.clone();
    inner.set_status(&mut state, index, to);
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<UpdateJobStatusResult xmlns=\"{NAMESPACE}\">"
    );
    leaf(&mut out, "JobId", id);
    leaf(&mut out, "Status", to.as_str());
    if let Some(reason) = &reason {
        leaf(&mut out, "StatusUpdateReason", reason);
    }
    out.push_str("</UpdateJobStatusResult>");
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// A job's life

async fn run_job(inner: Arc<Inner>, id: String) {
    let step = inner.settings.step;
    let Some(spec) = inner.with_job(&id, |job| job.spec.clone()) else {
        return;
    };
    tokio::time::sleep(step).await;
    if !inner.advance(&id, JobStatus::Preparing) {
        return end_cancelled(&inner, &id).await;
    }
    let entries = match prepare(&inner, &id, &spec).await {
        Ok(entries) => entries,
        Err(reason) => return end_failed(&inner, &id, reason).await,
    };
    inner.with_job(&id, |job| {
        job.total = Some(entries.len());
        job.manifest = entries.clone();
    });
    tokio::time::sleep(step).await;
    if spec.confirmation_required {
        if !inner.advance(&id, JobStatus::Suspended) {
            return end_cancelled(&inner, &id).await;
        }
        // Until UpdateJobStatus makes it Ready or cancels it (each change wakes the job).
        loop {
            let Some(wake) = inner.with_job(&id, |job| job.wake.clone()) else {
                return;
            };
            match inner.status(&id) {
                Some(JobStatus::Ready) => break,
                Some(JobStatus::Cancelling) => return end_cancelled(&inner, &id).await,
                None => return,
                Some(_) => wake.notified().await,
            }
        }
    } else if !inner.advance(&id, JobStatus::Ready) {
        return end_cancelled(&inner, &id).await;
    }
    tokio::time::sleep(step).await;
    if !inner.advance(&id, JobStatus::Active) {
        return end_cancelled(&inner, &id).await;
    }
    for entry in entries {
        if inner.status(&id) == Some(JobStatus::Cancelling) {
            return end_cancelled(&inner, &id).await;
        }
        let result = run_task(&inner, entry).await;
        inner.with_job(&id, |job| job.results.push(result));
        if !inner.settings.task_delay.is_zero() {
            tokio::time::sleep(inner.settings.task_delay).await;
        }
    }
    if !inner.advance(&id, JobStatus::Completing) {
        return end_cancelled(&inner, &id).await;
    }
    let report_now = inner.settings.report_delay.is_none() && !*inner.hold.borrow();
    if report_now {
        if let Err(e) = write_report(&inner, &id, &spec).await {
            let reason = failure("ReportWriteFailed", format!("{e:#}"));
            return end_failed(&inner, &id, reason).await;
        }
    }
    tokio::time::sleep(step).await;
    inner.advance(&id, JobStatus::Complete);
    if !report_now {
        write_late_report(&inner, &id, &spec).await;
    }
}

/// The report of a job already `Complete`: after the delay, once reports are not held.
async fn write_late_report(inner: &Inner, id: &str, spec: &JobSpec) {
    if let Some(delay) = inner.settings.report_delay {
        tokio::time::sleep(delay).await;
    }
    let mut hold = inner.hold.subscribe();
    if hold.wait_for(|held| !*held).await.is_err() {
        return;
    }
    if let Err(e) = write_report(inner, id, spec).await {
        inner.record_error(format!("job {id}: writing the completion report: {e:#}"));
    }
}

async fn end_cancelled(inner: &Inner, id: &str) {
    let Some(spec) = inner.with_job(id, |job| job.spec.clone()) else {
        return;
    };
    if let Err(e) = write_report(inner, id, &spec).await {
        inner.record_error(format!("job {id}: writing the completion report: {e:#}"));
    }
    tokio::time::sleep(inner.settings.step).await;
    let mut state = inner.lock();
    if let Some(index) = state.jobs.iter().position(|job| job.id == id) {
        inner.set_status(&mut state, index, JobStatus::Cancelled);
    }
}

async fn end_failed(inner: &Inner, id: &str, reason: JobFailure) {
    inner.with_job(id, |job| job.failure_reasons.push(reason));
    if !inner.advance(id, JobStatus::Failing) {
        return end_cancelled(inner, id).await;
    }
    tokio::time::sleep(inner.settings.step).await;
    inner.advance(id, JobStatus::Failed);
}

/// `Preparing`: the report bucket must be reachable, then the manifest is made (and written) or
/// read.
async fn prepare(
    inner: &Inner,
    id: &str,
    spec: &JobSpec,
) -> Result<Vec<ManifestEntry>, JobFailure> {
    if spec.report.enabled {
        if let Err(e) = inner
            .s3
            .head_bucket()
            .bucket(&spec.report.bucket)
            .send()
            .await
        {
            return Err(failure(
                "ReportBucketInaccessible",
                format!(
                    "The report bucket {} cannot be reached: {}",
                    spec.report.bucket,
                    s3_error(e)
                ),
            ));
        }
    }
    match &spec.source {
        JobSource::Generator(generator) => {
            let entries = generate(inner, generator).await?;
            if let Some((bucket, prefix)) = &generator.output {
                let written = write_generated_manifest(
                    inner,
                    id,
                    &generator.source_bucket,
                    bucket,
                    prefix.as_deref(),
                    &entries,
                )
                .await
                .map_err(|e| failure("ManifestWriteFailed", format!("{e:#}")))?;
                inner.with_job(id, |job| job.generated_manifest = Some(written));
            }
            Ok(entries)
        }
        JobSource::Manifest(manifest) => read_manifest(inner, manifest)
            .await
            .map_err(|e| failure("ManifestReadFailed", format!("{e:#}"))),
    }
}

/// An S3 error in a few words: its code, else the HTTP status (HEAD errors have no body), else
/// the whole error.
fn s3_error<E>(
    error: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(code) = error.code() {
        return code.to_owned();
    }
    if let Some(response) = error.raw_response() {
        return format!("HTTP {}", response.status().as_u16());
    }
    format!("{}", DisplayErrorContext(error))
}

/// The generated manifest: the failed versions of the source bucket the filter selects, in the
/// order their replication failed (so the versions of a key are copied oldest first, and the
/// replica's current version is the source's: moto gives each copy a new version id).
async fn generate(
    inner: &Inner,
    generator: &GeneratorSpec,
) -> Result<Vec<ManifestEntry>, JobFailure> {
    let bucket = &generator.source_bucket;
    // S3 Batch Replication takes its rules from the source's configuration: none, no job.
    match inner
        .s3
        .get_bucket_replication()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(out) if out.replication_configuration.is_some() => {}
        Ok(_) => {
            return Err(failure(
                "ManifestGenerationFailed",
                format!("The source bucket {bucket} has no replication configuration"),
            ))
        }
        Err(e) => {
            return Err(failure(
                "ManifestGenerationFailed",
                format!(
                "The replication configuration of the source bucket {bucket} cannot be read: {}",
                s3_error(e)
            ),
            ))
        }
    }
    let filter = &generator.filter;
    let mut entries = Vec::new();
    for version in inner.replication.failed_versions(bucket) {
        if !filter.selects(&version) {
            continue;
        }
        if filter.eligible == Some(true) {
            let destinations = inner
                .replication
                .destinations(bucket, &version.key)
                .await
                .map_err(|e| failure("ManifestGenerationFailed", format!("{e:#}")))?;
            if destinations.is_empty() {
                continue;
            }
        }
        if filter.needs_head() && !head_selects(inner, filter, &version).await? {
            continue;
        }
        // S3 lists the bucket's versions: one deleted since it failed is not in the manifest.
        if !still_exists(inner, &version).await? {
            continue;
        }
        entries.push(ManifestEntry {
            bucket: version.source_bucket,
            key: version.key,
            version_id: version.version_id,
        });
    }
    Ok(entries)
}

/// The failed version's `HeadObject` (`None`: deleted since it failed, so S3 would not list it).
async fn head_version(
    inner: &Inner,
    version: &FailedVersion,
) -> Result<Option<aws_sdk_s3::operation::head_object::HeadObjectOutput>, JobFailure> {
    match inner
        .s3
        .head_object()
        .bucket(&version.source_bucket)
        .key(&version.key)
        .version_id(&version.version_id)
        .send()
        .await
    {
        Ok(head) => Ok(Some(head)),
        Err(e)
            if e.raw_response()
                .is_some_and(|r| matches!(r.status().as_u16(), 404 | 400)) =>
        {
            Ok(None)
        }
        Err(e) => Err(failure(
            "ManifestGenerationFailed",
            format!(
                "HeadObject {}/{} ({}): {}",
                version.source_bucket,
                version.key,
                version.version_id,
                s3_error(e)
            ),
        )),
    }
}

/// Whether the failed version is still in the source (a deleted one is not listed).
async fn still_exists(inner: &Inner, version: &FailedVersion) -> Result<bool, JobFailure> {
    Ok(head_version(inner, version).await?.is_some())
}

/// The size and storage-class filters, read with `HeadObject`.
async fn head_selects(
    inner: &Inner,
    filter: &FilterSpec,
    version: &FailedVersion,
) -> Result<bool, JobFailure> {
    let Some(head) = head_version(inner, version).await? else {
        return Ok(false);
    };
    let size = head.content_length.unwrap_or(0);
    let class = head
        .storage_class
        .map_or_else(|| "STANDARD".to_owned(), |c| c.as_str().to_owned());
    Ok(filter.size_greater_than.is_none_or(|n| size > n)
        && filter.size_less_than.is_none_or(|n| size < n)
        && (filter.storage_classes.is_empty() || filter.storage_classes.contains(&class)))
}

/// `<prefix>/job-<id>` (no prefix: `job-<id>`).
fn job_folder(prefix: Option<&str>, id: &str) -> String {
    match prefix.map(|p| p.trim_end_matches('/')) {
        Some(prefix) if !prefix.is_empty() => format!("{prefix}/job-{id}"),
        _ => format!("job-{id}"),
    }
}

/// One CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

fn csv_line(fields: &[&str]) -> String {
    let mut line = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

/// PutObject; answers the ETag without its quotes (the MD5 of the body: single-part, and moto
/// does not encrypt).
async fn put(
    inner: &Inner,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
) -> Result<String> {
    let out = inner
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))
        .with_context(|| format!("writing s3://{bucket}/{key}"))?;
    Ok(out.e_tag.unwrap_or_default().trim_matches('"').to_owned())
}

async fn write_generated_manifest(
    inner: &Inner,
    id: &str,
    source_bucket: &str,
    bucket: &str,
    prefix: Option<&str>,
    entries: &[ManifestEntry],
) -> Result<GeneratedManifest> {
    use std::io::Write;
    let folder = job_folder(prefix, id);
    let mut csv = String::new();
    for entry in entries {
        csv.push_str(&csv_line(&[
            &entry.bucket,
            &url_encode(&entry.key, true),
            &entry.version_id,
        ]));
    }
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(csv.as_bytes())
        .context("compressing the manifest")?;
    let data = gzip.finish().context("compressing the manifest")?;
    let data_key = format!("{folder}/data/{}.csv.gz", {
        let mut state = inner.lock();
        Inner::uuid(&mut state)
    });
    let size = data.len();
    let md5 = put(inner, bucket, &data_key, data, "application/x-gzip").await?;
    let manifest = serde_json::json!({
        "sourceBucket": source_bucket,
        "destinationBucket": format!("arn:aws:s3:::{bucket}"),
        "version": "2016-11-30",
        "creationTimestamp": Utc::now().timestamp_millis().to_string(),
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, VersionId",
        "files": [{"key": data_key, "size": size, "MD5checksum": md5}],
    });
    let key = format!("{folder}/manifest.json");
    let e_tag = put(
        inner,
        bucket,
        &key,
        manifest.to_string().into_bytes(),
        "application/json",
    )
    .await?;
    Ok(GeneratedManifest {
        bucket: bucket.to_owned(),
        key,
        e_tag,
    })
}

/// A caller's CSV manifest (`S3BatchOperations_CSV_20180820`).
async fn read_manifest(inner: &Inner, manifest: &ManifestSpec) -> Result<Vec<ManifestEntry>> {
    let object = inner
        .s3
        .get_object()
        .bucket(&manifest.bucket)
        .key(&manifest.key)
        .set_version_id(manifest.version_id.clone())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))
        .with_context(|| {
            format!(
                "reading the manifest s3://{}/{}",
                manifest.bucket, manifest.key
            )
        })?;
    let e_tag = object.e_tag.clone().unwrap_or_default();
    if e_tag.trim_matches('"') != manifest.e_tag {
        bail!(
            "the manifest's ETag is {e_tag}, not the {} the job names",
            manifest.e_tag
        );
    }
    let body = object
        .body
        .collect()
        .await
        .context("reading the manifest's body")?
        .into_bytes();
    let text = String::from_utf8(body.to_vec()).context("the manifest is not UTF-8")?;
    let position = |name: &str| manifest.fields.iter().position(|f| f == name);
    let (bucket_at, key_at) = (position("Bucket"), position("Key"));
    let version_at = position("VersionId");
    let mut entries = Vec::new();
    for (line, row) in parse_csv(&text).into_iter().enumerate() {
        let field = |at: Option<usize>| at.and_then(|i| row.get(i)).cloned();
        let (Some(bucket), Some(key)) = (field(bucket_at), field(key_at)) else {
            bail!("manifest line {} has no bucket or key", line + 1);
        };
        let key = replmon_shared::event::decode_key(&key);
        let version_id = match field(version_at).filter(|v| !v.is_empty()) {
            Some(version) => version,
            None => latest_version(inner, &bucket, &key).await?,
        };
        entries.push(ManifestEntry {
            bucket,
            key,
            version_id,
        });
    }
    Ok(entries)
}

async fn latest_version(inner: &Inner, bucket: &str, key: &str) -> Result<String> {
    let head = inner
        .s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))
        .with_context(|| format!("HeadObject {bucket}/{key}"))?;
    Ok(head.version_id.unwrap_or_else(|| "null".to_owned()))
}

/// `S3ReplicateObject` of one version.
async fn run_task(inner: &Inner, entry: ManifestEntry) -> TaskResult {
    let outcome = inner
        .replication
        .redrive(&entry.bucket, &entry.key, &entry.version_id)
        .await;
    let (succeeded, http_status, error_code, message) = match outcome {
        Ok(_) => (true, 200, String::new(), "Successful".to_owned()),
        Err(RedriveError::FaultPersists(reason)) => {
            let denied = reason.ends_with("NotPermitted") || reason.starts_with("AssumeRole");
            (
                false,
                if denied { 403 } else { 400 },
                reason.clone(),
                format!("Replication failed, failure reason: {reason}"),
            )
        }
        Err(RedriveError::NoMatchingRule) => (
            false,
            400,
            "InvalidRequest".to_owned(),
            "No replication rule of the source bucket matches the object".to_owned(),
        ),
        Err(RedriveError::Failed(error)) => (false, 500, "InternalError".to_owned(), error),
    };
    TaskResult {
        entry,
        succeeded,
        http_status,
        error_code,
        message,
    }
}

/// The completion report (nothing when disabled or no task ran, as S3).
async fn write_report(inner: &Inner, id: &str, spec: &JobSpec) -> Result<()> {
    let report = &spec.report;
    if !report.enabled {
        return Ok(());
    }
    let Some(results) = inner.with_job(id, |job| job.results.clone()) else {
        return Ok(());
    };
    if results.is_empty() {
        return Ok(());
    }
    let folder = job_folder(report.prefix.as_deref(), id);
    let mut files = Vec::new();
    let mut keys = Vec::new();
    for (status, succeeded) in [("succeeded", true), ("failed", false)] {
        if succeeded && report.failed_only {
            continue;
        }
        let rows: String = results
            .iter()
            .filter(|r| r.succeeded == succeeded)
            .map(|r| {
                csv_line(&[
                    &r.entry.bucket,
                    &url_encode(&r.entry.key, true),
                    &r.entry.version_id,
                    status,
                    &r.http_status.to_string(),
                    &r.error_code,
                    &r.message,
                ])
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        let key = format!("{folder}/results/{}.csv", inner.random_hex(40));
        let md5 = put(inner, &report.bucket, &key, rows.into_bytes(), "text/csv").await?;
        files.push(serde_json::json!({
            "TaskExecutionStatus": status,
            "Bucket": report.bucket,
            "MD5Checksum": md5,
            "Key": key,
        }));
        keys.push(key);
    }
    let manifest = serde_json::json!({
        "Format": "Report_CSV_20180820",
        "ReportCreationDate": timestamp(Utc::now()),
        "Results": files,
        "ReportSchema": "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage",
    });
    let key = format!("{folder}/manifest.json");
    put(
        inner,
        &report.bucket,
        &key,
        manifest.to_string().into_bytes(),
        "application/json",
    )
    .await?;
    keys.push(key);
    inner.with_job(id, |job| job.report = Some((report.bucket.clone(), keys)));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// XML: enough for the SDK's requests (elements, text, entities; attributes and namespace
// prefixes ignored) and for echoing their parts.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Element {
    name: String,
    text: String,
    children: Vec<Element>,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// The texts of a list's `member` elements.
    fn member_texts(&self) -> Vec<String> {
        self.children
            .iter()
            .filter(|c| c.name == "member")
            .map(|c| c.text.clone())
            .collect()
    }
}

fn local_name(tag: &str) -> String {
    let name = tag.split_whitespace().next().unwrap_or("");
    name.rsplit_once(':')
        .map_or(name, |(_, local)| local)
        .to_owned()
}

fn parse_xml(input: &str) -> Result<Element> {
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut rest = input;
    let mut attach = |element: Element, stack: &mut Vec<Element>| -> Result<()> {
        match stack.last_mut() {
            Some(parent) => parent.children.push(element),
            None if root.is_none() => root = Some(element),
            None => bail!("a second root element <{}>", element.name),
        }
        Ok(())
    };
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("<?") {
            let end = after.find("?>").context("unterminated <?")?;
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix("<!--") {
            let end = after.find("-->").context("unterminated comment")?;
            rest = &after[end + 3..];
        } else if let Some(after) = rest.strip_prefix("<![CDATA[") {
            let end = after.find("]]>").context("unterminated CDATA")?;
            let top = stack.last_mut().context("CDATA outside the root element")?;
            top.text.push_str(&after[..end]);
            rest = &after[end + 3..];
        } else if let Some(after) = rest.strip_prefix("</") {
            let end = after.find('>').context("unterminated end tag")?;
            let name = local_name(&after[..end]);
            let element = stack
                .pop()
                .with_context(|| format!("</{name}> closes nothing"))?;
            if element.name != name {
                bail!("</{name}> closes <{}>", element.name);
            }
            attach(element, &mut stack)?;
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('<') {
            let end = after.find('>').context("unterminated tag")?;
            let tag = &after[..end];
            let (tag, empty) = match tag.strip_suffix('/') {
                Some(tag) => (tag, true),
                None => (tag, false),
            };
            let name = local_name(tag);
            if name.is_empty() {
                bail!("a tag without a name");
            }
            let element = Element {
                name,
                ..Element::default()
            };
            if empty {
                attach(element, &mut stack)?;
            } else {
                stack.push(element);
            }
            rest = &after[end + 1..];
        } else {
            let end = rest.find('<').unwrap_or(rest.len());
            let text = &rest[..end];
            match stack.last_mut() {
                Some(top) => top.text.push_str(&unescape(text)?),
                None if text.trim().is_empty() => {}
                None => bail!("text outside the root element"),
            }
            rest = &rest[end..];
        }
    }
    if let Some(open) = stack.last() {
        bail!("<{}> is never closed", open.name);
    }
    root.context("no root element")
}

fn unescape(text: &str) -> Result<String> {
    if !text.contains('&') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let end = after.find(';').context("an entity without ';'")?;
        let entity = &after[..end];
        let decoded = match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = match entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => entity.strip_prefix('#').and_then(|d| d.parse().ok()),
                };
                code.and_then(char::from_u32)
                    .with_context(|| format!("unknown entity &{entity};"))?
            }
        };
        out.push(decoded);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

fn leaf(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&escape(value));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn write_element(out: &mut String, element: &Element) {
    out.push('<');
    out.push_str(&element.name);
    out.push('>');
    out.push_str(&escape(&element.text));
    for child in &element.children {
        write_element(out, child);
    }
    out.push_str("</");
    out.push_str(&element.name);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_is_read_with_entities_and_echoed_as_read() {
        let text = r#"<?xml version="1.0" encoding="UTF-8"?>
<CreateJobRequest xmlns="http://awss3control.amazonaws.com/doc/2018-08-20/"><ClientRequestToken>a&amp;b &lt;c&gt; &#x41;&#66;</ClientRequestToken><Operation><S3ReplicateObject/></Operation><Report><Enabled>false</Enabled></Report></CreateJobRequest>"#;
        let root = parse_xml(text).unwrap();
        assert_eq!(root.name, "CreateJobRequest");
        assert_eq!(root.text_of("ClientRequestToken"), Some("a&b <c> AB"));
        let mut out = String::new();
        write_element(&mut out, root.child("Operation").unwrap());
        assert_eq!(
            out,
            "<Operation><S3ReplicateObject></S3ReplicateObject></Operation>"
        );
        assert_eq!(
            parse_xml(&out).unwrap(),
            root.child("Operation").unwrap().clone()
        );
        for bad in [
            "<a><b></a>",
            "<a>",
            "<a></a><b></b>",
            "text",
            "<a>&nope;</a>",
            "<a",
        ] {
            assert!(parse_xml(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn csv_fields_are_quoted_when_needed_and_read_back() {
        let line = csv_line(&["b", "k", "", "failed", "403", "E", "a, \"quoted\"\nmessage"]);
        assert_eq!(line, "b,k,,failed,403,E,\"a, \"\"quoted\"\"\nmessage\"\n");
        let rows = parse_csv(&format!("{line}\nx,y\r\n"));
        assert_eq!(
            rows,
            [
                vec!["b", "k", "", "failed", "403", "E", "a, \"quoted\"\nmessage"],
                vec!["x", "y"]
            ]
        );
    }

    #[test]
    fn the_filter_selects_failed_versions_by_time_key_and_status() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let version = |key: &str, time: &str| FailedVersion {
            source_bucket: "source".into(),
            key: key.into(),
            version_id: "v".into(),
            destination_buckets: vec!["replica".into()],
            reason: "DstPutObjectNotPermitted".into(),
            detected_at: at(time),
        };
        let a = version("logs/2026/a.csv", "2026-01-01T10:00:00.500Z");
        let b = version("data/b.json", "2026-01-01T10:00:01.500Z");
        let all = FilterSpec::default();
        assert!(all.selects(&a) && all.selects(&b));
        let failed = FilterSpec {
            statuses: Some(vec!["FAILED".into()]),
            ..FilterSpec::default()
        };
        assert!(failed.selects(&a));
        let completed = FilterSpec {
            statuses: Some(vec!["COMPLETED".into(), "NONE".into()]),
            ..FilterSpec::default()
        };
        assert!(!completed.selects(&a));
        let window = FilterSpec {
            created_after: Some(at("2026-01-01T10:00:01Z")),
            created_before: Some(at("2026-01-01T10:00:02Z")),
            ..FilterSpec::default()
        };
        assert!(!window.selects(&a) && window.selects(&b));
        let keys = FilterSpec {
            prefixes: vec!["logs/".into(), "tmp/".into()],
            suffixes: vec![".csv".into()],
            substrings: vec!["2026".into()],
            ..FilterSpec::default()
        };
        assert!(keys.selects(&a) && !keys.selects(&b));
        let suffix_only = FilterSpec {
            suffixes: vec![".json".into()],
            ..FilterSpec::default()
        };
        assert!(!suffix_only.selects(&a) && suffix_only.selects(&b));
    }

    #[test]
    fn job_folders_take_the_prefix_without_its_slash() {
        assert_eq!(job_folder(Some("redrive/"), "1"), "redrive/job-1");
        assert_eq!(job_folder(Some(""), "1"), "job-1");
        assert_eq!(job_folder(None, "1"), "job-1");
    }

    #[test]
    fn status_events_have_the_cloudtrail_shape() {
        let event = status_event(StatusEvent {
            region: "us-east-1",
            account: "123456789012",
            job_id: "j",
            job_arn: "arn:aws:s3:us-east-1:123456789012:job/j",
            status: JobStatus::Failed,
            at: Utc::now(),
            event_id: "e",
            detail_id: "d",
            job_event_id: "0123",
            failure_codes: &["ReportBucketInaccessible".to_owned()],
            reason: None,
        });
        assert_eq!(event["detail-type"], "AWS Service Event via CloudTrail");
        assert_eq!(event["source"], "aws.s3");
        assert_eq!(event["detail"]["eventName"], "JobStatusChanged");
        assert_eq!(event["detail"]["eventType"], "AwsServiceEvent");
        let details = &event["detail"]["serviceEventDetails"];
        assert_eq!(details["status"], "Failed");
        assert_eq!(details["failureCodes"][0], "ReportBucketInaccessible");
        assert_eq!(details["statusChangeReason"], serde_json::json!([]));
    }
}
