//! A fault-injecting HTTP/1.1 proxy between the functions and the local AWS stack (moto server).
//!
//! Point a function's `AWS_ENDPOINT_URL` (or an `SdkConfig`'s endpoint) at
//! [`FaultProxy::endpoint`]: every request is forwarded to the upstream endpoint unless a [`Rule`]
//! matches its operation, in which case the proxy injects the rule's [`Fault`] instead:
//!
//! - [`Fault::InternalError`] (HTTP 500) and [`Fault::ServiceUnavailable`] (HTTP 503), in the
//!   service's own error shape;
//! - [`Fault::Throttling`]: the service's own throttling error (DynamoDB: 400
//!   `ThrottlingException` JSON; SNS and CloudWatch: 400 `Throttling` query XML; S3: 503
//!   `SlowDown`); [`Fault::ThroughputExceeded`] is DynamoDB's 400
//!   `ProvisionedThroughputExceededException` (the same as `Throttling` for other services);
//! - [`Fault::Slow`]: wait before forwarding (longer than the SDK's attempt timeout, the client
//!   gives up and hangs up first; the request is then never forwarded, counted as abandoned);
//! - [`Fault::DropConnection`]: read the request, then close the connection without answering;
//! - [`Fault::LoseResponse`]: forward the request (it takes effect upstream), then close the
//!   connection without answering: the ambiguous failure, the write happened and the client never
//!   learns it did;
//! - [`Fault::TransactionConflict`]: DynamoDB `TransactWriteItems` only (a rule with it matches no
//!   other call): 400 `TransactionCanceledException` with a `TransactionConflict` cancellation
//!   reason per item, what DynamoDB answers when another transaction holds one of the items.
//!
//! Besides faults, the proxy can answer an S3 call with an error worded exactly as S3 words it
//! ([`S3Error`], added with [`FaultProxy::reply`]), optionally on one bucket only: errors the local
//! stack never produces, such as KMS refusing the key of an SSE-KMS bucket (moto does not
//! evaluate KMS), see [`S3Error::kms_denied`] and the key-state errors beside it.
//!
//! Operations are named `service:Operation`:
//! - JSON protocols by `X-Amz-Target`: `DynamoDB_20120810.PutItem` is `dynamodb:PutItem`,
//!   `AmazonSQS.ReceiveMessage` is `sqs:ReceiveMessage`;
//! - query protocols by the `Action=` of the form body, the service from the SigV4 credential
//!   scope: `sns:Publish`, `cloudwatch:GetMetricData` (scope `monitoring`);
//! - S3 by method and path shape (path-style addressing): `s3:PutObject`, `s3:HeadObject`,
//!   `s3:GetObject`, `s3:DeleteObject`, `s3:HeadBucket`, `s3:GetBucketReplication`,
//!   `s3:ListObjectVersions`, ... (see [`s3_operation`]).
//!
//! A rule names one operation, a whole service (`dynamodb:*`) or everything (`*`), and applies
//! to the next N matching calls ([`Rule::next`]) or for good ([`Rule::always`]), optionally after
//! letting the first K matching calls through ([`Rule::after`]). Rules are added and cleared while
//! a test runs; the first live rule that matches a call decides it. The proxy counts every call
//! per operation ([`CallCounts`]: seen, faulted, forwarded, abandoned) so tests can assert that
//! retries happened, and the DynamoDB items each read operation made the table read
//! ([`CallCounts::items_read`], see [`dynamodb_items_read`]) so benchmarks can show what a
//! request costs.

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

mod s3_reply;
use s3_reply::ActiveReply;
pub use s3_reply::{KmsDenial, Reply, S3Error};

/// What the proxy does instead of forwarding a matching call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 in the service's error shape (`InternalServerError`, `InternalFailure`,
    /// `InternalError`).
    InternalError,
    /// HTTP 503 `ServiceUnavailable` in the service's error shape.
    ServiceUnavailable,
    /// The service's throttling error: DynamoDB 400 `ThrottlingException`, query protocols 400
    /// `Throttling`, S3 503 `SlowDown`.
    Throttling,
    /// DynamoDB 400 `ProvisionedThroughputExceededException` (other services: as `Throttling`).
    ThroughputExceeded,
    /// Wait this long, then forward (if the client is still there).
    Slow(Duration),
    /// Close the connection without answering.
    DropConnection,
    /// Forward the call (it takes effect upstream), then close the connection without answering:
    /// the client cannot tell whether the call happened.
    LoseResponse,
    /// DynamoDB `TransactWriteItems` only (a rule with this fault matches no other call): not
    /// forwarded, answered 400 `TransactionCanceledException` with one `TransactionConflict`
    /// cancellation reason per item of the request, as DynamoDB answers when another transaction
    /// holds one of the items.
    TransactionConflict,
}

