//! A source bucket's re-drive as the ledger keeps it: one current record per source, rewritten
//! (guarded by its revision) as the re-drive moves from claimed to running to finished.

use crate::incident::{IncidentCause, IncidentKey};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a re-drive stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RedriveState {
    /// Claimed; the job may or may not exist yet (a crash between `CreateJob` and recording
    /// its id leaves this: the next look asks again with the same token and gets the same job).
    Starting,
    /// The job exists and has not ended.
    Running,
    /// The job completed and its report was applied to the ledger.
    Finished,
    /// The job failed or was cancelled.
    Failed,
}

impl RedriveState {
    pub fn is_open(self) -> bool {
        matches!(self, RedriveState::Starting | RedriveState::Running)
    }
}

/// Failed tasks of one failure code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailures {
    pub code: String,
    pub count: u64,
    /// One task's message, verbatim (outside text: escaped where shown).
    pub example: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedriveRecord {
    pub source_bucket: String,
    /// `None`: every destination of the source.
    pub destination_bucket: Option<String>,
    /// 1 for a source's first re-drive; each new one takes the next number.
    pub attempt: u32,
    pub token: String,
    pub account_id: String,
    pub job_id: Option<String>,
    pub state: RedriveState,
    /// The job's status as s3control last said it.
    pub job_status: Option<String>,
    /// `cli`, `auto` (the canary saw the rule recover) or `function`.
    pub requested_by: String,
    /// Started without the canary's evidence that the cause was cleared.
    pub forced: bool,
    pub requested_at: DateTime<Utc>,
    /// The incidents it repairs (ids as in the incident partition: `REPLICATION#...`).
    pub incidents: Vec<String>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Object versions in the job's manifest, of the incidents' destinations.
    pub versions_in_job: u64,
    /// Of those the ledger listed as missing: replicated by the job.
    pub replicated: u64,
    /// Of those the ledger listed as missing: still failing, by code.
    pub still_failing: Vec<TaskFailures>,
    /// Why a job failed or was cancelled (s3control's `FailureReasons`).
    pub job_failures: Vec<String>,
    /// The finish notice went out (at most once per re-drive).
    pub notice_sent: bool,
    /// A look claimed the notice to send it (the outbox's lease).
    pub notice_claimed_at: Option<DateTime<Utc>>,
}

impl RedriveRecord {
    pub fn still_failing_count(&self) -> u64 {
        self.still_failing.iter().map(|f| f.count).sum()
    }

    /// The incidents' keys, read back from their ids.
    pub fn incident_keys(&self) -> Vec<IncidentKey> {
        self.incidents
            .iter()
            .filter_map(|id| incident_key_of(&self.source_bucket, id))
            .collect()
    }
}

/// `REPLICATION#<destination>#<cause>#<rule>` back to its key. Bucket names and causes hold no
/// `#` (checked at parse time), so the first two `#` after the prefix split it; the rule ID,
/// which may, is the rest.
pub fn incident_key_of(source_bucket: &str, id: &str) -> Option<IncidentKey> {
    let rest = id.strip_prefix("REPLICATION#")?;
    let (destination, rest) = rest.split_once('#')?;
    let (cause, rule) = rest.split_once('#')?;
    Some(IncidentKey {
        source_bucket: source_bucket.to_owned(),
        rule_id: rule.to_owned(),
        destination_bucket: destination.to_owned(),
        cause: IncidentCause::parse(cause)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incident_ids_read_back_to_their_keys() {
        let key = IncidentKey {
            source_bucket: "src".into(),
            rule_id: "rule#with#hashes".into(),
            destination_bucket: "dst".into(),
            cause: IncidentCause::Failure("DstPutObjectNotPermitted".into()),
        };
        assert_eq!(incident_key_of("src", &key.id()), Some(key));
        assert_eq!(incident_key_of("src", "ALARM#x"), None);
    }
}
