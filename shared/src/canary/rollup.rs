//! The canary's daily roll-up per rule and destination: what `replmon report` reads instead of
//! every probe. One item per day holds the outcome counts, a fixed log-scale latency histogram
//! (mergeable, so percentiles over any range come from summed buckets) and one short mark per
//! probe (for blind time and the canary's incident timeline). A year's report reads about 365
//! items per rule, whatever the probe rate.
//!
//! Counting is idempotent by the marks: a probe already marked in its day is not added again,
//! and the roll-up is written (revision-guarded) before the rule's health counts the probe, so a
//! run that fails between the two writes leaves the probe to the next run, which marks nothing
//! twice.

use super::probe::{ProbeRecord, ProbeStatus};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Replication Time Control's target: 99.99% of objects within 15 minutes.
pub const TARGET_MS: u64 = 15 * 60 * 1000;

/// Histogram buckets per doubling of latency: bucket `i` holds latencies in
/// `[2^(i/16), 2^((i+1)/16))` ms, so a bucket is 4.4% wide.
pub const BUCKETS_PER_OCTAVE: u32 = 16;

/// How far a percentile read from the histogram can be from the exact one: half a bucket, as a
/// share (the bucket's geometric middle is reported).
pub fn histogram_error() -> f64 {
    2f64.powf(0.5 / BUCKETS_PER_OCTAVE as f64) - 1.0
}

/// Latencies in fixed log-scale buckets, plus the exact maximum. Sparse: only buckets that hold
/// a probe are kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyHistogram {
    #[serde(default)]
    pub buckets: BTreeMap<u16, u64>,
    #[serde(default)]
    pub count: u64,
    #[serde(default)]
    pub max_ms: u64,
}

impl LatencyHistogram {
    pub fn bucket_of(ms: u64) -> u16 {
        if ms <= 1 {
            return 0;
        }
        let index = ((ms as f64).log2() * BUCKETS_PER_OCTAVE as f64).floor();
        index.clamp(0.0, u16::MAX as f64) as u16
    }

    /// The bucket's bounds in ms: `[lower, upper)`.
    pub fn bounds(bucket: u16) -> (f64, f64) {
        let per = BUCKETS_PER_OCTAVE as f64;
        let lower = if bucket == 0 {
            0.0
        } else {
            2f64.powf(bucket as f64 / per)
        };
        (lower, 2f64.powf((bucket as f64 + 1.0) / per))
    }

    /// The value a percentile falling in this bucket is reported as: its geometric middle.
    pub fn middle(bucket: u16) -> f64 {
        2f64.powf((bucket as f64 + 0.5) / BUCKETS_PER_OCTAVE as f64)
    }

    pub fn add(&mut self, ms: u64) {
        *self.buckets.entry(Self::bucket_of(ms)).or_default() += 1;
        self.count += 1;
        self.max_ms = self.max_ms.max(ms);
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (bucket, count) in &other.buckets {
            *self.buckets.entry(*bucket).or_default() += count;
        }
        self.count += other.count;
        self.max_ms = self.max_ms.max(other.max_ms);
    }

    /// The nearest-rank percentile (`q` in 0..=1), within [`histogram_error`] of the exact one;
    /// never above the exact maximum.
    pub fn percentile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        if rank == self.count {
            return Some(self.max_ms);
        }
        let mut seen = 0;
        for (bucket, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                let value = Self::middle(*bucket).round() as u64;
                return Some(value.min(self.max_ms));
            }
        }
        Some(self.max_ms)
    }
}

/// Counted probes by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCounts {
    #[serde(default)]
    pub arrived: u64,
    #[serde(default)]
    pub slow: u64,
    #[serde(default)]
    pub missing: u64,
    #[serde(default)]
    pub stalled: u64,
    #[serde(default)]
    pub failed: u64,
    #[serde(default)]
    pub cannot_verify: u64,
}

