//! The canary's messages for on-call: an incident page, a recovery notice, audit notices.

use super::audit::Finding;
use super::probe::{OwedPage, ProbeRecord, ProbeStatus, RuleHealth};
use crate::delivery::page::{Page, Urgency};
use crate::delivery::text::{untrusted_brief, Untrusted};
use crate::severity::Severity;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use std::fmt::Write as _;

fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// Text quoted from outside (AWS error messages) on one line: hidden characters (line breaks,
/// bidirectional overrides, ...) escaped, at most `max_chars` characters.
pub fn one_line(text: &str, max_chars: usize) -> String {
    untrusted_brief(text.trim(), max_chars)
}

/// Which source, destination and rule a canary message is about (names escaped).
fn where_lines(body: &mut String, probe: &ProbeRecord) {
    let _ = writeln!(
        body,
        "Source bucket:      {}",
        Untrusted(&probe.source_bucket)
    );
    let _ = writeln!(
        body,
        "Destination bucket: {}",
        Untrusted(&probe.destination_bucket)
    );
    let _ = writeln!(body, "Replication rule:   {}", Untrusted(&probe.rule_id));
}

/// Plain words for each bad outcome: what it means and what to do first.
fn explain(status: ProbeStatus) -> (&'static str, &'static str) {
    match status {
        ProbeStatus::Failed => (
            "S3 gave up replicating the probe. It will not retry it, and real objects under the same rule are very likely failing too.",
            "Find the reason below (or in the replication-events pages), fix it, then re-upload or run S3 Batch Replication for objects written since the incident opened.",
        ),
        ProbeStatus::Missing => (
            "The probe never reached the destination before the deadline, and the source object does not say why.",
            "Check the rule is enabled and its role can read the source and write the destination: aws s3api get-bucket-replication --bucket <source>; aws s3api head-object on the probe key in both buckets.",
        ),
        ProbeStatus::Stalled => (
            "The source still says PENDING past the deadline: replication is stuck or far behind.",
            "Look at OperationsPendingReplication and BytesPendingReplication for the rule; check for KMS throttling, a large backlog, or a paused destination.",
        ),
        ProbeStatus::Slow => (
            "The probe reached the destination, but later than the latency threshold: the replica lags.",
            "Look at ReplicationLatency and OperationsPendingReplication for the rule; a large backlog or KMS throttling are the usual causes.",
        ),
        ProbeStatus::Unverifiable => (
            "The canary could not check this destination (access denied, or the region did not answer). Replication may be fine; nobody can tell.",
            "Give the canary role s3:GetObject, s3:ListBucket and s3:DeleteObjectVersion on the destination, and check the region is reachable.",
        ),
        ProbeStatus::Pending | ProbeStatus::Arrived => ("", ""),
    }
}

