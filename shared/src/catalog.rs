//! Catalog of S3 replication `failureReason` codes.
//!
//! An `s3:Replication:OperationFailedReplication` event carries
//! `replicationEventData.failureReason`, a short code such as `DstPutObjectNotPermitted`. This
//! module turns that code into what an on-call engineer needs at 3 a.m.: what it means, the
//! likely cause, what to check or change, and how urgent it is.
//!
//! Source: the AWS documentation page "Amazon S3 replication failure reasons"
//! (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-metrics-events.html#replication-failure-codes>,
//! 34 codes, including the Batch-Replication-only ones). Codes are kept in several spellings
//! because names drift between doc versions: the older S3 guide says
//! `DstMultipartPartUploadNotPermitted` where the current one says
//! `DstMultipartUploadNotPermitted`, and the S3 on Outposts guide uses `DstPutObjNotPermitted`,
//! `SrcGetObjNotPermitted` and `DstOutOfCapacity`. Unknown codes are echoed back verbatim with a
//! generic explanation rather than rejected.
//!
//! All texts are short, single-line ASCII: they end up in SNS messages.

use crate::severity::Severity;

/// Which part of the setup a failure reason points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReasonCategory {
    /// The replication role or the replication configuration itself.
    RoleOrConfiguration,
    /// The destination bucket: existence, versioning, Object Lock, write permissions.
    Destination,
    /// A KMS key (source or destination) is missing or unusable.
    Kms,
    /// The role cannot read the source object or its metadata.
    SourceAccess,
    /// The source object/bucket changed or vanished before it could replicate.
    SourceState,
    /// Reported only by S3 Batch Replication jobs.
    BatchReplication,
    /// Not in the catalog.
    Unknown,
}

impl ReasonCategory {
    /// Stable kebab-case name (same as the serde form), e.g. `role-or-configuration`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCategory::RoleOrConfiguration => "role-or-configuration",
            ReasonCategory::Destination => "destination",
            ReasonCategory::Kms => "kms",
            ReasonCategory::SourceAccess => "source-access",
            ReasonCategory::SourceState => "source-state",
            ReasonCategory::BatchReplication => "batch-replication",
            ReasonCategory::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ReasonCategory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One documented code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureReason {
    pub code: &'static str,
    pub category: ReasonCategory,
    pub meaning: &'static str,
    pub cause: &'static str,
    pub fix: &'static str,
    pub severity: Severity,
}

/// What a page says about a code; owned because unknown codes are echoed back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Explanation {
    /// The catalog spelling for a known code (even when matched case-insensitively); the input,
    /// verbatim, for an unknown one.
    pub code: String,
    pub known: bool,
    pub category: ReasonCategory,
    pub meaning: String,
    pub cause: String,
    pub fix: String,
    pub severity: Severity,
}

impl From<&FailureReason> for Explanation {
    fn from(r: &FailureReason) -> Self {
        Explanation {
            code: r.code.to_owned(),
            known: true,
            category: r.category,
            meaning: r.meaning.to_owned(),
            cause: r.cause.to_owned(),
            fix: r.fix.to_owned(),
            severity: r.severity,
        }
    }
}

/// Sentence appended to fix hints of live-replication codes: S3 does not retry FAILED objects.
macro_rules! redrive {
    () => {
        " S3 never retries FAILED objects: afterwards re-upload them or run S3 Batch Replication."
    };
}

use ReasonCategory::{
    BatchReplication, Destination, Kms, RoleOrConfiguration, SourceAccess, SourceState,
};
use Severity::{Critical, High, Warning};

