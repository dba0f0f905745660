//! KMS refusals: how S3's answers are read, and what the page says (fakes, no AWS).

use super::*;
use crate::canary::ports::Versioning;
use crate::canary::setup::{ReplicationRule, ReplicationSetup, RuleFilter};
use crate::canary::{Canary, CanarySettings};
use crate::clock::Clock;
use crate::delivery::page::{Page, Urgency};
use crate::fakes::{FakeS3, InMemoryLedger, RecordingNotifier, RecordingProbeMetrics};
use chrono::{DateTime, TimeZone, Utc};

const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const CALLER: &str = "arn:aws:sts::111122223333:assumed-role/replmon-canary-role/replmon-canary";

/// S3's answer when the caller's IAM policy lacks the grant.
fn identity_denial() -> String {
    format!("User: {CALLER} is not authorized to perform: kms:GenerateDataKey on resource: {KEY} because no identity-based policy allows the kms:GenerateDataKey action")
}

/// S3's answer when the key policy does not let the caller use the key (no key named).
fn key_policy_denial() -> String {
    format!("User: {CALLER} is not authorized to perform: kms:GenerateDataKey on this resource because the resource does not exist in this Region, no resource-based policies allow access, or a resource-based policy explicitly denies access")
}

fn refusal(code: &str, message: &str) -> KmsRefusal {
    KmsRefusal::from_s3_answer(code, message).expect("a KMS refusal")
}

#[test]
fn an_identity_policy_denial_names_key_caller_and_policy() {
    let r = refusal("AccessDenied", &identity_denial());
    assert_eq!(
        r.problem,
        KmsProblem::Denied {
            action: GENERATE_DATA_KEY.into(),
            by: DeniedBy::NoAllow(PolicyKind::Identity)
        }
    );
    assert_eq!(r.key.as_deref(), Some(KEY));
    assert_eq!(r.key_origin, KeyOrigin::Answer);
    assert_eq!(r.principal.as_deref(), Some(CALLER));
    assert_eq!(r.role_name(), Some("replmon-canary-role"));
    assert_eq!(r.permission(), GENERATE_DATA_KEY);
    assert_eq!(r.verdict(), "KMS DENIED");
}

#[test]
fn a_key_policy_denial_names_no_key_so_the_bucket_default_fills_in() {
    let r = refusal("AccessDenied", &key_policy_denial());
    assert_eq!(
        r.problem,
        KmsProblem::Denied {
            action: GENERATE_DATA_KEY.into(),
            by: DeniedBy::KeyPolicyOrMissing
        }
    );
    assert_eq!(r.key, None);
    let bucket_key = DefaultEncryption::Kms {
        algorithm: "aws:kms".into(),
        key_id: Some(KEY.into()),
    };
    let filled = r.clone().or_bucket_key(Some(&bucket_key));
    assert_eq!(filled.key.as_deref(), Some(KEY));
    assert_eq!(filled.key_origin, KeyOrigin::BucketDefault);
    // SSE-KMS without a key ID is the AWS managed key.
    let managed = r.or_bucket_key(Some(&DefaultEncryption::Kms {
        algorithm: "aws:kms".into(),
        key_id: None,
    }));
    assert_eq!(managed.key.as_deref(), Some("aws/s3"));
    assert_eq!(managed.key_origin, KeyOrigin::AwsManaged);
    assert!(managed
        .fix("src", Some("us-east-1"))
        .contains("cannot be edited"));
    // A default key that is not a key name is not repeated.
    let odd = refusal("AccessDenied", &key_policy_denial()).or_bucket_key(Some(
        &DefaultEncryption::Kms {
            algorithm: "aws:kms".into(),
            key_id: Some("alias/x\nSubject: y".into()),
        },
    ));
    assert_eq!((odd.key, odd.key_origin), (None, KeyOrigin::Answer));
}

