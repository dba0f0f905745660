//! Which IAM authorizations an AWS operation needs (an explicit table per service), with each
//! action's resource ARN in the service's ARN format and the request's region. Part of the IAM
//! proof's recording side ([`super`]).

use crate::fault_proxy::Operation;
use hyper::http::request::Parts;
use serde_json::Value;
use std::collections::BTreeMap;

/// The account moto serves by default: the local stack's account.
pub const LOCAL_ACCOUNT: &str = "123456789012";

pub(super) fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// A parameter of a URL query or form body, decoded (`+` is a space in forms).
fn parameter(text: &str, name: &str) -> Option<String> {
    text.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key) == name).then(|| decode(&value.replace('+', " ")))
    })
}

type Needs = Vec<(String, String)>;

/// The IAM authorizations an operation needs, as (action, resource ARN); empty when it needs
/// none. Fills `context` with the condition keys the request sets. An operation not listed here
/// is an error: the proof must not pass over a call it cannot judge.
pub fn authorizations(
    operation: &Operation,
    parts: &Parts,
    body: &[u8],
    region: &str,
    context: &mut BTreeMap<String, String>,
) -> Result<Needs, String> {
    let name = operation.operation.as_str();
    match operation.service.as_str() {
        "s3" => s3(name, parts, context),
        "dynamodb" => dynamodb(name, body, region),
        "sqs" => sqs(name, body, region),
        "sns" => sns(name, body),
        "cloudwatch" => match name {
            // No resource-level permissions for these: the resource is "*".
            "GetMetricData" | "GetMetricStatistics" | "ListMetrics" => {
                Ok(vec![(format!("cloudwatch:{name}"), "*".to_owned())])
            }
            "PutMetricData" => {
                let form = String::from_utf8_lossy(body);
                if let Some(namespace) = parameter(&form, "Namespace") {
                    context.insert("cloudwatch:namespace".into(), namespace);
                }
                Ok(vec![("cloudwatch:PutMetricData".into(), "*".into())])
            }
            _ => Err(unknown(operation)),
        },
        "s3control" => s3control(name, parts, body, region, context),
        // Answers the caller's own identity; no policy can deny it.
        "sts" if name == "GetCallerIdentity" => Ok(Vec::new()),
        _ => Err(unknown(operation)),
    }
}

/// S3 Batch Operations (the local stack's simulator records these, moto has none). CreateJob
/// passes the job's role to Batch Operations: `iam:PassRole` is checked with it.
fn s3control(
    name: &str,
    parts: &Parts,
    body: &[u8],
    region: &str,
    context: &mut BTreeMap<String, String>,
) -> Result<Needs, String> {
    let account = parts
        .headers
        .get("x-amz-account-id")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("s3control:{name} without x-amz-account-id"))?;
    let job = |id: &str| format!("arn:aws:s3:{region}:{account}:job/{id}");
    let segments: Vec<&str> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match (name, segments.as_slice()) {
        ("CreateJob", _) => {
            let body = String::from_utf8_lossy(body);
            let role = body
                .split("<RoleArn>")
                .nth(1)
                .and_then(|rest| rest.split("</RoleArn>").next())
                .ok_or("s3control:CreateJob without a RoleArn")?;
            context.insert(
                "iam:PassedToService".into(),
                "batchoperations.s3.amazonaws.com".into(),
            );
            Ok(vec![
                ("s3:CreateJob".into(), "*".into()),
                ("iam:PassRole".into(), role.to_owned()),
            ])
        }
        ("ListJobs", _) => Ok(vec![("s3:ListJobs".into(), "*".into())]),
        ("DescribeJob", [_, "jobs", id]) => Ok(vec![("s3:DescribeJob".into(), job(id))]),
        ("UpdateJobStatus", [_, "jobs", id, _]) => Ok(vec![("s3:UpdateJobStatus".into(), job(id))]),
        _ => Err(format!(
            "no IAM mapping for s3control:{name} {} (add it to tests/src/iam_record/actions.rs)",
            parts.uri.path()
        )),
    }
}

fn unknown(operation: &Operation) -> String {
    format!(
        "no IAM mapping for {} (add it to tests/src/iam_record/actions.rs)",
        operation.name()
    )
}