static REASONS: &[FailureReason] = &[
    // ---- role / configuration -------------------------------------------------------------
    FailureReason {
        code: "AssumeRoleNotPermitted",
        category: RoleOrConfiguration,
        meaning: "S3 could not assume the IAM role named in the replication configuration (or in the Batch Operations job).",
        cause: "The role was deleted or renamed, its trust policy does not let s3.amazonaws.com (batchoperations.s3.amazonaws.com for Batch jobs) call sts:AssumeRole, or an SCP or permissions boundary blocks it.",
        fix: concat!(
            "Check the Role ARN in GetBucketReplication exists; fix its trust policy to allow sts:AssumeRole for s3.amazonaws.com and check for SCP denies.",
            redrive!()
        ),
        severity: Critical,
    },
    FailureReason {
        code: "SrcBucketReplicationConfigMissing",
        category: RoleOrConfiguration,
        meaning: "The source bucket has no replication configuration any more, so S3 has nothing to replicate with.",
        cause: "The replication configuration was deleted or overwritten (IaC drift, a PutBucketReplication without this rule), or a Batch job targets a bucket that has no rules.",
        fix: "Run GetBucketReplication on the source and restore the rule (role, destination, filter, metrics/RTC). Objects written while it was missing were never replicated: catch up with S3 Batch Replication.",
        severity: Critical,
    },
    // ---- destination ----------------------------------------------------------------------
    FailureReason {
        code: "DstBucketNotFound",
        category: Destination,
        meaning: "The destination bucket named in the replication rule does not exist or cannot be found.",
        cause: "The destination bucket was deleted or never created, or the rule's Destination.Bucket ARN has a typo or points at the wrong account.",
        fix: concat!(
            "Verify the destination ARN in the rule; recreate the bucket (versioning on, Object Lock and KMS as on the source, bucket policy for the role) or point the rule at the right one.",
            redrive!()
        ),
        severity: Critical,
    },
    FailureReason {
        code: "DstBucketUnversioned",
        category: Destination,
        meaning: "Versioning is not enabled (never enabled, or suspended) on the destination bucket; replication requires it.",
        cause: "The destination bucket was created without versioning, or someone suspended versioning on it.",
        fix: concat!(
            "Enable versioning on the destination (PutBucketVersioning Status=Enabled) and check the source is still versioned too.",
            redrive!()
        ),
        severity: Critical,
    },
    FailureReason {
        code: "DstBucketObjectLockConfigMissing",
        category: Destination,
        meaning: "The source bucket uses Object Lock but the destination bucket does not have Object Lock enabled.",
        cause: "The destination bucket was created without Object Lock, so locked source objects cannot be written to it.",
        fix: concat!(
            "Enable Object Lock on the destination bucket (versioning must be on) and grant the role s3:PutObjectRetention and s3:PutObjectLegalHold there.",
            redrive!()
        ),
        severity: Critical,
    },
    FailureReason {
        code: "DstPutObjectNotPermitted",
        category: Destination,
        meaning: "S3 was not allowed to write the replica into the destination bucket.",
        cause: "The role lacks s3:ReplicateObject (or s3:ObjectOwnerOverrideToBucketOwner when owner override is set), the destination bucket policy denies it, or the KMS key policy does not let the role use the key.",
        fix: concat!(
            "Grant s3:ReplicateObject on DEST/* in the role and destination bucket policy; check owner override and the KMS key policy (kms:GenerateDataKey*, kms:Encrypt, kms:Decrypt).",
            redrive!()
        ),
        severity: Critical,
    },
    FailureReason {
        code: "DstMultipartInitNotPermitted",
        category: Destination,
        meaning: "S3 was not allowed to start a multipart upload of a (large) replica in the destination bucket.",
        cause: "The role lacks s3:ReplicateObject on the destination objects, or the destination bucket policy or KMS key policy denies the role.",
        fix: concat!(
            "Grant s3:ReplicateObject on DEST/* in the role policy and destination bucket policy; for SSE-KMS let the role use the replica key.",
            redrive!()
        ),
        severity: High,
    },
    FailureReason {
        code: "DstMultipartUploadNotPermitted",
        category: Destination,
        meaning: "S3 was not allowed to upload the parts of a multipart (large) replica to the destination bucket.",
        cause: "The role lacks s3:ReplicateObject on the destination objects, or the destination bucket policy or KMS key policy denies the role.",
        fix: concat!(
            "Grant s3:ReplicateObject on DEST/* in the role policy and destination bucket policy; for SSE-KMS let the role use the replica key.",
            redrive!()
        ),
        severity: High,
    },
    FailureReason {
        code: "DstMultipartPartUploadNotPermitted",
        category: Destination,
        meaning: "Older spelling of DstMultipartUploadNotPermitted: S3 could not upload parts of a multipart replica to the destination.",
        cause: "The role lacks s3:ReplicateObject on the destination objects, or the destination bucket policy or KMS key policy denies the role.",
        fix: concat!(
            "Grant s3:ReplicateObject on DEST/* in the role policy and destination bucket policy; for SSE-KMS let the role use the replica key.",
            redrive!()
        ),
        severity: High,
    },
    FailureReason {
        code: "DstMultipartCompleteNotPermitted",
        category: Destination,
        meaning: "S3 was not allowed to complete a multipart upload of a (large) replica in the destination bucket.",
        cause: "The role lacks s3:ReplicateObject on the destination objects, or the destination bucket policy or KMS key policy denies the role.",
        fix: concat!(
            "Grant s3:ReplicateObject on DEST/* in the role policy and destination bucket policy; for SSE-KMS let the role use the replica key.",
            redrive!()
        ),
        severity: High,
    },
    FailureReason {
        code: "DstPutAclNotPermitted",
        category: Destination,
        meaning: "S3 could not copy the object's ACL onto the replica in the destination bucket.",
        cause: "The role lacks s3:ReplicateObject on the destination, or the destination bucket policy or its Object Ownership setting rejects the ACL.",
        fix: concat!(
            "Grant s3:ReplicateObject on DEST/* (role and bucket policy). Cross-account: use owner override or set the destination to Bucket owner enforced.",
            redrive!()
        ),
        severity: High,
    },
    FailureReason {
        code: "DstPutTaggingNotPermitted",
        category: Destination,
        meaning: "S3 could not copy the object's tags onto the replica in the destination bucket.",
        cause: "The role lacks s3:ReplicateTags / s3:ReplicateObject on the destination objects, or the destination bucket policy denies them.",
        fix: concat!(
            "Grant s3:ReplicateTags and s3:ReplicateObject on DEST/* in the role policy and, cross-account, the destination bucket policy.",
            redrive!()
        ),
        severity: High,
    },
    FailureReason {
        code: "DstPutLegalHoldNotPermitted",
        category: Destination,
        meaning: "S3 could not set the Object Lock legal hold on the replica in the destination bucket.",
        cause: "The role lacks s3:PutObjectLegalHold on the destination objects, the destination bucket policy denies it, or Object Lock is off there.",
        fix: concat!(
            "Grant s3:PutObjectLegalHold on DEST/* to the role (and in the destination bucket policy); confirm Object Lock is enabled on the destination.",
            redrive!()
        ),
        severity: High,
    },
    FailureReason {
        code: "DstPutRetentionNotPermitted",
        category: Destination,
        meaning: "S3 could not set the Object Lock retention period on the replica in the destination bucket.",
        cause: "The role lacks s3:PutObjectRetention on the destination objects, the destination bucket policy denies it, or Object Lock is off there.",
        fix: concat!(
            "Grant s3:PutObjectRetention on DEST/* to the role (and in the destination bucket policy); confirm Object Lock is enabled on the destination.",
            redrive!()
        ),
        severity: High,
    },
    FailureReason {
        code: "DstDelObjNotPermitted",
        category: Destination,
        meaning: "S3 could not replicate a delete marker to the destination bucket; the replica still shows the object.",
        cause: "The role lacks s3:ReplicateDelete on the destination objects, or (cross-account) the destination bucket policy does not allow it.",
        fix: "Grant s3:ReplicateDelete on DEST/* in the role policy and destination bucket policy. S3 does not retry: delete the object in the replica by hand or re-drive the delete marker with S3 Batch Replication.",
        severity: High,
    },
    FailureReason {
        code: "DstVersionNotFound",
        category: Destination,
        meaning: "The replica version that a metadata change (tags, ACL, lock) should be applied to is missing in the destination.",
        cause: "The replica version was deleted or expired in the destination (manual delete, lifecycle rule on the replica) or was never replicated.",
        fix: "ListObjectVersions on the destination to confirm; review replica lifecycle rules and who deletes versions there. Re-replicate the object: copy or re-upload it on the source, or use S3 Batch Replication.",
        severity: High,
    },
    FailureReason {
        code: "DstPutObjNotPermitted",
        category: Destination,
        meaning: "S3 on Outposts spelling of DstPutObjectNotPermitted: S3 was not allowed to write the replica into the destination bucket.",
        cause: "The role lacks s3-outposts:ReplicateObject (s3:ReplicateObject in S3) on the destination objects, or the destination policy denies it.",
        fix: concat!(
            "Grant s3-outposts:ReplicateObject (or s3:ReplicateObject) on the destination objects in the role policy and the destination bucket/access point policy.",
            redrive!()
        ),
        severity: Critical,
    },
    FailureReason {
        code: "DstOutOfCapacity",
        category: Destination,
        meaning: "S3 on Outposts: the destination Outpost has run out of S3 storage capacity, so replicas cannot be written.",
        cause: "The destination Outpost's S3 capacity is full (replicas, old versions, incomplete multipart uploads).",
        fix: "Free capacity on the destination Outpost (expire noncurrent versions, abort stale multipart uploads) or add capacity, then re-upload the failed objects; S3 never retries FAILED objects.",
        severity: Critical,
    },
    // ---- KMS ------------------------------------------------------------------------------
    FailureReason {
        code: "DstKmsKeyNotFound",
        category: Kms,
        meaning: "The KMS key configured for replicas in the replication rule (ReplicaKmsKeyID) does not exist.",
        cause: "The key was deleted, or the ARN is wrong, in the wrong Region or account, or an alias that does not resolve.",
        fix: concat!(
            "Set ReplicaKmsKeyID to the full ARN of an existing key in the destination Region; allow the role kms:Encrypt and kms:GenerateDataKey* in the key policy.",
            redrive!()
        ),
        severity: Critical,
    },
    FailureReason {
        code: "DstKmsKeyInvalidState",
        category: Kms,
        meaning: "The KMS key used for replicas in the destination is not usable (disabled, pending deletion or import, unavailable).",
        cause: "The destination KMS key was disabled, scheduled for deletion, or its imported key material expired.",
        fix: concat!(
            "In KMS (destination Region) check the key state: EnableKey or CancelKeyDeletion, re-import expired material; keep the key policy allowing the role.",
            redrive!()
        ),
        severity: Critical,
    },
    FailureReason {
        code: "SrcKmsKeyInvalidState",
        category: Kms,
        meaning: "The KMS key that encrypts the source object is not usable (disabled, pending deletion or import, unavailable).",
        cause: "The source SSE-KMS key was disabled, scheduled for deletion, or its imported key material expired, so S3 cannot decrypt the object to copy it.",
        fix: concat!(
            "In KMS (source Region) EnableKey or CancelKeyDeletion; check the key policy lets the role kms:Decrypt and the rule enables SseKmsEncryptedObjects.",
            redrive!()
        ),
        severity: Critical,
    },
    // ---- source access --------------------------------------------------------------------
    FailureReason {
        code: "SrcGetObjectNotPermitted",
        category: SourceAccess,
        meaning: "S3 was not allowed to read the source object version in order to replicate it.",
        cause: "The role lacks s3:GetObjectVersionForReplication on SRC/*, a bucket policy or SCP denies it, the object is owned by another account, or the role cannot kms:Decrypt it.",
        fix: concat!(
            "Grant s3:GetObjectVersionForReplication on SRC/* to the role; check source bucket policy denies, Object Ownership and the source KMS key policy.",
            redrive!()
        ),
        severity: Critical,
    },
    FailureReason {
        code: "SrcGetObjNotPermitted",
        category: SourceAccess,
        meaning: "S3 on Outposts spelling of SrcGetObjectNotPermitted: S3 could not read the source object to replicate it.",
        cause: "The role lacks s3-outposts:GetObjectVersionForReplication (s3:GetObjectVersionForReplication in S3) on the source objects, or a policy denies it.",
        fix: concat!(
            "Grant s3-outposts:GetObjectVersionForReplication (or the s3: action) on the source objects to the role; check the source bucket/access point policy.",
            redrive!()
        ),
        severity: Critical,
    },
    FailureReason {
        code: "SrcHeadObjectNotPermitted",
        category: SourceAccess,
        meaning: "S3 was not allowed to read the source object's metadata in order to replicate it.",
        cause: "The role lacks s3:GetObjectVersionForReplication on SRC/*, a source bucket policy or SCP denies it, or the object is owned by another account.",
        fix: concat!(
            "Grant s3:GetObjectVersionForReplication on SRC/* to the role; check the source bucket policy for denies and Object Ownership of the objects.",
            redrive!()
        ),
        severity: Critical,
    },
    FailureReason {
        code: "SrcGetAclNotPermitted",
        category: SourceAccess,
        meaning: "S3 was not allowed to read the source object's ACL for replication.",
        cause: "The role lacks s3:GetObjectVersionAcl, or ACLs are enabled and the object is owned by the account that wrote it, not the bucket owner.",
        fix: concat!(
            "Grant s3:GetObjectVersionAcl on SRC/*. Set Object Ownership to Bucket owner enforced (or writers use bucket-owner-full-control).",
            redrive!()
        ),
        severity: High,
    },
    FailureReason {
        code: "SrcGetTaggingNotPermitted",
        category: SourceAccess,
        meaning: "S3 was not allowed to read the source object's tags for replication.",
        cause: "The role lacks s3:GetObjectVersionTagging on the source objects, or a source bucket policy or SCP denies it.",
        fix: concat!(
            "Grant s3:GetObjectVersionTagging on SRC/* to the replication role and check the source bucket policy for denies.",
            redrive!()
        ),
        severity: High,
    },
    FailureReason {
        code: "SrcGetLegalHoldNotPermitted",
        category: SourceAccess,
        meaning: "S3 was not allowed to read the source object's Object Lock legal hold for replication.",
        cause: "The role lacks s3:GetObjectLegalHold on the source objects, or a source bucket policy or SCP denies it.",
        fix: concat!(
            "Grant s3:GetObjectLegalHold on SRC/* to the replication role and check the source bucket policy for denies.",
            redrive!()
        ),
        severity: High,
    },
    FailureReason {
        code: "SrcGetRetentionNotPermitted",
        category: SourceAccess,
        meaning: "S3 was not allowed to read the source object's Object Lock retention settings for replication.",
        cause: "The role lacks s3:GetObjectRetention on the source objects, or a source bucket policy or SCP denies it.",
        fix: concat!(
            "Grant s3:GetObjectRetention on SRC/* to the replication role and check the source bucket policy for denies.",
            redrive!()
        ),
        severity: High,
    },
    // ---- source state ---------------------------------------------------------------------
    FailureReason {
        code: "SrcBucketNotFound",
        category: SourceState,
        meaning: "S3 could not find the source bucket.",
        cause: "The source bucket was deleted or is being deleted, or a Batch Operations job names a bucket that does not exist.",
        fix: "Confirm the source bucket exists in the expected account and Region. If it was deleted, objects that had not replicated are gone from both sides: check the replica and backups now.",
        severity: Critical,
    },
    FailureReason {
        code: "SrcKeyNotFound",
        category: SourceState,
        meaning: "The source object key no longer existed when S3 tried to replicate it.",
        cause: "The object was deleted (by a user, an app or lifecycle expiration) before replication finished, typical of short-lived files.",
        fix: "Usually nothing to fix if the delete was intended. Confirm with ListObjectVersions on the source; restore or re-upload if the data is needed. Many hits: review lifecycle rules and short-lived writers.",
        severity: Warning,
    },
    FailureReason {
        code: "SrcObjectNotFound",
        category: SourceState,
        meaning: "The source object does not exist (any more).",
        cause: "The object was deleted before it replicated, or a Batch Replication manifest lists a wrong key or version ID (an empty version ID also fails this way).",
        fix: "Confirm with ListObjectVersions on the source; re-upload if the data is needed. For Batch jobs check the manifest: URL-encoded keys and valid version IDs (or none for unversioned rows).",
        severity: Warning,
    },
    FailureReason {
        code: "SrcVersionNotFound",
        category: SourceState,
        meaning: "The source object version to replicate no longer exists.",
        cause: "That version was deleted (permanent delete by version ID, or noncurrent-version expiration) before replication completed.",
        fix: "Usually nothing to fix if the delete was intended. Confirm with ListObjectVersions on the source; if data is missing in the replica, restore it from another copy and re-upload.",
        severity: Warning,
    },
    FailureReason {
        code: "SrcObjectNotEligible",
        category: SourceState,
        meaning: "The object is not eligible for replication under this rule.",
        cause: "Its storage class (e.g. archived to Glacier) or its tags/prefix do not match the rule, or its encryption is not covered (SSE-KMS without SseKmsEncryptedObjects).",
        fix: "Compare the object (HeadObject, GetObjectTagging) with the rule's Filter and SourceSelectionCriteria. If it should replicate, fix the rule or restore/copy the object, then use S3 Batch Replication.",
        severity: Warning,
    },
    FailureReason {
        code: "SrcReplicationNotPending",
        category: SourceState,
        meaning: "The object is no longer pending replication: S3 had already replicated or processed it.",
        cause: "A late or duplicate replication attempt, e.g. a Batch Replication job or retry touching an object that already replicated.",
        fix: "Usually harmless. HeadObject on the source: COMPLETED means nothing to do (check the replica exists); FAILED means re-drive it with S3 Batch Replication.",
        severity: Warning,
    },
    // ---- batch replication only -----------------------------------------------------------
    FailureReason {
        code: "DstBucketInvalidRegion",
        category: BatchReplication,
        meaning: "Batch Replication only: the destination bucket is not in the Region the Batch Operations job expects.",
        cause: "The destination bucket's Region differs from the job's, e.g. the bucket was recreated elsewhere or the rule edited after the job was set up.",
        fix: "Compare GetBucketLocation of the destination with the job and the replication rule; fix the rule or recreate the job so they agree, then rerun it for the failed objects in the completion report.",
        severity: High,
    },
    FailureReason {
        code: "SrcBucketInvalidRegion",
        category: BatchReplication,
        meaning: "Batch Replication only: the source bucket is not in the Region the Batch Operations job expects.",
        cause: "The Batch Operations job was created in a different Region from the source bucket; the job must run in the source bucket's Region.",
        fix: "Recreate the Batch Replication job in the source bucket's Region (GetBucketLocation) and rerun it for the failed objects from the completion report.",
        severity: High,
    },
    FailureReason {
        code: "InitiateReplicationNotPermitted",
        category: BatchReplication,
        meaning: "Batch Replication only: the Batch Operations job was not allowed to start replication of the object.",
        cause: "The job's IAM role lacks s3:InitiateReplication on the source objects, or a bucket policy or SCP denies it.",
        fix: "Grant s3:InitiateReplication on SRC/* (plus s3:GetReplicationConfiguration and manifest/report access) to the Batch Operations role, then rerun the job for the failed objects.",
        severity: High,
    },
    FailureReason {
        code: "DstObjectHardDeleted",
        category: BatchReplication,
        meaning: "Batch Replication only: the replica version was permanently deleted from the destination and will not be replicated again.",
        cause: "A person, tool or lifecycle rule deleted that object version (by version ID) in the destination bucket after it had replicated.",
        fix: "Batch Replication cannot repair this object: copy the source object onto itself (new version) or re-upload it so live replication sends it again; find out who deletes versions in the replica.",
        severity: Warning,
    },
];

