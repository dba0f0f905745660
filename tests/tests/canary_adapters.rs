//! The canary's AWS adapters (S3 object store, DynamoDB records) against the local moto server,
//! through the real SDK clients.

use aws_sdk_s3::types::{
    Destination, Metrics, MetricsStatus, ReplicationConfiguration, ReplicationRule,
    ReplicationRuleFilter, ReplicationRuleStatus, ReplicationTime, ReplicationTimeStatus,
    ReplicationTimeValue, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};
use chrono::{Duration, Utc};
use replmon_shared::aws::{DynamoDbLedger, S3ObjectStore};
use replmon_shared::canary::ports::{
    BucketRef, CanaryStore, DefaultEncryption, ObjectStore, ProbeObject, Versioning,
};
use replmon_shared::canary::probe::{ProbeRecord, ProbeStatus, RuleHealth};
use replmon_shared::event::ReplicationEventKind::OperationFailedReplication;
use replmon_shared::fakes::NotificationBuilder;
use replmon_tests::{monitor_on_local_stack, sdk_config};

fn probe(source: &str, destination: &str, key: &str, version: Option<String>) -> ProbeRecord {
    let put_at = Utc::now();
    ProbeRecord {
        source_bucket: source.into(),
        destination_bucket: destination.into(),
        destination_region: Some("us-east-1".into()),
        rule_id: "replicate-everything".into(),
        run_id: "run-1".into(),
        key: key.into(),
        version_id: version,
        put_at,
        deadline: put_at + Duration::minutes(15),
        status: ProbeStatus::Pending,
        latency_ms: None,
        latency_min_ms: None,
        latency_max_ms: None,
        last_miss_at: None,
        head_requests: 3,
        resolved_at: None,
        detail: None,
        source_status: None,
        source_region: None,
        cleaned: false,
        counted: false,
        rolled_up: false,
        cleanup_attempts: 0,
        kms_refusal: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_reads_setup_and_facts_writes_heads_and_cleans_probes() {
    let (moto, stack, _) = monitor_on_local_stack().await.expect("local stack");
    let sdk = sdk_config(&moto.endpoint()).await;
    let store = S3ObjectStore::new(&sdk);
    let (source, replica) = (
        stack.names.source_bucket.as_str(),
        stack.names.replica_bucket.as_str(),
    );

    // A rule with metrics and RTC, as a disaster-recovery set-up has it.
    let rule = ReplicationRule::builder()
        .id("dr")
        .priority(1)
        .status(ReplicationRuleStatus::Enabled)
        .filter(ReplicationRuleFilter::builder().prefix("").build())
        .destination(
            Destination::builder()
                .bucket(format!("arn:aws:s3:::{replica}"))
                .metrics(
                    Metrics::builder()
                        .status(MetricsStatus::Enabled)
                        .event_threshold(ReplicationTimeValue::builder().minutes(15).build())
                        .build()
                        .unwrap(),
                )
                .replication_time(
                    ReplicationTime::builder()
                        .status(ReplicationTimeStatus::Enabled)
                        .time(ReplicationTimeValue::builder().minutes(15).build())
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    stack
        .s3
        .put_bucket_replication()
        .bucket(source)
        .replication_configuration(
            ReplicationConfiguration::builder()
                .role("arn:aws:iam::123456789012:role/replication")
                .rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let setup = store
        .replication(BucketRef {
            bucket: source,
            region: None,
        })
        .await
        .unwrap()
        .expect("configured");
    assert_eq!(setup.rules.len(), 1);
    let read = &setup.rules[0];
    assert_eq!(read.id, "dr");
    assert!(read.enabled);
    assert_eq!(read.destination_bucket, replica);
    assert!(read.metrics_enabled, "{read:?}");
    assert!(read.rtc_enabled, "{read:?}");
    let replica_ref = BucketRef {
        bucket: replica,
        region: None,
    };
    assert_eq!(store.replication(replica_ref).await.unwrap(), None);

    stack
        .s3
        .put_bucket_encryption()
        .bucket(source)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(
                            ServerSideEncryptionByDefault::builder()
                                .sse_algorithm(ServerSideEncryption::AwsKms)
                                .kms_master_key_id("alias/replmon-dr")
                                .build()
                                .unwrap(),
                        )
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let facts = store.facts(source, true).await.unwrap();
    // moto answers GetBucketVersioning with a root element the SDK rejects
    // (GetBucketVersioningResponse instead of VersioningConfiguration): unknown, not a guess.
    assert_eq!(facts.versioning, Versioning::Unknown);
    assert_eq!(
        facts.encryption,
        Some(DefaultEncryption::Kms {
            algorithm: "aws:kms".into(),
            key_id: Some("alias/replmon-dr".into())
        })
    );
    // Same bug for GetBucketNotificationConfiguration (GetBucketNotificationResponse).
    assert_eq!(facts.replication_events_configured, None);
    let missing = store.facts("replmon-no-such-bucket", false).await;
    assert!(
        matches!(
            missing,
            Err(replmon_shared::canary::ports::StoreError::NoSuchBucket { .. })
        ),
        "{missing:?}"
    );

    // A probe with tags and the bucket's KMS key, then HEAD, then cleanup of exactly its key.
    let key = "logs/replmon-canary/dr/run-1";
    let tags = vec![("replicate".to_owned(), "yes please".to_owned())];
    let at = BucketRef {
        bucket: source,
        region: facts.region.as_deref(),
    };
    let version = store
        .put(
            at,
            ProbeObject {
                key,
                body: "{}",
                tags: &tags,
                encryption: facts.encryption.as_ref(),
            },
        )
        .await
        .unwrap();
    assert!(version.is_some());
    let tagging = stack
        .s3
        .get_object_tagging()
        .bucket(source)
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(tagging.tag_set()[0].value(), "yes please");
    let head = stack
        .s3
        .head_object()
        .bucket(source)
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    let found = store.head(at, key, version.as_deref()).await.unwrap();
    assert_eq!(found.unwrap().version_id, version);
    assert_eq!(
        store.head(at, "logs/nothing-here", None).await.unwrap(),
        None
    );

    // A second version, a delete marker, and a longer key sharing the prefix.
    for body in ["a", "b"] {
        stack
            .s3
            .put_object()
            .bucket(source)
            .key(key)
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
    stack
        .s3
        .delete_object()
        .bucket(source)
        .key(key)
        .send()
        .await
        .unwrap();
    let neighbour = format!("{key}-other");
    stack
        .s3
        .put_object()
        .bucket(source)
        .key(&neighbour)
        .body(b"keep".to_vec().into())
        .send()
        .await
        .unwrap();
    // Only the probe's own version goes: the versions someone else wrote at its key (no
    // `replmon-probe` token), the delete marker and the neighbour stay.
    let deleted = store
        .delete_probe(at, key, version.as_deref())
        .await
        .unwrap();
    assert_eq!(deleted, 1, "the probe's version");
    assert_eq!(
        store.delete_probe(at, key, None).await.unwrap(),
        0,
        "nothing else is ours"
    );
    let left = stack
        .s3
        .list_object_versions()
        .bucket(source)
        .send()
        .await
        .unwrap();
    let mut keys: Vec<&str> = left.versions().iter().filter_map(|v| v.key()).collect();
    keys.sort_unstable();
    assert_eq!(keys, [key, key, neighbour.as_str()]);
    assert!(left
        .versions()
        .iter()
        .all(|v| v.version_id() != version.as_deref()));
    assert_eq!(left.delete_markers().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_records_probes_health_runs_notices_and_reads_failures() {
    let (moto, stack, monitor) = monitor_on_local_stack().await.expect("local stack");
    let sdk = sdk_config(&moto.endpoint()).await;
    let ledger = DynamoDbLedger::new(&sdk, &stack.names.table);
    let (source, replica) = (
        stack.names.source_bucket.as_str(),
        stack.names.replica_bucket.as_str(),
    );
    let later = Utc::now() + Duration::days(1);

    assert!(ledger.claim_run(source, "run-1", later).await.unwrap());
    assert!(!ledger.claim_run(source, "run-1", later).await.unwrap());
    assert!(ledger.claim_run(source, "run-2", later).await.unwrap());

    let mut pending = probe(source, replica, "replmon-canary/r/run-1", Some("v1".into()));
    ledger.save_probe(&pending, later).await.unwrap();
    assert_eq!(
        ledger.pending_probes(source).await.unwrap(),
        [pending.clone()]
    );
    pending.status = ProbeStatus::Arrived;
    pending.latency_min_ms = Some(1500);
    pending.latency_max_ms = Some(2000);
    pending.latency_ms = Some(1750);
    pending.resolved_at = Some(Utc::now());
    // Resolved but not yet cleaned up: still listed for the next run.
    ledger.save_probe(&pending, later).await.unwrap();
    assert_eq!(
        ledger.pending_probes(source).await.unwrap()[0].status,
        ProbeStatus::Arrived
    );
    pending.cleaned = true;
    // Cleaned but not yet counted into the rule's health: still listed.
    ledger.save_probe(&pending, later).await.unwrap();
    assert_eq!(ledger.pending_probes(source).await.unwrap().len(), 1);
    pending.counted = true;
    // Counted but not yet in its day's roll-up: still listed.
    ledger.save_probe(&pending, later).await.unwrap();
    assert_eq!(ledger.pending_probes(source).await.unwrap().len(), 1);
    pending.rolled_up = true;
    ledger.save_probe(&pending, later).await.unwrap();
    assert!(ledger.pending_probes(source).await.unwrap().is_empty());
    let records = stack.partition(&format!("PROBE#{source}")).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["status"], "ARRIVED");
    assert_eq!(records[0]["latency_ms"], "1750");
    assert_eq!(records[0]["entity"], "probe");

    let mut health = RuleHealth::new(source, replica, "r");
    assert_eq!(ledger.health(source, replica, "r").await.unwrap(), None);
    assert!(ledger.put_health(&health, None, later).await.unwrap());
    assert!(!ledger.put_health(&health, None, later).await.unwrap());
    health.consecutive_bad = 2;
    assert!(ledger.put_health(&health, Some(1), later).await.unwrap());
    assert!(!ledger.put_health(&health, Some(1), later).await.unwrap());
    assert_eq!(
        ledger.health(source, replica, "r").await.unwrap(),
        Some((health, 2))
    );

    let now = Utc::now();
    let day = Duration::days(1);
    assert!(ledger
        .claim_notice(source, "rtc-off#r#dst", now, day)
        .await
        .unwrap());
    assert!(!ledger
        .claim_notice(source, "rtc-off#r#dst", now + Duration::hours(1), day)
        .await
        .unwrap());
    assert!(ledger
        .claim_notice(source, "rtc-off#r#dst", now + Duration::hours(25), day)
        .await
        .unwrap());
    ledger
        .release_notice(source, "rtc-off#r#dst")
        .await
        .unwrap();
    assert!(ledger
        .claim_notice(source, "rtc-off#r#dst", now + Duration::hours(26), day)
        .await
        .unwrap());

    // The replication-events function recorded S3's failure event for a probe: the canary reads it.
    let failed = probe(source, replica, "replmon-canary/r/run-9", Some("v9".into()));
    assert_eq!(ledger.replication_failure(&failed).await.unwrap(), None);
    let builder = NotificationBuilder::new(source, replica, "r");
    let event = NotificationBuilder::sqs_event(&[NotificationBuilder::notification(vec![builder
        .record(
            OperationFailedReplication,
            &failed.key,
            "v9",
            Some("DstKmsKeyNotFound"),
        )])]);
    monitor.handle_value(&event).await.unwrap();
    assert_eq!(
        ledger
            .replication_failure(&failed)
            .await
            .unwrap()
            .as_deref(),
        Some("DstKmsKeyNotFound")
    );
}