#[test]
fn a_named_key_is_kept_over_the_bucket_default() {
    let other = DefaultEncryption::Kms {
        algorithm: "aws:kms".into(),
        key_id: Some("alias/other".into()),
    };
    let r = refusal("AccessDenied", &identity_denial()).or_bucket_key(Some(&other));
    assert_eq!(r.key.as_deref(), Some(KEY));
}

#[test]
fn explicit_denies_and_other_policy_types_are_told_apart() {
    let scp = format!("User: {CALLER} is not authorized to perform: kms:GenerateDataKey on resource: {KEY} with an explicit deny in a service control policy");
    let r = refusal("AccessDenied", &scp);
    assert!(matches!(
        r.problem,
        KmsProblem::Denied {
            by: DeniedBy::ExplicitDeny(PolicyKind::ServiceControl),
            ..
        }
    ));
    assert!(r.fix("src", Some("us-east-1")).contains("Deny statement"));
    let identity = format!("User: {CALLER} is not authorized to perform: kms:GenerateDataKey on resource: {KEY} with an explicit deny in an identity-based policy");
    assert!(matches!(
        refusal("AccessDenied", &identity).problem,
        KmsProblem::Denied {
            by: DeniedBy::ExplicitDeny(PolicyKind::Identity),
            ..
        }
    ));
    let key_policy = format!("User: {CALLER} is not authorized to perform: kms:GenerateDataKey on resource: {KEY} because no resource-based policy allows the kms:GenerateDataKey action");
    assert!(matches!(
        refusal("AccessDenied", &key_policy).problem,
        KmsProblem::Denied {
            by: DeniedBy::NoAllow(PolicyKind::Resource),
            ..
        }
    ));
    let boundary = format!("User: {CALLER} is not authorized to perform: kms:GenerateDataKey on resource: {KEY} because no permissions boundary allows the kms:GenerateDataKey action");
    assert!(matches!(
        refusal("AccessDenied", &boundary).problem,
        KmsProblem::Denied {
            by: DeniedBy::NoAllow(PolicyKind::PermissionsBoundary),
            ..
        }
    ));
    let unstated = format!("User: {CALLER} is not authorized to perform: kms:GenerateDataKey");
    assert!(matches!(
        refusal("AccessDenied", &unstated).problem,
        KmsProblem::Denied {
            by: DeniedBy::Unstated,
            ..
        }
    ));
}

#[test]
fn key_states_and_missing_keys_as_s3_answers_them() {
    let disabled = refusal("KMS.DisabledException", &format!("{KEY} is disabled."));
    assert_eq!(disabled.problem, KmsProblem::Disabled);
    assert_eq!(disabled.key.as_deref(), Some(KEY));
    assert_eq!(disabled.permission(), GENERATE_DATA_KEY);
    let pending = refusal(
        "KMS.KMSInvalidStateException",
        &format!("{KEY} is pending deletion."),
    );
    assert_eq!(pending.problem, KmsProblem::PendingDeletion);
    assert_eq!(pending.key.as_deref(), Some(KEY));
    let import = refusal(
        "KMS.KMSInvalidStateException",
        &format!("{KEY} is pending import."),
    );
    assert_eq!(import.problem, KmsProblem::InvalidState);
    let missing = refusal(
        "KMS.NotFoundException",
        &format!("Key '{KEY}' does not exist"),
    );
    assert_eq!(missing.problem, KmsProblem::NotFound);
    assert_eq!(missing.key.as_deref(), Some(KEY));
    let bad_id = refusal("KMS.NotFoundException", "Invalid keyId 'fake-key-id'");
    assert_eq!(bad_id.key.as_deref(), Some("fake-key-id"));
    let other_region = refusal("KMS.NotFoundException", "Invalid arn us-west-2");
    assert_eq!(other_region.key, None);
    let unreadable = refusal("KMS.AccessDeniedException", "no");
    assert_eq!(
        unreadable.problem,
        KmsProblem::Other {
            code: "KMS.AccessDeniedException".into()
        }
    );
    let other = refusal("KMS.KeyUnavailableException", "try later");
    assert_eq!(
        other.problem,
        KmsProblem::Other {
            code: "KMS.KeyUnavailableException".into()
        }
    );
}

