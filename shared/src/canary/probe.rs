//! Probe records (one per probe and destination) and the health of each rule and destination,
//! which turns probe outcomes into pages only after consecutive bad probes.

use super::kms::KmsRefusal;
use super::measure::LatencyBounds;
use crate::severity::Severity;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Where a probe stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProbeStatus {
    /// Written to the source, not yet seen in the destination; checked again on later runs.
    Pending,
    /// Seen in the destination within the latency threshold.
    Arrived,
    /// Seen in the destination, but later than the latency threshold.
    Slow,
    /// Not in the destination at the deadline, and the source does not say why.
    Missing,
    /// The source still says PENDING at the deadline: replication is stuck.
    Stalled,
    /// S3 gave up: the source says FAILED, or a replication failure event names the probe.
    Failed,
    /// The destination (or source) could not be read: access denied, region unreachable.
    Unverifiable,
}

impl ProbeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeStatus::Pending => "PENDING",
            ProbeStatus::Arrived => "ARRIVED",
            ProbeStatus::Slow => "SLOW",
            ProbeStatus::Missing => "MISSING",
            ProbeStatus::Stalled => "STALLED",
            ProbeStatus::Failed => "FAILED",
            ProbeStatus::Unverifiable => "UNVERIFIABLE",
        }
    }

    /// Every status, for the readers of their text forms.
    pub const ALL: [ProbeStatus; 7] = [
        ProbeStatus::Pending,
        ProbeStatus::Arrived,
        ProbeStatus::Slow,
        ProbeStatus::Missing,
        ProbeStatus::Stalled,
        ProbeStatus::Failed,
        ProbeStatus::Unverifiable,
    ];

    /// The inverse of [`ProbeStatus::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// A resolved probe that counts against the rule.
    pub fn is_bad(self) -> bool {
        !matches!(self, ProbeStatus::Pending | ProbeStatus::Arrived)
    }

    /// Failures page at once: S3 will never retry the object, one is enough to know.
    pub fn pages_at_once(self) -> bool {
        self == ProbeStatus::Failed
    }

    pub fn severity(self) -> Severity {
        match self {
            ProbeStatus::Failed | ProbeStatus::Missing | ProbeStatus::Stalled => Severity::Critical,
            ProbeStatus::Slow | ProbeStatus::Unverifiable => Severity::High,
            ProbeStatus::Pending | ProbeStatus::Arrived => Severity::Info,
        }
    }
}

/// One probe object and one destination it must reach.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRecord {
    pub source_bucket: String,
    pub destination_bucket: String,
    /// The destination's region when known (its own client polls it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_region: Option<String>,
    pub rule_id: String,
    pub run_id: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// When the source PUT was acknowledged: latency counts from here.
    pub put_at: DateTime<Utc>,
    /// Not in the destination by then: missing (or stalled, or failed).
    pub deadline: DateTime<Utc>,
    pub status: ProbeStatus,
    /// Midpoint of the bounds: the best estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Sent-time of the last HEAD that missed, after the PUT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_min_ms: Option<u64>,
    /// Answer-time of the first HEAD that found the replica, after the PUT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_max_ms: Option<u64>,
    /// When the last HEAD that missed was sent (carried-over probes keep narrowing the bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_miss_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub head_requests: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    /// Failure reason, or why it could not be verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The source object's `ReplicationStatus` at the last look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_status: Option<String>,
    /// The source bucket's region when known (its own client reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_region: Option<String>,
    /// The probe's versions are deleted from the source and every destination (or cleanup was
    /// abandoned after repeated failures, said in `detail`).
    #[serde(default)]
    pub cleaned: bool,
    /// The outcome is counted into the rule's health.
    #[serde(default)]
    pub counted: bool,
    /// The outcome is in its day's roll-up (what `replmon report` reads). Apart from
    /// `counted`, so a roll-up that cannot be written never holds up health and pages.
    #[serde(default)]
    pub rolled_up: bool,
    #[serde(default)]
    pub cleanup_attempts: u32,
    /// KMS refused the probe write: which key, which permission, which policy (for the page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_refusal: Option<KmsRefusal>,
}

impl ProbeRecord {
    /// Unique per probe and destination; sorts by time within a source bucket.
    pub fn id(&self) -> String {
        format!(
            "{}#{}#{}",
            self.put_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            self.destination_bucket,
            self.rule_id
        )
    }

    pub fn bounds(&self) -> Option<LatencyBounds> {
        Some(LatencyBounds::new(
            self.latency_min_ms?,
            self.latency_max_ms?,
        ))
    }

    pub fn set_bounds(&mut self, bounds: LatencyBounds) {
        self.latency_min_ms = Some(bounds.lower_ms);
        self.latency_max_ms = Some(bounds.upper_ms);
        self.latency_ms = Some(bounds.estimate_ms());
    }

