//! The canary's figures for one rule and destination, from its daily roll-ups: outcomes,
//! percentiles from the merged histograms, the share within 15 minutes with its confidence
//! interval, blind time, the daily chart, and the canary's incidents replayed from the marks.

use super::model::*;
use crate::canary::probe::ProbeStatus;
use crate::canary::rollup::{
    DailyRollup, LatencyHistogram, OutcomeCounts, ProbeMark, BUCKETS_PER_OCTAVE,
};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// Bad probes in a row that page, when no roll-up says (the canary's default).
const DEFAULT_BAD_PROBES: u32 = 2;

/// Fine histogram buckets per bar of the picture (half an octave).
const BUCKETS_PER_BAR: u16 = (BUCKETS_PER_OCTAVE / 2) as u16;

/// The 95% Wilson score interval of `hits` out of `of`.
pub fn wilson(hits: u64, of: u64) -> Option<Share> {
    if of == 0 {
        return None;
    }
    let n = of as f64;
    let p = hits as f64 / n;
    let z = 1.959_963_984_540_054_f64;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(Share {
        hits,
        of,
        share: p,
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
    })
}

fn outcome_figures(counts: &OutcomeCounts) -> OutcomeFigures {
    OutcomeFigures {
        arrived: counts.arrived,
        slow: counts.slow,
        missing: counts.missing,
        stalled: counts.stalled,
        failed: counts.failed,
        cannot_verify: counts.cannot_verify,
        total: counts.total(),
    }
}

fn latency_figures(histogram: &LatencyHistogram) -> Option<LatencyFigures> {
    Some(LatencyFigures {
        samples: histogram.count,
        p50_ms: histogram.percentile(0.50)?,
        p95_ms: histogram.percentile(0.95)?,
        p99_ms: histogram.percentile(0.99)?,
        max_ms: histogram.max_ms,
    })
}

/// The picture's bars: the fine buckets merged by half-octave, empty bars kept between the
/// fastest and the slowest.
fn bars(histogram: &LatencyHistogram) -> Vec<HistogramBar> {
    let mut merged: BTreeMap<u16, u64> = BTreeMap::new();
    for (bucket, count) in &histogram.buckets {
        *merged.entry(bucket / BUCKETS_PER_BAR).or_default() += count;
    }
    let (Some(first), Some(last)) = (
        merged.keys().next().copied(),
        merged.keys().next_back().copied(),
    ) else {
        return Vec::new();
    };
    (first..=last)
        .map(|bar| {
            let lower = bar.saturating_mul(BUCKETS_PER_BAR);
            let upper = lower.saturating_add(BUCKETS_PER_BAR);
            HistogramBar {
                from_ms: LatencyHistogram::bounds(lower).0.ceil() as u64,
                to_ms: LatencyHistogram::bounds(upper.saturating_sub(1)).1.ceil() as u64,
                count: merged.get(&bar).copied().unwrap_or(0),
            }
        })
        .collect()
}

/// The longest time between probes that replicated, within the rule's probed time (its first
/// probe's write to its last probe's resolution).
fn blind(marks: &[ProbeMark]) -> Option<BlindSpan> {
    let first = marks.first()?;
    let end = marks.iter().map(ProbeMark::resolved_at).max()?;
    let mut edges: Vec<DateTime<Utc>> = vec![first.put_at()];
    edges.extend(marks.iter().filter(|m| m.replicated()).map(|m| m.put_at()));
    edges.push(end.max(first.put_at()));
    edges
        .windows(2)
        .map(|pair| (pair[0], pair[1]))
        .max_by_key(|(from, to)| *to - *from)
        .map(|(from, to)| BlindSpan {
            seconds: (to - from).num_seconds(),
            from,
            to,
        })
}

