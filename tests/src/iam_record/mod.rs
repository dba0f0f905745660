//! The recording side of the IAM proof (`scripts/iam-proof`): which AWS requests each function
//! made during the tests and the demo, as the authorizations AWS would check for them (caller,
//! IAM action, resource ARN, region, request context). `tools/iam-proof/prove.mjs` evaluates
//! them against the deployed policies with a real IAM policy evaluator.
//!
//! Design, and why:
//!
//! - **Recording point: moto server's own request recorder** (and the S3 Batch Operations
//!   simulator, `crate::s3control_sim`, which writes what it serves in the same format). With `MOTO_ENABLE_RECORDING` set,
//!   moto 5.2.5 appends every request it serves (method, raw URL, headers, base64 body) as one
//!   JSON document to `MOTO_RECORDER_FILEPATH`. [`moto_recorder_env`] turns it on for each
//!   server when [`RECORDINGS_ENV`] names a directory (`scripts/test` does, for the whole run;
//!   `scripts/demo` passes it to its own server), one file per server. Every request reaches the
//!   file whoever sends it: the functions under `cargo lambda watch` talk to moto directly, and
//!   nothing is put between them (a recording proxy in front of moto would be a second hop for
//!   every test and the demo, and a process of its own for the demo). Requests the fault proxy
//!   answers itself never reach moto and are not recorded: they were never authorized either.
//! - **One classifier.** Operations are named by [`crate::fault_proxy::classify`], the code the
//!   fault proxy uses; this file only maps an operation to the IAM actions it needs
//!   ([`authorizations`], an explicit table: an operation missing from it is a *problem* row and
//!   fails the proof, it is never skipped) and to each action's resource ARN, in the service's
//!   ARN format and the request's SigV4 region (the canary calls S3 and alarm-events calls
//!   CloudWatch in other regions than the monitor's).
//! - **Attribution by user agent.** Each function sets its SDK app name, so its requests carry
//!   `app/replmon-<function>` in `x-amz-user-agent`/`User-Agent` (`app/replmon-cli` for the
//!   command line). Requests without an `app/` tag are the test harness provisioning and reading
//!   the stack: counted, not evaluated. The local SQS event source mapping
//!   ([`crate::event_source`]) tags its calls [`EVENT_SOURCE_MAPPING_APP`]: on AWS, Lambda's
//!   poller makes them with the replication-events function's role, so its SQS grants are proven
//!   too.
//! - **Implied KMS.** Which key an S3 PUT or GET implies depends on the deployed bucket, not on
//!   the local one, so the evaluator derives it from the templates; a row keeps the request's
//!   server-side-encryption headers as the IAM condition keys S3 defines for them
//!   (`s3:x-amz-server-side-encryption`, `s3:x-amz-server-side-encryption-aws-kms-key-id`).
//!
//! moto writes each document with one `write`, so documents of concurrent requests never mix,
//! though a newline may end up after the next document: the reader takes any sequence of JSON
//! documents. A document cut short (the server killed while writing) is reported; if it carries
//! a function's tag the proof fails, since a request of that function may be missing.

mod actions;

pub use actions::{authorizations, LOCAL_ACCOUNT};

use crate::fault_proxy::classify;
use anyhow::{Context, Result};
use base64::Engine;
use hyper::http::request::Parts;
use hyper::{Method, Request};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A directory: when set, every [`crate::MotoServer`] records the requests it serves there.
pub const RECORDINGS_ENV: &str = "REPLMON_IAM_RECORDINGS";

/// The SDK app name of the local SQS event source mapping (Lambda's poller on AWS, which acts
/// with the replication-events function's role).
pub const EVENT_SOURCE_MAPPING_APP: &str = "replmon-replication-events-poller";