impl Fault {
    /// Whether the fault can happen to the call: a transaction conflict only to a DynamoDB
    /// `TransactWriteItems`, every other fault to any call.
    fn applies_to(self, operation: &Operation) -> bool {
        match self {
            Fault::TransactionConflict => {
                operation.service == "dynamodb" && operation.operation == "TransactWriteItems"
            }
            Fault::InternalError
            | Fault::ServiceUnavailable
            | Fault::Throttling
            | Fault::ThroughputExceeded
            | Fault::Slow(_)
            | Fault::DropConnection
            | Fault::LoseResponse => true,
        }
    }

    /// The kinds any call can meet, with `slow` as the delay of [`Fault::Slow`]: every kind but
    /// [`Fault::LoseResponse`] (its call takes effect though the client sees a failure) and
    /// [`Fault::TransactionConflict`] (DynamoDB transactions only).
    pub fn every_kind(slow: Duration) -> [Fault; 6] {
        [
            Fault::InternalError,
            Fault::ServiceUnavailable,
            Fault::Throttling,
            Fault::ThroughputExceeded,
            Fault::Slow(slow),
            Fault::DropConnection,
        ]
    }
}

/// A fault for the calls of one operation (or service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `service:Operation`, `service:*` or `*`.
    pub operation: String,
    pub fault: Fault,
    /// Calls to fault; `None`: every call, for good.
    pub times: Option<u32>,
    /// Matching calls let through before the fault starts.
    pub after: u32,
}

impl Rule {
    /// Fault every matching call until the rule is removed.
    pub fn always(operation: &str, fault: Fault) -> Rule {
        Rule {
            operation: operation.to_owned(),
            fault,
            times: None,
            after: 0,
        }
    }

    /// Fault the next `times` matching calls, then let calls through.
    pub fn next(times: u32, operation: &str, fault: Fault) -> Rule {
        Rule {
            times: Some(times),
            ..Rule::always(operation, fault)
        }
    }

    /// Let the first `calls` matching calls through before faulting.
    pub fn after(mut self, calls: u32) -> Rule {
        self.after = calls;
        self
    }

    fn matches(&self, operation: &Operation) -> bool {
        let named = self.operation == "*"
            || self.operation == operation.name()
            || self
                .operation
                .strip_suffix(":*")
                .is_some_and(|service| service == operation.service);
        named && self.fault.applies_to(operation)
    }
}

/// Handle of an added rule, to remove it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleId(u64);

/// What happened to the calls of one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// Calls the proxy received.
    pub calls: u32,
    /// Calls a rule decided (answered with an error, delayed or dropped).
    pub faulted: u32,
    /// Calls sent upstream (slow calls included once they are, and the calls whose answer
    /// [`Fault::LoseResponse`] lost).
    pub forwarded: u32,
    /// Slow calls whose client hung up before the delay ended: never forwarded.
    pub abandoned: u32,
    /// DynamoDB items read by the successful answers (see [`dynamodb_items_read`]); 0 for writes
    /// and for other services.
    pub items_read: u32,
}

/// A call's operation, as the proxy classified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// `dynamodb`, `sns`, `cloudwatch`, `sqs`, `s3`, ...
    pub service: String,
    /// `PutItem`, `Publish`, `HeadObject`, ...
    pub operation: String,
    protocol: Protocol,
}