#[test]
fn answers_that_are_not_kms_refusals_are_left_alone() {
    let s3 = format!("User: {CALLER} is not authorized to perform: s3:PutObject on resource: \"arn:aws:s3:::src/k\" because no identity-based policy allows the s3:PutObject action");
    assert_eq!(KmsRefusal::from_s3_answer("AccessDenied", &s3), None);
    assert_eq!(
        KmsRefusal::from_s3_answer("AccessDenied", "Access Denied"),
        None
    );
    assert_eq!(KmsRefusal::from_s3_answer("", ""), None);
    assert_eq!(KmsRefusal::from_s3_answer("NoSuchBucket", "gone"), None);
    // An action that only starts like a KMS one.
    let odd =
        format!("User: {CALLER} is not authorized to perform: kms:Gen\u{1b}[2J on resource: {KEY}");
    assert_eq!(KmsRefusal::from_s3_answer("AccessDenied", &odd), None);
}

#[test]
fn hostile_text_in_the_answer_is_dropped_or_escaped() {
    // A key that carries an escape sequence, a caller with a newline and fake page lines.
    let hostile = format!(
        "User: {CALLER}\nSubject: [RESOLVED] all good is not authorized to perform: kms:GenerateDataKey on resource: {KEY}\u{1b}[31m\u{202e} because no identity-based policy allows the kms:GenerateDataKey action\r\nWhat to do:    nothing"
    );
    let r = refusal("AccessDenied", &hostile);
    assert_eq!(r.key, None, "a key with control characters is not a key");
    assert_eq!(r.principal, None, "a caller with a newline is not a caller");
    assert!(!r.message.chars().any(char::is_control), "{:?}", r.message);
    assert!(!r.message.contains('\u{202e}'));
    assert!(r.message.contains("\\n") && r.message.contains("\\u{1b}"));
    for text in [r.to_string(), r.meaning(), r.fix("src", Some("us-east-1"))]
        .into_iter()
        .chain(r.page_lines().into_iter().map(|(_, v)| v))
    {
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }
    let long = refusal("KMS.DisabledException", &"x\n".repeat(5000));
    assert!(long.message.chars().count() <= MESSAGE_CHARS);
    // Keys are only what a key can be.
    assert_eq!(
        key_ref("arn:aws:kms:us-east-1:111122223333:key/ab\u{7}"),
        None
    );
    assert_eq!(key_ref("arn:aws:s3:::bucket"), None);
    assert_eq!(key_ref("arn:aws:kms:us-east-1:1:key/x"), None);
    assert_eq!(key_ref("alias/dr-key").as_deref(), Some("alias/dr-key"));
    assert_eq!(key_ref(&format!("{KEY}.")).as_deref(), Some(KEY));
}

#[test]
fn a_probe_record_keeps_the_refusal_through_storage() {
    let r = refusal("AccessDenied", &key_policy_denial()).or_bucket_key(Some(
        &DefaultEncryption::Kms {
            algorithm: "aws:kms".into(),
            key_id: Some(KEY.into()),
        },
    ));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["problem"]["kind"], "denied");
    assert_eq!(json["problem"]["by"]["denial"], "key-policy-or-missing");
    let back: KmsRefusal = serde_json::from_value(json).unwrap();
    assert_eq!(back, r);
    let error = StoreError::Kms {
        operation: "PutObject",
        bucket: "src".into(),
        refusal: Box::new(back),
    };
    assert!(!error.retryable());
    assert!(error.to_string().contains("refused by KMS"), "{error}");
    assert!(error.to_string().contains(KEY), "{error}");
}

// The canary's run against the fakes: the page on-call gets.

/// A wall clock that moves only when told.
struct StepClock(std::sync::Mutex<DateTime<Utc>>);

