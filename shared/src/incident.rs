//! Replication incidents: one open incident per (source bucket, rule, destination, cause), the rule
//! for when it pages, and the page an on-call engineer reads.

use crate::catalog::{self, Explanation};
use crate::delivery::page::{shorten, Page, Urgency};
use crate::delivery::text::{untrusted, Untrusted};
use crate::event::{ReplicationEvent, ReplicationEventKind};
use crate::severity::Severity;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use std::fmt::Write as _;

/// Why objects are not on the replica.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IncidentCause {
    /// `OperationFailedReplication` with its `failureReason` code, verbatim.
    Failure(String),
    /// `OperationMissedThreshold` (and the `ReplicatedAfterThreshold` that closes each object).
    Late,
    /// `OperationNotTracked`: a notice, not a page.
    NotTracked,
}

impl IncidentCause {
    /// Stable text used in ledger keys.
    pub fn code(&self) -> String {
        match self {
            IncidentCause::Failure(reason) => format!("FAILED:{reason}"),
            IncidentCause::Late => "LATE".to_owned(),
            IncidentCause::NotTracked => "NOT_TRACKED".to_owned(),
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "LATE" => Some(IncidentCause::Late),
            "NOT_TRACKED" => Some(IncidentCause::NotTracked),
            other => other
                .strip_prefix("FAILED:")
                .map(|reason| IncidentCause::Failure(reason.to_owned())),
        }
    }

    /// The `kind` attribute of its pages.
    pub fn kind(&self) -> &'static str {
        match self {
            IncidentCause::Failure(_) => "replication-failure",
            IncidentCause::Late => "replication-late",
            IncidentCause::NotTracked => "replication-not-tracked",
        }
    }

    pub fn severity(&self) -> Severity {
        match self {
            IncidentCause::Failure(reason) => catalog::explain(reason).severity,
            IncidentCause::Late => Severity::High,
            IncidentCause::NotTracked => Severity::Info,
        }
    }

    pub fn urgency(&self) -> Urgency {
        match self {
            IncidentCause::NotTracked => Urgency::Notice,
            _ => Urgency::Page,
        }
    }
}

/// Identity of an incident.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IncidentKey {
    pub source_bucket: String,
    pub rule_id: String,
    pub destination_bucket: String,
    pub cause: IncidentCause,
}

/// The code a failure is filed under: S3's `failureReason`, or a name for its absence.
pub fn failure_reason_code(reason: Option<&str>) -> &str {
    reason
        .filter(|r| !r.is_empty())
        .unwrap_or("NoFailureReasonGiven")
}

impl IncidentKey {
    pub fn for_event(event: &ReplicationEvent) -> Self {
        let cause = match event.kind {
            ReplicationEventKind::OperationFailedReplication => IncidentCause::Failure(
                failure_reason_code(event.failure_reason.as_deref()).to_owned(),
            ),
            ReplicationEventKind::OperationMissedThreshold
            | ReplicationEventKind::OperationReplicatedAfterThreshold => IncidentCause::Late,
            ReplicationEventKind::OperationNotTracked => IncidentCause::NotTracked,
        };
        IncidentKey {
            source_bucket: event.source_bucket.clone(),
            rule_id: event.rule_id.clone(),
            destination_bucket: event.destination_bucket.clone(),
            cause,
        }
    }

    /// Readable id, unique within the source bucket (bucket names hold no `#`; the rule id,
    /// which may, comes last).
    pub fn id(&self) -> String {
        format!(
            "REPLICATION#{}#{}#{}",
            self.destination_bucket,
            self.cause.code(),
            self.rule_id
        )
    }
}

/// An incident as stored in the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub key: IncidentKey,
    pub opened_at: DateTime<Utc>,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    /// Distinct events counted (failed, late or not-tracked objects).
    pub event_count: u64,
    /// Late objects that have arrived since (`OperationReplicatedAfterThreshold`).
    pub recovered_count: u64,
    /// Objects whose absence from the replica is counted under this incident now (failed for
    /// this reason, or late and not arrived); can dip below zero while moves race.
    pub backlog_count: i64,
    pub pages_sent: u64,
    /// When its first page went out.
    pub first_page_at: Option<DateTime<Utc>>,
    pub last_page_at: Option<DateTime<Utc>>,
    pub event_count_at_last_page: u64,
    /// When events were last recorded for it (by the monitor's clock).
    pub last_recorded_at: Option<DateTime<Utc>>,
}

/// Which page an incident is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageDue {
    /// The incident's first failure: page now.
    First,
    /// Failures continued and the summary window has passed since the last page.
    Summary,
}

