//! The configuration audit: set-ups that make replication fail silently. Each finding is a notice
//! (not a page), sent at most once per finding per audit period.

#[cfg(test)]
use super::ports::Versioning;
use super::ports::{BucketFacts, DefaultEncryption, StoreError};
use super::setup::{ReplicationRule, ReplicationSetup};
use crate::delivery::text::Untrusted;
use crate::severity::Severity;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One thing wrong with a bucket's replication set-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable across runs: the once-per-period rule is keyed on it.
    pub id: String,
    pub severity: Severity,
    /// One line for the subject.
    pub summary: String,
    /// Why it matters and what to do.
    pub detail: String,
}

/// A bucket's latest audit, kept so `replmon status` shows the findings that stand now (notices
/// go out once per period; this record is rewritten every run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub source_bucket: String,
    pub audited_at: DateTime<Utc>,
    pub findings: Vec<Finding>,
}

/// What was learned about a destination, or why it could not be.
pub type DestinationFacts = Result<BucketFacts, StoreError>;

/// Audit a source bucket: its facts, its replication set-up (`None`: none configured) and the
/// facts of each enabled rule's destination (same order as `setup.enabled_rules()`).
pub fn audit(
    bucket: &str,
    source: &BucketFacts,
    setup: Option<&ReplicationSetup>,
    destinations: &[DestinationFacts],
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let Some(setup) = setup.filter(|s| s.enabled_rules().next().is_some()) else {
        findings.push(Finding {
            id: "no-replication".into(),
            severity: Severity::High,
            summary: format!("{bucket} has no enabled replication rule"),
            detail: "The canary watches this bucket, but its replication configuration is missing or every rule is disabled: nothing is copied to a replica. Restore the configuration (aws s3api get-bucket-replication shows it) or remove the bucket from REPLMON_CANARY_BUCKETS.".into(),
        });
        return findings;
    };
    if source.versioning.is_off() {
        findings.push(Finding {
            id: "source-unversioned".into(),
            severity: Severity::High,
            summary: format!("{bucket} has versioning {}", source.versioning.describe()),
            detail: "Replication needs versioning on the source bucket; new objects are not replicated while it is off. Enable it: aws s3api put-bucket-versioning --versioning-configuration Status=Enabled.".into(),
        });
    }
    if source.replication_events_configured == Some(false) {
        findings.push(Finding {
            id: "no-replication-events".into(),
            severity: Severity::Warning,
            summary: format!("{bucket} sends no s3:Replication:* events"),
            detail: "No event notification on the source bucket delivers s3:Replication:* events, so failed and late objects are never reported one by one; only the canary notices. Add a notification for s3:Replication:* to the replication-events function, or to its SNS topic or SQS queue.".into(),
        });
    }
    for (rule, facts) in setup.enabled_rules().zip(destinations) {
        audit_rule(bucket, source, rule, facts, &mut findings);
    }
    findings
}

