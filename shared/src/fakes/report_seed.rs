//! A month of replication history for testing `replmon report`: canary probes of rules that
//! run all month, start mid-month and stop mid-month (with an outage, slow and unverifiable
//! probes), and S3 events around the month's edges. [`ReportSeed::expected`] computes what
//! the report must say straight from the raw probes and events, sharing no code with the
//! report (no histogram, no roll-up): the tests compare the two.

use super::{NotificationBuilder, SplitMix64};
use crate::canary::probe::{ProbeRecord, ProbeStatus};
use crate::canary::rollup::DailyRollup;
use crate::event::ReplicationEventKind;
use chrono::{DateTime, Duration, TimeZone, Utc};
use std::collections::BTreeMap;

/// The canary's latency threshold in the seed: slow above 10 minutes, so "within the
/// threshold" and "within 15 minutes" differ.
pub const SEED_THRESHOLD_MS: u64 = 600_000;

/// One S3 replication event of the seed.
#[derive(Debug, Clone)]
pub struct SeededEvent {
    pub at: DateTime<Utc>,
    pub kind: ReplicationEventKind,
    pub rule: String,
    pub destination: String,
    pub key: String,
    pub version: String,
    pub reason: Option<String>,
    pub replication_seconds: Option<u64>,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct ReportSeed {
    pub source: String,
    pub probes: Vec<ProbeRecord>,
    pub events: Vec<SeededEvent>,
}

/// What the report must say for one rule, computed from the raw seed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expected {
    /// arrived, slow, missing, stalled, failed, cannot verify
    pub outcomes: [u64; 6],
    pub latencies: Vec<u64>,
    pub within_target: u64,
    pub within_threshold: u64,
    pub verified: u64,
    pub blind_seconds: Option<i64>,
    pub failed_by_reason: BTreeMap<String, u64>,
    pub missed_threshold: u64,
    pub replicated_after_threshold: u64,
    pub missing_at_end: u64,
    pub bytes_at_end: u64,
}

impl Expected {
    /// The exact nearest-rank percentile.
    pub fn percentile(&self, q: f64) -> Option<u64> {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        sorted.get(rank - 1).copied()
    }
}

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .unwrap_or_default()
}

/// (rule, destination, first slot, end) of the probed rules.
fn probed_rules<'a>(
    a: &'a str,
    b: &'a str,
) -> [(&'static str, &'a str, DateTime<Utc>, DateTime<Utc>); 3] {
    [
        (
            "whole-month",
            a,
            at(2026, 10, 30, 0, 0),
            at(2026, 12, 2, 0, 0),
        ),
        (
            "starts-mid",
            b,
            at(2026, 11, 15, 12, 0),
            at(2026, 12, 2, 0, 0),
        ),
        (
            "stops-mid",
            a,
            at(2026, 10, 30, 0, 0),
            at(2026, 11, 10, 6, 0),
        ),
    ]
}

/// A probe the canary resolved: `status` at `resolved_at`, with its latency if it replicated.
pub fn resolved_probe(
    source: &str,
    destination: &str,
    rule: &str,
    put_at: DateTime<Utc>,
    status: ProbeStatus,
    latency_ms: Option<u64>,
    resolved_at: DateTime<Utc>,
) -> ProbeRecord {
    ProbeRecord {
        source_bucket: source.to_owned(),
        destination_bucket: destination.to_owned(),
        destination_region: None,
        rule_id: rule.to_owned(),
        run_id: put_at.timestamp().to_string(),
        key: format!("replmon-canary/{rule}/{}", put_at.timestamp()),
        version_id: None,
        put_at,
        deadline: put_at + Duration::minutes(15),
        status,
        latency_ms,
        latency_min_ms: None,
        latency_max_ms: None,
        last_miss_at: None,
        head_requests: 1,
        resolved_at: Some(resolved_at),
        detail: None,
        source_status: None,
        source_region: None,
        cleaned: true,
        counted: false,
        rolled_up: false,
        cleanup_attempts: 0,
        kms_refusal: None,
    }
}