/// Environment for a moto server on `port`: its recorder on, writing into the directory named
/// by [`RECORDINGS_ENV`] (created if needed). Empty when recording is off.
pub fn moto_recorder_env(port: u16) -> Result<Vec<(String, String)>> {
    let Some(dir) = std::env::var_os(RECORDINGS_ENV).filter(|d| !d.is_empty()) else {
        return Ok(Vec::new());
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the IAM recordings directory {}", dir.display()))?;
    let file = dir.join(format!("moto-{port}-{}.jsonl", std::process::id()));
    Ok(vec![
        ("MOTO_ENABLE_RECORDING".to_owned(), "true".to_owned()),
        (
            "MOTO_RECORDER_FILEPATH".to_owned(),
            file.to_string_lossy().into_owned(),
        ),
    ])
}

/// The same SQS client, its requests tagged `app/<app>` (an invalid name leaves it untagged).
pub fn tagged_sqs_client(client: &aws_sdk_sqs::Client, app: &str) -> aws_sdk_sqs::Client {
    match aws_config::AppName::new(app.to_owned()) {
        Ok(name) => {
            aws_sdk_sqs::Client::from_conf(client.config().to_builder().app_name(name).build())
        }
        Err(_) => client.clone(),
    }
}

/// One document of moto's recorder.
#[derive(Debug, Deserialize)]
struct MotoEntry {
    #[serde(default)]
    headers: BTreeMap<String, Value>,
    method: String,
    url: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_encoded: bool,
}

/// An authorization AWS checks for a request: `action` on `resource`, with the condition keys
/// the request sets. A row aggregates identical authorizations of several requests.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Row {
    /// The app tag: `replmon-canary`, ...
    pub caller: String,
    /// `service:Operation` as the fault proxy names it.
    pub operation: String,
    /// The request's SigV4 region.
    pub region: String,
    /// The IAM action; `None` for operations that need no permission, and for problem rows.
    pub action: Option<String>,
    /// The resource ARN (`*` for actions without resource-level permissions).
    pub resource: Option<String>,
    /// Condition keys from the request (S3 encryption headers, ...).
    pub context: BTreeMap<String, String>,
    /// Why no authorization could be derived (an unknown operation, a missing parameter): the
    /// proof fails on it.
    pub problem: Option<String>,
}

/// A document that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    pub file: String,
    /// 1-based line where it starts.
    pub line: usize,
    /// App tags found in its text (a function's request may be lost if any).
    pub callers: Vec<String>,
}

/// Everything the recordings hold, for the evaluator.
#[derive(Debug, Default, Serialize)]
pub struct Recording {
    pub files: usize,
    /// Every request recorded, harness ones included.
    pub requests: u64,
    /// Requests per app tag.
    pub requests_by_caller: BTreeMap<String, u64>,
    /// Requests without an app tag (the harness): not evaluated.
    pub untagged: u64,
    pub unreadable: Vec<Unreadable>,
    /// Rows with the number of requests behind each.
    pub authorizations: Vec<(Row, u64)>,
}

impl Recording {
    /// Read every `*.jsonl` file of a directory (none: an empty recording).
    pub fn read_dir(dir: &Path) -> Result<Recording> {
        let mut recording = Recording::default();
        let mut rows: BTreeMap<Row, u64> = BTreeMap::new();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            recording.files += 1;
            recording.add_text(&path.display().to_string(), &text, &mut rows);
        }
        recording.authorizations = rows.into_iter().collect();
        Ok(recording)
    }

    /// Add the documents of one file's text.
    fn add_text(&mut self, file: &str, text: &str, rows: &mut BTreeMap<Row, u64>) {
        for (index, line) in text.lines().enumerate() {
            let mut documents = serde_json::Deserializer::from_str(line).into_iter::<MotoEntry>();
            loop {
                match documents.next() {
                    None => break,
                    Some(Ok(entry)) => {
                        self.requests += 1;
                        match request_rows(&entry) {
                            None => self.untagged += 1,
                            Some((caller, found)) => {
                                *self.requests_by_caller.entry(caller).or_default() += 1;
                                for row in found {
                                    *rows.entry(row).or_default() += 1;
                                }
                            }
                        }
                    }
                    Some(Err(_)) => {
                        self.unreadable.push(Unreadable {
                            file: file.to_owned(),
                            line: index + 1,
                            callers: app_tags(line),
                        });
                        break;
                    }
                }
            }
        }
    }
}

/// Every `app/<name>` token of a text (an unreadable document's).
fn app_tags(text: &str) -> Vec<String> {
    let mut tags: Vec<String> = text
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\\')
        .filter_map(|token| token.strip_prefix("app/"))
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    tags.sort();
    tags.dedup();
    tags
}