fn s3(name: &str, parts: &Parts, context: &mut BTreeMap<String, String>) -> Result<Needs, String> {
    let path = parts.uri.path().trim_start_matches('/');
    let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
    let bucket = decode(bucket);
    let key = decode(key);
    let query = parts.uri.query().unwrap_or_default();
    let versioned = parameter(query, "versionId").is_some();
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    let object_arn = format!("{bucket_arn}/{key}");
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let on_object = |action: &str| -> Result<Needs, String> {
        if bucket.is_empty() || key.is_empty() {
            return Err(format!("s3:{name} without a bucket and key: {path}"));
        }
        Ok(vec![(format!("s3:{action}"), object_arn.clone())])
    };
    let on_bucket = |action: &str| -> Result<Needs, String> {
        if bucket.is_empty() {
            return Err(format!("s3:{name} without a bucket"));
        }
        Ok(vec![(format!("s3:{action}"), bucket_arn.clone())])
    };
    let pick = |plain: &'static str, version: &'static str| if versioned { version } else { plain };
    match name {
        // A HEAD is authorized as the GET of the same object (version).
        "HeadObject" | "GetObject" => on_object(pick("GetObject", "GetObjectVersion")),
        "PutObject" => {
            for (header_name, key_name) in [
                (
                    "x-amz-server-side-encryption",
                    "s3:x-amz-server-side-encryption",
                ),
                (
                    "x-amz-server-side-encryption-aws-kms-key-id",
                    "s3:x-amz-server-side-encryption-aws-kms-key-id",
                ),
            ] {
                if let Some(value) = header(header_name) {
                    context.insert(key_name.into(), value);
                }
            }
            let mut needs = on_object("PutObject")?;
            // Tags given with the PUT need the tagging permission too.
            if header("x-amz-tagging").is_some_and(|t| !t.is_empty()) {
                needs.extend(on_object("PutObjectTagging")?);
            }
            Ok(needs)
        }
        "DeleteObject" => on_object(pick("DeleteObject", "DeleteObjectVersion")),
        "GetObjectTagging" => on_object(pick("GetObjectTagging", "GetObjectVersionTagging")),
        "PutObjectTagging" => on_object(pick("PutObjectTagging", "PutObjectVersionTagging")),
        "HeadBucket" | "ListObjects" | "ListObjectsV2" => on_bucket("ListBucket"),
        "ListObjectVersions" => on_bucket("ListBucketVersions"),
        "GetBucketReplication" => on_bucket("GetReplicationConfiguration"),
        "GetBucketVersioning" => on_bucket("GetBucketVersioning"),
        "GetBucketEncryption" => on_bucket("GetEncryptionConfiguration"),
        "GetBucketNotificationConfiguration" => on_bucket("GetBucketNotification"),
        "GetBucketLocation" => on_bucket("GetBucketLocation"),
        "GetBucketTagging" => on_bucket("GetBucketTagging"),
        "GetBucketPolicy" => on_bucket("GetBucketPolicy"),
        "GetBucketLifecycleConfiguration" => on_bucket("GetLifecycleConfiguration"),
        "ListBuckets" => Ok(vec![("s3:ListAllMyBuckets".into(), "*".into())]),
        _ => Err(format!(
            "no IAM mapping for s3:{name} (add it to tests/src/iam_record/actions.rs)"
        )),
    }
}

