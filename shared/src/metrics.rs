//! The metrics port (recent datapoints of an alarm's metrics) and the compact trend a page shows.

use crate::alarm::AlarmMetric;
use chrono::{DateTime, Utc};
use std::future::Future;

/// One series of datapoints, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub id: String,
    pub label: String,
    pub points: Vec<(DateTime<Utc>, f64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    #[error("fetching datapoints failed and may succeed on retry: {0}")]
    Unavailable(String),
    #[error("fetching datapoints was refused: {0}")]
    Refused(String),
}

/// Reads recent datapoints (CloudWatch `GetMetricData` in production).
pub trait MetricsSource: Send + Sync {
    /// The series of every data-returning metric or expression, between `start` and `end`, read
    /// in `region`: the alarm's own region, where its metrics are (S3 publishes replication
    /// latency and pending counts in the destination bucket's region, failures in the source's).
    /// An empty region means the monitor's own.
    fn recent(
        &self,
        region: &str,
        metrics: &[AlarmMetric],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<Series>, MetricsError>> + Send;
}

impl<T: MetricsSource> MetricsSource for &T {
    fn recent(
        &self,
        region: &str,
        metrics: &[AlarmMetric],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<Series>, MetricsError>> + Send {
        (**self).recent(region, metrics, start, end)
    }
}

/// Last, min and max over the window and a one-line sparkline.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    pub label: String,
    pub last: f64,
    pub min: f64,
    pub max: f64,
    pub points: usize,
    pub sparkline: String,
}

impl Trend {
    /// `None` for a series without datapoints.
    pub fn of(series: &Series, width: usize) -> Option<Trend> {
        let values: Vec<f64> = series
            .points
            .iter()
            .map(|(_, v)| *v)
            .filter(|v| v.is_finite())
            .collect();
        let last = *values.last()?;
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Trend {
            label: series.label.clone(),
            last,
            min,
            max,
            points: values.len(),
            sparkline: sparkline(&values, width),
        })
    }
}

/// Eight-level bars; the newest `width` values (older ones averaged into buckets when longer).
pub fn sparkline(values: &[f64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let buckets: Vec<f64> = if values.len() <= width {
        values.to_vec()
    } else {
        (0..width)
            .map(|i| {
                let from = i * values.len() / width;
                let to = ((i + 1) * values.len() / width).max(from + 1);
                values[from..to].iter().sum::<f64>() / (to - from) as f64
            })
            .collect()
    };
    let min = buckets.iter().copied().fold(f64::INFINITY, f64::min);
    let max = buckets.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = max - min;
    buckets
        .iter()
        .map(|v| {
            if span <= f64::EPSILON {
                BARS[0]
            } else {
                BARS[(((v - min) / span) * 7.0).round().clamp(0.0, 7.0) as usize]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_and_buckets() {
        assert_eq!(sparkline(&[0.0, 7.0], 10), "▁█");
        assert_eq!(sparkline(&[5.0, 5.0, 5.0], 10), "▁▁▁");
        assert_eq!(
            sparkline(&(0..100).map(f64::from).collect::<Vec<_>>(), 8)
                .chars()
                .count(),
            8
        );
        assert_eq!(sparkline(&[], 8), "");
    }

    #[test]
    fn trend_of_series() {
        let t0 = Utc::now();
        let series = Series {
            id: "m1".into(),
            label: "ReplicationLatency".into(),
            points: vec![(t0, 10.0), (t0, 950.0), (t0, 400.0)],
        };
        let trend = Trend::of(&series, 30).unwrap();
        assert_eq!(
            (trend.last, trend.min, trend.max, trend.points),
            (400.0, 10.0, 950.0, 3)
        );
        assert!(Trend::of(
            &Series {
                points: vec![],
                ..series
            },
            30
        )
        .is_none());
    }
}
