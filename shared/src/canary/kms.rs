//! KMS refusing the probe write. A PUT into an SSE-KMS bucket makes S3 ask KMS, on the writer's
//! behalf, for a data key (`kms:GenerateDataKey`) of the bucket's key; when KMS refuses, S3 passes
//! the refusal on. This module reads those answers (the S3 adapter hands over the error code and
//! message, no SDK types) and words the page: which key, which permission, where to grant it.
//!
//! How S3 words them, as far as public records show:
//! - 403 `AccessDenied`, `User: <caller ARN> is not authorized to perform: kms:GenerateDataKey on
//!   resource: <key ARN> because no identity-based policy allows the kms:GenerateDataKey action`:
//!   the caller's IAM policy lacks the grant (an upload to S3 quoted in aws/copilot-cli issue
//!   #5500, 2023);
//! - 403 `AccessDenied`, `User: <caller ARN> is not authorized to perform: kms:GenerateDataKey on
//!   this resource because the resource does not exist in this Region, no resource-based policies
//!   allow access, or a resource-based policy explicitly denies access`: the key policy does not
//!   let the caller use the key, and the key is not named (a PutObject quoted in buildkite/docs
//!   pull request #2344, 2023);
//! - the general IAM forms `... because no <type> policy allows the <action> action` and
//!   `... with an explicit deny in a <type> policy` (IAM user guide, "Troubleshoot access denied
//!   error messages");
//! - 400 `KMS.DisabledException` `<key ARN> is disabled.`, 400 `KMS.KMSInvalidStateException`
//!   `<key ARN> is pending deletion.`, 400 `KMS.NotFoundException` `Key '<key ARN>' does not
//!   exist`, `Invalid keyId '<id>'` or `Invalid arn <region>` (a key of another region): responses
//!   recorded against AWS in localstack's tests/aws/services/s3/test_s3.snapshot.json, tests
//!   `test_s3_sse_validate_kms_key` and `test_s3_sse_validate_kms_key_state`, validated
//!   2026-02-21, for PutObject and GetObject.
//!
//! Older answers said only `Access Denied` (aws/aws-sdk-js issue #2404, 2018): those stay
//! ordinary denials, with a hint when the bucket encrypts with SSE-KMS.
//!
//! Everything taken from S3's message is hostile: the key, the caller and the action are kept
//! only if they look like what they claim to be, and the message itself only on one line with
//! control characters escaped.

use super::pages::one_line;
use super::ports::{BucketFacts, DefaultEncryption, StoreError};
use super::probe::{ProbeRecord, ProbeStatus};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The permission a PUT into an SSE-KMS bucket needs on the bucket's key.
pub const GENERATE_DATA_KEY: &str = "kms:GenerateDataKey";

/// The monitor template's parameter listing the keys the canary role may use.
pub const KEY_PARAMETER: &str = "CanaryBucketKeyArns";

/// S3's message is kept for the record, escaped, up to this many characters.
const MESSAGE_CHARS: usize = 400;

/// KMS refused the key a write needed, as S3 reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsRefusal {
    pub problem: KmsProblem,
    /// The key: as S3's answer named it, else as the bucket's default encryption names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub key_origin: KeyOrigin,
    /// Who was refused (the canary role's session), when the answer names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// S3's message on one line, control characters escaped, bounded.
    #[serde(default)]
    pub message: String,
}

/// What KMS refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum KmsProblem {
    /// A `kms:` action on the key was denied (403 `AccessDenied`).
    Denied { action: String, by: DeniedBy },
    /// The key is disabled (`KMS.DisabledException`).
    Disabled,
    /// The key is scheduled for deletion (`KMS.KMSInvalidStateException`).
    PendingDeletion,
    /// The key is in another state that forbids its use (pending import, unavailable, ...).
    InvalidState,
    /// No such key where S3 looked (`KMS.NotFoundException`): deleted, a wrong ID or alias, a
    /// key of another region.
    NotFound,
    /// Another `KMS.*` error code (kept when it is a plain code).
    Other { code: String },
}

/// Which policy the denial names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "denial", content = "policy", rename_all = "kebab-case")]
pub enum DeniedBy {
    /// No statement of this kind of policy allows it (an implicit deny).
    NoAllow(PolicyKind),
    /// A `Deny` statement in this kind of policy.
    ExplicitDeny(PolicyKind),
    /// KMS's answer when the caller may not even see the key: the key policy allows nothing (or
    /// denies), or the key does not exist in the region.
    KeyPolicyOrMissing,
    /// The answer does not say.
    Unstated,
}