/// The page that opens an incident for a rule and destination.
pub fn incident_page(
    health: &RuleHealth,
    probe: &ProbeRecord,
    bad_probes_to_page: u32,
) -> OwedPage {
    let status = probe.status;
    // KMS refused the probe write: the page says which key, which permission, where to grant.
    let kms = probe
        .kms_refusal
        .as_ref()
        .filter(|_| status == ProbeStatus::Unverifiable);
    let what = match status {
        ProbeStatus::Failed => "probe replication FAILED",
        ProbeStatus::Missing => "probe MISSING in replica",
        ProbeStatus::Stalled => "replication STALLED",
        ProbeStatus::Slow => "replication SLOW",
        _ if kms.is_some() => "cannot write the probe, KMS refused the source bucket's key",
        _ => "cannot verify replication",
    };
    // The subject leads with the verdict and the pair: SNS cuts it at 100 characters.
    let verdict = match (status, kms) {
        (_, Some(refusal)) => refusal.verdict().to_owned(),
        (ProbeStatus::Unverifiable, None) => "CANNOT VERIFY".to_owned(),
        (other, None) => other.as_str().to_owned(),
    };
    let severity = status.severity();
    let subject = format!(
        "[{}] S3 canary {verdict}: {} -> {} (rule {})",
        severity.label(),
        probe.source_bucket,
        probe.destination_bucket,
        probe.rule_id
    );
    let (meaning, fix) = match kms {
        Some(refusal) => (
            refusal.meaning(),
            refusal.fix(&probe.source_bucket, probe.source_region.as_deref()),
        ),
        None => {
            let (meaning, fix) = explain(status);
            (meaning.to_owned(), fix.to_owned())
        }
    };
    let mut body = String::new();
    let _ = writeln!(body, "S3 replication canary: {what}.\n");
    where_lines(&mut body, probe);
    let _ = writeln!(body, "Probe outcome:      {}", status.as_str());
    if let Some(detail) = &probe.detail {
        // Details quote AWS's answers: one line, control characters escaped.
        let _ = writeln!(body, "Detail:             {}", one_line(detail, 2000));
    }
    for (label, value) in kms.map(|r| r.page_lines()).unwrap_or_default() {
        let _ = writeln!(body, "{label:<20}{}", one_line(&value, 2000));
    }
    let _ = writeln!(body, "\nWhat it means: {meaning}");
    let _ = writeln!(body, "What to do:    {fix}\n");
    let _ = writeln!(body, "Probe key:          {}", Untrusted(&probe.key));
    if let Some(version) = &probe.version_id {
        let _ = writeln!(body, "Probe version:      {}", Untrusted(version));
    }
    let _ = writeln!(body, "Written at:         {}", ts(probe.put_at));
    if let Some(bounds) = probe.bounds() {
        let _ = writeln!(
            body,
            "Latency:            {} (between {} and {})",
            seconds(bounds.estimate_ms()),
            seconds(bounds.lower_ms),
            seconds(bounds.upper_ms)
        );
    } else if status != ProbeStatus::Failed {
        let _ = writeln!(body, "Deadline:           {}", ts(probe.deadline));
    }
    if let Some(source_status) = &probe.source_status {
        let _ = writeln!(
            body,
            "Source ReplicationStatus: {}",
            Untrusted(source_status)
        );
    }
    let _ = writeln!(
        body,
        "Bad probes in a row: {} (pages after {bad_probes_to_page}; a failure pages at once)",
        health.consecutive_bad
    );
    let _ = writeln!(
        body,
        "\nNo further pages for this rule and destination until a probe arrives on time again; a recovery notice follows then."
    );
    OwedPage {
        severity,
        notice: false,
        kind: format!("canary-{}", status.as_str().to_lowercase()),
        subject,
        body,
    }
}

/// The notice that a rule and destination are healthy again.
pub fn recovery_notice(
    probe: &ProbeRecord,
    opened_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> OwedPage {
    let lasted = (now - opened_at).max(Duration::zero());
    let subject = format!(
        "[RESOLVED] S3 canary: replication healthy {} -> {} (rule {})",
        probe.source_bucket, probe.destination_bucket, probe.rule_id
    );
    let mut body = String::new();
    let _ = writeln!(
        body,
        "S3 replication canary: probes arrive on time again.\n"
    );
    where_lines(&mut body, probe);
    let _ = writeln!(body, "Incident opened:    {}", ts(opened_at));
    let _ = writeln!(
        body,
        "Incident lasted:    {}h {:02}m",
        lasted.num_hours(),
        lasted.num_minutes() % 60
    );
    if let Some(bounds) = probe.bounds() {
        let _ = writeln!(
            body,
            "Latest latency:     {}",
            seconds(bounds.estimate_ms())
        );
    }
    let _ = writeln!(
        body,
        "\nObjects written while replication was broken may still be missing from the replica: check the ledger (failed and late objects) and run S3 Batch Replication if needed."
    );
    OwedPage {
        severity: Severity::Info,
        notice: true,
        kind: "canary-recovered".into(),
        subject,
        body,
    }
}

/// A configuration audit finding, as a notice.
pub fn audit_notice(bucket: &str, finding: &Finding) -> Page {
    let subject = format!(
        "[{}] S3 replication audit: {}",
        finding.severity.label(),
        finding.summary
    );
    let body = format!(
        "S3 replication configuration audit (a notice, not a page).\n\nSource bucket: {}\nFinding:       {}\n\n{}\n\nThis notice repeats at most once per audit period while the finding stands.",
        Untrusted(bucket),
        Untrusted(&finding.summary),
        // The detail is ours, in paragraphs; what it quotes was escaped where it was written.
        finding.detail
    );
    Page::new(
        finding.severity,
        Urgency::Notice,
        "canary-audit",
        &subject,
        &body,
    )
    .with_source_bucket(bucket)
    .with_attribute("finding", finding.id.split('#').next().unwrap_or_default())
}

impl OwedPage {
    pub fn to_page(&self, health: &RuleHealth) -> Page {
        let urgency = if self.notice {
            Urgency::Notice
        } else {
            Urgency::Page
        };
        Page::new(
            self.severity,
            urgency,
            &self.kind,
            &self.subject,
            &self.body,
        )
        .with_source_bucket(&health.source_bucket)
        .with_attribute("destination_bucket", &health.destination_bucket)
        .with_attribute("rule_id", &health.rule_id)
    }
}