/// The canary's incidents, replayed from its marks with its own rule: `bad` bad probes in a
/// row (a failure at once) open one; the next probe that arrives in time closes it.
fn incidents(marks: &[ProbeMark], bad: u32) -> Vec<IncidentSpan> {
    let mut spans = Vec::new();
    let mut streak = 0u32;
    let mut first_bad: Option<DateTime<Utc>> = None;
    let mut open: Option<(IncidentSpan, ProbeStatus)> = None;
    for mark in marks {
        if mark.status.is_bad() {
            streak += 1;
            first_bad.get_or_insert(mark.put_at());
            match open.as_mut() {
                Some((span, cause)) => {
                    span.count += 1;
                    if mark.status.severity() > cause.severity() {
                        *cause = mark.status;
                        span.cause = format!("canary: {}", mark.status.as_str());
                    }
                }
                None if streak >= bad || mark.status.pages_at_once() => {
                    let at = mark.resolved_at();
                    let first = first_bad.unwrap_or(at);
                    open = Some((
                        IncidentSpan {
                            source: IncidentSource::Canary,
                            cause: format!("canary: {}", mark.status.as_str()),
                            opened_at: at,
                            first_failure_at: Some(first),
                            paged_at: Some(at),
                            resolved_at: None,
                            seconds_to_page: Some((at - first).num_seconds()),
                            seconds_to_resolve: None,
                            count: u64::from(streak),
                            resolution: None,
                        },
                        mark.status,
                    ));
                }
                None => {}
            }
        } else {
            streak = 0;
            first_bad = None;
            if let Some((mut span, _)) = open.take() {
                let at = mark.resolved_at();
                span.resolved_at = Some(at);
                span.seconds_to_resolve = span
                    .first_failure_at
                    .map(|first| (at - first).num_seconds());
                span.resolution = Some("a probe arrived in time".into());
                spans.push(span);
            }
        }
    }
    spans.extend(open.map(|(span, _)| span));
    spans
}

/// Every day of `from..=to`.
pub fn days_of(from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
    from.iter_days().take_while(|day| *day <= to).collect()
}

/// The canary's figures of one rule and destination (roll-ups of that rule only), and its
/// incidents open during the period, replayed from `earlier` days' marks on (the days before
/// the period, so an incident that opened before it is seen from its start).
pub fn canary_figures(
    rollups: &[&DailyRollup],
    earlier: &[&DailyRollup],
    days: &[NaiveDate],
) -> (CanaryFigures, Vec<IncidentSpan>) {
    let mut outcomes = OutcomeCounts::default();
    let mut histogram = LatencyHistogram::default();
    let mut within_target = 0;
    let mut thresholds = BTreeSet::new();
    let mut marks: Vec<ProbeMark> = Vec::new();
    let mut bad = 0;
    let mut by_day: BTreeMap<NaiveDate, &DailyRollup> = BTreeMap::new();
    for rollup in rollups {
        outcomes.merge(&rollup.outcomes);
        histogram.merge(&rollup.latency);
        within_target += rollup.within_target;
        if rollup.threshold_ms > 0 {
            thresholds.insert(rollup.threshold_ms / 1000);
        }
        bad = bad.max(rollup.bad_probes_to_page);
        marks.extend(rollup.marks.iter().copied());
        by_day.insert(rollup.day, rollup);
    }
    marks.sort_by_key(|m| m.put_ms);
    let verified = outcomes.verified();
    let chart = days
        .iter()
        .map(|day| {
            let rollup = by_day.get(day);
            DayLatency {
                day: *day,
                probes: rollup.map_or(0, |r| r.outcomes.total()),
                p50_ms: rollup.and_then(|r| r.latency.percentile(0.5)),
                p99_ms: rollup.and_then(|r| r.latency.percentile(0.99)),
                max_ms: rollup
                    .filter(|r| r.latency.count > 0)
                    .map(|r| r.latency.max_ms),
            }
        })
        .collect();
    let figures = CanaryFigures {
        outcomes: outcome_figures(&outcomes),
        latency: latency_figures(&histogram),
        within_target: wilson(within_target, verified),
        within_threshold: wilson(outcomes.arrived, verified),
        threshold_seconds: thresholds.into_iter().collect(),
        blind: blind(&marks),
        first_probe_at: marks.first().map(ProbeMark::put_at),
        last_probe_at: marks.last().map(ProbeMark::put_at),
        days: chart,
        histogram: bars(&histogram),
    };
    let bad = if bad == 0 { DEFAULT_BAD_PROBES } else { bad };
    let from = days
        .first()
        .map(|day| day.and_time(chrono::NaiveTime::MIN).and_utc());
    let mut replayed: Vec<ProbeMark> = earlier
        .iter()
        .flat_map(|r| r.marks.iter().copied())
        .chain(marks)
        .collect();
    replayed.sort_by_key(|m| m.put_ms);
    let open_in_period =
        |span: &IncidentSpan| from.is_none_or(|from| span.resolved_at.is_none_or(|at| at >= from));
    let spans = incidents(&replayed, bad)
        .into_iter()
        .filter(open_in_period)
        .collect();
    (figures, spans)
}