/// Every documented code, as a static slice.
pub fn known_reasons() -> &'static [FailureReason] {
    REASONS
}

/// The catalog entry for `code`: exact match first, then ASCII case-insensitive, then the same
/// ignoring surrounding whitespace (one doc version prints a code with a trailing space).
pub fn lookup(code: &str) -> Option<&'static FailureReason> {
    let trimmed = code.trim();
    REASONS
        .iter()
        .find(|r| r.code == code)
        .or_else(|| REASONS.iter().find(|r| r.code.eq_ignore_ascii_case(code)))
        .or_else(|| {
            REASONS
                .iter()
                .find(|r| r.code.eq_ignore_ascii_case(trimmed))
        })
}

/// Longest piece of an unknown code quoted inside the generic texts (the `code` field keeps it
/// all).
const MAX_ECHO: usize = 64;

/// The code as it may appear inside page text: printable ASCII only, bounded length.
fn printable(code: &str) -> String {
    if code.is_empty() {
        return "(empty)".to_owned();
    }
    let mut out: String = code
        .chars()
        .take(MAX_ECHO)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if code.chars().count() > MAX_ECHO {
        out.push_str("...");
    }
    out
}

/// Look up a code (exact, case-sensitive match first, then case-insensitive). Unknown codes
/// (including empty) are kept verbatim in `code` and get a generic meaning/cause/fix that names
/// the code and says where to look, severity High.
pub fn explain(code: &str) -> Explanation {
    if let Some(r) = lookup(code) {
        return Explanation::from(r);
    }
    let shown = printable(code);
    Explanation {
        code: code.to_owned(),
        known: false,
        category: ReasonCategory::Unknown,
        meaning: format!("Replication failed with a failureReason this monitor does not know: {shown}."),
        cause: format!(
            "Code {shown} is not in the catalog (new or renamed by AWS?). Look it up in the AWS doc 'Amazon S3 replication failure reasons'."
        ),
        fix: format!(
            "For {shown}: check the replication role (trust policy, s3:Replicate*/GetObjectVersion* actions), destination bucket policy and versioning, and the KMS keys' policies and state. S3 never retries FAILED objects: use S3 Batch Replication."
        ),
        severity: Severity::High,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The 34 codes on the current AWS page "Amazon S3 replication failure reasons".
    const DOCUMENTED: &[&str] = &[
        "AssumeRoleNotPermitted",
        "DstBucketInvalidRegion",
        "DstBucketNotFound",
        "DstBucketObjectLockConfigMissing",
        "DstBucketUnversioned",
        "DstDelObjNotPermitted",
        "DstKmsKeyInvalidState",
        "DstKmsKeyNotFound",
        "DstMultipartCompleteNotPermitted",
        "DstMultipartInitNotPermitted",
        "DstMultipartUploadNotPermitted",
        "DstObjectHardDeleted",
        "DstPutAclNotPermitted",
        "DstPutLegalHoldNotPermitted",
        "DstPutObjectNotPermitted",
        "DstPutRetentionNotPermitted",
        "DstPutTaggingNotPermitted",
        "DstVersionNotFound",
        "InitiateReplicationNotPermitted",
        "SrcBucketInvalidRegion",
        "SrcBucketNotFound",
        "SrcBucketReplicationConfigMissing",
        "SrcGetAclNotPermitted",
        "SrcGetLegalHoldNotPermitted",
        "SrcGetObjectNotPermitted",
        "SrcGetRetentionNotPermitted",
        "SrcGetTaggingNotPermitted",
        "SrcHeadObjectNotPermitted",
        "SrcKeyNotFound",
        "SrcKmsKeyInvalidState",
        "SrcObjectNotEligible",
        "SrcObjectNotFound",
        "SrcReplicationNotPending",
        "SrcVersionNotFound",
    ];

    /// Codes named (or spelled out from the `Dst*`/`Src*` patterns) in BRIEF.md "Event facts".
    const IN_BRIEF: &[&str] = &[
        "AssumeRoleNotPermitted",
        "SrcBucketReplicationConfigMissing",
        "DstBucketNotFound",
        "DstBucketUnversioned",
        "DstBucketObjectLockConfigMissing",
        "DstVersionNotFound",
        "DstPutObjectNotPermitted",
        "DstPutAclNotPermitted",
        "DstPutTaggingNotPermitted",
        "DstPutLegalHoldNotPermitted",
        "DstPutRetentionNotPermitted",
        "DstMultipartInitNotPermitted",
        "DstMultipartUploadNotPermitted",
        "DstMultipartCompleteNotPermitted",
        "DstDelObjNotPermitted",
        "DstKmsKeyNotFound",
        "DstKmsKeyInvalidState",
        "SrcKmsKeyInvalidState",
        "SrcGetObjectNotPermitted",
        "SrcHeadObjectNotPermitted",
        "SrcGetAclNotPermitted",
        "SrcGetTaggingNotPermitted",
        "SrcGetLegalHoldNotPermitted",
        "SrcGetRetentionNotPermitted",
        "SrcBucketNotFound",
        "SrcKeyNotFound",
        "SrcObjectNotFound",
        "SrcVersionNotFound",
        "SrcObjectNotEligible",
        "SrcReplicationNotPending",
        // Batch-only
        "DstBucketInvalidRegion",
        "SrcBucketInvalidRegion",
        "InitiateReplicationNotPermitted",
        "DstObjectHardDeleted",
    ];

    fn assert_page_text(what: &str, text: &str, max: usize) {
        assert!(!text.trim().is_empty(), "{what}: empty");
        assert!(
            text.len() <= max,
            "{what}: {} chars > {max}: {text}",
            text.len()
        );
        assert!(
            text.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "{what}: not single-line printable ASCII: {text}"
        );
        assert_eq!(text, text.trim(), "{what}: surrounding whitespace");
    }

    fn assert_texts(code: &str, meaning: &str, cause: &str, fix: &str) {
        assert_page_text(&format!("{code} meaning"), meaning, 160);
        assert_page_text(&format!("{code} cause"), cause, 300);
        assert_page_text(&format!("{code} fix"), fix, 300);
    }

    #[test]
    fn every_documented_and_brief_code_is_known() {
        for code in DOCUMENTED.iter().chain(IN_BRIEF) {
            let e = explain(code);
            assert!(e.known, "{code} not in catalog");
            assert_eq!(e.code, *code);
            assert_ne!(e.category, ReasonCategory::Unknown, "{code}");
        }
        assert_eq!(DOCUMENTED.len(), 34);
    }

    #[test]
    fn variants_are_known() {
        for code in [
            "DstMultipartPartUploadNotPermitted",
            "DstPutObjNotPermitted",
            "SrcGetObjNotPermitted",
            "DstOutOfCapacity",
        ] {
            assert!(explain(code).known, "{code}");
        }
    }

    #[test]
    fn codes_are_unique_even_ignoring_case() {
        let mut seen = HashSet::new();
        for r in known_reasons() {
            assert!(
                seen.insert(r.code.to_ascii_lowercase()),
                "duplicate code {}",
                r.code
            );
            assert!(
                !r.code.is_empty() && r.code.bytes().all(|b| b.is_ascii_alphanumeric()),
                "bad code {:?}",
                r.code
            );
        }
        assert!(known_reasons().len() >= 34);
    }

    #[test]
    fn texts_are_short_single_line_ascii() {
        for r in known_reasons() {
            assert_texts(r.code, r.meaning, r.cause, r.fix);
        }
    }

    #[test]
    fn live_replication_fixes_mention_redrive() {
        for r in known_reasons() {
            // Batch codes are re-driven by rerunning the job; with the source bucket gone there
            // is nothing left to re-drive.
            if r.category == ReasonCategory::BatchReplication || r.code == "SrcBucketNotFound" {
                continue;
            }
            if r.severity >= Severity::High {
                assert!(
                    r.fix.contains("Batch Replication") || r.fix.contains("re-upload"),
                    "{}: fix does not say how to re-drive FAILED objects",
                    r.code
                );
            }
        }
    }

    #[test]
    fn severities_follow_guidance() {
        for code in [
            "AssumeRoleNotPermitted",
            "SrcBucketReplicationConfigMissing",
            "DstBucketNotFound",
            "DstBucketUnversioned",
            "DstPutObjectNotPermitted",
            "DstKmsKeyNotFound",
            "DstKmsKeyInvalidState",
        ] {
            assert_eq!(explain(code).severity, Severity::Critical, "{code}");
        }
        for code in [
            "DstPutTaggingNotPermitted",
            "DstPutAclNotPermitted",
            "DstPutLegalHoldNotPermitted",
            "SrcGetTaggingNotPermitted",
        ] {
            assert_eq!(explain(code).severity, Severity::High, "{code}");
        }
        for code in [
            "SrcKeyNotFound",
            "SrcObjectNotFound",
            "SrcVersionNotFound",
            "SrcObjectNotEligible",
            "SrcReplicationNotPending",
        ] {
            assert_eq!(explain(code).severity, Severity::Warning, "{code}");
        }
    }

    #[test]
    fn unknown_code_is_echoed_verbatim() {
        let e = explain("DstSomethingNewNotPermitted");
        assert!(!e.known);
        assert_eq!(e.code, "DstSomethingNewNotPermitted");
        assert_eq!(e.category, ReasonCategory::Unknown);
        assert_eq!(e.severity, Severity::High);
        assert!(
            e.fix.contains("DstSomethingNewNotPermitted")
                || e.cause.contains("DstSomethingNewNotPermitted")
        );
        assert!(e.cause.contains("replication failure reasons"));
        assert!(e.fix.contains("role") && e.fix.contains("KMS"));
        assert!(e.fix.contains("destination bucket policy"));
        assert_texts(&e.code, &e.meaning, &e.cause, &e.fix);
    }

    #[test]
    fn unknown_hostile_code_keeps_texts_clean() {
        let weird = format!("Bad\ncode\u{e9}{}", "X".repeat(1000));
        let e = explain(&weird);
        assert!(!e.known);
        assert_eq!(e.code, weird);
        assert!(e.cause.contains("Bad?code?"));
        assert_texts("weird", &e.meaning, &e.cause, &e.fix);
    }

    #[test]
    fn empty_code_does_not_panic() {
        let e = explain("");
        assert!(!e.known);
        assert_eq!(e.code, "");
        assert_eq!(e.severity, Severity::High);
        assert_texts("(empty)", &e.meaning, &e.cause, &e.fix);
        let blank = explain("   ");
        assert!(!blank.known);
        assert_eq!(blank.code, "   ");
    }

    #[test]
    fn case_insensitive_lookup_returns_catalog_spelling() {
        let e = explain("dstputobjectnotpermitted");
        assert!(e.known);
        assert_eq!(e.code, "DstPutObjectNotPermitted");
        assert_eq!(e.category, ReasonCategory::Destination);
        assert_eq!(explain("SRCKEYNOTFOUND").code, "SrcKeyNotFound");
        assert_eq!(explain("DstVersionNotFound ").code, "DstVersionNotFound");
        assert_eq!(
            lookup("AssumeRoleNotPermitted").map(|r| r.code),
            Some("AssumeRoleNotPermitted")
        );
        assert!(lookup("NoSuchCode").is_none());
    }

    #[test]
    fn explanation_mirrors_entry() {
        for r in known_reasons() {
            let e = explain(r.code);
            assert_eq!(e, Explanation::from(r));
        }
    }

    #[test]
    fn category_names_match_serde() {
        let all = [
            ReasonCategory::RoleOrConfiguration,
            ReasonCategory::Destination,
            ReasonCategory::Kms,
            ReasonCategory::SourceAccess,
            ReasonCategory::SourceState,
            ReasonCategory::BatchReplication,
            ReasonCategory::Unknown,
        ];
        for c in all {
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::Value::String(c.as_str().to_owned())
            );
            assert_eq!(c.to_string(), c.as_str());
        }
        let json = serde_json::to_value(explain("DstKmsKeyNotFound")).unwrap();
        assert_eq!(json["category"], "kms");
        assert_eq!(json["severity"], "critical");
        assert_eq!(json["known"], true);
    }
}