/// The policy types IAM's denial messages name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// The caller's IAM policies: for the canary, its role's policy.
    Identity,
    /// For a KMS action, the key policy.
    Resource,
    ServiceControl,
    ResourceControl,
    PermissionsBoundary,
    Session,
    VpcEndpoint,
}

/// Where the refusal's key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyOrigin {
    /// S3's answer named it.
    #[default]
    Answer,
    /// The answer did not; the bucket's default encryption names it.
    BucketDefault,
    /// SSE-KMS without a key ID: S3 uses the AWS managed key `aws/s3`.
    AwsManaged,
}

impl PolicyKind {
    /// The phrase IAM uses, as it starts a policy type in a message.
    const PHRASES: [(&'static str, PolicyKind); 7] = [
        ("identity-based", PolicyKind::Identity),
        ("resource-based", PolicyKind::Resource),
        ("service control", PolicyKind::ServiceControl),
        ("resource control", PolicyKind::ResourceControl),
        ("permissions boundary", PolicyKind::PermissionsBoundary),
        ("session", PolicyKind::Session),
        ("VPC endpoint", PolicyKind::VpcEndpoint),
    ];

    fn starting(text: &str) -> Option<PolicyKind> {
        Self::PHRASES
            .iter()
            .find(|(phrase, _)| text.starts_with(phrase))
            .map(|(_, kind)| *kind)
    }

    fn describe(self) -> &'static str {
        match self {
            PolicyKind::Identity => "identity-based policy (the canary role's IAM policy)",
            PolicyKind::Resource => "resource-based policy (the key policy)",
            PolicyKind::ServiceControl => "service control policy (AWS Organizations)",
            PolicyKind::ResourceControl => "resource control policy (AWS Organizations)",
            PolicyKind::PermissionsBoundary => "permissions boundary of the canary role",
            PolicyKind::Session => "session policy",
            PolicyKind::VpcEndpoint => "VPC endpoint policy",
        }
    }
}

impl KmsRefusal {
    /// S3's answer (error code and message), if it is a KMS refusal; `None` for anything else,
    /// such as an S3 denial or a bare `Access Denied`.
    pub fn from_s3_answer(code: &str, message: &str) -> Option<KmsRefusal> {
        let (problem, key, principal) = match code {
            "KMS.DisabledException" => (KmsProblem::Disabled, leading_key(message), None),
            "KMS.KMSInvalidStateException" | "KMS.InvalidStateException" => {
                let problem = if message.contains("pending deletion") {
                    KmsProblem::PendingDeletion
                } else {
                    KmsProblem::InvalidState
                };
                (problem, leading_key(message), None)
            }
            "KMS.NotFoundException" => (KmsProblem::NotFound, quoted_key(message), None),
            "AccessDenied" => denial(message)?,
            other if other.starts_with("KMS.") => denial(message).unwrap_or_else(|| {
                let code = if other.len() <= 64
                    && other.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
                {
                    other.to_owned()
                } else {
                    "KMS.(unreadable code)".to_owned()
                };
                (KmsProblem::Other { code }, leading_key(message), None)
            }),
            _ => return None,
        };
        Some(KmsRefusal {
            problem,
            key,
            key_origin: KeyOrigin::Answer,
            principal,
            message: one_line(message, MESSAGE_CHARS),
        })
    }

    /// Name the bucket's default key when S3's answer named none.
    pub fn or_bucket_key(mut self, encryption: Option<&DefaultEncryption>) -> Self {
        if self.key.is_some() {
            return self;
        }
        match encryption {
            Some(DefaultEncryption::Kms {
                key_id: Some(id), ..
            }) => {
                if let Some(key) = key_ref(id) {
                    self.key = Some(key);
                    self.key_origin = KeyOrigin::BucketDefault;
                }
            }
            Some(DefaultEncryption::Kms { key_id: None, .. }) => {
                self.key = Some("aws/s3".to_owned());
                self.key_origin = KeyOrigin::AwsManaged;
            }
            _ => {}
        }
        self
    }

    /// The permission at stake: the denied action, else what a write needs.
    pub fn permission(&self) -> &str {
        match &self.problem {
            KmsProblem::Denied { action, .. } => action,
            _ => GENERATE_DATA_KEY,
        }
    }