impl OutcomeCounts {
    pub fn add(&mut self, status: ProbeStatus) {
        match status {
            ProbeStatus::Pending => {}
            ProbeStatus::Arrived => self.arrived += 1,
            ProbeStatus::Slow => self.slow += 1,
            ProbeStatus::Missing => self.missing += 1,
            ProbeStatus::Stalled => self.stalled += 1,
            ProbeStatus::Failed => self.failed += 1,
            ProbeStatus::Unverifiable => self.cannot_verify += 1,
        }
    }

    pub fn merge(&mut self, other: &OutcomeCounts) {
        self.arrived += other.arrived;
        self.slow += other.slow;
        self.missing += other.missing;
        self.stalled += other.stalled;
        self.failed += other.failed;
        self.cannot_verify += other.cannot_verify;
    }

    pub fn total(&self) -> u64 {
        self.arrived + self.slow + self.missing + self.stalled + self.failed + self.cannot_verify
    }

    /// Probes that say whether replication happened (every outcome but "cannot verify").
    pub fn verified(&self) -> u64 {
        self.total() - self.cannot_verify
    }
}

/// One counted probe, kept short (see its `String` form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct ProbeMark {
    pub put_ms: i64,
    pub status: ProbeStatus,
    pub latency_ms: Option<u64>,
    pub resolved_ms: i64,
}

impl ProbeMark {
    pub fn put_at(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.put_ms)
            .single()
            .unwrap_or_default()
    }

    pub fn resolved_at(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.resolved_ms)
            .single()
            .unwrap_or_default()
    }

    /// The probe's copy reached the replica (in time or late).
    pub fn replicated(&self) -> bool {
        matches!(self.status, ProbeStatus::Arrived | ProbeStatus::Slow)
    }
}

/// The one-letter code of an outcome in a mark (upper case: never a base-36 digit).
fn letter(status: ProbeStatus) -> char {
    match status {
        ProbeStatus::Pending => 'P',
        ProbeStatus::Arrived => 'A',
        ProbeStatus::Slow => 'S',
        ProbeStatus::Missing => 'M',
        ProbeStatus::Stalled => 'T',
        ProbeStatus::Failed => 'F',
        ProbeStatus::Unverifiable => 'U',
    }
}

fn from_letter(c: char) -> Option<ProbeStatus> {
    ProbeStatus::ALL
        .into_iter()
        .find(|status| letter(*status) == c)
}

/// A number in base 36 (lower case), `-` in front when negative.
fn base36(n: i64) -> String {
    let mut digits = Vec::new();
    let mut rest = n.unsigned_abs();
    loop {
        digits.push(char::from_digit((rest % 36) as u32, 36).unwrap_or('0'));
        rest /= 36;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        digits.push('-');
    }
    digits.iter().rev().collect()
}

fn from_base36(text: &str) -> Option<i64> {
    match text.strip_prefix('-') {
        Some(digits) => i64::from_str_radix(digits, 36).ok().map(|n| -n),
        None => i64::from_str_radix(text, 36).ok(),
    }
}

/// `<put ms><outcome letter><latency ms>.<resolved - put ms>`, numbers in base 36 (a
/// probe's mark is about 16 characters: a roll-up holds one per probe).
impl From<ProbeMark> for String {
    fn from(mark: ProbeMark) -> String {
        let latency = mark
            .latency_ms
            .map(|ms| base36(i64::try_from(ms).unwrap_or(i64::MAX)))
            .unwrap_or_default();
        format!(
            "{}{}{latency}.{}",
            base36(mark.put_ms),
            letter(mark.status),
            base36(mark.resolved_ms.saturating_sub(mark.put_ms))
        )
    }
}

