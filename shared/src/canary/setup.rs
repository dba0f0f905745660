//! A bucket's replication setup as the canary needs it, read fresh on every run from
//! `GetBucketReplication` (so nobody maintains a list of pairs), and where a probe's key goes.

/// One rule of a bucket's replication configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplicationRule {
    /// The rule's ID (S3 generates one when the owner gave none).
    pub id: String,
    pub priority: Option<i32>,
    pub enabled: bool,
    pub filter: RuleFilter,
    /// Destination bucket name (from the ARN).
    pub destination_bucket: String,
    /// Destination account when the rule names one (cross-account replication).
    pub destination_account: Option<String>,
    /// Replication metrics on: without them S3 never sends failure events.
    pub metrics_enabled: bool,
    /// Replication Time Control on: without it there is no 15-minute target nor threshold events.
    pub rtc_enabled: bool,
    /// Objects encrypted with SSE-KMS are replicated (`SourceSelectionCriteria`).
    pub replicates_kms_objects: bool,
}

/// The objects a rule replicates: a key prefix and tags that must all be present.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleFilter {
    pub prefix: String,
    pub tags: Vec<(String, String)>,
}

impl RuleFilter {
    pub fn matches(&self, key: &str, tags: &[(String, String)]) -> bool {
        key.starts_with(&self.prefix) && self.tags.iter().all(|tag| tags.contains(tag))
    }
}

/// A bucket's replication configuration (enabled and disabled rules).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplicationSetup {
    pub role: String,
    pub rules: Vec<ReplicationRule>,
}

impl ReplicationSetup {
    /// The rules the canary probes: enabled, with a destination.
    pub fn enabled_rules(&self) -> impl Iterator<Item = &ReplicationRule> {
        self.rules
            .iter()
            .filter(|rule| rule.enabled && !rule.destination_bucket.is_empty())
    }

    /// Destinations an object with this key and tags is replicated to (for cleaning up replicas
    /// a probe made through other rules too).
    pub fn destinations_for(&self, key: &str, tags: &[(String, String)]) -> Vec<&str> {
        let mut destinations: Vec<&str> = self
            .enabled_rules()
            .filter(|rule| rule.filter.matches(key, tags))
            .map(|rule| rule.destination_bucket.as_str())
            .collect();
        destinations.sort_unstable();
        destinations.dedup();
        destinations
    }
}

/// The dedicated key segment every probe lives under (`REPLMON_CANARY_PREFIX`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanarySegment(String);

