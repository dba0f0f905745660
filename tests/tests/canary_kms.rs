//! The canary against the local stack when KMS refuses the source bucket's key (issue 12, part
//! 2). moto does not evaluate KMS, so the fault proxy answers the probe's PUT as S3 does when
//! KMS refuses: 403 `AccessDenied` with IAM's wording, or 400 `KMS.*` for the key's state
//! (shapes and sources in tests/src/fault_proxy.rs, `S3Error`). Everything else reaches moto,
//! and the assertions read the page from the SNS topic's subscriber, as on-call gets it.

use replmon_shared::aws::{DynamoDbLedger, S3ObjectStore, SnsNotifier};
use replmon_shared::canary::probe::ProbeStatus;
use replmon_shared::canary::{Canary, CanarySettings, RunReport, Trigger};
use replmon_shared::clock::SystemClock;
use replmon_shared::fakes::RecordingProbeMetrics;
use replmon_tests::fault_proxy::{FaultProxy, KmsDenial, Reply, S3Error};
use replmon_tests::replication_sim::{Delay, ReplicationSimulator, SimulatorSettings};
use replmon_tests::{monitor_on_local_stack, sdk_config, MotoServer, ReceivedPage, Stack};
use std::time::Duration;

/// The canary role's session, as S3 names the caller in a denial.
const CALLER: &str = "arn:aws:sts::123456789012:assumed-role/replmon-canary-role/replmon-canary";

struct Local {
    _moto: MotoServer,
    stack: Stack,
    proxy: FaultProxy,
    /// The canary's S3 store, through the proxy.
    store: S3ObjectStore,
    ledger: DynamoDbLedger,
    notifier: SnsNotifier,
    metrics: RecordingProbeMetrics,
    /// The source bucket's SSE-KMS default key, as S3 reports it.
    key: String,
}

async fn local() -> Local {
    let (moto, stack, _) = monitor_on_local_stack().await.expect("local stack");
    let sdk = sdk_config(&moto.endpoint()).await;
    let proxy = FaultProxy::start(&moto.endpoint()).await.expect("proxy");
    let through_proxy = sdk_config(&proxy.endpoint()).await;
    let encryption = stack
        .s3
        .get_bucket_encryption()
        .bucket(&stack.names.source_bucket)
        .send()
        .await
        .expect("the source bucket's default encryption");
    let key = encryption
        .server_side_encryption_configuration()
        .and_then(|c| c.rules().first())
        .and_then(|r| r.apply_server_side_encryption_by_default())
        .and_then(|d| d.kms_master_key_id())
        .expect("the local stack's source bucket encrypts with SSE-KMS and a key of its own")
        .to_owned();
    Local {
        store: S3ObjectStore::new(&through_proxy),
        ledger: DynamoDbLedger::new(&sdk, &stack.names.table),
        notifier: SnsNotifier::new(&sdk, &stack.topic_arn),
        metrics: RecordingProbeMetrics::default(),
        _moto: moto,
        proxy,
        stack,
        key,
    }
}

impl Local {
    fn source(&self) -> String {
        self.stack.names.source_bucket.clone()
    }

    /// Answer the probe PUTs into the source bucket with `error`, as S3 would.
    fn refuse_probe_puts(&self, error: S3Error) {
        self.proxy
            .reply(Reply::always("s3:PutObject", error).on_bucket(&self.source()));
    }

    async fn run(&self, run: &str) -> RunReport {
        let canary = Canary::new(
            &self.store,
            &self.ledger,
            &self.notifier,
            &self.metrics,
            SystemClock,
            vec![self.source()],
            CanarySettings {
                budget: Duration::from_secs(4),
                deadline: chrono::Duration::seconds(6),
                latency_threshold: chrono::Duration::seconds(5),
                overlap_margin: chrono::Duration::seconds(1),
                ..CanarySettings::default()
            },
        );
        let report = canary
            .run(&Trigger {
                run_id: run.into(),
                buckets: None,
            })
            .await;
        assert!(report.buckets[0].errors.is_empty(), "{report:#?}");
        report
    }

    /// Two runs, each probe refused: the second pages (two bad probes in a row).
    async fn two_refused_runs(&self) -> ReceivedPage {
        for run in ["run-1", "run-2"] {
            let report = self.run(run).await;
            let statuses: Vec<ProbeStatus> =
                report.buckets[0].probes.iter().map(|p| p.status).collect();
            assert_eq!(statuses, [ProbeStatus::Unverifiable], "{report:#?}");
        }
        let counts = self.proxy.counts("s3:PutObject");
        assert_eq!(
            (counts.faulted, counts.forwarded),
            (2, 0),
            "both probe PUTs answered by the proxy, none reached the bucket"
        );
        let mut pages = self.pages().await;
        assert_eq!(pages.len(), 1, "{pages:#?}");
        pages.remove(0)
    }

    /// Pages and notices, without the audit notices.
    async fn pages(&self) -> Vec<ReceivedPage> {
        let mut pages = self.stack.drain_pages().await.expect("pages");
        pages.retain(|p| p.attribute("kind") != "canary-audit");
        pages
    }
}