impl Operation {
    /// `service:Operation`.
    pub fn name(&self) -> String {
        format!("{}:{}", self.service, self.operation)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// `X-Amz-Target` with a JSON body (DynamoDB, SQS).
    Json,
    /// `Action=` form bodies answered in XML (SNS, CloudWatch 1.99).
    Query,
    /// S3's REST-XML.
    RestXml,
}

struct ActiveRule {
    id: RuleId,
    rule: Rule,
    /// Matching calls seen so far (let through or faulted).
    matched: u32,
}

impl ActiveRule {
    fn live(&self) -> bool {
        self.rule
            .times
            .is_none_or(|times| self.matched < self.rule.after + times)
    }
}

#[derive(Default)]
struct ProxyState {
    rules: Vec<ActiveRule>,
    next_rule: u64,
    counts: BTreeMap<String, CallCounts>,
    /// Canned S3 errors ([`FaultProxy::reply`]), checked before the fault rules.
    replies: Vec<ActiveReply>,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<ProxyState>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ProxyState> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Count the call and pick its fault (the first live matching rule decides).
    fn decide(&self, operation: &Operation) -> Option<Fault> {
        let mut state = self.lock();
        let name = operation.name();
        let mut fault = None;
        for active in state.rules.iter_mut() {
            if !active.live() || !active.rule.matches(operation) {
                continue;
            }
            active.matched += 1;
            if active.matched > active.rule.after {
                fault = Some(active.rule.fault);
                break;
            }
        }
        let counts = state.counts.entry(name).or_default();
        counts.calls += 1;
        if fault.is_some() {
            counts.faulted += 1;
        }
        fault
    }

    fn count(&self, operation: &Operation, update: impl FnOnce(&mut CallCounts)) {
        update(self.lock().counts.entry(operation.name()).or_default());
    }
}

/// The proxy: listens on 127.0.0.1 (a port of its own) until dropped.
pub struct FaultProxy {
    shared: Shared,
    address: SocketAddr,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listen on a free port of 127.0.0.1 and forward to `upstream` (`http://127.0.0.1:<port>`).
    pub async fn start(upstream: &str) -> Result<FaultProxy> {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("upstream {upstream} is not http://<ip>:<port>"))?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let shared = Shared::default();
        let accept = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            handle(shared.clone(), upstream, request)
                        });
                        // Errors here are the injected drops and clients hanging up.
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Ok(FaultProxy {
            shared,
            address,
            accept,
        })
    }

    /// `http://127.0.0.1:<port>`: the endpoint to give the functions.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Add a rule; it applies from the next call on.
    pub fn inject(&self, rule: Rule) -> RuleId {
        let mut state = self.shared.lock();
        state.next_rule += 1;
        let id = RuleId(state.next_rule);
        state.rules.push(ActiveRule {
            id,
            rule,
            matched: 0,
        });
        id
    }

    /// Remove one rule.
    pub fn remove(&self, id: RuleId) {
        let mut state = self.shared.lock();
        state.rules.retain(|active| active.id != id);
        state.replies.retain(|active| active.id != id);
    }

    /// Remove every rule: from now on every call is forwarded.
    pub fn clear(&self) {
        let mut state = self.shared.lock();
        state.rules.clear();
        state.replies.clear();
    }

    /// Calls of one operation (`service:Operation`) so far.
    pub fn counts(&self, operation: &str) -> CallCounts {
        self.shared
            .lock()
            .counts
            .get(operation)
            .copied()
            .unwrap_or_default()
    }

    /// Calls of every operation seen so far.
    pub fn all_counts(&self) -> BTreeMap<String, CallCounts> {
        self.shared.lock().counts.clone()
    }

    /// Forget the counts (rules stay).
    pub fn reset_counts(&self) {
        self.shared.lock().counts.clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Why a call got no answer (hyper closes the connection on a service error).
#[derive(Debug)]
enum ProxyError {
    Dropped,
    Body(hyper::Error),
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::Dropped => write!(f, "connection dropped by an injected fault"),
            ProxyError::Body(error) => write!(f, "reading the request body: {error}"),
        }
    }
}

impl std::error::Error for ProxyError {}

/// Counts a slow call as abandoned if its future is dropped (the client hung up) mid-delay.
struct AbandonGuard {
    shared: Shared,
    operation: Operation,
    armed: bool,
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if self.armed {
            self.shared
                .count(&self.operation, |counts| counts.abandoned += 1);
        }
    }
}