    /// The page subject's verdict.
    pub fn verdict(&self) -> &'static str {
        match self.problem {
            KmsProblem::Denied { .. } => "KMS DENIED",
            KmsProblem::Disabled => "KMS KEY DISABLED",
            KmsProblem::PendingDeletion => "KMS KEY PENDING DELETION",
            KmsProblem::InvalidState => "KMS KEY UNUSABLE",
            KmsProblem::NotFound => "KMS KEY NOT FOUND",
            KmsProblem::Other { .. } => "KMS REFUSED",
        }
    }

    fn key_text(&self) -> &str {
        self.key
            .as_deref()
            .unwrap_or("(not named by S3; see the bucket's default encryption)")
    }

    /// The key for a command line: its name, or a placeholder.
    fn key_arg(&self) -> &str {
        self.key.as_deref().unwrap_or("<key ARN>")
    }

    /// The role named in an assumed-role session ARN (`arn:aws:sts::1:assumed-role/ROLE/SESSION`).
    pub fn role_name(&self) -> Option<&str> {
        let principal = self.principal.as_deref()?;
        let (_, resource) = principal.rsplit_once(':')?;
        let mut parts = resource.split('/');
        match (parts.next(), parts.next()) {
            (Some("assumed-role"), Some(role)) if !role.is_empty() => Some(role),
            _ => None,
        }
    }

    /// Labelled lines for the page body, beside the probe's detail (which says what was
    /// refused): values are validated or escaped.
    pub fn page_lines(&self) -> Vec<(&'static str, String)> {
        let origin = match self.key_origin {
            KeyOrigin::Answer => "named in S3's answer",
            KeyOrigin::BucketDefault => {
                "the bucket's default encryption key; S3's answer did not name it"
            }
            KeyOrigin::AwsManaged => {
                "the AWS managed key for S3, which the bucket's default encryption uses"
            }
        };
        let mut lines = vec![("KMS key:", format!("{} ({origin})", self.key_text()))];
        if let KmsProblem::Denied { action, .. } = &self.problem {
            lines.push(("Permission:", action.clone()));
        }
        if let Some(principal) = &self.principal {
            lines.push(("Refused caller:", principal.clone()));
        }
        if !self.message.is_empty() {
            lines.push(("S3 said:", self.message.clone()));
        }
        lines
    }

    /// What the refusal means for replication and for the bucket's writers.
    pub fn meaning(&self) -> String {
        match &self.problem {
            KmsProblem::Denied { action, .. } => format!(
                "The source bucket encrypts new objects with SSE-KMS, so S3 asks KMS for a data key ({action}) on behalf of whoever writes. KMS refused the canary's role: no probe can be written, and replication from this bucket is not being checked. Writers using other roles are not affected by this refusal."
            ),
            _ => "The source bucket's SSE-KMS key cannot be used: every SSE-KMS write into the bucket fails, not only the canary's probe, and objects encrypted with the key can be neither read nor replicated. Replication is not being checked meanwhile.".to_owned(),
        }
    }

    /// What to do, and where: the canary role's policy (the monitor template's
    /// [`KEY_PARAMETER`]) and the key's key policy, through S3 of the bucket's region.
    pub fn fix(&self, source_bucket: &str, region: Option<&str>) -> String {
        let region_arg = region.unwrap_or("<bucket region>");
        let key = self.key_arg();
        let via = format!("s3.{region_arg}.amazonaws.com");
        match &self.problem {
            KmsProblem::Denied { action, by } => {
                let role = self
                    .role_name()
                    .map(|r| format!("the canary role ({r})"))
                    .unwrap_or_else(|| "the canary role".to_owned());
                let arn_note = if key.starts_with("arn:") {
                    String::new()
                } else {
                    format!(" (aws kms describe-key --key-id {key} --region {region_arg} shows it)")
                };
                let mut fix = format!(
                    "Grant {action} on {key} in both places KMS checks. (1) The canary role's policy: add the key's ARN{arn_note} to the monitor stack's {KEY_PARAMETER} parameter (infra/template.yaml) and update the stack. (2) The key's key policy: it must allow {role} {action} through S3 of the bucket's region (condition kms:ViaService = {via}), or delegate to IAM policies (the statement allowing the account's root)."
                );
                let first = match by {
                    DeniedBy::NoAllow(PolicyKind::Identity) => {
                        " S3's answer says the role's IAM policy lacks it: start with (1).".to_owned()
                    }
                    DeniedBy::NoAllow(PolicyKind::Resource) | DeniedBy::KeyPolicyOrMissing => {
                        format!(" S3's answer points at the key policy: start with (2), and check the key exists in {region_arg}.")
                    }
                    DeniedBy::ExplicitDeny(kind) => format!(
                        " A Deny statement in a {} wins over any grant: remove or narrow it for the canary role first.",
                        kind.describe()
                    ),
                    DeniedBy::NoAllow(kind) => format!(
                        " S3's answer says no {} allows it: add the grant there too.",
                        kind.describe()
                    ),
                    DeniedBy::Unstated => String::new(),
                };
                fix.push_str(&first);
                if self.key_origin == KeyOrigin::AwsManaged {
                    fix.push_str(" aws/s3 is AWS managed: its key policy cannot be edited and allows the account's principals through S3, so look for an explicit Deny or a caller from another account.");
                }
                fix
            }
            KmsProblem::Disabled => format!(
                "Enable the key: aws kms enable-key --key-id {key} --region {region_arg}; or point the bucket's default encryption at an enabled key (aws s3api put-bucket-encryption --bucket {source_bucket})."
            ),
            KmsProblem::PendingDeletion => format!(
                "Cancel the deletion before its waiting period ends: aws kms cancel-key-deletion --key-id {key} --region {region_arg}, then aws kms enable-key --key-id {key} --region {region_arg}. Once the key is deleted, every object encrypted with it is unreadable for good."
            ),
            KmsProblem::InvalidState => format!(
                "aws kms describe-key --key-id {key} --region {region_arg} shows its KeyState; make it Enabled, or point the bucket's default encryption at an enabled key."
            ),
            KmsProblem::NotFound => format!(
                "Check the bucket's default encryption (aws s3api get-bucket-encryption --bucket {source_bucket}) names a key that exists in {region_arg}: a deleted key, a mistyped ID or alias, and a key of another region (a KMS key never leaves its region) all answer this."
            ),
            KmsProblem::Other { code } => format!(
                "Look up {code} in the KMS documentation, and check the key's state and key policy (aws kms describe-key --key-id {key} --region {region_arg})."
            ),
        }
    }
}

