//! The report's rows from ledger records: open incidents of each kind, and canary latency.

use super::*;

pub(super) fn replication_incident(incident: &Incident, missing: u64) -> OpenIncident {
    let key = &incident.key;
    let meaning = match &key.cause {
        IncidentCause::Failure(reason) => Some(catalog::explain(reason).meaning),
        IncidentCause::Late => {
            Some("Objects missed the replication time threshold and have not arrived.".into())
        }
        IncidentCause::NotTracked => {
            Some("Objects Replication Time Control does not track.".into())
        }
    };
    OpenIncident {
        source: IncidentSource::Replication,
        severity: key.cause.severity(),
        subject: format!(
            "{} -> {} (rule {})",
            key.source_bucket, key.destination_bucket, key.rule_id
        ),
        cause: key.cause.code(),
        meaning,
        opened_at: incident.opened_at,
        last_seen: incident.last_seen,
        objects_missing: Some(missing),
        events: Some(incident.event_count),
        pages_sent: Some(incident.pages_sent),
        flapping_since: None,
    }
}

pub(super) fn canary_incident(health: &RuleHealth) -> Option<OpenIncident> {
    let opened_at = health.incident_opened_at?;
    let cause = health.incident_cause.unwrap_or(ProbeStatus::Missing);
    let subject = if health.rule_id == CONFIGURATION_RULE {
        format!("{} (replication configuration)", health.source_bucket)
    } else {
        format!(
            "{} -> {} (rule {})",
            health.source_bucket, health.destination_bucket, health.rule_id
        )
    };
    Some(OpenIncident {
        source: IncidentSource::Canary,
        severity: cause.severity(),
        subject,
        cause: cause.as_str().to_owned(),
        meaning: Some(probe_meaning(cause).to_owned()),
        opened_at,
        last_seen: health.last_probe_at,
        objects_missing: None,
        events: None,
        pages_sent: None,
        flapping_since: None,
    })
}

pub(super) fn probe_meaning(status: ProbeStatus) -> &'static str {
    match status {
        ProbeStatus::Failed => "S3 reported the canary's probe as failed.",
        ProbeStatus::Missing => "The canary's probe did not reach the replica before its deadline.",
        ProbeStatus::Stalled => {
            "The canary's probe is still PENDING in the source after its deadline."
        }
        ProbeStatus::Slow => "The canary's probes arrive later than the latency threshold.",
        ProbeStatus::Unverifiable => "The canary cannot read the bucket or its replica.",
        ProbeStatus::Pending | ProbeStatus::Arrived => "",
    }
}

pub(super) fn alarm_incident(alarm: &AlarmRecord) -> Option<OpenIncident> {
    let opened_at = alarm
        .incident_opened_at
        .or((alarm.state == AlarmState::Alarm).then_some(alarm.state_time))?;
    Some(OpenIncident {
        source: IncidentSource::Alarm,
        severity: Severity::High,
        subject: alarm.alarm_name.clone(),
        cause: alarm.state.as_str().to_owned(),
        meaning: None,
        opened_at,
        last_seen: Some(alarm.state_time),
        objects_missing: None,
        events: None,
        pages_sent: None,
        flapping_since: alarm.flapping_since,
    })
}

/// Latency percentiles and the last result per rule and destination (the configuration pseudo
/// rule is left out: it has no latency).
pub(super) fn latencies(probes: &[ProbeRecord], health: &[RuleHealth]) -> Vec<RuleLatency> {
    let mut groups: BTreeMap<(&str, &str), Vec<&ProbeRecord>> = BTreeMap::new();
    for probe in probes.iter().filter(|p| p.rule_id != CONFIGURATION_RULE) {
        groups
            .entry((probe.destination_bucket.as_str(), probe.rule_id.as_str()))
            .or_default()
            .push(probe);
    }
    // Rules probed before the window still have a last result.
    for h in health.iter().filter(|h| h.rule_id != CONFIGURATION_RULE) {
        groups
            .entry((h.destination_bucket.as_str(), h.rule_id.as_str()))
            .or_default();
    }
    groups
        .into_iter()
        .map(|((destination, rule), group)| {
            let mut measured: Vec<u64> = group
                .iter()
                .filter(|p| matches!(p.status, ProbeStatus::Arrived | ProbeStatus::Slow))
                .filter_map(|p| p.latency_ms)
                .collect();
            measured.sort_unstable();
            let last = group.iter().max_by_key(|p| p.put_at);
            let last_health = health
                .iter()
                .find(|h| h.destination_bucket == destination && h.rule_id == rule);
            let source_bucket = last
                .map(|p| p.source_bucket.clone())
                .or_else(|| last_health.map(|h| h.source_bucket.clone()))
                .unwrap_or_default();
            RuleLatency {
                source_bucket,
                destination_bucket: destination.to_owned(),
                rule_id: rule.to_owned(),
                probes: group.len() as u64,
                arrived: measured.len() as u64,
                p50_ms: percentile(&measured, 50),
                p95_ms: percentile(&measured, 95),
                p99_ms: percentile(&measured, 99),
                last_status: last
                    .map(|p| p.status)
                    .or(last_health.and_then(|h| h.last_status)),
                last_probe_at: last
                    .map(|p| p.put_at)
                    .or(last_health.and_then(|h| h.last_probe_at)),
                last_latency_ms: last.and_then(|p| p.latency_ms),
                last_detail: last.and_then(|p| p.detail.clone()),
            }
        })
        .collect()
}

/// Nearest-rank percentile of sorted values.
pub(super) fn percentile(sorted: &[u64], p: u64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p as usize * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}