fn assert_contains(page: &ReceivedPage, expected: &str) {
    assert!(
        page.message.contains(expected),
        "missing {expected:?} in the page:\n{}",
        page.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_put_kms_denies_pages_the_key_the_permission_and_where_to_grant_it() {
    let local = local().await;
    local.refuse_probe_puts(S3Error::kms_denied(
        CALLER,
        &local.key,
        KmsDenial::IdentityPolicy,
    ));
    let page = local.two_refused_runs().await;
    assert_eq!(page.attribute("kind"), "canary-unverifiable");
    assert_eq!(page.attribute("urgency"), "page");
    assert_eq!(page.attribute("source_bucket"), local.source());
    assert!(page.subject.contains("KMS DENIED"), "{}", page.subject);
    let region = &local.stack.names.source_region;
    for expected in [
        format!("KMS key:            {} (named in S3's answer)", local.key),
        "Permission:         kms:GenerateDataKey".to_owned(),
        format!("Refused caller:     {CALLER}"),
        // Where to grant: the canary role's policy, through the template parameter...
        "add the key's ARN to the monitor stack's CanaryBucketKeyArns parameter".to_owned(),
        // ...and the key policy, for the canary role, through S3 of the bucket's region.
        "The key's key policy: it must allow the canary role (replmon-canary-role) kms:GenerateDataKey".to_owned(),
        format!("kms:ViaService = s3.{region}.amazonaws.com"),
    ] {
        assert_contains(&page, &expected);
    }
    assert!(
        !page.message.contains("s3:GetObject, s3:ListBucket"),
        "not the generic access advice:\n{}",
        page.message
    );

    // The grant is fixed: the next probe is written, replicates and the incident recovers.
    local.proxy.clear();
    let sim = ReplicationSimulator::start(
        local.stack.s3.clone(),
        vec![local.source()],
        SimulatorSettings {
            delay: Delay::Fixed(Duration::from_millis(300)),
            ..Default::default()
        },
    )
    .await;
    let report = local.run("run-3").await;
    assert_eq!(
        report.buckets[0].probes[0].status,
        ProbeStatus::Arrived,
        "{report:#?}"
    );
    let pages = local.pages().await;
    let kinds: Vec<&str> = pages.iter().map(|p| p.attribute("kind")).collect();
    assert_eq!(kinds, ["canary-recovered"], "{pages:#?}");
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_policy_denial_names_the_bucket_s_key_which_s3_s_answer_leaves_out() {
    let local = local().await;
    local.refuse_probe_puts(S3Error::kms_denied(
        CALLER,
        &local.key,
        KmsDenial::KeyPolicy,
    ));
    let page = local.two_refused_runs().await;
    assert!(page.subject.contains("KMS DENIED"), "{}", page.subject);
    assert_contains(
        &page,
        &format!(
            "KMS key:            {} (the bucket's default encryption key",
            local.key
        ),
    );
    assert_contains(&page, "points at the key policy: start with (2)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_pending_deletion_or_disabled_is_paged_as_such() {
    let local = local().await;
    local.refuse_probe_puts(S3Error::kms_pending_deletion(&local.key));
    let page = local.two_refused_runs().await;
    assert!(
        page.subject.contains("KMS KEY PENDING DELETION"),
        "{}",
        page.subject
    );
    let region = &local.stack.names.source_region;
    assert_contains(
        &page,
        &format!(
            "aws kms cancel-key-deletion --key-id {} --region {region}",
            local.key
        ),
    );
    // Deletion cancelled, the key left disabled: the incident is open already (no second page),
    // and the probe's record says what S3 answered now.
    local.proxy.clear();
    local.refuse_probe_puts(S3Error::kms_disabled(&local.key));
    let report = local.run("run-3").await;
    assert_eq!(
        report.buckets[0].probes[0].status,
        ProbeStatus::Unverifiable
    );
    assert!(local.pages().await.is_empty());
    let records = local
        .stack
        .partition(&format!("PROBE#{}", local.source()))
        .await
        .expect("probe records");
    let newest = records
        .iter()
        .find(|r| r["run_id"] == "run-3")
        .expect("run-3's probe");
    assert!(
        newest["detail"].contains(&format!("KMS key {} is disabled", local.key)),
        "{newest:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_in_s3_s_answer_does_not_reach_the_page_raw() {
    let local = local().await;
    // Line ends (sent as XML character references, which the SDK decodes) to forge page lines.
    let hostile = format!(
        "User: {CALLER} is not authorized to perform: kms:GenerateDataKey on resource: {}\r\nSubject: [RESOLVED] all fine\nWhat to do:    nothing because no identity-based policy allows the kms:GenerateDataKey action",
        local.key
    );
    local.refuse_probe_puts(S3Error::access_denied(&hostile));
    let page = local.two_refused_runs().await;
    for line in page.message.lines() {
        assert!(!line.starts_with("Subject:"), "{}", page.message);
        assert!(
            !line.starts_with("What to do:    nothing"),
            "{}",
            page.message
        );
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
    assert!(!page.message.contains('\r'));
    // The quoted answer is there, escaped, and the key (a clean token) is still named.
    assert_contains(&page, "\\r\\nSubject: [RESOLVED] all fine\\nWhat to do:");
    assert_contains(&page, &format!("KMS key:            {}", local.key));
}
