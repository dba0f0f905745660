//! The alarm-events handler: alarm state changes in, incidents and pages out.

use super::pending::PendingNotifications;
use crate::alarm::{
    decide, parse_messages, AlarmChange, AlarmDecision, AlarmInput, AlarmMetric, AlarmNotification,
    AlarmRecord, FlapRule,
};
use crate::clock::Clock;
use crate::delivery::outbox::{deliver, AtRevision, Claimed, Outbox};
use crate::delivery::page::{shorten, Notifier, NotifyError, Page, Urgency};
use crate::delivery::text::{untrusted, Untrusted};
use crate::envelope::{self, Delivery};
use crate::ledger::LedgerError;
use crate::metrics::{MetricsSource, Trend};
use crate::severity::Severity;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::future::Future;

/// Where alarm records live (the ledger table).
pub trait AlarmStore: Send + Sync {
    /// The stored record and its revision.
    fn alarm(
        &self,
        alarm_key: &str,
    ) -> impl Future<Output = Result<Option<(AlarmRecord, u64)>, LedgerError>> + Send;

    /// Write the record if the stored revision is still `expected` (`None`: not stored yet).
    /// `Ok(false)` when someone else wrote first.
    fn put_alarm(
        &self,
        record: &AlarmRecord,
        expected: Option<u64>,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send;
}

/// Failed or late objects the replica lacks, from the replication ledger.
pub trait BacklogCounter: Send + Sync {
    fn count_backlog(
        &self,
        source_bucket: &str,
        rule_id: Option<&str>,
        destination_bucket: Option<&str>,
    ) -> impl Future<Output = Result<u64, LedgerError>> + Send;
}

/// Lets a handler borrow a port it does not own.
impl<T: AlarmStore> AlarmStore for &T {
    fn alarm(
        &self,
        alarm_key: &str,
    ) -> impl Future<Output = Result<Option<(AlarmRecord, u64)>, LedgerError>> + Send {
        (**self).alarm(alarm_key)
    }
    fn put_alarm(
        &self,
        record: &AlarmRecord,
        expected: Option<u64>,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send {
        (**self).put_alarm(record, expected, expires_at)
    }
}

impl<T: BacklogCounter> BacklogCounter for &T {
    fn count_backlog(
        &self,
        source_bucket: &str,
        rule_id: Option<&str>,
        destination_bucket: Option<&str>,
    ) -> impl Future<Output = Result<u64, LedgerError>> + Send {
        (**self).count_backlog(source_bucket, rule_id, destination_bucket)
    }
}

/// Tunables of the alarm-events function (README's configuration table).
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmSettings {
    pub flap: FlapRule,
    /// The trend covers this many periods of the alarm's metric (bounded to 30 min .. 24 h).
    pub trend_periods: u32,
    pub ledger_ttl: Duration,
    /// How long a decided notification is left to the invocation sending it before a retry
    /// takes it over.
    pub pending_lease: Duration,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        AlarmSettings {
            flap: FlapRule::default(),
            trend_periods: 30,
            ledger_ttl: Duration::days(90),
            pending_lease: Duration::seconds(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AlarmHandlerError {
    /// A store or publish failure: the invocation fails so EventBridge/SNS retries it.
    #[error("{failed} of {total} alarm changes not processed, retry needed: {first_error}")]
    Incomplete {
        failed: usize,
        total: usize,
        first_error: String,
    },
}

#[derive(Debug, thiserror::Error)]
enum ProcessError {
    #[error(transparent)]
    Store(#[from] LedgerError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error("alarm record kept changing under us")]
    Contended,
    #[error("this change's notification is being sent by another invocation; retry to confirm")]
    InFlight,
}

pub struct AlarmMonitor<S, N, M, C> {
    store: S,
    notifier: N,
    metrics: M,
    clock: C,
    settings: AlarmSettings,
}

impl<S: AlarmStore + BacklogCounter, N: Notifier, M: MetricsSource, C: Clock>
    AlarmMonitor<S, N, M, C>
{
    pub fn new(store: S, notifier: N, metrics: M, clock: C, settings: AlarmSettings) -> Self {
        AlarmMonitor {
            store,
            notifier,
            metrics,
            clock,
            settings,
        }
    }

    /// The Lambda entry point. Malformed input is logged and acknowledged (no retry can fix
    /// it); store and publish failures fail the invocation so it is retried.
    pub async fn handle(&self, payload: &str) -> Result<Value, AlarmHandlerError> {
        let (delivery, inputs) = match parse_messages(payload) {
            Ok(inputs) => inputs,
            Err(error) => {
                tracing::error!(%error, "unreadable alarm payload; acknowledged, nothing to retry");
                return Ok(json!({ "rejected": error.to_string() }));
            }
        };
        let total = inputs.len();
        let (mut notified, mut ignored, mut rejected, mut errors) = (0, 0, 0, Vec::new());
        let mut failed_ids = Vec::new();
        for (id, input) in inputs {
            match input {
                Err(error) => {
                    tracing::error!(%error, "malformed alarm change; acknowledged, nothing to retry");
                    rejected += 1;
                }
                Ok(AlarmInput::Ignored(what)) => {
                    tracing::info!(what, "not an alarm state change; acknowledged");
                    ignored += 1;
                }
                Ok(AlarmInput::Change(change)) => {
                    for warning in &change.warnings {
                        tracing::error!(alarm = %Untrusted(&change.alarm_name), warning, "alarm change partly unreadable; processing the rest");
                    }
                    match self.process(&change).await {
                        Ok(sent) => notified += usize::from(sent),
                        Err(error) => {
                            tracing::error!(alarm = %Untrusted(&change.alarm_name), %error, "alarm change not processed; it will be retried");
                            errors.push(format!("{}: {error}", change.alarm_name));
                            failed_ids.push(id);
                        }
                    }
                }
            }
        }
        tracing::info!(
            delivery = delivery.as_str(),
            total,
            notified,
            ignored,
            rejected,
            failed = errors.len(),
            "alarm invocation processed"
        );
        // From SQS only the failed messages come back; other deliveries retry the invocation.
        if delivery == Delivery::Sqs {
            return Ok(envelope::sqs_batch_response(failed_ids));
        }
        if let Some(first_error) = errors.first() {
            return Err(AlarmHandlerError::Incomplete {
                failed: errors.len(),
                total,
                first_error: first_error.clone(),
            });
        }
        Ok(
            json!({ "changes": total, "notified": notified, "ignored": ignored, "rejected": rejected }),
        )
    }

    /// Apply one change; `Ok(true)` when a page or notice went out.
    async fn process(&self, change: &AlarmChange) -> Result<bool, ProcessError> {
        let key = change.alarm_key();
        for _ in 0..8 {
            let stored = self.store.alarm(&key).await?;
            let (record, revision) = match stored {
                Some((record, revision)) => (Some(record), Some(revision)),
                None => (None, None),
            };
            let now = self.clock.now();
            let outbox = PendingNotifications {
                store: &self.store,
                now,
                expires_at: now + self.settings.ledger_ttl,
            };
            let (owed, notification) = match decide(record.as_ref(), change, self.settings.flap) {
                AlarmDecision::Stale => {
                    tracing::info!(alarm = %Untrusted(&change.alarm_name), state = %change.state, "change not newer than the stored state; nothing to do");
                    return Ok(false);
                }
                AlarmDecision::Resend(notification) => {
                    let Some(record) = record else {
                        return Ok(false);
                    };
                    // Someone may be sending it right now (a duplicate delivery racing the
                    // first): only take it over once their lease ran out; until then, retry later.
                    if record
                        .pending_since
                        .is_some_and(|since| now - since < self.settings.pending_lease)
                    {
                        return Err(ProcessError::InFlight);
                    }
                    (
                        AtRevision {
                            item: record,
                            revision,
                        },
                        notification,
                    )
                }
                AlarmDecision::Apply(record) => {
                    let Some(notification) = record.pending else {
                        if !self
                            .store
                            .put_alarm(&record, revision, outbox.expires_at)
                            .await?
                        {
                            continue;
                        }
                        return Ok(false);
                    };
                    // The decided change and its notification's claim: one write.
                    (
                        AtRevision {
                            item: record,
                            revision,
                        },
                        notification,
                    )
                }
            };
            let claim = match outbox.claim(&owed).await? {
                Claimed::Taken(claim) => claim,
                Claimed::Changed(_) => continue,
                Claimed::Held(_) => return Err(ProcessError::InFlight),
            };
            let page = self.page(change, &claim.item, notification).await;
            let delivered = deliver(
                &outbox,
                &self.notifier,
                &claim,
                std::slice::from_ref(&page),
                &change.alarm_name,
            )
            .await;
            if let Some(error) = delivered.error {
                // Released: the retry sends it without waiting for the lease.
                return Err(error.into());
            }
            tracing::info!(alarm = %Untrusted(&change.alarm_name), kind = notification.kind(), subject = page.subject(), "alarm notification sent");
            return Ok(true);
        }
        Err(ProcessError::Contended)
    }

    async fn page(
        &self,
        change: &AlarmChange,
        record: &AlarmRecord,
        notification: AlarmNotification,
    ) -> Page {
        let enrichment = self.enrichment(change).await;
        alarm_page(
            change,
            record,
            notification,
            &enrichment,
            self.settings.flap,
        )
    }

    /// Trend and ledger backlog, read at once and each within [`ENRICHMENT_BUDGET`]: a failure
    /// or a slow answer becomes a line saying why, never a missing or late page.
    async fn enrichment(&self, change: &AlarmChange) -> Vec<String> {
        let (trend, backlog) = futures::join!(
            tokio::time::timeout(ENRICHMENT_BUDGET, self.trend_lines(change)),
            tokio::time::timeout(ENRICHMENT_BUDGET, self.backlog_line(change)),
        );
        let late = |what: &str| {
            format!(
                "{what} unavailable: no answer within {} s",
                ENRICHMENT_BUDGET.as_secs()
            )
        };
        let mut lines = trend.unwrap_or_else(|_| vec![late("Trend")]);
        if let Some(line) = backlog.unwrap_or_else(|_| Some(late("Ledger backlog"))) {
            lines.push(line);
        }
        lines
    }

    async fn trend_lines(&self, change: &AlarmChange) -> Vec<String> {
        let mut lines = Vec::new();
        if change.metrics.is_empty() {
            return lines;
        }
        let period = change
            .primary_metric()
            .and_then(|m| m.period_seconds)
            .unwrap_or(60)
            .max(1);
        let window = Duration::seconds(i64::from(period) * i64::from(self.settings.trend_periods))
            .clamp(Duration::minutes(30), Duration::hours(24));
        let end = change.state_time.max(self.clock.now());
        // Checked: a timestamp at the edge of the representable range must not panic.
        let start = end.checked_sub_signed(window).unwrap_or(end);
        match self
            .metrics
            .recent(&change.region, &change.metrics, start, end)
            .await
        {
            Ok(series) => {
                let trends: Vec<Trend> = series.iter().filter_map(|s| Trend::of(s, 30)).collect();
                if trends.is_empty() {
                    lines.push(format!(
                        "Trend (last {} min): no datapoints",
                        window.num_minutes()
                    ));
                }
                for trend in trends {
                    lines.push(format!(
                        "Trend (last {} min, {} points) {}: last {}, min {}, max {}  {}",
                        window.num_minutes(),
                        trend.points,
                        Untrusted(&trend.label),
                        number(trend.last),
                        number(trend.min),
                        number(trend.max),
                        trend.sparkline
                    ));
                }
            }
            Err(error) => lines.push(format!(
                "Trend unavailable: {}",
                Untrusted(&error.to_string())
            )),
        }
        lines
    }

    async fn backlog_line(&self, change: &AlarmChange) -> Option<String> {
        let (source, rule, destination) = change.replication_dimensions()?;
        Some(
            match self
                .store
                .count_backlog(&source, rule.as_deref(), destination.as_deref())
                .await
            {
                Ok(count) => format!(
                    "Ledger: {count} failed or late object versions recorded for {}{}{}",
                    Untrusted(&source),
                    rule.as_deref()
                        .map(|r| format!(", rule {}", Untrusted(r)))
                        .unwrap_or_default(),
                    destination
                        .as_deref()
                        .map(|d| format!(", destination {}", Untrusted(d)))
                        .unwrap_or_default(),
                ),
                Err(error) => format!(
                    "Ledger backlog unavailable: {}",
                    Untrusted(&error.to_string())
                ),
            },
        )
    }
}

/// How long a page waits for each of its enrichments (trend, backlog count).
const ENRICHMENT_BUDGET: std::time::Duration = std::time::Duration::from_secs(3);

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn duration_words(seconds: i64) -> String {
    let minutes = seconds / 60;
    match (minutes / 60, minutes % 60) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m"),
        (h, m) => format!("{h}h{m:02}m"),
    }
}

fn severity_of(change: &AlarmChange) -> Severity {
    let critical_metric = change.metrics.iter().any(|m: &AlarmMetric| {
        matches!(
            m.name.as_deref(),
            Some("OperationsFailedReplication") | Some("NumberOfCopyJobsFailed")
        )
    });
    if critical_metric || change.composite_rule.is_some() {
        Severity::Critical
    } else {
        Severity::High
    }
}

/// The message on-call receives, built with the same conventions as every other page.
pub fn alarm_page(
    change: &AlarmChange,
    record: &AlarmRecord,
    notification: AlarmNotification,
    enrichment: &[String],
    flap: FlapRule,
) -> Page {
    let name = shorten(&change.alarm_name, 70);
    let (severity, urgency, subject) = match notification {
        AlarmNotification::Opened => {
            let severity = severity_of(change);
            (
                severity,
                Urgency::Page,
                format!("[{}] ALARM: {name}", severity.label()),
            )
        }
        AlarmNotification::Recovered { open_seconds } => (
            Severity::Info,
            Urgency::Notice,
            format!(
                "[INFO] RECOVERED after {}: {name}",
                duration_words(open_seconds)
            ),
        ),
        AlarmNotification::InsufficientData => (
            Severity::Info,
            Urgency::Notice,
            format!("[INFO] INSUFFICIENT_DATA: {name}"),
        ),
        AlarmNotification::Flapping { transitions } => {
            let severity = severity_of(change);
            (
                severity,
                Urgency::Page,
                format!(
                    "[{}] FLAPPING ({transitions} changes in {}m): {name}",
                    severity.label(),
                    flap.window.num_minutes()
                ),
            )
        }
    };
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut body = String::new();
    let previous = change
        .previous_state
        .map(|s| s.as_str())
        .unwrap_or("unknown");
    let _ = writeln!(
        body,
        "CloudWatch alarm {} is {} (was {previous}) since {}.",
        Untrusted(&change.alarm_name),
        change.state,
        time(change.state_time)
    );
    match notification {
        AlarmNotification::Opened if change.is_replication_alarm() => {
            let _ = writeln!(body, "This alarm watches replication: the replica may be falling behind or missing data.");
        }
        AlarmNotification::Recovered { open_seconds } => {
            let opened = change
                .state_time
                .checked_sub_signed(Duration::seconds(open_seconds))
                .unwrap_or(change.state_time);
            let _ = writeln!(
                body,
                "Recovered: the incident was open for {} (since {}).",
                duration_words(open_seconds),
                time(opened)
            );
        }
        AlarmNotification::InsufficientData => {
            let _ = writeln!(body, "Notice: the alarm has too little data to decide. Check that the metric is still published (replication metrics must be enabled on the rule).");
        }
        AlarmNotification::Flapping { transitions } => {
            let _ = writeln!(
                body,
                "The alarm changed state {transitions} times within {} minutes. Further pages for it are held until it stays in one state for {} minutes.",
                flap.window.num_minutes(),
                flap.window.num_minutes()
            );
        }
        _ => {}
    }
    let _ = writeln!(body);
    let _ = writeln!(
        body,
        "Reason:   {}",
        untrusted(&shorten(&change.reason, 600))
    );
    let _ = writeln!(
        body,
        "Account:  {}   Region: {}",
        Untrusted(&change.account),
        Untrusted(&change.region)
    );
    for metric in &change.metrics {
        if let Some(expression) = &metric.expression {
            let _ = writeln!(
                body,
                "Expression {}: {}{}",
                Untrusted(&metric.id),
                Untrusted(expression),
                metric
                    .label
                    .as_deref()
                    .map(|l| format!(" ({})", Untrusted(l)))
                    .unwrap_or_default()
            );
        } else {
            let dimensions: Vec<String> = metric
                .dimensions
                .iter()
                .map(|(k, v)| format!("{}={}", Untrusted(k), Untrusted(v)))
                .collect();
            let _ = writeln!(
                body,
                "Metric {}: {} {} ({}, {} s) {}",
                Untrusted(&metric.id),
                Untrusted(metric.namespace.as_deref().unwrap_or("?")),
                Untrusted(metric.name.as_deref().unwrap_or("?")),
                Untrusted(metric.stat.as_deref().unwrap_or("?")),
                metric.period_seconds.unwrap_or(0),
                dimensions.join(" ")
            );
        }
    }
    if let Some(threshold) = change.threshold {
        let _ = writeln!(body, "Threshold: {}", number(threshold));
    }
    if let Some(rule) = &change.composite_rule {
        let _ = writeln!(body, "Composite rule: {}", Untrusted(rule));
        if !change.triggering_alarms.is_empty() {
            let _ = writeln!(
                body,
                "Triggered by:   {}",
                untrusted(&change.triggering_alarms.join(", "))
            );
        }
    }
    for line in enrichment {
        let _ = writeln!(body, "{line}");
    }
    if let Some(opened) = record.incident_opened_at {
        let _ = writeln!(body, "Incident open since {}.", time(opened));
    }
    let mut page = Page::new(severity, urgency, notification.kind(), &subject, &body)
        .with_attribute("alarm_name", &change.alarm_name)
        .with_attribute("state", change.state.as_str());
    if let Some((source, _, _)) = change.replication_dimensions() {
        page = page.with_source_bucket(&source);
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{
        FixedMetrics, InMemoryLedger, ManualClock, NotificationBuilder, RecordingNotifier,
    };
    use crate::metrics::Series;
    use std::sync::atomic::Ordering;

    macro_rules! fixture {
        ($path:literal) => {
            include_str!(concat!("../../../events/alarm/", $path))
        };
    }

    struct World {
        ledger: InMemoryLedger,
        notifier: RecordingNotifier,
        metrics: FixedMetrics,
        clock: ManualClock,
    }

    impl World {
        fn new(metrics: FixedMetrics) -> Self {
            World {
                ledger: InMemoryLedger::default(),
                notifier: RecordingNotifier::default(),
                metrics,
                clock: ManualClock::new(Utc::now()),
            }
        }
        fn monitor(
            &self,
        ) -> AlarmMonitor<&InMemoryLedger, &RecordingNotifier, &FixedMetrics, &ManualClock>
        {
            AlarmMonitor::new(
                &self.ledger,
                &self.notifier,
                &self.metrics,
                &self.clock,
                AlarmSettings::default(),
            )
        }
    }

    fn latency_series() -> FixedMetrics {
        let t0 = Utc::now();
        FixedMetrics {
            series: vec![Series {
                id: "m1".into(),
                label: "ReplicationLatency".into(),
                points: (0..10)
                    .map(|i| (t0 + Duration::minutes(i), f64::from(i as u32 * 130)))
                    .collect(),
            }],
            // The fixture's latency alarm lives in the destination's region, with its metric.
            region: Some("us-west-2".into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn alarm_pages_with_trend_and_ledger_backlog_then_recovers() {
        let world = World::new(latency_series());
        // Two failed objects for the alarm's source bucket and rule are in the ledger.
        let builder = NotificationBuilder::new(
            "replmon-demo-source",
            "replmon-demo-replica",
            "replicate-everything",
        );
        let bodies: Vec<String> = (0..2)
            .map(|i| {
                NotificationBuilder::notification(vec![builder.record(
                    crate::event::ReplicationEventKind::OperationFailedReplication,
                    &format!("k{i}"),
                    "v",
                    Some("DstBucketNotFound"),
                )])
            })
            .collect();
        let replication = crate::replication::ReplicationMonitor::new(
            &world.ledger,
            RecordingNotifier::default(),
            &world.clock,
            Default::default(),
        );
        replication
            .handle_value(&NotificationBuilder::sqs_event(&bodies))
            .await
            .unwrap();

        let monitor = world.monitor();
        monitor.handle(fixture!("metric-alarm.json")).await.unwrap();
        let pages = world.notifier.pages();
        assert_eq!(pages.len(), 1);
        let page = &pages[0];
        assert!(
            page.subject()
                .starts_with("[HIGH] ALARM: replmon-demo-source-replication-latency"),
            "{}",
            page.subject()
        );
        assert!(
            page.body().contains("last 1170, min 0, max 1170"),
            "{}",
            page.body()
        );
        // The datapoints exist only where the alarm is: asked anywhere else, the page would say
        // "no datapoints".
        assert_eq!(
            *world.metrics.asked.lock().unwrap(),
            vec!["us-west-2".to_owned()]
        );
        assert!(
            page.body()
                .contains("Ledger: 2 failed or late object versions"),
            "{}",
            page.body()
        );
        let attributes = page.attributes();
        assert!(attributes.contains(&("kind".into(), "alarm".into())));
        assert!(attributes.contains(&(
            "alarm_name".into(),
            "replmon-demo-source-replication-latency".into()
        )));
        assert!(attributes.contains(&("source_bucket".into(), "replmon-demo-source".into())));

        monitor.handle(fixture!("metric-ok.json")).await.unwrap();
        let pages = world.notifier.pages();
        assert_eq!(pages.len(), 2);
        assert!(
            pages[1].subject().starts_with("[INFO] RECOVERED after 20m"),
            "{}",
            pages[1].subject()
        );
        assert_eq!(pages[1].urgency, Urgency::Notice);
    }

    #[tokio::test]
    async fn each_trend_is_read_in_the_region_of_its_alarm() {
        // Failures are published in the source's region, latency in the destination's: the same
        // monitor asks each alarm's own region, and a trend asked elsewhere comes back empty.
        let world = World::new(latency_series());
        let monitor = world.monitor();
        monitor
            .handle(fixture!("failed-operations-alarm.json"))
            .await
            .unwrap();
        monitor.handle(fixture!("metric-alarm.json")).await.unwrap();
        assert_eq!(
            *world.metrics.asked.lock().unwrap(),
            vec!["us-east-1".to_owned(), "us-west-2".to_owned()]
        );
        let pages = world.notifier.pages();
        assert_eq!(pages.len(), 2);
        assert!(
            pages[0].body().contains("no datapoints"),
            "{}",
            pages[0].body()
        );
        assert!(pages[1].body().contains("max 1170"), "{}", pages[1].body());
    }

    #[tokio::test]
    async fn enrichment_failure_never_blocks_the_page() {
        let world = World::new(FixedMetrics {
            fail: true,
            ..Default::default()
        });
        world
            .monitor()
            .handle(fixture!("metric-alarm.json"))
            .await
            .unwrap();
        let pages = world.notifier.pages();
        assert_eq!(pages.len(), 1);
        assert!(
            pages[0].body().contains("Trend unavailable"),
            "{}",
            pages[0].body()
        );
    }

    /// A CloudWatch that answers after a minute must not hold the page: it goes out within
    /// the enrichment budget, saying the trend did not come.
    #[tokio::test(start_paused = true)]
    async fn a_slow_trend_read_is_cut_short_and_the_page_says_so() {
        let world = World::new(FixedMetrics {
            delay: Some(std::time::Duration::from_secs(60)),
            ..latency_series()
        });
        let started = tokio::time::Instant::now();
        world
            .monitor()
            .handle(fixture!("metric-alarm.json"))
            .await
            .unwrap();
        assert!(started.elapsed() <= ENRICHMENT_BUDGET + std::time::Duration::from_millis(500));
        let pages = world.notifier.pages();
        assert_eq!(pages.len(), 1);
        assert!(
            pages[0]
                .body()
                .contains("Trend unavailable: no answer within 3 s"),
            "{}",
            pages[0].body()
        );
    }

    #[tokio::test]
    async fn failed_publish_fails_the_invocation_and_the_retry_pages_once() {
        let world = World::new(latency_series());
        let monitor = world.monitor();
        world.notifier.fail_publishes.store(1, Ordering::SeqCst);
        assert!(monitor.handle(fixture!("metric-alarm.json")).await.is_err());
        assert!(world.notifier.pages().is_empty());
        // The failed attempt released its claim: the retry sends at once, and only once.
        monitor.handle(fixture!("metric-alarm.json")).await.unwrap();
        monitor.handle(fixture!("metric-alarm.json")).await.unwrap();
        assert_eq!(world.notifier.pages().len(), 1);
    }

    /// An invocation that claimed the notification and died (nothing released it): within its
    /// lease it may still be sending, so the retry waits; after it, the retry sends once.
    #[tokio::test]
    async fn a_claim_left_by_a_dead_invocation_is_taken_over_after_its_lease() {
        let world = World::new(latency_series());
        let monitor = world.monitor();
        world.notifier.fail_publishes.store(1, Ordering::SeqCst);
        assert!(monitor.handle(fixture!("metric-alarm.json")).await.is_err());
        let key = world.ledger.alarm_keys().remove(0);
        let (mut record, revision) = world.ledger.alarm(&key).await.unwrap().unwrap();
        assert!(record.pending.is_some() && record.pending_since.is_none());
        record.pending_since = Some(world.clock.now());
        let expires = world.clock.now() + Duration::days(1);
        assert!(world
            .ledger
            .put_alarm(&record, Some(revision), expires)
            .await
            .unwrap());
        let error = monitor.handle(fixture!("metric-alarm.json")).await;
        assert!(error.is_err_and(|e| e.to_string().contains("another invocation")));
        assert!(world.notifier.pages().is_empty());
        world.clock.advance(Duration::seconds(61));
        monitor.handle(fixture!("metric-alarm.json")).await.unwrap();
        monitor.handle(fixture!("metric-alarm.json")).await.unwrap();
        assert_eq!(world.notifier.pages().len(), 1);
    }

    /// Alarm notifications through an SQS queue subscribed to the alarm topic, raw and wrapped
    /// in SNS's notification: each message is its own retry unit, named in `batchItemFailures`
    /// when its page could not go out, and the retry pages once.
    #[tokio::test]
    async fn sqs_deliveries_retry_only_the_failed_message() {
        let world = World::new(latency_series());
        let monitor = world.monitor();
        let sns: Value = serde_json::from_str(fixture!("sns-alarm.json")).unwrap();
        let alarm_json = sns["Records"][0]["Sns"]["Message"].as_str().unwrap();
        let ok_json = {
            let ok: Value = serde_json::from_str(fixture!("sns-ok.json")).unwrap();
            ok["Records"][0]["Sns"]["Message"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let wrapped =
            json!({"Type": "Notification", "MessageId": "n-1", "Message": alarm_json}).to_string();
        let record = |id: &str, body: &str| {
            json!({"messageId": id, "eventSource": "aws:sqs", "body": body,
                   "attributes": {"ApproximateReceiveCount": "1"}})
        };
        let event = json!({"Records": [record("raw", alarm_json), record("wrapped", &wrapped)]})
            .to_string();
        world.notifier.fail_publishes.store(1, Ordering::SeqCst);
        let response = monitor.handle(&event).await.expect("an SQS batch answers");
        // The first change's page failed and its claim was released; the second message (the
        // same change, wrapped) sends it. Only the failed message goes back, by its own id, and
        // the batch does not fail.
        assert_eq!(
            response,
            json!({"batchItemFailures": [{"itemIdentifier": "raw"}]})
        );
        assert_eq!(
            world.notifier.pages().len(),
            1,
            "paged by the second message"
        );
        let response = monitor.handle(&event).await.expect("answers");
        assert_eq!(response, json!({"batchItemFailures": []}));
        assert_eq!(world.notifier.pages().len(), 1, "paged once");
        let recovered = json!({"Records": [record("ok", &ok_json)]}).to_string();
        monitor.handle(&recovered).await.expect("answers");
        assert_eq!(world.notifier.pages().len(), 2, "the recovery notice");
    }

    #[tokio::test]
    async fn flapping_sequence_pages_once_then_holds() {
        let world = World::new(latency_series());
        let monitor = world.monitor();
        for payload in [
            fixture!("flapping/01.json"),
            fixture!("flapping/02.json"),
            fixture!("flapping/03.json"),
            fixture!("flapping/04.json"),
            fixture!("flapping/05.json"),
            fixture!("flapping/06.json"),
            fixture!("flapping/07.json"),
            fixture!("flapping/08.json"),
        ] {
            monitor.handle(payload).await.unwrap();
        }
        let kinds: Vec<String> = world
            .notifier
            .pages()
            .iter()
            .map(|p| p.kind.clone())
            .collect();
        assert_eq!(
            kinds,
            [
                "alarm",
                "alarm-recovered",
                "alarm",
                "alarm-recovered",
                "alarm-flapping"
            ]
        );
    }

    #[tokio::test]
    async fn extreme_timestamps_do_not_panic() {
        let world = World::new(latency_series());
        let monitor = world.monitor();
        for timestamp in [
            "-262143-01-01T00:00:00Z",
            "+262142-12-31T23:59:59Z",
            "0001-01-01T00:00:00.000+0000",
        ] {
            let payload =
                fixture!("metric-alarm.json").replace("2026-11-23T03:00:00.123+0000", timestamp);
            let _ = monitor.handle(&payload).await;
        }
    }

    #[tokio::test]
    async fn older_change_after_newer_is_ignored() {
        let world = World::new(latency_series());
        let monitor = world.monitor();
        monitor
            .handle(fixture!("out-of-order/newer-ok.json"))
            .await
            .unwrap();
        monitor
            .handle(fixture!("out-of-order/older-alarm.json"))
            .await
            .unwrap();
        assert!(world.notifier.pages().is_empty());
    }

    #[tokio::test]
    async fn every_shape_parses_and_bad_input_is_acknowledged() {
        let world = World::new(latency_series());
        let monitor = world.monitor();
        for payload in [
            fixture!("metric-math-alarm.json"),
            fixture!("composite-alarm.json"),
            fixture!("sns-alarm.json"),
            fixture!("rds-lag-alarm.json"),
            fixture!("non-replication-alarm.json"),
            fixture!("metric-insufficient-data.json"),
        ] {
            monitor.handle(payload).await.unwrap();
        }
        let pages = world.notifier.pages();
        assert_eq!(
            pages.len(),
            6,
            "{:?}",
            pages
                .iter()
                .map(|p| p.subject().to_owned())
                .collect::<Vec<_>>()
        );
        assert!(
            pages[1].body().contains("Composite rule"),
            "{}",
            pages[1].body()
        );
        assert!(pages[1].subject().starts_with("[CRITICAL]"));
        assert!(
            pages[2]
                .subject()
                .starts_with("[CRITICAL] ALARM: replmon-demo-source-failed-operations"),
            "{}",
            pages[2].subject()
        );
        for payload in [
            fixture!("bad/unknown-detail-type.json"),
            fixture!("bad/missing-state.json"),
            fixture!("bad/unknown-state-value.json"),
            "{\"truncated\": ",
        ] {
            assert!(monitor.handle(payload).await.is_ok());
        }
        assert_eq!(world.notifier.pages().len(), 6);
    }
}