    /// Work is left on this probe (resolving, cleaning up or counting it): it stays on the
    /// pending list that every run reads.
    pub fn unfinished(&self) -> bool {
        self.status == ProbeStatus::Pending || !self.cleaned || !self.counted || !self.rolled_up
    }

    /// Settle the probe (idempotent callers check `status` first).
    pub fn resolve(&mut self, status: ProbeStatus, at: DateTime<Utc>, detail: Option<String>) {
        self.status = status;
        self.resolved_at = Some(at);
        if detail.is_some() {
            self.detail = detail;
        }
    }
}

/// What the canary writes in a probe's `replmon-probe` metadata and checks before it deletes a
/// version: derived from the probe's key, so that a version someone else wrote at that key (or
/// a probe of another run) is never taken for this probe and deleted.
pub fn probe_token(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("replmon-probe\n{key}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// A message the canary owes on-call, kept in the health record until it is published so that a
/// failed publish is retried by the next run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwedPage {
    pub severity: Severity,
    pub notice: bool,
    pub kind: String,
    pub subject: String,
    pub body: String,
}

/// The canary's view of one rule and destination of a source bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleHealth {
    pub source_bucket: String,
    pub destination_bucket: String,
    pub rule_id: String,
    #[serde(default)]
    pub consecutive_bad: u32,
    /// Set while an incident is open (a page went out, no good probe since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_opened_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_cause: Option<ProbeStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<ProbeStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_at: Option<DateTime<Utc>>,
    /// Latest probes already counted, so a retried run never counts one twice.
    #[serde(default)]
    pub counted: Vec<String>,
    #[serde(default)]
    pub owed: Vec<OwedPage>,
    /// When a run claimed the owed pages to send them (the outbox's lease).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owed_claimed_at: Option<DateTime<Utc>>,
    /// Owed pages given up (the oldest, beyond [`MAX_OWED_PAGES`]) since a page last went out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub owed_dropped: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Pages a health keeps owing while SNS refuses them; older ones are given up (and counted).
/// With bodies bounded to [`MAX_OWED_BODY_BYTES`], the health item stays far below DynamoDB's
/// 400 KB item limit however long publishing fails.
pub const MAX_OWED_PAGES: usize = 8;
/// An owed page's body is cut to this size when it is owed (pages are 16 KB at most anyway).
pub const MAX_OWED_BODY_BYTES: usize = 8 * 1024;

/// How many recent probe IDs a health record remembers.
const COUNTED_MEMORY: usize = 32;

/// What counting a probe did to the rule's incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    /// Bad probes reached the limit (or one failure): an incident opens and pages.
    Opened,
    /// A good probe after an open incident: recovery notice.
    Recovered { opened_at: DateTime<Utc> },
}

impl RuleHealth {
    pub fn new(source_bucket: &str, destination_bucket: &str, rule_id: &str) -> Self {
        RuleHealth {
            source_bucket: source_bucket.into(),
            destination_bucket: destination_bucket.into(),
            rule_id: rule_id.into(),
            consecutive_bad: 0,
            incident_opened_at: None,
            incident_cause: None,
            last_status: None,
            last_probe_at: None,
            counted: Vec::new(),
            owed: Vec::new(),
            owed_claimed_at: None,
            owed_dropped: 0,
        }
    }

    /// Owe on-call a page: kept until published, bounded in number and size.
    pub fn owe(&mut self, mut page: OwedPage) {
        if page.body.len() > MAX_OWED_BODY_BYTES {
            page.body = crate::delivery::page::bounded_body_to(&page.body, MAX_OWED_BODY_BYTES);
        }
        self.owed.push(page);
        while self.owed.len() > MAX_OWED_PAGES {
            self.owed.remove(0);
            self.owed_dropped = self.owed_dropped.saturating_add(1);
        }
    }