/// The caller's app tag and the rows of one recorded request; `None` for untagged requests.
fn request_rows(entry: &MotoEntry) -> Option<(String, Vec<Row>)> {
    let header = |name: &str| {
        entry
            .headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| value.as_str())
    };
    let caller = ["x-amz-user-agent", "user-agent"]
        .iter()
        .filter_map(|name| header(name))
        .find_map(|agent| {
            agent
                .split_whitespace()
                .find_map(|token| token.strip_prefix("app/"))
                .filter(|name| !name.is_empty())
        })?
        .to_owned();
    let body = match (&entry.body, entry.body_encoded) {
        (Some(body), true) => base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap_or_default(),
        (Some(body), false) => body.as_bytes().to_vec(),
        (None, _) => Vec::new(),
    };
    let rows = match parts(entry) {
        Ok(parts) => {
            let operation = classify(&parts, &body);
            let region = sigv4_region(&parts).unwrap_or_default();
            let mut context = BTreeMap::new();
            let found = authorizations(&operation, &parts, &body, &region, &mut context);
            let row = |action: Option<String>, resource: Option<String>, problem| Row {
                caller: caller.clone(),
                operation: operation.name(),
                region: region.clone(),
                action,
                resource,
                context: context.clone(),
                problem,
            };
            match found {
                _ if region.is_empty() => vec![row(None, None, Some("no SigV4 region".into()))],
                Ok(needs) if needs.is_empty() => vec![row(None, None, None)],
                Ok(needs) => needs
                    .into_iter()
                    .map(|(action, resource)| row(Some(action), Some(resource), None))
                    .collect(),
                Err(problem) => vec![row(None, None, Some(problem))],
            }
        }
        Err(problem) => vec![Row {
            caller: caller.clone(),
            operation: String::new(),
            region: String::new(),
            action: None,
            resource: None,
            context: BTreeMap::new(),
            problem: Some(problem),
        }],
    };
    Some((caller, rows))
}

/// The request line and headers as the fault proxy's classifier takes them.
fn parts(entry: &MotoEntry) -> Result<Parts, String> {
    let method = Method::from_bytes(entry.method.as_bytes())
        .map_err(|_| format!("unreadable method {}", entry.method))?;
    let mut builder = Request::builder().method(method).uri(entry.url.as_str());
    for (name, value) in &entry.headers {
        if let Some(value) = value.as_str() {
            builder = builder.header(name.as_str(), value);
        }
    }
    builder
        .body(())
        .map(|request| request.into_parts().0)
        .map_err(|error| format!("unreadable request {} {}: {error}", entry.method, entry.url))
}