impl fmt::Display for KmsRefusal {
    /// One line of validated parts only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.key.as_deref().unwrap_or("the bucket's key");
        match &self.problem {
            KmsProblem::Denied { action, by } => {
                let caller = self.principal.as_deref().unwrap_or("the canary role");
                write!(f, "{action} on {key} denied to {caller}: ")?;
                match by {
                    DeniedBy::NoAllow(kind) => write!(f, "no {} allows it", kind.describe()),
                    DeniedBy::ExplicitDeny(kind) => {
                        write!(f, "an explicit Deny in a {}", kind.describe())
                    }
                    DeniedBy::KeyPolicyOrMissing => write!(
                        f,
                        "the key policy allows nothing to it (or denies it), or the key does not exist in this region"
                    ),
                    DeniedBy::Unstated => write!(f, "S3's answer does not say which policy"),
                }
            }
            KmsProblem::Disabled => write!(f, "KMS key {key} is disabled"),
            KmsProblem::PendingDeletion => write!(f, "KMS key {key} is pending deletion"),
            KmsProblem::InvalidState => {
                write!(f, "KMS key {key} is in a state that does not allow its use")
            }
            KmsProblem::NotFound => write!(f, "KMS key {key} was not found in the bucket's region"),
            KmsProblem::Other { code } => write!(f, "KMS refused key {key} with {code}"),
        }
    }
}