impl ReportSeed {
    /// November 2026 (and its edges) for `source`, replicating to `a` and `b`.
    pub fn november(source: &str, a: &str, b: &str) -> Self {
        let mut rng = SplitMix64(0x005e_ed20_2611);
        let mut probes = Vec::new();
        for (rule, destination, first, end) in probed_rules(a, b) {
            let mut slot = first;
            while slot < end {
                let put_at = slot
                    + Duration::seconds((rng.next_u64() % 20) as i64)
                    + Duration::milliseconds((rng.next_u64() % 1000) as i64);
                // Two outages: one on Nov 20, one across the month's start.
                let outage = rule == "whole-month"
                    && ((put_at >= at(2026, 11, 20, 2, 0) && put_at < at(2026, 11, 20, 7, 0))
                        || (put_at >= at(2026, 10, 31, 22, 0) && put_at < at(2026, 11, 1, 2, 0)));
                let roll = rng.next_u64() % 1000;
                let draw = rng.next_u64();
                let (status, latency) = if outage {
                    (ProbeStatus::Missing, None)
                } else if roll < 5 {
                    (ProbeStatus::Unverifiable, None)
                } else if roll < 7 {
                    (ProbeStatus::Failed, None)
                } else if roll < 30 {
                    (ProbeStatus::Slow, Some(620_000 + draw % 270_000))
                } else if roll < 40 {
                    (ProbeStatus::Slow, Some(950_000 + draw % 1_450_000))
                } else {
                    // A long tail: the square of a uniform draw.
                    let u = (draw % 10_000) as f64 / 10_000.0;
                    (
                        ProbeStatus::Arrived,
                        Some(1_500 + (u * u * 120_000.0) as u64),
                    )
                };
                let resolved_at = put_at
                    + latency.map_or(Duration::minutes(15), |ms| {
                        Duration::milliseconds(ms as i64)
                    });
                probes.push(resolved_probe(
                    source,
                    destination,
                    rule,
                    put_at,
                    status,
                    latency,
                    resolved_at,
                ));
                slot += Duration::minutes(30);
            }
        }
        let mut events = Vec::new();
        let mut event = |at: DateTime<Utc>,
                         kind: ReplicationEventKind,
                         rule: &str,
                         destination: &str,
                         key: String,
                         reason: Option<&str>,
                         replication_seconds: Option<u64>| {
            events.push(SeededEvent {
                at,
                kind,
                rule: rule.to_owned(),
                destination: destination.to_owned(),
                key,
                version: "v1".into(),
                reason: reason.map(str::to_owned),
                replication_seconds,
                size: 1_000_000,
            })
        };
        use ReplicationEventKind::*;
        let put_denied = Some("DstPutObjectNotPermitted");
        for i in 0..3 {
            event(
                at(2026, 10, 31, 10, i),
                OperationFailedReplication,
                "whole-month",
                a,
                format!("before/{i}"),
                put_denied,
                None,
            );
        }
        for i in 0..5 {
            event(
                at(2026, 11, 3, 4, i),
                OperationFailedReplication,
                "whole-month",
                a,
                format!("denied/{i}"),
                put_denied,
                None,
            );
        }
        for i in 0..2 {
            event(
                at(2026, 11, 18, 9, i),
                OperationFailedReplication,
                "whole-month",
                a,
                format!("unreadable/{i}"),
                Some("SrcGetObjectNotPermitted"),
                None,
            );
        }
        event(
            at(2026, 11, 12, 1, 0),
            OperationFailedReplication,
            "whole-month",
            a,
            "replmon-canary/whole-month/123".into(),
            put_denied,
            None,
        );
        for i in 0..4 {
            event(
                at(2026, 11, 25, 8, i),
                OperationMissedThreshold,
                "whole-month",
                a,
                format!("late/{i}"),
                None,
                None,
            );
        }
        // A late version of another rule that arrives in the month, then one in December that
        // never does: the rule's late incident was resolved at the month's end, open now.
        event(
            at(2026, 11, 20, 10, 0),
            OperationMissedThreshold,
            "starts-mid",
            b,
            "slow/0".into(),
            None,
            None,
        );
        event(
            at(2026, 11, 20, 10, 40),
            OperationReplicatedAfterThreshold,
            "starts-mid",
            b,
            "slow/0".into(),
            None,
            Some(2_400),
        );
        event(
            at(2026, 12, 2, 10, 0),
            OperationMissedThreshold,
            "starts-mid",
            b,
            "slow/1".into(),
            None,
            None,
        );
        for (i, seconds) in [1_200u64, 1_500, 2_000].into_iter().enumerate() {
            event(
                at(2026, 11, 25, 8, 30 + i as u32),
                OperationReplicatedAfterThreshold,
                "whole-month",
                a,
                format!("late/{i}"),
                None,
                Some(seconds),
            );
        }
        for i in 0..2 {
            event(
                at(2026, 12, 1, 5, i),
                OperationFailedReplication,
                "whole-month",
                a,
                format!("after/{i}"),
                put_denied,
                None,
            );
        }
        for i in 0..6 {
            event(
                at(2026, 11, 8, 14, i),
                OperationFailedReplication,
                "events-only",
                b,
                format!("keyless/{i}"),
                Some("DstKmsKeyNotFound"),
                None,
            );
        }
        events.sort_by_key(|e| e.at);
        ReportSeed {
            source: source.to_owned(),
            probes,
            events,
        }
    }