impl Incident {
    /// Take `other`'s state, keeping this incident's key (equal to `other`'s): no allocation,
    /// for the per-process memory every batch updates. Destructured in full so that a new
    /// field cannot be forgotten here.
    pub fn update_from(&mut self, other: &Incident) {
        let Incident {
            key: _,
            opened_at,
            first_seen,
            last_seen,
            event_count,
            recovered_count,
            backlog_count,
            pages_sent,
            first_page_at,
            last_page_at,
            event_count_at_last_page,
            last_recorded_at,
        } = *other;
        self.opened_at = opened_at;
        self.first_seen = first_seen;
        self.last_seen = last_seen;
        self.event_count = event_count;
        self.recovered_count = recovered_count;
        self.backlog_count = backlog_count;
        self.pages_sent = pages_sent;
        self.first_page_at = first_page_at;
        self.last_page_at = last_page_at;
        self.event_count_at_last_page = event_count_at_last_page;
        self.last_recorded_at = last_recorded_at;
    }

    /// Cheap test before counting: could a page be due? (First page never sent, or the window
    /// has passed and events were recorded since the last page.)
    pub fn may_be_due(&self, now: DateTime<Utc>, summary_window: Duration) -> bool {
        match self.last_page_at {
            _ if self.pages_sent == 0 => true,
            None => true,
            Some(last) => {
                now - last >= summary_window && self.last_recorded_at.is_some_and(|r| r > last)
            }
        }
    }

    /// Whether a page is due, given the incident's counts.
    pub fn page_due(&self, now: DateTime<Utc>, summary_window: Duration) -> Option<PageDue> {
        if self.event_count == 0 {
            // Only recoveries so far (a late object's arrival came before its miss): nothing to say.
            return None;
        }
        if self.pages_sent == 0 {
            return Some(PageDue::First);
        }
        let quiet_enough = self
            .last_page_at
            .is_none_or(|last| now - last >= summary_window);
        (self.event_count > self.event_count_at_last_page && quiet_enough)
            .then_some(PageDue::Summary)
    }

