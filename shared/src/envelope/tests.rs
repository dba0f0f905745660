use super::*;
use serde_json::json;

const BODY: &str = r#"{"Records":[]}"#;

#[test]
fn sqs_records_keep_their_ids_bodies_and_receive_counts() {
    let payload = json!({"Records": [
        {"messageId": "1", "eventSource": "aws:sqs", "body": BODY, "attributes": {"ApproximateReceiveCount": "1"}},
        {"messageId": "2", "eventSource": "aws:sqs", "body": BODY, "attributes": {"ApproximateReceiveCount": "3"}},
        {"messageId": "3", "eventSource": "aws:sqs"},
    ]});
    let (delivery, envelopes) = open(&payload.to_string()).unwrap();
    assert_eq!(delivery, Delivery::Sqs);
    assert_eq!(envelopes.len(), 3);
    assert!(envelopes[0].first_delivery && !envelopes[1].first_delivery);
    assert_eq!(envelopes[1].body.as_deref(), Ok(BODY));
    assert_eq!(envelopes[2].id, "3");
    assert!(envelopes[2].body.as_ref().unwrap_err().contains("body"));
}

#[test]
fn a_well_formed_sns_event_and_a_partial_one() {
    let full = include_str!("../../../events/sns/failed.json");
    let (delivery, envelopes) = open(full).unwrap();
    assert_eq!(delivery, Delivery::Sns);
    let record: serde_json::Value = serde_json::from_str(full).unwrap();
    assert_eq!(
        envelopes[0].body.as_deref().ok(),
        record["Records"][0]["Sns"]["Message"].as_str()
    );
    // Without the fields aws_lambda_events requires: read record by record, the gap named.
    let partial = json!({"Records": [{"EventSource": "aws:sns", "Sns": {"MessageId": "x"}}]});
    let (delivery, envelopes) = open(&partial.to_string()).unwrap();
    assert_eq!(delivery, Delivery::Sns);
    assert_eq!(envelopes[0].id, "x");
    assert!(envelopes[0]
        .body
        .as_ref()
        .unwrap_err()
        .contains("Sns.Message"));
}

#[test]
fn eventbridge_detail_is_the_body_and_the_header_is_kept() {
    let payload = json!({
        "version": "0", "id": "e-1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-23T03:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/canary"], "detail": {"a": 1}
    });
    let (delivery, envelopes) = open(&payload.to_string()).unwrap();
    assert_eq!(delivery, Delivery::EventBridge);
    assert_eq!(envelopes[0].id, "e-1");
    assert_eq!(envelopes[0].body.as_deref(), Ok(r#"{"a":1}"#));
    let header = envelopes[0].event.as_ref().unwrap();
    assert_eq!(
        (header.detail_type.as_str(), header.source.as_str()),
        ("Scheduled Event", "aws.events")
    );
    assert_eq!(header.resources.len(), 1);
    assert!(
        open(&json!({"detail-type": "x"}).to_string()).is_err(),
        "no source, no detail"
    );
}

#[test]
fn anything_else_is_a_direct_payload_or_refused() {
    let (delivery, envelopes) = open(r#"{"alarmData": {}}"#).unwrap();
    assert_eq!(delivery, Delivery::Direct);
    assert_eq!(envelopes[0].body.as_deref(), Ok(r#"{"alarmData": {}}"#));
    assert!(open("[1]").is_err());
    assert!(open("{\"Records\": [").is_err());
    assert!(open(r#"{"Records": []}"#).unwrap().1.is_empty());
}

#[test]
fn the_sqs_response_names_the_failed_messages() {
    let response = sqs_batch_response(["a".to_owned(), "b".to_owned()]);
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]})
    );
    assert_eq!(
        sqs_batch_response(Vec::new()),
        json!({"batchItemFailures": []})
    );
}

#[test]
fn an_array_is_never_read_as_an_sqs_record() {
    // serde fills a struct from an array of its fields in order: `ObjectOnly` refuses that on
    // the one-pass path, and the record-by-record path names the record as not an object.
    let short = r#"{"Records": [["aws:sqs", null, "spoofed-id", "{}"]]}"#;
    assert!(open(short).is_err());
    let payload = r#"{"Records": [["aws:sqs", null, "spoofed-id", "{}", null, null]]}"#;
    let (delivery, envelopes) = open(payload).unwrap();
    assert_eq!(delivery, Delivery::Sqs);
    assert_eq!(envelopes.len(), 1);
    assert_ne!(envelopes[0].id, "spoofed-id");
    assert!(envelopes[0]
        .body
        .as_ref()
        .unwrap_err()
        .contains("not a JSON object"));
}