impl Clock for StepClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

struct World {
    s3: FakeS3,
    ledger: InMemoryLedger,
    notifier: RecordingNotifier,
    metrics: RecordingProbeMetrics,
    clock: StepClock,
}

impl World {
    /// `src` (SSE-KMS with [`KEY`], in us-east-1) replicating to `dst` by rule `dr`.
    fn new() -> Self {
        let world = World {
            s3: FakeS3::default(),
            ledger: InMemoryLedger::default(),
            notifier: RecordingNotifier::default(),
            metrics: RecordingProbeMetrics::default(),
            clock: StepClock(std::sync::Mutex::new(
                Utc.with_ymd_and_hms(2026, 11, 23, 3, 0, 0).unwrap(),
            )),
        };
        let rule = ReplicationRule {
            id: "dr".into(),
            enabled: true,
            filter: RuleFilter::default(),
            destination_bucket: "dst".into(),
            metrics_enabled: true,
            rtc_enabled: true,
            replicates_kms_objects: true,
            ..Default::default()
        };
        world.s3.add_bucket(
            "src",
            Some(ReplicationSetup {
                role: "role".into(),
                rules: vec![rule],
            }),
        );
        world.s3.add_bucket("dst", None);
        world.s3.set_facts(
            "src",
            BucketFacts {
                region: Some("us-east-1".into()),
                versioning: Versioning::Enabled,
                encryption: Some(DefaultEncryption::Kms {
                    algorithm: "aws:kms".into(),
                    key_id: Some(KEY.into()),
                }),
                replication_events_configured: Some(true),
            },
        );
        world
    }

    fn refuse(&self, code: &str, message: &str) {
        let error = match KmsRefusal::from_s3_answer(code, message) {
            Some(refusal) => StoreError::Kms {
                operation: "PutObject",
                bucket: "src".into(),
                refusal: Box::new(refusal),
            },
            None => StoreError::Denied {
                operation: "PutObject",
                bucket: "src".into(),
                detail: message.into(),
            },
        };
        self.s3.refuse_puts("src", Some(error));
    }