    /// The message for on-call: what broke, where, why, what to do, and which objects.
    pub fn page(&self, due: PageDue, samples: &[SampleObject], summary_window: Duration) -> Page {
        let key = &self.key;
        let severity = key.cause.severity();
        let explanation: Option<Explanation> = match &key.cause {
            IncidentCause::Failure(reason) => Some(catalog::explain(reason)),
            _ => None,
        };
        let headline = match (&key.cause, due) {
            (IncidentCause::Failure(reason), PageDue::First) => {
                format!("S3 replication failing ({reason})")
            }
            (IncidentCause::Failure(reason), PageDue::Summary) => {
                format!(
                    "S3 replication still failing ({reason}, {} objects)",
                    self.event_count
                )
            }
            (IncidentCause::Late, PageDue::First) => {
                "S3 replication late (missed RTC threshold)".to_owned()
            }
            (IncidentCause::Late, PageDue::Summary) => {
                format!("S3 replication still late ({} objects)", self.event_count)
            }
            (IncidentCause::NotTracked, _) => "S3 objects not tracked by RTC".to_owned(),
        };
        let subject = format!(
            "[{}] {headline}: {} -> {}",
            severity.label(),
            shorten(&key.source_bucket, 40),
            shorten(&key.destination_bucket, 40)
        );

        let mut body = String::new();
        let _ = writeln!(body, "{}", self.summary_sentence(due));
        let _ = writeln!(body);
        let _ = writeln!(body, "Source bucket:  {}", Untrusted(&key.source_bucket));
        let _ = writeln!(
            body,
            "Destination:    {}",
            Untrusted(&key.destination_bucket)
        );
        let _ = writeln!(body, "Rule:           {}", Untrusted(&key.rule_id));
        if let Some(explanation) = &explanation {
            let known = if explanation.known {
                ""
            } else {
                " (code not in this monitor's catalog)"
            };
            let _ = writeln!(
                body,
                "Reason:         {}{known}",
                Untrusted(&explanation.code)
            );
            let _ = writeln!(body, "Meaning:        {}", explanation.meaning);
            let _ = writeln!(body, "Likely cause:   {}", explanation.cause);
            let _ = writeln!(body, "Fix:            {}", explanation.fix);
        }
        match &key.cause {
            IncidentCause::Late => {
                let _ = writeln!(
                    body,
                    "Fix:            Check the S3 console's replication metrics (BytesPendingReplication, OperationsPendingReplication) for a backlog; large objects, KMS throttling on the destination key and request-rate limits on the destination slow replication. Objects still arrive; watch for ReplicatedAfterThreshold."
                );
            }
            IncidentCause::NotTracked => {
                let _ = writeln!(
                    body,
                    "Meaning:        S3 replicates these objects but Replication Time Control does not track them (for example replica modifications or objects not covered by RTC), so no late alert will come for them."
                );
            }
            IncidentCause::Failure(_) => {}
        }
        let _ = writeln!(body, "Severity:       {severity}");
        let _ = writeln!(body);
        let noun = match key.cause {
            IncidentCause::Failure(_) => "failed",
            IncidentCause::Late => "late",
            IncidentCause::NotTracked => "not tracked",
        };
        let _ = writeln!(body, "Objects {noun}: {}", self.event_count);
        if key.cause == IncidentCause::Late {
            let _ = writeln!(body, "Arrived since:  {}", self.recovered_count);
        }
        let _ = writeln!(body, "First seen:     {}", fmt_time(self.first_seen));
        let _ = writeln!(body, "Last seen:      {}", fmt_time(self.last_seen));
        let _ = writeln!(
            body,
            "Incident open:  since {}",
            fmt_time(Some(self.opened_at))
        );
        if !samples.is_empty() {
            let _ = writeln!(body);
            let _ = writeln!(
                body,
                "Sample of affected objects ({} of {}):",
                samples.len(),
                self.event_count.max(samples.len() as u64)
            );
            for sample in samples {
                let version = sample.version_id.as_deref().unwrap_or("null");
                let _ = writeln!(
                    body,
                    "  - {} (version {})",
                    untrusted(&shorten(&sample.key, 200)),
                    Untrusted(version)
                );
            }
        }
        let _ = writeln!(body);
        match key.cause {
            IncidentCause::Failure(_) => {
                let _ = writeln!(
                    body,
                    "Objects that failed are not retried by S3: after the fix, re-upload them or run S3 Batch Replication for this rule."
                );
            }
            IncidentCause::Late => {
                let _ = writeln!(
                    body,
                    "Late objects still replicate; each arrival is recorded (OperationReplicatedAfterThreshold). Until then the replica lacks them."
                );
            }
            IncidentCause::NotTracked => {}
        }
        let _ = writeln!(
            body,
            "Further events are counted in the ledger; at most one summary every {} minutes while they continue.",
            summary_window.num_minutes().max(1)
        );
        let _ = writeln!(
            body,
            "Incident: {} / {}",
            Untrusted(&key.source_bucket),
            Untrusted(&key.id())
        );

        Page::new(
            severity,
            key.cause.urgency(),
            key.cause.kind(),
            &subject,
            &body,
        )
        .with_source_bucket(&key.source_bucket)
        .with_attribute("destination_bucket", &key.destination_bucket)
        .with_attribute("rule_id", &key.rule_id)
        .with_attribute(
            "reason",
            match &key.cause {
                IncidentCause::Failure(reason) => reason,
                _ => "",
            },
        )
        .with_attribute(
            "page_type",
            match due {
                PageDue::First => "first",
                PageDue::Summary => "summary",
            },
        )
    }

    fn summary_sentence(&self, due: PageDue) -> String {
        let key = &self.key;
        let (source, destination) = (
            Untrusted(&key.source_bucket),
            Untrusted(&key.destination_bucket),
        );
        match (&key.cause, due) {
            (IncidentCause::Failure(_), PageDue::First) => format!(
                "S3 could not replicate objects from {} to {}. The replica is missing them and S3 will not retry.",
                source, destination
            ),
            (IncidentCause::Failure(_), PageDue::Summary) => format!(
                "Replication from {} to {} is still failing: {} objects so far ({} new since the last page).",
                source,
                destination,
                self.event_count,
                self.event_count.saturating_sub(self.event_count_at_last_page)
            ),
            (IncidentCause::Late, PageDue::First) => format!(
                "Objects from {} have not reached {} within the Replication Time Control threshold (15 minutes).",
                source, destination
            ),
            (IncidentCause::Late, PageDue::Summary) => format!(
                "Replication from {} to {} is still late: {} objects missed the threshold, {} have arrived since.",
                source, destination, self.event_count, self.recovered_count
            ),
            (IncidentCause::NotTracked, _) => format!(
                "Notice (no action needed now): objects from {} to {} are not tracked by Replication Time Control.",
                source, destination
            ),
        }
    }
}

/// An affected object shown in a page.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SampleObject {
    pub key: String,
    pub version_id: Option<String>,
}