    /// The canary's daily roll-ups of the seed's probes, counted the way the canary counts.
    pub fn rollups(&self) -> Vec<DailyRollup> {
        let mut days: BTreeMap<(chrono::NaiveDate, String, String), DailyRollup> = BTreeMap::new();
        for probe in &self.probes {
            let day = DailyRollup::day_of(probe);
            let rollup = days
                .entry((day, probe.destination_bucket.clone(), probe.rule_id.clone()))
                .or_insert_with(|| {
                    DailyRollup::new(
                        &probe.source_bucket,
                        &probe.destination_bucket,
                        &probe.rule_id,
                        day,
                    )
                });
            rollup.add(probe);
            rollup.threshold_ms = SEED_THRESHOLD_MS;
            rollup.bad_probes_to_page = 2;
        }
        days.into_values().collect()
    }

    /// Each event as the notification S3 sends, in time order.
    pub fn notifications(&self) -> Vec<(DateTime<Utc>, String)> {
        self.events
            .iter()
            .map(|e| {
                let mut builder = NotificationBuilder::new(&self.source, &e.destination, &e.rule);
                builder.event_time = e.at;
                let mut record = builder.record(e.kind, &e.key, &e.version, e.reason.as_deref());
                record["s3"]["object"]["size"] = e.size.into();
                if let Some(seconds) = e.replication_seconds {
                    record["replicationEventData"]["replicationTime"] = seconds.into();
                }
                (e.at, NotificationBuilder::notification(vec![record]))
            })
            .collect()
    }

    /// What the report must say for `rule` -> `destination` over `[from, to)`, the backlog
    /// counted at `end`.
    pub fn expected(
        &self,
        rule: &str,
        destination: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Expected {
        let mut out = Expected::default();
        let mut probes: Vec<&ProbeRecord> = self
            .probes
            .iter()
            .filter(|p| p.rule_id == rule && p.destination_bucket == destination)
            .filter(|p| p.put_at >= from && p.put_at < to)
            .collect();
        probes.sort_by_key(|p| p.put_at);
        for p in &probes {
            let slot = match p.status {
                ProbeStatus::Arrived => 0,
                ProbeStatus::Slow => 1,
                ProbeStatus::Missing => 2,
                ProbeStatus::Stalled => 3,
                ProbeStatus::Failed => 4,
                _ => 5,
            };
            out.outcomes[slot] += 1;
            if let Some(ms) = p.latency_ms {
                out.latencies.push(ms);
                out.within_target += u64::from(ms <= 900_000);
            }
        }
        out.within_threshold = out.outcomes[0];
        out.verified = out.outcomes[..5].iter().sum();
        // Blind: the longest stretch between probes that replicated, from the first probe's
        // write to the last probe's outcome.
        if let (Some(first), Some(last)) = (
            probes.first(),
            probes.iter().filter_map(|p| p.resolved_at).max(),
        ) {
            let mut previous = first.put_at;
            let mut longest = 0;
            for p in probes.iter().filter(|p| p.latency_ms.is_some()) {
                longest = longest.max((p.put_at - previous).num_seconds());
                previous = p.put_at;
            }
            longest = longest.max((last - previous).num_seconds());
            out.blind_seconds = Some(longest);
        }
        let mut keys: BTreeMap<&str, Vec<&SeededEvent>> = BTreeMap::new();
        for e in self.events.iter().filter(|e| {
            e.rule == rule && e.destination == destination && !e.key.starts_with("replmon-canary/")
        }) {
            keys.entry(&e.key).or_default().push(e);
            let inside = e.at >= from && e.at < to;
            match e.kind {
                ReplicationEventKind::OperationFailedReplication if inside => {
                    *out.failed_by_reason
                        .entry(e.reason.clone().unwrap_or_default())
                        .or_default() += 1;
                }
                ReplicationEventKind::OperationMissedThreshold if inside => {
                    out.missed_threshold += 1
                }
                ReplicationEventKind::OperationReplicatedAfterThreshold if inside => {
                    out.replicated_after_threshold += 1
                }
                _ => {}
            }
        }
        for events in keys.values() {
            let seen =
                |kind: ReplicationEventKind| events.iter().any(|e| e.kind == kind && e.at <= end);
            let missing = seen(ReplicationEventKind::OperationFailedReplication)
                || (seen(ReplicationEventKind::OperationMissedThreshold)
                    && !seen(ReplicationEventKind::OperationReplicatedAfterThreshold));
            if missing {
                out.missing_at_end += 1;
                out.bytes_at_end += events[0].size;
            }
        }
        out
    }
}