/// Blind time worth a word in the verdict: more than an hour without a probe that replicated.
pub fn blind_matters(blind: &BlindSpan) -> bool {
    blind.seconds > Duration::hours(1).num_seconds()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(minute: i64, status: ProbeStatus) -> ProbeMark {
        let put_ms = 1_764_547_200_000 + minute * 60_000;
        let replicated = matches!(status, ProbeStatus::Arrived | ProbeStatus::Slow);
        ProbeMark {
            put_ms,
            status,
            latency_ms: replicated.then_some(20_000),
            resolved_ms: put_ms + if replicated { 20_000 } else { 15 * 60_000 },
        }
    }

    #[test]
    fn blind_time_runs_to_the_last_outcome_when_the_period_ends_badly() {
        let marks = [
            mark(0, ProbeStatus::Arrived),
            mark(30, ProbeStatus::Arrived),
            mark(60, ProbeStatus::Missing),
            mark(90, ProbeStatus::Missing),
        ];
        let span = blind(&marks).unwrap();
        assert_eq!(span.seconds, (90 + 15 - 30) * 60);
        assert_eq!(span.from, marks[1].put_at());
        let never = [
            mark(0, ProbeStatus::Unverifiable),
            mark(30, ProbeStatus::Failed),
        ];
        assert_eq!(blind(&never).unwrap().seconds, (30 + 15) * 60);
        assert!(blind(&[]).is_none());
    }

    #[test]
    fn canary_incidents_open_on_the_streak_or_a_failure_and_close_on_an_arrival() {
        let marks = [
            mark(0, ProbeStatus::Slow),
            mark(30, ProbeStatus::Arrived),
            mark(60, ProbeStatus::Slow),
            mark(90, ProbeStatus::Missing),
            mark(120, ProbeStatus::Missing),
            mark(150, ProbeStatus::Arrived),
            mark(180, ProbeStatus::Failed),
        ];
        let spans = incidents(&marks, 2);
        assert_eq!(spans.len(), 2, "{spans:#?}");
        assert_eq!(spans[0].cause, "canary: MISSING", "escalated from slow");
        assert_eq!(spans[0].first_failure_at, Some(marks[2].put_at()));
        assert_eq!(spans[0].paged_at, Some(marks[3].resolved_at()));
        assert_eq!(spans[0].count, 3);
        assert_eq!(spans[0].resolved_at, Some(marks[5].resolved_at()));
        assert_eq!(spans[1].cause, "canary: FAILED", "a failure opens at once");
        assert!(spans[1].resolved_at.is_none(), "still open at the end");
    }

    #[test]
    fn the_wilson_interval_is_inside_0_and_1_and_narrows_with_samples() {
        let all = wilson(100, 100).unwrap();
        assert_eq!(all.high, 1.0);
        assert!(all.low > 0.96 && all.low < 0.97, "{all:?}");
        let few = wilson(9, 10).unwrap();
        let many = wilson(900, 1000).unwrap();
        assert!(few.high - few.low > many.high - many.low);
        assert!(wilson(0, 0).is_none());
        assert_eq!(wilson(0, 10).unwrap().low, 0.0);
    }
}