async fn handle(
    shared: Shared,
    upstream: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ProxyError> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(ProxyError::Body)?.to_bytes();
    let operation = classify(&parts, &body);
    if let Some(error) = shared.reply_for(&operation, &parts) {
        return Ok(error.response(parts.method == Method::HEAD));
    }
    match shared.decide(&operation) {
        None => Ok(forward(&shared, &operation, upstream, parts, body).await),
        Some(Fault::Slow(delay)) => {
            let mut guard = AbandonGuard {
                shared: shared.clone(),
                operation: operation.clone(),
                armed: true,
            };
            tokio::time::sleep(delay).await;
            guard.armed = false;
            Ok(forward(&shared, &operation, upstream, parts, body).await)
        }
        Some(Fault::DropConnection) => Err(ProxyError::Dropped),
        Some(Fault::LoseResponse) => {
            // Upstream's answer (or the 502 of an unreachable upstream) is thrown away.
            let _lost = forward(&shared, &operation, upstream, parts, body).await;
            Err(ProxyError::Dropped)
        }
        Some(Fault::TransactionConflict) => Ok(transaction_conflict_response(&body)),
        Some(fault) => Ok(error_response(
            &operation,
            fault,
            parts.method == Method::HEAD,
        )),
    }
}

/// Send the call upstream on a connection of its own and answer what upstream answers (502 when
/// upstream cannot be reached).
async fn forward(
    shared: &Shared,
    operation: &Operation,
    upstream: SocketAddr,
    mut parts: Parts,
    body: Bytes,
) -> Response<Full<Bytes>> {
    shared.count(operation, |counts| counts.forwarded += 1);
    // The body was read whole: send it with its length.
    parts.headers.remove(TRANSFER_ENCODING);
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    let request = Request::from_parts(parts, Full::new(body));
    match send_upstream(upstream, request).await {
        Ok((parts, body)) => {
            if operation.service == "dynamodb" && parts.status.is_success() {
                if let Some(items) = dynamodb_items_read(&operation.operation, &body) {
                    shared.count(operation, |counts| counts.items_read += items);
                }
            }
            Response::from_parts(parts, Full::new(body))
        }
        Err(error) => {
            let mut response = Response::new(Full::new(Bytes::from(format!(
                "fault proxy: upstream {upstream} failed: {error:#}"
            ))));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}

async fn send_upstream(
    upstream: SocketAddr,
    request: Request<Full<Bytes>>,
) -> Result<(hyper::http::response::Parts, Bytes)> {
    let stream = TcpStream::connect(upstream).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let (mut parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    connection.abort();
    // Answered with its length, whatever framing upstream used (HEAD keeps upstream's length).
    if parts.headers.remove(TRANSFER_ENCODING).is_some() {
        parts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    Ok((parts, body))
}

/// The items a successful DynamoDB answer says the table read and returned: `GetItem` 1 when the
/// answer has an `Item`; `Query` and `Scan` their `ScannedCount` (items read before any filter);
/// `BatchGetItem` the items of its `Responses`; `TransactGetItems` the entries with an `Item`.
/// `None` for the other operations: what a write returns (`ReturnValues`, the old item of a failed
/// condition) is not a read.
pub fn dynamodb_items_read(operation: &str, body: &[u8]) -> Option<u32> {
    let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    let count = |value: &serde_json::Value| value.as_array().map_or(0, Vec::len) as u32;
    let has_item = |value: &serde_json::Value| {
        value
            .get("Item")
            .and_then(serde_json::Value::as_object)
            .is_some()
    };
    match operation {
        "GetItem" => Some(u32::from(has_item(&answer))),
        "Query" | "Scan" => Some(
            answer
                .get("ScannedCount")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0) as u32,
        ),
        "BatchGetItem" => Some(
            answer
                .get("Responses")
                .and_then(serde_json::Value::as_object)
                .map_or(0, |tables| tables.values().map(count).sum()),
        ),
        "TransactGetItems" => Some(
            answer
                .get("Responses")
                .and_then(serde_json::Value::as_array)
                .map_or(0, |entries| {
                    entries.iter().filter(|e| has_item(e)).count() as u32
                }),
        ),
        _ => None,
    }
}

/// Name the call's operation from its target header, form body or S3 path shape.
pub fn classify(parts: &Parts, body: &[u8]) -> Operation {
    let scope = credential_scope_service(parts);
    if let Some(target) = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
    {
        let (prefix, name) = target.split_once('.').unwrap_or(("", target));
        let service = match prefix.split('_').next().unwrap_or_default() {
            "DynamoDB" => "dynamodb".to_owned(),
            "AmazonSQS" => "sqs".to_owned(),
            other => scope.clone().unwrap_or_else(|| other.to_lowercase()),
        };
        return Operation {
            service,
            operation: name.to_owned(),
            protocol: Protocol::Json,
        };
    }
    let form = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        if let Some(action) = form_value(body, "Action") {
            let service = match scope.as_deref() {
                Some("monitoring") => "cloudwatch".to_owned(),
                Some(other) => other.to_owned(),
                None => "query".to_owned(),
            };
            return Operation {
                service,
                operation: action,
                protocol: Protocol::Query,
            };
        }
    }
    // S3 control (Batch Operations), signed as "s3" too: its paths are versioned.
    if let Some(rest) = parts.uri.path().strip_prefix("/v20180820/") {
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let operation = match (parts.method.as_str(), segments.as_slice()) {
            ("POST", ["jobs"]) => "CreateJob",
            ("GET", ["jobs"]) => "ListJobs",
            ("GET", ["jobs", _]) => "DescribeJob",
            ("POST", ["jobs", _, "status"]) => "UpdateJobStatus",
            _ => "Unknown",
        };
        return Operation {
            service: "s3control".to_owned(),
            operation: operation.to_owned(),
            protocol: Protocol::RestXml,
        };
    }
    Operation {
        service: "s3".to_owned(),
        operation: s3_operation(parts),
        protocol: Protocol::RestXml,
    }
}

/// The service of the SigV4 credential scope (`Credential=AKID/date/region/service/aws4_request`).
fn credential_scope_service(parts: &Parts) -> Option<String> {
    let authorization = parts.headers.get("authorization")?.to_str().ok()?;
    let credential = authorization.split("Credential=").nth(1)?;
    let scope = credential.split([',', ' ']).next()?;
    scope.split('/').nth(3).map(str::to_owned)
}

/// One value of a form body (`Action=Publish&...`); values here are plain words.
fn form_value(body: &[u8], name: &str) -> Option<String> {
    std::str::from_utf8(body).ok()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

/// S3 operations by method and path shape (path-style: `/bucket` or `/bucket/key`), with the
/// SDK's `x-id` query parameter when it names the operation.
pub fn s3_operation(parts: &Parts) -> String {
    let query: Vec<(&str, &str)> = parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .collect();
    let has = |name: &str| query.iter().any(|(key, _)| *key == name);
    if let Some((_, id)) = query.iter().find(|(key, _)| *key == "x-id") {
        return (*id).to_owned();
    }
    let path = parts.uri.path().trim_start_matches('/');
    let (bucket, key) = match path.split_once('/') {
        Some((bucket, key)) => (bucket, key),
        None => (path, ""),
    };
    let method = &parts.method;
    if bucket.is_empty() {
        return "ListBuckets".to_owned();
    }
    if key.is_empty() {
        let subresources = [
            ("versioning", "BucketVersioning"),
            ("replication", "BucketReplication"),
            ("encryption", "BucketEncryption"),
            ("notification", "BucketNotificationConfiguration"),
            ("tagging", "BucketTagging"),
            ("lifecycle", "BucketLifecycleConfiguration"),
            ("location", "BucketLocation"),
            ("policy", "BucketPolicy"),
        ];
        if let Some((_, name)) = subresources.iter().find(|(sub, _)| has(sub)) {
            let verb = match *method {
                Method::PUT => "Put",
                Method::DELETE => "Delete",
                _ => "Get",
            };
            return format!("{verb}{name}");
        }
        return match *method {
            Method::HEAD => "HeadBucket",
            Method::PUT => "CreateBucket",
            Method::DELETE => "DeleteBucket",
            Method::POST if has("delete") => "DeleteObjects",
            _ if has("versions") => "ListObjectVersions",
            _ if has("list-type") => "ListObjectsV2",
            _ => "ListObjects",
        }
        .to_owned();
    }
    let copy = parts.headers.contains_key("x-amz-copy-source");
    match *method {
        Method::HEAD => "HeadObject",
        Method::GET if has("tagging") => "GetObjectTagging",
        Method::GET => "GetObject",
        Method::PUT if has("tagging") => "PutObjectTagging",
        Method::PUT if has("partNumber") => "UploadPart",
        Method::PUT if copy => "CopyObject",
        Method::PUT => "PutObject",
        Method::DELETE if has("tagging") => "DeleteObjectTagging",
        Method::DELETE => "DeleteObject",
        Method::POST if has("uploads") => "CreateMultipartUpload",
        Method::POST if has("uploadId") => "CompleteMultipartUpload",
        _ => "Unknown",
    }
    .to_owned()
}

/// The error the service itself would answer for the fault.
fn error_response(operation: &Operation, fault: Fault, head: bool) -> Response<Full<Bytes>> {
    let dynamodb = operation.service == "dynamodb";
    let (status, code, message) = match (fault, operation.protocol) {
        (Fault::InternalError, Protocol::Json) => {
            (500, "InternalServerError", "Internal server error")
        }
        (Fault::InternalError, Protocol::Query) => (500, "InternalFailure", "Internal failure"),
        (Fault::InternalError, Protocol::RestXml) => (
            500,
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
        (Fault::ServiceUnavailable, _) => (503, "ServiceUnavailable", "Service unavailable"),
        (Fault::ThroughputExceeded, Protocol::Json) if dynamodb => (
            400,
            "ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded.",
        ),
        (Fault::Throttling | Fault::ThroughputExceeded, Protocol::Json) => (
            400,
            "ThrottlingException",
            "Rate of requests exceeds the allowed throughput.",
        ),
        (Fault::Throttling | Fault::ThroughputExceeded, Protocol::Query) => {
            (400, "Throttling", "Rate exceeded")
        }
        (Fault::Throttling | Fault::ThroughputExceeded, Protocol::RestXml) => {
            (503, "SlowDown", "Please reduce your request rate.")
        }
        // Not answered here (slow calls are forwarded, drops and lost answers answer nothing,
        // transaction conflicts are answered by `transaction_conflict_response`).
        (
            Fault::Slow(_)
            | Fault::DropConnection
            | Fault::LoseResponse
            | Fault::TransactionConflict,
            _,
        ) => (500, "InternalError", "fault proxy"),
    };
    let (content_type, body) = match operation.protocol {
        Protocol::Json => {
            let namespace = if dynamodb {
                "com.amazonaws.dynamodb.v20120810"
            } else {
                "com.amazonaws.coral.service"
            };
            (
                "application/x-amz-json-1.0",
                serde_json::json!({ "__type": format!("{namespace}#{code}"), "message": message })
                    .to_string(),
            )
        }
        Protocol::Query => {
            let kind = if status >= 500 { "Receiver" } else { "Sender" };
            (
                "text/xml",
                format!(
                    "<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{REQUEST_ID}</RequestId></ErrorResponse>"
                ),
            )
        }
        Protocol::RestXml => (
            "application/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{REQUEST_ID}</RequestId></Error>"
            ),
        ),
    };
    // A HEAD answer has no body (S3 errors to HEAD carry only the status).
    let body = if head { String::new() } else { body };
    answer(status, content_type, body)
}

/// The request id of the proxy's own answers.
const REQUEST_ID: &str = "fault-proxy-0000";

/// An answer of the proxy's own: status, content type and body, with a request id.
fn answer(status: u16, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert("x-amzn-requestid", HeaderValue::from_static(REQUEST_ID));
    headers.insert("x-amz-request-id", HeaderValue::from_static(REQUEST_ID));
    response
}

/// DynamoDB's answer to a `TransactWriteItems` when another transaction holds its items: 400
/// `TransactionCanceledException` with a `TransactionConflict` reason per item of the request's
/// `TransactItems` (one when the request cannot be read).
fn transaction_conflict_response(request: &[u8]) -> Response<Full<Bytes>> {
    const CONFLICT: &str = "TransactionConflict";
    let items = serde_json::from_slice::<serde_json::Value>(request)
        .ok()
        .and_then(|request| {
            request
                .get("TransactItems")
                .and_then(serde_json::Value::as_array)
                .map(Vec::len)
        })
        .unwrap_or(1)
        .max(1);
    let codes = vec![CONFLICT; items].join(", ");
    let reason = serde_json::json!({
        "Code": CONFLICT,
        "Message": "Transaction is ongoing for the item",
    });
    let reasons = vec![reason; items];
    let body = serde_json::json!({
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "Message": format!(
            "Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]"
        ),
        "CancellationReasons": reasons,
    });
    answer(400, "application/x-amz-json-1.0", body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: Method, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).map(|r| r.into_parts().0).unwrap()
    }

    const SNS_AUTH: &str = "AWS4-HMAC-SHA256 Credential=test/20261130/us-east-1/sns/aws4_request, SignedHeaders=host, Signature=0";
    const CW_AUTH: &str = "AWS4-HMAC-SHA256 Credential=test/20261130/us-east-1/monitoring/aws4_request, SignedHeaders=host, Signature=0";

    #[test]
    fn operations_are_named_by_target_action_and_s3_path_shape() {
        let dynamodb = parts(
            Method::POST,
            "/",
            &[("x-amz-target", "DynamoDB_20120810.PutItem")],
        );
        assert_eq!(classify(&dynamodb, b"{}").name(), "dynamodb:PutItem");
        let form = ("content-type", "application/x-www-form-urlencoded");
        let sns = parts(Method::POST, "/", &[form, ("authorization", SNS_AUTH)]);
        assert_eq!(
            classify(&sns, b"Action=Publish&Version=2010-03-31").name(),
            "sns:Publish"
        );
        let cloudwatch = parts(Method::POST, "/", &[form, ("authorization", CW_AUTH)]);
        assert_eq!(
            classify(&cloudwatch, b"Version=2010-08-01&Action=GetMetricData").name(),
            "cloudwatch:GetMetricData"
        );
        let s3 = |method: Method, uri: &str| classify(&parts(method, uri, &[]), b"").name();
        assert_eq!(s3(Method::PUT, "/bucket/a/b.json"), "s3:PutObject");
        assert_eq!(s3(Method::PUT, "/bucket/a?x-id=PutObject"), "s3:PutObject");
        assert_eq!(s3(Method::HEAD, "/bucket/a/b.json"), "s3:HeadObject");
        assert_eq!(s3(Method::GET, "/bucket/k?versionId=1"), "s3:GetObject");
        assert_eq!(s3(Method::GET, "/bucket/k?tagging"), "s3:GetObjectTagging");
        assert_eq!(s3(Method::DELETE, "/bucket/k"), "s3:DeleteObject");
        assert_eq!(s3(Method::HEAD, "/bucket"), "s3:HeadBucket");
        assert_eq!(
            s3(Method::GET, "/bucket?replication"),
            "s3:GetBucketReplication"
        );
        assert_eq!(
            s3(Method::GET, "/bucket?versions&prefix=k"),
            "s3:ListObjectVersions"
        );
        assert_eq!(
            s3(Method::GET, "/bucket/?versioning"),
            "s3:GetBucketVersioning"
        );
    }

    #[test]
    fn rules_fault_the_next_calls_after_the_skipped_ones_then_let_calls_through() {
        let shared = Shared::default();
        let operation = Operation {
            service: "dynamodb".into(),
            operation: "UpdateItem".into(),
            protocol: Protocol::Json,
        };
        shared.lock().rules.push(ActiveRule {
            id: RuleId(1),
            rule: Rule::next(2, "dynamodb:*", Fault::Throttling).after(1),
            matched: 0,
        });
        let decided: Vec<Option<Fault>> = (0..5).map(|_| shared.decide(&operation)).collect();
        assert_eq!(
            decided,
            [
                None,
                Some(Fault::Throttling),
                Some(Fault::Throttling),
                None,
                None
            ]
        );
        let counts = shared.lock().counts["dynamodb:UpdateItem"];
        assert_eq!((counts.calls, counts.faulted), (5, 2));
    }

    #[test]
    fn a_transaction_conflict_rule_matches_dynamodb_transact_write_items_only() {
        let operation = |service: &str, name: &str| Operation {
            service: service.into(),
            operation: name.into(),
            protocol: Protocol::Json,
        };
        let transaction = operation("dynamodb", "TransactWriteItems");
        for pattern in ["*", "dynamodb:*", "dynamodb:TransactWriteItems"] {
            let rule = Rule::always(pattern, Fault::TransactionConflict);
            assert!(rule.matches(&transaction), "{pattern}");
            assert!(
                !rule.matches(&operation("dynamodb", "PutItem")),
                "{pattern}"
            );
            assert!(
                !rule.matches(&operation("sqs", "TransactWriteItems")),
                "{pattern}"
            );
        }
        assert!(Rule::always("dynamodb:*", Fault::LoseResponse)
            .matches(&operation("dynamodb", "PutItem")));
    }

    async fn answered(response: Response<Full<Bytes>>) -> (u16, String, serde_json::Value) {
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, content_type, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn a_transaction_conflict_cancels_every_item_of_the_transaction() {
        let request = serde_json::json!({
            "TransactItems": [{ "Put": {} }, { "Update": {} }, { "ConditionCheck": {} }],
            "ClientRequestToken": "token",
        });
        let (status, content_type, body) = answered(transaction_conflict_response(
            request.to_string().as_bytes(),
        ))
        .await;
        assert_eq!(
            (status, content_type.as_str()),
            (400, "application/x-amz-json-1.0")
        );
        assert_eq!(
            body["__type"],
            "com.amazonaws.dynamodb.v20120810#TransactionCanceledException"
        );
        assert_eq!(
            body["Message"],
            "Transaction cancelled, please refer cancellation reasons for specific reasons [TransactionConflict, TransactionConflict, TransactionConflict]"
        );
        let conflict = serde_json::json!({
            "Code": "TransactionConflict",
            "Message": "Transaction is ongoing for the item",
        });
        assert_eq!(
            body["CancellationReasons"],
            serde_json::json!([conflict, conflict, conflict])
        );
        let (status, _, body) = answered(transaction_conflict_response(b"not json")).await;
        assert_eq!(status, 400);
        assert_eq!(body["CancellationReasons"], serde_json::json!([conflict]));
    }

    #[tokio::test]
    async fn a_lost_response_reaches_upstream_and_answers_nothing() {
        // An upstream that counts the calls it answers.
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_address = upstream.local_addr().unwrap();
        let answered_upstream = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let server = tokio::spawn({
            let answered_upstream = answered_upstream.clone();
            async move {
                while let Ok((stream, _)) = upstream.accept().await {
                    let answered_upstream = answered_upstream.clone();
                    let service = hyper::service::service_fn(move |_request| {
                        answered_upstream.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        async { Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from("{}")))) }
                    });
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service),
                    );
                }
            }
        });
        let proxy = FaultProxy::start(&format!("http://{upstream_address}"))
            .await
            .unwrap();
        proxy.inject(Rule::next(
            1,
            "dynamodb:TransactWriteItems",
            Fault::LoseResponse,
        ));
        let call = || async {
            let stream = TcpStream::connect(proxy.address).await.unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let request = Request::post("/")
                .header("x-amz-target", "DynamoDB_20120810.TransactWriteItems")
                .body(Full::new(Bytes::from(r#"{"TransactItems": []}"#)))
                .unwrap();
            sender
                .send_request(request)
                .await
                .map(|response| response.status())
        };
        assert!(call().await.is_err(), "the lost answer must not arrive");
        assert_eq!(
            answered_upstream.load(std::sync::atomic::Ordering::SeqCst),
            1
        );
        assert_eq!(call().await.ok(), Some(StatusCode::OK));
        assert_eq!(
            answered_upstream.load(std::sync::atomic::Ordering::SeqCst),
            2
        );
        let counts = proxy.counts("dynamodb:TransactWriteItems");
        assert_eq!((counts.calls, counts.faulted, counts.forwarded), (2, 1, 2));
        server.abort();
    }

    #[test]
    fn dynamodb_reads_count_the_items_the_table_read_and_writes_none() {
        let read = |operation: &str, body: &str| dynamodb_items_read(operation, body.as_bytes());
        assert_eq!(read("GetItem", r#"{"Item": {"pk": {"S": "a"}}}"#), Some(1));
        assert_eq!(read("GetItem", "{}"), Some(0));
        assert_eq!(
            read("Query", r#"{"Count": 1, "ScannedCount": 7, "Items": [{}]}"#),
            Some(7)
        );
        assert_eq!(read("Scan", r#"{"Count": 0, "ScannedCount": 0}"#), Some(0));
        assert_eq!(
            read(
                "BatchGetItem",
                r#"{"Responses": {"t": [{}, {}], "u": [{}]}, "UnprocessedKeys": {}}"#
            ),
            Some(3)
        );
        assert_eq!(
            read(
                "TransactGetItems",
                r#"{"Responses": [{"Item": {}}, {}, {"Item": {"pk": {"S": "a"}}}]}"#
            ),
            Some(2)
        );
        assert_eq!(
            read("UpdateItem", r#"{"Attributes": {"pk": {"S": "a"}}}"#),
            None
        );
        assert_eq!(read("PutItem", "{}"), None);
    }
}
