use super::*;

fn event(kind: ReplicationEventKind, second: u32, reason: Option<&str>) -> ReplicationEvent {
    ReplicationEvent {
        kind,
        region: None,
        event_time: DateTime::parse_from_rfc3339(&format!("2026-11-23T03:00:{second:02}Z"))
            .unwrap()
            .with_timezone(&Utc),
        source_bucket: "src".into(),
        key: "k".into(),
        version_id: Some("v".into()),
        size: Some(1),
        sequencer: None,
        rule_id: "r".into(),
        destination_bucket: "dst".into(),
        destination_arn: "arn:aws:s3:::dst".into(),
        s3_operation: None,
        request_time: None,
        failure_reason: reason.map(str::to_owned),
        threshold_seconds: Some(900.0),
        replication_time_seconds: Some(1000.0),
    }
}

fn fold(events: &[ReplicationEvent]) -> ObjectRecord {
    let mut record = ObjectRecord::from_event(&events[0]).unwrap();
    for e in &events[1..] {
        record.merge(e);
    }
    record
}

#[test]
fn merge_is_order_independent_and_idempotent() {
    use ReplicationEventKind::*;
    let events = [
        event(OperationMissedThreshold, 10, None),
        event(OperationReplicatedAfterThreshold, 30, None),
        event(OperationFailedReplication, 20, Some("B")),
        event(OperationFailedReplication, 5, Some("A")),
    ];
    let reference = fold(&events);
    assert_eq!(reference.status(), ObjectStatus::Failed);
    assert_eq!(reference.failure_reason.as_deref(), Some("A"));
    assert_eq!(
        reference.first_seen.to_rfc3339(),
        "2026-11-23T03:00:05+00:00"
    );
    assert_eq!(
        reference.last_seen.to_rfc3339(),
        "2026-11-23T03:00:30+00:00"
    );
    // Every permutation, and every event twice, gives the same record.
    let mut order = [0usize, 1, 2, 3];
    for _ in 0..24 {
        let permuted: Vec<_> = order
            .iter()
            .flat_map(|&i| [events[i].clone(), events[i].clone()])
            .collect();
        assert_eq!(fold(&permuted), reference);
        next_permutation(&mut order);
    }
}

#[test]
fn late_then_replicated_in_either_order() {
    use ReplicationEventKind::*;
    let late = event(OperationMissedThreshold, 10, None);
    let done = event(OperationReplicatedAfterThreshold, 30, None);
    assert_eq!(
        fold(std::slice::from_ref(&late)).status(),
        ObjectStatus::Late
    );
    assert_eq!(
        fold(&[late.clone(), done.clone()]).status(),
        ObjectStatus::ReplicatedLate
    );
    assert_eq!(fold(&[done, late]).status(), ObjectStatus::ReplicatedLate);
    assert!(ObjectRecord::from_event(&event(OperationNotTracked, 1, None)).is_none());
}

fn next_permutation(v: &mut [usize]) {
    let n = v.len();
    let Some(i) = (0..n - 1).rev().find(|&i| v[i] < v[i + 1]) else {
        v.reverse();
        return;
    };
    let j = (i + 1..n).rev().find(|&j| v[j] > v[i]).unwrap();
    v.swap(i, j);
    v[i + 1..].reverse();
}

/// A long key's sort key is its SHA-256; a short key written to look like that digest is hashed
/// too, so it cannot take the long key's record.
#[test]
fn a_key_that_spells_another_key_s_digest_has_a_sort_key_of_its_own() {
    use sha2::{Digest, Sha256};
    let long = "k".repeat(1024);
    let digest: String = Sha256::digest(long.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let imitation = format!("sha256:{digest}");
    let (a, b) = (
        object_sort_key("dst", &long, Some("v1")),
        object_sort_key("dst", &imitation, Some("v1")),
    );
    assert_eq!(a, format!("dst#sha256:{digest}#v1"));
    assert_ne!(a, b);
    assert!(b.starts_with("dst#sha256:") && b.len() == a.len());
}