impl CanarySegment {
    /// A segment is one or more path parts ending in `/`, e.g. `replmon-canary/`.
    pub fn new(segment: &str) -> Result<Self, String> {
        let trimmed = segment.trim_start_matches('/');
        if trimmed.is_empty() || !trimmed.ends_with('/') || trimmed.contains("//") {
            return Err("expected a key segment ending in '/', like replmon-canary/".into());
        }
        if !trimmed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        {
            return Err("use only letters, digits, '-', '_', '.' and '/'".into());
        }
        Ok(CanarySegment(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The probe key for one rule and run: inside the rule's prefix, under the segment, unique per
    /// run. A prefix that does not end in `/` still prefixes the key (`logs` -> `logs/replmon-...`).
    pub fn probe_key(&self, rule: &ReplicationRule, run_id: &str) -> String {
        let mut key = rule.filter.prefix.clone();
        if !key.is_empty() && !key.ends_with('/') {
            key.push('/');
        }
        key.push_str(&self.0);
        key.push_str(&key_part(&rule.id));
        key.push('/');
        key.push_str(&key_part(run_id));
        key
    }

    /// Whether a key is one of ours: the segment right after a `/` or at the start, and a
    /// rule part and run part after it. Cleanup refuses every other key.
    pub fn owns(&self, key: &str) -> bool {
        let positions = key.match_indices(self.0.as_str()).map(|(at, _)| at);
        positions.into_iter().any(|at| {
            (at == 0 || key.as_bytes()[at - 1] == b'/')
                && key[at + self.0.len()..]
                    .split_once('/')
                    .is_some_and(|(rule, run)| !rule.is_empty() && !run.is_empty())
        })
    }
}

/// Rule IDs and run IDs are free text; keys keep them readable and safe in any tool. Text that
/// had to be changed gets a short hash of the original, so two IDs never share a key.
fn key_part(text: &str) -> String {
    const MAX: usize = 100;
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(MAX)
        .collect();
    if !cleaned.is_empty() && cleaned == text {
        return cleaned;
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    if cleaned.is_empty() {
        format!("unnamed-{hash}")
    } else {
        format!("{cleaned}-{hash}")
    }
}

/// `arn:aws:s3:::bucket` -> `bucket` (a plain name passes through).
pub fn bucket_from_arn(arn: &str) -> &str {
    arn.strip_prefix("arn:")
        .and_then(|rest| rest.rsplit_once(":::"))
        .map_or(arn, |(_, bucket)| bucket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, prefix: &str, tags: &[(&str, &str)]) -> ReplicationRule {
        ReplicationRule {
            id: id.into(),
            enabled: true,
            filter: RuleFilter {
                prefix: prefix.into(),
                tags: tags
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
            destination_bucket: format!("{id}-replica"),
            ..Default::default()
        }
    }

    #[test]
    fn probe_key_falls_inside_every_kind_of_filter() {
        let segment = CanarySegment::new("replmon-canary/").unwrap();
        for (prefix, tags) in [
            ("", vec![]),
            ("logs/", vec![]),
            ("logs", vec![]),
            ("a/b/c-", vec![("replicate", "yes")]),
            ("", vec![("tier", "dr"), ("team", "core")]),
        ] {
            let rule = rule("r 1", prefix, &tags);
            let key = segment.probe_key(&rule, "run:42");
            let tags: Vec<(String, String)> = rule.filter.tags.clone();
            assert!(rule.filter.matches(&key, &tags), "{key}");
            assert!(segment.owns(&key), "{key}");
            assert!(key.contains("replmon-canary/r-1-"), "{key}");
            assert!(key.contains("/run-42-"), "{key}");
        }
    }

    #[test]
    fn ids_that_differ_only_in_cleaned_characters_get_different_keys() {
        let segment = CanarySegment::new("replmon-canary/").unwrap();
        let a = segment.probe_key(&rule("dr/a", "", &[]), "run");
        let b = segment.probe_key(&rule("dr:a", "", &[]), "run");
        assert_ne!(a, b);
        let long = "x".repeat(150);
        let c = segment.probe_key(&rule(&format!("{long}1"), "", &[]), "run");
        let d = segment.probe_key(&rule(&format!("{long}2"), "", &[]), "run");
        assert_ne!(c, d);
        // Clean IDs stay as they are.
        assert_eq!(
            segment.probe_key(&rule("dr", "", &[]), "run-1"),
            "replmon-canary/dr/run-1"
        );
    }

    #[test]
    fn owns_refuses_keys_outside_the_segment() {
        let segment = CanarySegment::new("replmon-canary/").unwrap();
        assert!(!segment.owns("data/file.txt"));
        assert!(!segment.owns("xreplmon-canary/r/run"));
        assert!(!segment.owns("replmon-canary/"));
        assert!(!segment.owns("replmon-canary/rule-only"));
        assert!(segment.owns("logs/replmon-canary/r/run"));
    }

    #[test]
    fn segment_validation() {
        assert!(CanarySegment::new("replmon-canary").is_err());
        assert!(CanarySegment::new("").is_err());
        assert!(CanarySegment::new("a//b/").is_err());
        assert!(CanarySegment::new("probe s/").is_err());
        assert_eq!(CanarySegment::new("/c/").unwrap().as_str(), "c/");
    }

    #[test]
    fn destinations_follow_filters() {
        let setup = ReplicationSetup {
            role: String::new(),
            rules: vec![
                rule("all", "", &[]),
                rule("logs", "logs/", &[]),
                ReplicationRule {
                    enabled: false,
                    ..rule("off", "", &[])
                },
            ],
        };
        assert_eq!(setup.enabled_rules().count(), 2);
        assert_eq!(
            setup.destinations_for("logs/x", &[]),
            ["all-replica", "logs-replica"]
        );
        assert_eq!(setup.destinations_for("data/x", &[]), ["all-replica"]);
        assert_eq!(bucket_from_arn("arn:aws:s3:::dst"), "dst");
        assert_eq!(bucket_from_arn("dst"), "dst");
    }
}