fn json_body(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

fn dynamodb(name: &str, body: &[u8], region: &str) -> Result<Needs, String> {
    let body = json_body(body);
    let table = |table: &str| format!("arn:aws:dynamodb:{region}:{LOCAL_ACCOUNT}:table/{table}");
    let named = |value: &Value| value.get("TableName").and_then(Value::as_str).map(table);
    match name {
        "GetItem" | "PutItem" | "UpdateItem" | "DeleteItem" | "Query" | "Scan"
        | "DescribeTable" | "ConditionCheckItem" => {
            let mut resource =
                named(&body).ok_or_else(|| format!("dynamodb:{name} without TableName"))?;
            if let Some(index) = body.get("IndexName").and_then(Value::as_str) {
                resource = format!("{resource}/index/{index}");
            }
            Ok(vec![(format!("dynamodb:{name}"), resource)])
        }
        // Authorized per table.
        "BatchGetItem" | "BatchWriteItem" => {
            let tables = body
                .get("RequestItems")
                .and_then(Value::as_object)
                .ok_or_else(|| format!("dynamodb:{name} without RequestItems"))?;
            Ok(tables
                .keys()
                .map(|t| (format!("dynamodb:{name}"), table(t)))
                .collect())
        }
        // Authorized as the single-item action of each part.
        "TransactWriteItems" | "TransactGetItems" => {
            let items = body
                .get("TransactItems")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("dynamodb:{name} without TransactItems"))?;
            let mut needs = Vec::new();
            for item in items {
                let parts = [
                    ("Put", "PutItem"),
                    ("Update", "UpdateItem"),
                    ("Delete", "DeleteItem"),
                    ("ConditionCheck", "ConditionCheckItem"),
                    ("Get", "GetItem"),
                ];
                let (part, action) = parts
                    .iter()
                    .find(|(part, _)| item.get(*part).is_some())
                    .ok_or_else(|| format!("dynamodb:{name}: an item of no known kind"))?;
                let resource = item
                    .get(*part)
                    .and_then(named)
                    .ok_or_else(|| format!("dynamodb:{name}: {part} without TableName"))?;
                needs.push((format!("dynamodb:{action}"), resource));
            }
            Ok(needs)
        }
        _ => Err(format!(
            "no IAM mapping for dynamodb:{name} (add it to tests/src/iam_record/actions.rs)"
        )),
    }
}

fn sqs(name: &str, body: &[u8], region: &str) -> Result<Needs, String> {
    let body = json_body(body);
    let action = match name {
        "ReceiveMessage"
        | "DeleteMessage"
        | "ChangeMessageVisibility"
        | "SendMessage"
        | "GetQueueAttributes"
        | "GetQueueUrl"
        | "PurgeQueue" => name,
        // Batches are authorized as their single-message action.
        "DeleteMessageBatch" => "DeleteMessage",
        "ChangeMessageVisibilityBatch" => "ChangeMessageVisibility",
        "SendMessageBatch" => "SendMessage",
        _ => {
            return Err(format!(
                "no IAM mapping for sqs:{name} (add it to tests/src/iam_record/actions.rs)"
            ))
        }
    };
    let resource = if let Some(url) = body.get("QueueUrl").and_then(Value::as_str) {
        // http://host/<account>/<name>
        let mut segments = url
            .split("://")
            .nth(1)
            .unwrap_or(url)
            .split('/')
            .skip(1)
            .filter(|s| !s.is_empty());
        match (segments.next(), segments.next()) {
            (Some(account), Some(queue)) => format!("arn:aws:sqs:{region}:{account}:{queue}"),
            _ => {
                return Err(format!(
                    "sqs:{name}: queue URL {url} has no account and name"
                ))
            }
        }
    } else if let Some(queue) = body.get("QueueName").and_then(Value::as_str) {
        let account = body
            .get("QueueOwnerAWSAccountId")
            .and_then(Value::as_str)
            .unwrap_or(LOCAL_ACCOUNT);
        format!("arn:aws:sqs:{region}:{account}:{queue}")
    } else {
        return Err(format!("sqs:{name} without QueueUrl"));
    };
    Ok(vec![(format!("sqs:{action}"), resource)])
}

fn sns(name: &str, body: &[u8]) -> Result<Needs, String> {
    let form = String::from_utf8_lossy(body);
    let action = match name {
        "Publish" | "GetTopicAttributes" => name,
        "PublishBatch" => "Publish",
        _ => {
            return Err(format!(
                "no IAM mapping for sns:{name} (add it to tests/src/iam_record/actions.rs)"
            ))
        }
    };
    let topic = parameter(&form, "TopicArn")
        .or_else(|| parameter(&form, "TargetArn"))
        .ok_or_else(|| format!("sns:{name} without TopicArn"))?;
    Ok(vec![(format!("sns:{action}"), topic)])
}