fn audit_rule(
    bucket: &str,
    source: &BucketFacts,
    rule: &ReplicationRule,
    destination: &DestinationFacts,
    findings: &mut Vec<Finding>,
) {
    let dst = &rule.destination_bucket;
    let id = |what: &str| format!("{what}#{}#{dst}", rule.id);
    // Rule IDs (any text up to 255 characters) and names shown escaped in notices.
    let pair = format!(
        "{} -> {} (rule {})",
        Untrusted(bucket),
        Untrusted(dst),
        Untrusted(&rule.id)
    );
    if !rule.metrics_enabled {
        findings.push(Finding {
            id: id("metrics-off"),
            severity: Severity::Warning,
            summary: format!("replication metrics off: {pair}"),
            detail: "S3 sends OperationFailedReplication events and the ReplicationLatency / OperationsFailedReplication metrics only when replication metrics are enabled on the rule. Without them a broken rule is silent. Enable Metrics (Status=Enabled, EventThreshold 15 minutes) in the rule's Destination.".into(),
        });
    }
    if !rule.rtc_enabled {
        findings.push(Finding {
            id: id("rtc-off"),
            severity: Severity::Info,
            summary: format!("Replication Time Control off: {pair}"),
            detail: "Without RTC there is no 15-minute replication target, S3 sends no OperationMissedThreshold events, and replication can take hours. Enable ReplicationTime (15 minutes) on the rule if the replica is for disaster recovery.".into(),
        });
    }
    if matches!(source.encryption, Some(DefaultEncryption::Kms { .. }))
        && !rule.replicates_kms_objects
    {
        findings.push(Finding {
            id: id("kms-not-replicated"),
            severity: Severity::High,
            summary: format!("SSE-KMS objects not replicated: {pair}"),
            detail: "The source bucket encrypts new objects with SSE-KMS by default, but the rule does not select SSE-KMS encrypted objects (SourceSelectionCriteria.SseKmsEncryptedObjects), so they are skipped. Enable it and give the destination a ReplicaKmsKeyID the replication role may use.".into(),
        });
    }
    match destination {
        Err(StoreError::NoSuchBucket { .. }) => findings.push(Finding {
            id: id("destination-missing"),
            severity: Severity::Critical,
            summary: format!("destination bucket missing: {pair}"),
            detail: "The destination bucket does not exist: every object under this rule fails with DstBucketNotFound. Recreate the bucket (versioned) or point the rule at the right one.".into(),
        }),
        Err(_) => {} // unreadable destinations are reported by the probe as "cannot verify"
        Ok(facts) if facts.versioning.is_off() => findings.push(Finding {
            id: id("destination-unversioned"),
            severity: Severity::Critical,
            summary: format!("destination not versioned: {pair}"),
            detail: format!(
                "The destination bucket has versioning {}; S3 replicates only into versioned buckets and fails every object with DstBucketUnversioned. Enable versioning on {}.",
                facts.versioning.describe(),
                Untrusted(dst)
            ),
        }),
        Ok(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::setup::RuleFilter;

    fn healthy_facts() -> BucketFacts {
        BucketFacts {
            region: Some("us-east-1".into()),
            versioning: Versioning::Enabled,
            encryption: None,
            replication_events_configured: Some(true),
        }
    }

    fn rule(id: &str, dst: &str) -> ReplicationRule {
        ReplicationRule {
            id: id.into(),
            enabled: true,
            filter: RuleFilter::default(),
            destination_bucket: dst.into(),
            metrics_enabled: true,
            rtc_enabled: true,
            ..Default::default()
        }
    }

    fn ids(findings: &[Finding]) -> Vec<&str> {
        findings.iter().map(|f| f.id.as_str()).collect()
    }

    #[test]
    fn a_healthy_setup_has_no_findings() {
        let setup = ReplicationSetup {
            role: "r".into(),
            rules: vec![rule("a", "dst")],
        };
        assert!(audit(
            "src",
            &healthy_facts(),
            Some(&setup),
            &[Ok(healthy_facts())]
        )
        .is_empty());
    }

    #[test]
    fn every_silent_failure_is_found() {
        let setup = ReplicationSetup {
            role: "r".into(),
            rules: vec![
                ReplicationRule {
                    metrics_enabled: false,
                    rtc_enabled: false,
                    ..rule("a", "dst-a")
                },
                rule("b", "dst-b"),
                rule("c", "dst-c"),
            ],
        };
        let source = BucketFacts {
            versioning: Versioning::Suspended,
            encryption: Some(DefaultEncryption::Kms {
                algorithm: "aws:kms".into(),
                key_id: None,
            }),
            replication_events_configured: Some(false),
            ..healthy_facts()
        };
        let unversioned = BucketFacts {
            versioning: Versioning::NeverEnabled,
            ..healthy_facts()
        };
        let missing = Err(StoreError::NoSuchBucket {
            operation: "HeadBucket",
            bucket: "dst-c".into(),
        });
        let findings = audit(
            "src",
            &source,
            Some(&setup),
            &[Ok(healthy_facts()), Ok(unversioned), missing],
        );
        assert_eq!(
            ids(&findings),
            [
                "source-unversioned",
                "no-replication-events",
                "metrics-off#a#dst-a",
                "rtc-off#a#dst-a",
                "kms-not-replicated#a#dst-a",
                "kms-not-replicated#b#dst-b",
                "destination-unversioned#b#dst-b",
                "kms-not-replicated#c#dst-c",
                "destination-missing#c#dst-c",
            ]
        );
        assert!(findings[6].detail.contains("never enabled"));
    }

    #[test]
    fn no_configuration_is_one_finding() {
        let findings = audit("src", &healthy_facts(), None, &[]);
        assert_eq!(ids(&findings), ["no-replication"]);
        let disabled = ReplicationSetup {
            role: "r".into(),
            rules: vec![ReplicationRule {
                enabled: false,
                ..rule("a", "dst")
            }],
        };
        assert_eq!(
            ids(&audit("src", &healthy_facts(), Some(&disabled), &[])),
            ["no-replication"]
        );
    }
}