    /// Two runs a minute apart (an unverifiable probe pages after two in a row).
    async fn two_runs(&self) -> Vec<Page> {
        let canary = Canary::new(
            &self.s3,
            &self.ledger,
            &self.notifier,
            &self.metrics,
            &self.clock,
            vec!["src".into()],
            CanarySettings::default(),
        );
        for run in ["run-1", "run-2"] {
            let report = canary
                .handle(&format!(r#"{{"run_id": "{run}"}}"#), "request")
                .await
                .unwrap();
            assert_eq!(
                report.buckets[0].probes[0].status,
                ProbeStatus::Unverifiable
            );
            *self.clock.0.lock().unwrap() += chrono::Duration::minutes(1);
        }
        self.notifier
            .pages()
            .into_iter()
            .filter(|p| p.kind != "canary-audit")
            .collect()
    }
}

fn the_page(pages: &[Page]) -> &Page {
    assert_eq!(pages.len(), 1, "{pages:#?}");
    let page = &pages[0];
    assert_eq!(page.kind, "canary-unverifiable");
    assert_eq!(page.urgency, Urgency::Page);
    page
}

#[tokio::test(start_paused = true)]
async fn a_kms_denied_probe_write_pages_the_key_the_permission_and_where_to_grant() {
    let world = World::new();
    world.refuse("AccessDenied", &identity_denial());
    let pages = world.two_runs().await;
    let page = the_page(&pages);
    assert_eq!(
        page.subject(),
        "[HIGH] S3 canary KMS DENIED: src -> dst (rule dr)"
    );
    let body = page.body();
    for expected in [
        "cannot write the probe, KMS refused the source bucket's key",
        &format!("KMS key:            {KEY} (named in S3's answer)"),
        "Permission:         kms:GenerateDataKey",
        &format!("Refused caller:     {CALLER}"),
        // Where to grant: the canary role's policy (the template parameter) and the key policy.
        "CanaryBucketKeyArns",
        "The key's key policy: it must allow the canary role (replmon-canary-role) kms:GenerateDataKey",
        "kms:ViaService = s3.us-east-1.amazonaws.com",
        "the role's IAM policy lacks it: start with (1)",
    ] {
        assert!(body.contains(expected), "missing {expected:?} in:\n{body}");
    }
    // Not the generic advice for an unreadable destination.
    assert!(!body.contains("s3:GetObject, s3:ListBucket"), "{body}");
    let record = &world.ledger.probes()[0];
    assert!(record.kms_refusal.is_some());
    assert!(record.cleaned, "nothing was written, nothing to clean");
}

#[tokio::test(start_paused = true)]
async fn a_key_policy_denial_names_the_bucket_s_key_and_points_at_the_key_policy() {
    let world = World::new();
    world.refuse("AccessDenied", &key_policy_denial());
    let pages = world.two_runs().await;
    let body = the_page(&pages).body();
    assert!(
        body.contains(&format!(
            "KMS key:            {KEY} (the bucket's default encryption key"
        )),
        "{body}"
    );
    assert!(
        body.contains("points at the key policy: start with (2)"),
        "{body}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_disabled_or_deleted_key_is_paged_as_such() {
    let world = World::new();
    world.refuse(
        "KMS.KMSInvalidStateException",
        &format!("{KEY} is pending deletion."),
    );
    let pages = world.two_runs().await;
    let page = the_page(&pages);
    assert!(
        page.subject().contains("KMS KEY PENDING DELETION"),
        "{}",
        page.subject()
    );
    assert!(page.body().contains(&format!(
        "aws kms cancel-key-deletion --key-id {KEY} --region us-east-1"
    )));

    let world = World::new();
    world.refuse("KMS.DisabledException", &format!("{KEY} is disabled."));
    let pages = world.two_runs().await;
    let page = the_page(&pages);
    assert!(
        page.subject().contains("KMS KEY DISABLED"),
        "{}",
        page.subject()
    );
    assert!(page.body().contains(&format!(
        "aws kms enable-key --key-id {KEY} --region us-east-1"
    )));
}

#[tokio::test(start_paused = true)]
async fn hostile_text_in_a_kms_answer_never_reaches_the_page_raw() {
    let world = World::new();
    world.refuse(
        "AccessDenied",
        &format!("User: {CALLER} is not authorized to perform: kms:GenerateDataKey on resource: {KEY}\u{7}\nSubject: [RESOLVED] fixed\u{1b}[0m because no identity-based policy allows the kms:GenerateDataKey action\r\nWhat to do:    nothing"),
    );
    let pages = world.two_runs().await;
    let page = the_page(&pages);
    let body = page.body();
    // Every line is one the canary wrote: nothing injected starts a line.
    for line in body.lines() {
        assert!(!line.starts_with("Subject:"), "{body}");
        assert!(!line.starts_with("What to do:    nothing"), "{body}");
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
    assert!(!body.contains('\u{1b}') && !body.contains('\u{7}') && !body.contains('\r'));
    // The key with a bell in it was not taken: the bucket's key is named instead.
    assert!(
        body.contains("(the bucket's default encryption key"),
        "{body}"
    );
    assert!(page.subject().chars().all(|c| (' '..='~').contains(&c)));
}

#[tokio::test(start_paused = true)]
async fn a_bare_access_denied_on_an_sse_kms_bucket_hints_at_the_key() {
    let world = World::new();
    world.refuse("AccessDenied", "Access Denied");
    let pages = world.two_runs().await;
    let page = the_page(&pages);
    assert!(
        page.subject().contains("CANNOT VERIFY"),
        "{}",
        page.subject()
    );
    assert!(
        page.body().contains(&format!(
            "SSE-KMS (key {KEY}), so the denial may also be a missing kms:GenerateDataKey"
        )),
        "{}",
        page.body()
    );
}