/// `User: <principal> is not authorized to perform: kms:<Action> on resource: <key> because ...`
/// (or `on this resource because ...`); `None` when the denied action is not a KMS one.
fn denial(message: &str) -> Option<(KmsProblem, Option<String>, Option<String>)> {
    const PERFORM: &str = " is not authorized to perform: ";
    let (who, rest) = message.split_once(PERFORM)?;
    let token = rest.split_whitespace().next()?;
    let action = token.trim_end_matches([',', '.', ';']);
    let name = action.strip_prefix("kms:")?;
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let after = &rest[token.len()..];
    let key = after
        .strip_prefix(" on resource: ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(key_ref);
    let principal = who.trim().strip_prefix("User: ").and_then(principal_ref);
    let by = if after.contains("no resource-based policies allow access") {
        DeniedBy::KeyPolicyOrMissing
    } else if let Some((_, policy)) = after.split_once("with an explicit deny in a") {
        let policy = policy.strip_prefix('n').unwrap_or(policy).trim_start();
        PolicyKind::starting(policy).map_or(DeniedBy::Unstated, DeniedBy::ExplicitDeny)
    } else if let Some((_, policy)) = after.split_once("because no ") {
        PolicyKind::starting(policy).map_or(DeniedBy::Unstated, DeniedBy::NoAllow)
    } else {
        DeniedBy::Unstated
    };
    let problem = KmsProblem::Denied {
        action: action.to_owned(),
        by,
    };
    Some((problem, key, principal))
}

/// The key a state message starts with: `arn:aws:kms:...:key/... is disabled.`
fn leading_key(message: &str) -> Option<String> {
    message.split_whitespace().next().and_then(key_ref)
}

/// The key a not-found message quotes: `Key 'arn:...' does not exist`, `Invalid keyId 'x'`.
fn quoted_key(message: &str) -> Option<String> {
    let (_, rest) = message.split_once('\'')?;
    let (key, _) = rest.split_once('\'')?;
    key_ref(key)
}

/// Characters of key IDs, aliases and key or alias ARNs.
fn key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '_' | '-' | '+' | '=' | '.' | '@')
}

/// A KMS key reference, if the text is one: a key or alias ARN, a key ID or an alias name.
pub fn key_ref(text: &str) -> Option<String> {
    let text = text.trim_end_matches(['.', ',', ';']);
    if text.is_empty() || text.len() > 300 || !text.chars().all(key_char) {
        return None;
    }
    if text.starts_with("arn:") {
        let parts: Vec<&str> = text.splitn(6, ':').collect();
        let [_, partition, service, region, account, resource] = parts[..] else {
            return None;
        };
        let valid = partition.starts_with("aws")
            && service == "kms"
            && !region.is_empty()
            && account.len() == 12
            && account.chars().all(|c| c.is_ascii_digit())
            && (resource.starts_with("key/") || resource.starts_with("alias/"))
            && !resource.contains(':');
        return valid.then(|| text.to_owned());
    }
    (!text.contains(':')).then(|| text.to_owned())
}

/// A caller ARN (`arn:aws:sts::<account>:assumed-role/<role>/<session>`, an IAM user or role).
fn principal_ref(text: &str) -> Option<String> {
    let valid = text.len() <= 512
        && text.starts_with("arn:aws")
        && text.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, ':' | '/' | '_' | '-' | '+' | '=' | ',' | '.' | '@')
        })
        && matches!(text.split(':').nth(2), Some("sts" | "iam"));
    valid.then(|| text.to_owned())
}

/// The probe could not be written. Settled at once as unverifiable, with what KMS refused when
/// it was KMS (the page then names the key, the permission and where to grant it).
pub(super) fn unwritten(
    mut probe: ProbeRecord,
    error: &StoreError,
    source: &BucketFacts,
) -> ProbeRecord {
    // Refused: nothing was written. No answer: it may have been, so clean up.
    probe.cleaned = !matches!(error, StoreError::Unreachable { .. });
    let detail = match error {
        StoreError::Kms { refusal, .. } => {
            let refusal = (**refusal).clone().or_bucket_key(source.encryption.as_ref());
            let detail = format!("writing the probe into the source was refused by KMS: {refusal}");
            probe.kms_refusal = Some(refusal);
            detail
        }
        StoreError::Denied { .. } => match &source.encryption {
            // A bare "Access Denied" may still be KMS: say which key to look at.
            Some(DefaultEncryption::Kms { key_id, .. }) => format!(
                "writing the probe into the source failed: {error}; the bucket encrypts with SSE-KMS (key {}), so the denial may also be a missing {GENERATE_DATA_KEY} on that key",
                key_id.as_deref().and_then(key_ref).unwrap_or_else(|| "aws/s3".to_owned())
            ),
            _ => format!("writing the probe into the source failed: {error}"),
        },
        _ => format!("writing the probe into the source failed: {error}"),
    };
    let at = probe.put_at;
    probe.resolve(ProbeStatus::Unverifiable, at, Some(detail));
    probe
}

#[cfg(test)]
mod tests;