fn fmt_time(time: Option<DateTime<Utc>>) -> String {
    time.map_or_else(
        || "unknown".to_owned(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::page::{BODY_MAX_BYTES, SUBJECT_MAX_CHARS};

    fn incident(cause: IncidentCause) -> Incident {
        let t = DateTime::parse_from_rfc3339("2026-11-23T03:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Incident {
            key: IncidentKey {
                source_bucket: "src".into(),
                rule_id: "rule".into(),
                destination_bucket: "dst".into(),
                cause,
            },
            opened_at: t,
            first_seen: Some(t),
            last_seen: Some(t),
            event_count: 1,
            recovered_count: 0,
            backlog_count: 0,
            pages_sent: 0,
            first_page_at: None,
            last_page_at: None,
            event_count_at_last_page: 0,
            last_recorded_at: Some(t),
        }
    }

    #[test]
    fn first_then_summary_per_window() {
        let window = Duration::minutes(15);
        let mut inc = incident(IncidentCause::Failure("DstBucketNotFound".into()));
        let t0 = inc.opened_at;
        assert_eq!(inc.page_due(t0, window), Some(PageDue::First));
        inc.pages_sent = 1;
        inc.last_page_at = Some(t0);
        inc.event_count_at_last_page = 1;
        inc.event_count = 50;
        assert_eq!(inc.page_due(t0 + Duration::minutes(14), window), None);
        assert_eq!(
            inc.page_due(t0 + Duration::minutes(15), window),
            Some(PageDue::Summary)
        );
        // Nothing new since the last page: stay quiet however long it has been.
        inc.event_count_at_last_page = 50;
        assert_eq!(inc.page_due(t0 + Duration::hours(5), window), None);
    }

    #[test]
    fn recoveries_alone_do_not_page() {
        let mut inc = incident(IncidentCause::Late);
        inc.event_count = 0;
        inc.recovered_count = 3;
        assert_eq!(inc.page_due(inc.opened_at, Duration::minutes(15)), None);
    }

    #[test]
    fn page_carries_what_on_call_needs() {
        let inc = incident(IncidentCause::Failure("DstPutObjectNotPermitted".into()));
        let samples = vec![SampleObject {
            key: "reports/q3 summary.csv".into(),
            version_id: Some("v1".into()),
        }];
        let page = inc.page(PageDue::First, &samples, Duration::minutes(15));
        assert!(page.subject().len() <= SUBJECT_MAX_CHARS);
        assert!(page
            .subject()
            .starts_with("[CRITICAL] S3 replication failing"));
        for needle in [
            "src",
            "dst",
            "rule",
            "DstPutObjectNotPermitted",
            "Fix:",
            "reports/q3 summary.csv",
            "First seen",
        ] {
            assert!(
                page.body().contains(needle),
                "missing {needle}:\n{}",
                page.body()
            );
        }
        let attributes = page.attributes();
        assert!(attributes.contains(&("severity".into(), "critical".into())));
        assert!(attributes.contains(&("kind".into(), "replication-failure".into())));
        assert!(attributes.contains(&("source_bucket".into(), "src".into())));
    }

    #[test]
    fn long_names_keep_page_bounded() {
        let mut inc = incident(IncidentCause::Failure("X".repeat(500)));
        inc.key.source_bucket = "s".repeat(63);
        inc.key.destination_bucket = "d".repeat(63);
        let samples: Vec<_> = (0..50)
            .map(|i| SampleObject {
                key: format!("{i}{}", "k".repeat(1024)),
                version_id: None,
            })
            .collect();
        let page = inc.page(PageDue::Summary, &samples, Duration::minutes(15));
        assert!(page.subject().len() <= SUBJECT_MAX_CHARS);
        assert!(page.body().len() <= BODY_MAX_BYTES);
    }

    #[test]
    fn late_pages_do_not_talk_of_failures() {
        let page = incident(IncidentCause::Late).page(PageDue::First, &[], Duration::minutes(15));
        assert!(!page.body().contains("not retried"), "{}", page.body());
        assert!(page.body().contains("still replicate"), "{}", page.body());
    }

    #[test]
    fn not_tracked_is_a_notice() {
        let page =
            incident(IncidentCause::NotTracked).page(PageDue::First, &[], Duration::minutes(15));
        assert_eq!(page.urgency, Urgency::Notice);
        assert_eq!(page.severity, Severity::Info);
    }

    #[test]
    fn cause_codes_round_trip() {
        for cause in [
            IncidentCause::Late,
            IncidentCause::NotTracked,
            IncidentCause::Failure("A:B".into()),
        ] {
            assert_eq!(IncidentCause::parse(&cause.code()), Some(cause));
        }
    }
}
