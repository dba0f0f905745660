//! A local SQS event source mapping: what Lambda's SQS poller does for replication-events on AWS.
//! It receives up to 10 messages, invokes the function (through `cargo lambda watch`'s invoke
//! endpoint) with an SQS event, deletes the messages the function did not list in
//! `batchItemFailures`, and leaves the rest to come back after the visibility timeout.

use crate::replication_sim::{post, url_encode, LAMBDA_INVOKE_TIMEOUT};
use anyhow::{bail, Context, Result};
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Seconds a message stays invisible after a failed delivery (short: this is a demo and tests).
pub const VISIBILITY_TIMEOUT_SECONDS: i32 = 3;

/// Counters of what the mapping did.
#[derive(Debug, Default)]
pub struct MappingCounters {
    pub invocations: AtomicU64,
    pub delivered: AtomicU64,
    /// Messages the function returned for retry, or whose invocation failed.
    pub retried: AtomicU64,
}

pub struct SqsEventSourceMapping {
    stopping: Arc<AtomicBool>,
    pub counters: Arc<MappingCounters>,
    task: tokio::task::JoinHandle<()>,
}

/// Create the queue (idempotent) with a short visibility timeout; returns (url, arn).
pub async fn create_event_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<(String, String)> {
    let url = sqs
        .create_queue()
        .queue_name(name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            VISIBILITY_TIMEOUT_SECONDS.to_string(),
        )
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))
        .with_context(|| format!("creating queue {name}"))?
        .queue_url
        .context("CreateQueue answered no URL")?;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .context("no queue ARN")?;
    Ok((url, arn))
}

impl SqsEventSourceMapping {
    pub fn start(
        sqs: aws_sdk_sqs::Client,
        queue_url: String,
        queue_arn: String,
        lambda_port: u16,
        function: String,
    ) -> Self {
        // Lambda's poller acts with the function's role: tagged so the IAM proof evaluates its
        // calls against that role.
        let sqs =
            crate::iam_record::tagged_sqs_client(&sqs, crate::iam_record::EVENT_SOURCE_MAPPING_APP);
        let stopping = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(MappingCounters::default());
        let task = tokio::spawn({
            let stopping = stopping.clone();
            let counters = counters.clone();
            async move {
                while !stopping.load(Ordering::SeqCst) {
                    if let Err(error) = poll_once(
                        &sqs,
                        &queue_url,
                        &queue_arn,
                        lambda_port,
                        &function,
                        &counters,
                    )
                    .await
                    {
                        eprintln!("event source mapping: {error:#}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        SqsEventSourceMapping {
            stopping,
            counters,
            task,
        }
    }

    pub async fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

async fn poll_once(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    queue_arn: &str,
    lambda_port: u16,
    function: &str,
    counters: &MappingCounters,
) -> Result<()> {
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))
        .context("receiving from the event queue")?;
    let messages = out.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok(());
    }
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": m.message_id.clone().unwrap_or_default(),
                "receiptHandle": m.receipt_handle.clone().unwrap_or_default(),
                "body": m.body.clone().unwrap_or_default(),
                // As the poller does: the function tells a redelivery from a first receive by it.
                "attributes": {"ApproximateReceiveCount": m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .cloned()},
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body.clone().unwrap_or_default(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": crate::REGION,
            })
        })
        .collect();
    let event = json!({ "Records": records });
    counters.invocations.fetch_add(1, Ordering::SeqCst);
    let path = format!(
        "/2015-03-31/functions/{}/invocations",
        url_encode(function, false)
    );
    let invoked = tokio::time::timeout(
        LAMBDA_INVOKE_TIMEOUT,
        post(
            lambda_port,
            &path,
            "application/json",
            event.to_string().as_bytes(),
        ),
    )
    .await;
    let retry: Vec<String> = match invoked {
        Ok(Ok((status, body))) if (200..300).contains(&status) => {
            match serde_json::from_str::<Value>(&body) {
                // A function error comes back as 200 with errorType/errorMessage, and Lambda
                // retries the whole batch when a response lists an identifier it did not send.
                Ok(response) if response.get("errorType").is_none() => {
                    listed_failures(&response, &messages).unwrap_or_else(|| all_ids(&messages))
                }
                _ => all_ids(&messages),
            }
        }
        Ok(Ok((status, body))) => {
            eprintln!(
                "event source mapping: {function} answered HTTP {status}: {}",
                body.chars().take(300).collect::<String>()
            );
            all_ids(&messages)
        }
        Ok(Err(error)) => {
            eprintln!("event source mapping: invoking {function}: {error:#}");
            all_ids(&messages)
        }
        Err(_) => {
            eprintln!("event source mapping: invoking {function} timed out");
            all_ids(&messages)
        }
    };
    counters
        .retried
        .fetch_add(retry.len() as u64, Ordering::SeqCst);
    let done: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .filter(|m| m.message_id.as_ref().is_some_and(|id| !retry.contains(id)))
        .enumerate()
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .receipt_handle(m.receipt_handle.clone()?)
                .build()
                .ok()
        })
        .collect();
    if done.is_empty() {
        return Ok(());
    }
    let count = done.len() as u64;
    let deleted = sqs
        .delete_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(done))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))?;
    if !deleted.failed.is_empty() {
        bail!("{} messages could not be deleted", deleted.failed.len());
    }
    counters.delivered.fetch_add(count, Ordering::SeqCst);
    Ok(())
}

fn all_ids(messages: &[aws_sdk_sqs::types::Message]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| m.message_id.clone())
        .collect()
}

/// The message IDs a partial batch response lists; `None` when the response is malformed (not
/// an object, or an identifier that is missing, empty or not in the batch).
fn listed_failures(
    response: &Value,
    messages: &[aws_sdk_sqs::types::Message],
) -> Option<Vec<String>> {
    let sent = all_ids(messages);
    let failures = match response.get("batchItemFailures") {
        None | Some(Value::Null) => return response.is_object().then(Vec::new),
        Some(failures) => failures.as_array()?,
    };
    failures
        .iter()
        .map(|f| {
            f["itemIdentifier"]
                .as_str()
                .filter(|id| sent.iter().any(|s| s == id))
                .map(str::to_owned)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(ids: &[&str]) -> Vec<aws_sdk_sqs::types::Message> {
        ids.iter()
            .map(|id| {
                aws_sdk_sqs::types::Message::builder()
                    .message_id(*id)
                    .build()
            })
            .collect()
    }

    #[test]
    fn partial_batch_responses_are_read_like_lambda_does() {
        let batch = messages(&["a", "b", "c"]);
        let listed = |response: Value| listed_failures(&response, &batch);
        assert_eq!(listed(json!({"batchItemFailures": []})), Some(vec![]));
        assert_eq!(listed(json!({})), Some(vec![]));
        assert_eq!(
            listed(json!({"batchItemFailures": [{"itemIdentifier": "b"}]})),
            Some(vec!["b".to_owned()])
        );
        // Unknown, empty or missing identifiers: the whole batch is retried.
        for bad in [
            json!({"batchItemFailures": [{"itemIdentifier": "zzz"}]}),
            json!({"batchItemFailures": [{"itemIdentifier": ""}]}),
            json!({"batchItemFailures": [{}]}),
            json!({"batchItemFailures": "b"}),
            json!("ok"),
        ] {
            assert_eq!(listed(bad), None);
        }
    }
}