/// The region of the SigV4 credential scope (`Credential=AKID/date/region/service/...`).
fn sigv4_region(parts: &Parts) -> Option<String> {
    let authorization = parts.headers.get("authorization")?.to_str().ok()?;
    let credential = authorization.split("Credential=").nth(1)?;
    let scope = credential.split([',', ' ']).next()?;
    scope.split('/').nth(2).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const AUTH_S3_WEST: &str = "AWS4-HMAC-SHA256 Credential=test/20261201/us-west-2/s3/aws4_request, SignedHeaders=host, Signature=0";
    const AUTH_SNS: &str = "AWS4-HMAC-SHA256 Credential=test/20261201/us-east-1/sns/aws4_request, SignedHeaders=host, Signature=0";
    const AUTH_DDB: &str = "AWS4-HMAC-SHA256 Credential=test/20261201/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0";
    const AUTH_CW: &str = "AWS4-HMAC-SHA256 Credential=test/20261201/eu-west-1/monitoring/aws4_request, SignedHeaders=host, Signature=0";

    fn entry(method: &str, url: &str, headers: Value, body: &str) -> MotoEntry {
        serde_json::from_value(json!({
            "headers": headers, "method": method, "url": url,
            "body": base64::engine::general_purpose::STANDARD.encode(body), "body_encoded": true
        }))
        .unwrap()
    }

    /// (action, resource, region, problem) of each row.
    type Found = (Option<String>, Option<String>, String, Option<String>);

    fn rows(entry: &MotoEntry) -> Vec<Found> {
        let (_, rows) = request_rows(entry).expect("tagged");
        rows.into_iter()
            .map(|r| (r.action, r.resource, r.region, r.problem))
            .collect()
    }

    fn some(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    #[test]
    fn s3_calls_become_object_and_bucket_actions_in_the_request_region() {
        let headers = json!({"Authorization": AUTH_S3_WEST, "User-Agent": "aws-sdk-rust/1.3 app/replmon-canary",
            "x-amz-tagging": "replmon=probe", "x-amz-server-side-encryption": "aws:kms"});
        let put = entry(
            "PUT",
            "http://127.0.0.1:5/b/replmon-canary/r1/2026-12-01T10%3A00%3A00Z?x-id=PutObject",
            headers,
            "probe",
        );
        let (caller, found) = request_rows(&put).unwrap();
        assert_eq!(caller, "replmon-canary");
        let object = "arn:aws:s3:::b/replmon-canary/r1/2026-12-01T10:00:00Z";
        assert_eq!(
            found
                .iter()
                .map(|r| (r.action.clone(), r.resource.clone(), r.region.clone()))
                .collect::<Vec<_>>(),
            [
                (some("s3:PutObject"), some(object), "us-west-2".to_owned()),
                (
                    some("s3:PutObjectTagging"),
                    some(object),
                    "us-west-2".to_owned()
                )
            ]
        );
        assert_eq!(
            found[0].context.get("s3:x-amz-server-side-encryption"),
            Some(&"aws:kms".to_owned())
        );
        let tagged = json!({"Authorization": AUTH_S3_WEST, "X-Amz-User-Agent": "aws-sdk-rust/1.3 app/replmon-canary"});
        let head = entry("HEAD", "http://h/b/k?versionId=3", tagged.clone(), "");
        assert_eq!(
            rows(&head),
            [(
                some("s3:GetObjectVersion"),
                some("arn:aws:s3:::b/k"),
                "us-west-2".into(),
                None
            )]
        );
        let list = entry("GET", "http://h/b?versions&prefix=k", tagged.clone(), "");
        assert_eq!(rows(&list)[0].0, some("s3:ListBucketVersions"));
        let replication = entry("GET", "http://h/b?replication", tagged.clone(), "");
        assert_eq!(
            rows(&replication)[0].0,
            some("s3:GetReplicationConfiguration")
        );
        let delete = entry(
            "DELETE",
            "http://h/b/k?versionId=1&x-id=DeleteObject",
            tagged,
            "",
        );
        assert_eq!(rows(&delete)[0].0, some("s3:DeleteObjectVersion"));
    }

    #[test]
    fn batch_operations_calls_name_their_job_and_the_role_they_pass() {
        let auth = AUTH_DDB.replace("dynamodb", "s3");
        let headers = json!({"Authorization": auth, "x-amz-account-id": "123456789012",
            "User-Agent": "x app/replmon-redrive"});
        let create = entry(
            "POST",
            "http://127.0.0.1:9/v20180820/jobs",
            headers.clone(),
            "<CreateJobRequest><RoleArn>arn:aws:iam::123456789012:role/job</RoleArn></CreateJobRequest>",
        );
        let found: Vec<_> = rows(&create).into_iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(
            found,
            [
                (some("s3:CreateJob"), some("*")),
                (
                    some("iam:PassRole"),
                    some("arn:aws:iam::123456789012:role/job")
                ),
            ]
        );
        let describe = entry("GET", "http://127.0.0.1:9/v20180820/jobs/j-1", headers, "");
        assert_eq!(
            rows(&describe)[0].1.as_deref(),
            Some("arn:aws:s3:us-east-1:123456789012:job/j-1")
        );
    }

    #[test]
    fn json_and_query_calls_name_their_table_queue_and_topic() {
        let ddb = json!({"Authorization": AUTH_DDB, "X-Amz-Target": "DynamoDB_20120810.Query",
            "User-Agent": "x app/replmon-alarm-events"});
        let query = entry(
            "POST",
            "http://h/",
            ddb,
            r#"{"TableName":"replmon-ledger","IndexName":"gsi1"}"#,
        );
        assert_eq!(
            rows(&query),
            [(
                some("dynamodb:Query"),
                some("arn:aws:dynamodb:us-east-1:123456789012:table/replmon-ledger/index/gsi1"),
                "us-east-1".into(),
                None
            )]
        );
        let sqs_headers = json!({"Authorization": AUTH_DDB.replace("dynamodb", "sqs"),
            "X-Amz-Target": "AmazonSQS.DeleteMessageBatch", "User-Agent": "x app/replmon-replication-events-poller"});
        let delete = entry(
            "POST",
            "http://h/",
            sqs_headers,
            r#"{"QueueUrl":"http://127.0.0.1:9/123456789012/replmon-replication-events","Entries":[]}"#,
        );
        assert_eq!(
            rows(&delete)[0].0.as_deref(),
            Some("sqs:DeleteMessage"),
            "batches are authorized as their single action"
        );
        assert_eq!(
            rows(&delete)[0].1.as_deref(),
            Some("arn:aws:sqs:us-east-1:123456789012:replmon-replication-events")
        );
        let sns_headers = json!({"Authorization": AUTH_SNS, "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "User-Agent": "x app/replmon-canary"});
        let publish = entry(
            "POST",
            "http://h/",
            sns_headers,
            "Action=Publish&Version=2010-03-31&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A123456789012%3Areplmon-pages&Message=a+b",
        );
        assert_eq!(
            rows(&publish),
            [(
                some("sns:Publish"),
                some("arn:aws:sns:us-east-1:123456789012:replmon-pages"),
                "us-east-1".into(),
                None
            )]
        );
        let cw_headers = json!({"Authorization": AUTH_CW, "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "x app/replmon-alarm-events"});
        let metrics = entry(
            "POST",
            "http://h/",
            cw_headers,
            "Action=GetMetricData&Version=2010-08-01",
        );
        assert_eq!(
            rows(&metrics),
            [(
                some("cloudwatch:GetMetricData"),
                some("*"),
                "eu-west-1".into(),
                None
            )]
        );
    }

    #[test]
    fn unknown_operations_are_problems_and_untagged_requests_are_not_evaluated() {
        let ddb = json!({"Authorization": AUTH_DDB, "X-Amz-Target": "DynamoDB_20120810.DeleteTable",
            "User-Agent": "x app/replmon-canary"});
        let drop_table = entry("POST", "http://h/", ddb, r#"{"TableName":"t"}"#);
        let found = rows(&drop_table);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].0.clone(), found[0].1.clone()), (None, None));
        assert!(found[0]
            .3
            .as_deref()
            .is_some_and(|p| p.contains("dynamodb:DeleteTable")));
        let s3_post = entry(
            "POST",
            "http://h/b/k?restore",
            json!({"Authorization": AUTH_S3_WEST, "User-Agent": "x app/replmon-canary"}),
            "",
        );
        assert!(
            rows(&s3_post)[0].3.is_some(),
            "an unknown S3 call is a problem"
        );
        let harness = entry(
            "GET",
            "http://h/b?versions",
            json!({"Authorization": AUTH_S3_WEST, "User-Agent": "aws-sdk-rust/1.3 os/linux"}),
            "",
        );
        assert!(request_rows(&harness).is_none());
    }

    #[test]
    fn documents_are_read_however_moto_split_them_and_cut_ones_are_reported() {
        let document = |agent: &str| {
            json!({"headers": {"Authorization": AUTH_S3_WEST, "User-Agent": agent},
                "method": "HEAD", "url": "http://h/b/k", "body": "", "body_encoded": false})
            .to_string()
        };
        let canary = document("x app/replmon-canary");
        let harness = document("aws-sdk-rust");
        // Two documents on one line (a newline written after another request's document), an
        // empty line, and a document cut short by the server's end.
        let text = format!(
            "{canary}{harness}\n\n{canary}\n{}",
            &canary[..canary.len() - 5]
        );
        let mut recording = Recording::default();
        let mut rows = BTreeMap::new();
        recording.add_text("f", &text, &mut rows);
        assert_eq!(recording.requests, 3);
        assert_eq!(recording.untagged, 1);
        assert_eq!(recording.requests_by_caller["replmon-canary"], 2);
        assert_eq!(rows.values().sum::<u64>(), 2);
        assert_eq!(
            recording.unreadable,
            [Unreadable {
                file: "f".into(),
                line: 4,
                callers: vec!["replmon-canary".into()]
            }]
        );
    }
}