    /// Count a resolved probe once. `bad_probes_to_page` bad probes in a row open an incident
    /// (a failure opens one at once); the first good probe after that recovers it.
    pub fn count(&mut self, probe: &ProbeRecord, bad_probes_to_page: u32) -> Option<HealthChange> {
        let id = probe.id();
        if probe.status == ProbeStatus::Pending || self.counted.contains(&id) {
            return None;
        }
        // Probes resolve out of order (a carried-over one after a newer one): the streak and the
        // last status follow the order of probes, not of resolutions.
        let newest = self.last_probe_at.is_none_or(|at| probe.put_at >= at);
        self.counted.push(id);
        if self.counted.len() > COUNTED_MEMORY {
            self.counted.remove(0);
        }
        if newest {
            self.last_status = Some(probe.status);
            self.last_probe_at = Some(probe.put_at);
        }
        if probe.status.is_bad() {
            // An older probe resolving late says nothing about the streak a newer one ended.
            if newest || self.consecutive_bad > 0 {
                self.consecutive_bad += 1;
            }
            let due = self.consecutive_bad >= bad_probes_to_page || probe.status.pages_at_once();
            let worse = self
                .incident_cause
                .is_some_and(|cause| probe.status.severity() > cause.severity());
            if (self.incident_opened_at.is_none() && due) || worse {
                // Opens an incident, or escalates an open one (slow, then failing).
                self.incident_opened_at = self
                    .incident_opened_at
                    .or(probe.resolved_at)
                    .or(Some(probe.put_at));
                self.incident_cause = Some(probe.status);
                return Some(HealthChange::Opened);
            }
            None
        } else if newest {
            self.consecutive_bad = 0;
            let opened_at = self.incident_opened_at.take()?;
            self.incident_cause = None;
            Some(HealthChange::Recovered { opened_at })
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn probe(minute: i64, status: ProbeStatus) -> ProbeRecord {
        let put_at =
            Utc.with_ymd_and_hms(2026, 11, 23, 3, 0, 0).unwrap() + Duration::minutes(minute);
        ProbeRecord {
            source_bucket: "src".into(),
            destination_bucket: "dst".into(),
            destination_region: None,
            rule_id: "r".into(),
            run_id: format!("run-{minute}"),
            key: format!("replmon-canary/r/run-{minute}"),
            version_id: None,
            put_at,
            deadline: put_at + Duration::minutes(15),
            status,
            latency_ms: None,
            latency_min_ms: None,
            latency_max_ms: None,
            last_miss_at: None,
            head_requests: 0,
            resolved_at: Some(put_at + Duration::seconds(30)),
            detail: None,
            source_status: None,
            source_region: None,
            cleaned: true,
            counted: false,
            rolled_up: false,
            cleanup_attempts: 0,
            kms_refusal: None,
        }
    }

    #[test]
    fn an_open_incident_escalates_once_when_it_gets_worse() {
        let mut health = RuleHealth::new("src", "dst", "r");
        health.count(&probe(0, ProbeStatus::Slow), 2);
        assert_eq!(
            health.count(&probe(1, ProbeStatus::Slow), 2),
            Some(HealthChange::Opened)
        );
        assert_eq!(
            health.count(&probe(2, ProbeStatus::Missing), 2),
            Some(HealthChange::Opened)
        );
        assert_eq!(health.incident_cause, Some(ProbeStatus::Missing));
        assert_eq!(health.count(&probe(3, ProbeStatus::Slow), 2), None);
        assert_eq!(health.count(&probe(4, ProbeStatus::Failed), 2), None);
    }

    #[test]
    fn one_blip_does_not_page_two_in_a_row_do_and_recovery_follows() {
        let mut health = RuleHealth::new("src", "dst", "r");
        assert_eq!(health.count(&probe(0, ProbeStatus::Missing), 2), None);
        assert_eq!(health.count(&probe(1, ProbeStatus::Arrived), 2), None);
        assert_eq!(health.count(&probe(2, ProbeStatus::Slow), 2), None);
        assert_eq!(
            health.count(&probe(3, ProbeStatus::Missing), 2),
            Some(HealthChange::Opened)
        );
        assert_eq!(health.incident_cause, Some(ProbeStatus::Missing));
        // Still bad: the incident stays open, nothing more pages.
        assert_eq!(health.count(&probe(4, ProbeStatus::Missing), 2), None);
        let opened_at = health.incident_opened_at.unwrap();
        assert_eq!(
            health.count(&probe(5, ProbeStatus::Arrived), 2),
            Some(HealthChange::Recovered { opened_at })
        );
        assert_eq!(health.consecutive_bad, 0);
        assert_eq!(health.incident_opened_at, None);
    }

    #[test]
    fn a_failure_pages_at_once() {
        let mut health = RuleHealth::new("src", "dst", "r");
        assert_eq!(
            health.count(&probe(0, ProbeStatus::Failed), 2),
            Some(HealthChange::Opened)
        );
    }

    #[test]
    fn counting_twice_changes_nothing_and_pending_is_not_counted() {
        let mut health = RuleHealth::new("src", "dst", "r");
        let bad = probe(0, ProbeStatus::Missing);
        health.count(&bad, 2);
        assert_eq!(health.count(&bad, 2), None);
        assert_eq!(health.consecutive_bad, 1);
        assert_eq!(health.count(&probe(1, ProbeStatus::Pending), 2), None);
        assert_eq!(health.consecutive_bad, 1);
        for minute in 2..100 {
            health.count(&probe(minute, ProbeStatus::Arrived), 2);
        }
        assert!(health.counted.len() <= COUNTED_MEMORY);
    }

    #[test]
    fn an_old_good_probe_resolving_late_does_not_recover_a_newer_failure() {
        let mut health = RuleHealth::new("src", "dst", "r");
        health.count(&probe(5, ProbeStatus::Failed), 2);
        // The probe from minute 1 was carried over and arrives now.
        assert_eq!(health.count(&probe(1, ProbeStatus::Arrived), 2), None);
        assert!(health.incident_opened_at.is_some());
        assert_eq!(health.last_status, Some(ProbeStatus::Failed));
    }
}