impl TryFrom<String> for ProbeMark {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let bad = || format!("{text:?} is not a probe mark");
        let at = text
            .find(|c: char| c.is_ascii_uppercase())
            .ok_or_else(bad)?;
        let status = text[at..]
            .chars()
            .next()
            .and_then(from_letter)
            .ok_or_else(bad)?;
        let put_ms = from_base36(&text[..at]).ok_or_else(bad)?;
        let (latency, resolved) = text[at + 1..].split_once('.').ok_or_else(bad)?;
        let latency_ms = match latency {
            "" => None,
            ms => Some(
                from_base36(ms)
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(bad)?,
            ),
        };
        let resolved_ms = put_ms.saturating_add(from_base36(resolved).ok_or_else(bad)?);
        Ok(ProbeMark {
            put_ms,
            status,
            latency_ms,
            resolved_ms,
        })
    }
}

/// A roll-up's marks as one string, comma-separated: one attribute, not a list of hundreds.
mod marks_text {
    use super::ProbeMark;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(marks: &[ProbeMark], out: S) -> Result<S::Ok, S::Error> {
        let text: Vec<String> = marks.iter().map(|m| String::from(*m)).collect();
        out.serialize_str(&text.join(","))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<Vec<ProbeMark>, D::Error> {
        let text = String::deserialize(input)?;
        text.split(',')
            .filter(|mark| !mark.is_empty())
            .map(|mark| ProbeMark::try_from(mark.to_owned()).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// One day (UTC, by the probe's write time) of one rule and destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyRollup {
    pub source_bucket: String,
    pub destination_bucket: String,
    pub rule_id: String,
    pub day: NaiveDate,
    /// The canary's latency threshold when it last counted into this day (slow above it).
    #[serde(default)]
    pub threshold_ms: u64,
    /// Bad probes in a row that page (the canary's setting), for the incident timeline.
    #[serde(default)]
    pub bad_probes_to_page: u32,
    #[serde(default)]
    pub outcomes: OutcomeCounts,
    /// Probes that replicated within 15 minutes ([`TARGET_MS`]).
    #[serde(default)]
    pub within_target: u64,
    /// Latencies of the probes that replicated.
    #[serde(default)]
    pub latency: LatencyHistogram,
    /// Every counted probe, in write order.
    #[serde(default, with = "marks_text")]
    pub marks: Vec<ProbeMark>,
}

impl DailyRollup {
    pub fn new(source: &str, destination: &str, rule: &str, day: NaiveDate) -> Self {
        DailyRollup {
            source_bucket: source.to_owned(),
            destination_bucket: destination.to_owned(),
            rule_id: rule.to_owned(),
            day,
            threshold_ms: 0,
            bad_probes_to_page: 0,
            outcomes: OutcomeCounts::default(),
            within_target: 0,
            latency: LatencyHistogram::default(),
            marks: Vec::new(),
        }
    }

    /// The day a probe counts in: its write time's UTC date.
    pub fn day_of(probe: &ProbeRecord) -> NaiveDate {
        probe.put_at.date_naive()
    }

    /// Count a resolved probe of this day once; `false` when it was already counted (or is
    /// still pending).
    pub fn add(&mut self, probe: &ProbeRecord) -> bool {
        let put_ms = probe.put_at.timestamp_millis();
        if probe.status == ProbeStatus::Pending {
            return false;
        }
        let at = match self.marks.binary_search_by_key(&put_ms, |m| m.put_ms) {
            Ok(_) => return false,
            Err(at) => at,
        };
        let replicated = matches!(probe.status, ProbeStatus::Arrived | ProbeStatus::Slow);
        let latency_ms = probe.latency_ms.filter(|_| replicated);
        self.marks.insert(
            at,
            ProbeMark {
                put_ms,
                status: probe.status,
                latency_ms,
                resolved_ms: probe.resolved_at.unwrap_or(probe.put_at).timestamp_millis(),
            },
        );
        self.outcomes.add(probe.status);
        if let Some(ms) = latency_ms {
            self.latency.add(ms);
            if ms <= TARGET_MS {
                self.within_target += 1;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn probe(minute: i64, status: ProbeStatus, latency_ms: Option<u64>) -> ProbeRecord {
        let put_at =
            Utc.with_ymd_and_hms(2026, 11, 30, 23, 0, 0).unwrap() + Duration::minutes(minute);
        crate::fakes::resolved_probe(
            "src",
            "dst",
            "r",
            put_at,
            status,
            latency_ms,
            put_at + Duration::seconds(30),
        )
    }

    #[test]
    fn a_probe_counts_once_and_marks_round_trip() {
        let p = probe(5, ProbeStatus::Arrived, Some(12_345));
        let mut day = DailyRollup::new("src", "dst", "r", DailyRollup::day_of(&p));
        assert!(day.add(&p));
        assert!(!day.add(&p));
        assert!(!day.add(&probe(6, ProbeStatus::Pending, None)));
        assert!(day.add(&probe(1, ProbeStatus::Missing, None)));
        assert_eq!(day.outcomes.total(), 2);
        assert_eq!(day.latency.count, 1);
        assert_eq!(day.within_target, 1);
        assert!(day.marks[0].put_ms < day.marks[1].put_ms);
        let json = serde_json::to_string(&day).unwrap();
        let back: DailyRollup = serde_json::from_str(&json).unwrap();
        assert_eq!(back, day);
        for text in [
            "",
            "1",
            "1A",
            "1X2.3",
            "zzzzzzzzzzzzzzzzzzA.1",
            "A1.2",
            "1A-.2",
            "1A2.",
            "1A2.!",
        ] {
            assert!(ProbeMark::try_from(text.to_owned()).is_err(), "{text:?}");
        }
        let marks = [
            ProbeMark {
                put_ms: 1_764_547_200_123,
                status: ProbeStatus::Arrived,
                latency_ms: Some(33_500),
                resolved_ms: 1_764_547_233_900,
            },
            ProbeMark {
                put_ms: 1_764_547_500_000,
                status: ProbeStatus::Missing,
                latency_ms: None,
                resolved_ms: 1_764_548_400_000,
            },
            ProbeMark {
                put_ms: -5,
                status: ProbeStatus::Unverifiable,
                latency_ms: Some(0),
                resolved_ms: -7,
            },
        ];
        for mark in marks {
            let text = String::from(mark);
            assert!(text.len() <= 20, "{text}");
            assert_eq!(ProbeMark::try_from(text).unwrap(), mark);
        }
    }

    #[test]
    fn probes_count_in_the_utc_day_they_were_written() {
        assert_eq!(
            DailyRollup::day_of(&probe(59, ProbeStatus::Arrived, Some(1))).to_string(),
            "2026-11-30"
        );
        assert_eq!(
            DailyRollup::day_of(&probe(60, ProbeStatus::Arrived, Some(1))).to_string(),
            "2026-12-01"
        );
    }

    #[test]
    fn percentiles_from_the_histogram_stay_within_half_a_bucket() {
        // Exact nearest-rank percentiles of a spread of latencies against the histogram's.
        let latencies: Vec<u64> = (1..=5_000u64)
            .map(|i| (i * i * 37) % 3_600_000 + 200)
            .collect();
        let mut histogram = LatencyHistogram::default();
        latencies.iter().for_each(|ms| histogram.add(*ms));
        let mut sorted = latencies.clone();
        sorted.sort_unstable();
        for q in [0.5, 0.95, 0.99, 1.0] {
            let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
            let exact = sorted[rank - 1] as f64;
            let read = histogram.percentile(q).unwrap() as f64;
            assert!(
                (read - exact).abs() <= exact * histogram_error() + 1.0,
                "q {q}: {read} vs {exact}"
            );
        }
        assert_eq!(histogram.percentile(1.0), Some(*sorted.last().unwrap()));
        let mut a = LatencyHistogram::default();
        let mut b = LatencyHistogram::default();
        latencies[..100].iter().for_each(|ms| a.add(*ms));
        latencies[100..].iter().for_each(|ms| b.add(*ms));
        a.merge(&b);
        assert_eq!(a, histogram);
    }
}
