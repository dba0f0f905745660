//! How often to look for a replica, and what a sequence of looks says about its latency.
//!
//! A HEAD that misses proves the replica was not there when the request was sent; a HEAD that
//! finds it proves it was there when the answer came. The latency therefore lies between the last
//! miss and the first hit. The canary reports both bounds and their midpoint; the gap between
//! them is the uncertainty. Gaps grow in proportion to the time already waited (never below a
//! floor, never above a ceiling), so the relative error stays bounded with few requests: with the
//! defaults (0.45 s floor, 18 %), the midpoint is within max(250 ms, 10 %) of the true latency
//! with room for the HEADs' own round trips (up to about 50 ms), and a 20 s replication costs
//! about 18 HEADs.

use std::time::Duration;

/// Adaptive back-off between HEADs of a destination.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollSchedule {
    /// Shortest gap, and the wait before the first look.
    pub min_gap: Duration,
    /// Each gap is this fraction of the time waited so far...
    pub growth: f64,
    /// ...but never longer than this.
    pub max_gap: Duration,
}

impl Default for PollSchedule {
    fn default() -> Self {
        PollSchedule {
            min_gap: Duration::from_millis(450),
            growth: 0.18,
            max_gap: Duration::from_secs(15),
        }
    }
}

impl PollSchedule {
    /// The wait before the next look, `waited` after the PUT was acknowledged.
    pub fn next_gap(&self, waited: Duration) -> Duration {
        waited
            .mul_f64(self.growth)
            .clamp(self.min_gap, self.max_gap.max(self.min_gap))
    }

    /// How many looks a replica arriving after `latency` costs (for documentation and tests).
    pub fn looks_for(&self, latency: Duration) -> u32 {
        let mut at = self.next_gap(Duration::ZERO);
        let mut looks = 1;
        while at < latency {
            at += self.next_gap(at);
            looks += 1;
        }
        looks
    }
}

/// When a replica became visible, relative to the PUT acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyBounds {
    /// The last look that missed was sent this long after the PUT (0 when the first look hit).
    pub lower_ms: u64,
    /// The first look that found the replica answered this long after the PUT.
    pub upper_ms: u64,
}

impl LatencyBounds {
    pub fn new(lower_ms: u64, upper_ms: u64) -> Self {
        LatencyBounds {
            lower_ms: lower_ms.min(upper_ms),
            upper_ms,
        }
    }

    /// The best estimate: the middle of the bounds.
    pub fn estimate_ms(&self) -> u64 {
        self.lower_ms + (self.upper_ms - self.lower_ms) / 2
    }

    /// The width of the bounds: how far the estimate can be off, twice over.
    pub fn uncertainty_ms(&self) -> u64 {
        self.upper_ms - self.lower_ms
    }
}

pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_start_at_the_floor_grow_and_stop_at_the_ceiling() {
        let schedule = PollSchedule::default();
        assert_eq!(
            schedule.next_gap(Duration::ZERO),
            Duration::from_millis(450)
        );
        assert_eq!(
            schedule.next_gap(Duration::from_secs(2)),
            Duration::from_millis(450)
        );
        assert_eq!(
            schedule.next_gap(Duration::from_secs(10)),
            Duration::from_millis(1800)
        );
        assert_eq!(
            schedule.next_gap(Duration::from_secs(600)),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn a_twenty_second_replication_costs_at_most_twenty_looks() {
        let schedule = PollSchedule::default();
        assert!(schedule.looks_for(Duration::from_millis(200)) == 1);
        let looks = schedule.looks_for(Duration::from_secs(20));
        assert!((15..=20).contains(&looks), "{looks}");
    }

    #[test]
    fn midpoint_error_stays_within_the_goal_for_every_latency() {
        // Walk the schedule against latencies from 0.2 s to 20 s in 10 ms steps, each look
        // answered 50 ms after it was sent: the midpoint of the last-miss (sent) / first-hit
        // (answered) bounds must be within max(250 ms, 10 %) of the true latency.
        let schedule = PollSchedule::default();
        for latency_ms in (200..20_000).step_by(10) {
            let latency = Duration::from_millis(latency_ms);
            let rtt = Duration::from_millis(50);
            let (mut last_miss, mut at) = (Duration::ZERO, schedule.next_gap(Duration::ZERO));
            // A look finds the replica if it was visible when the look reached S3 (mid-trip).
            while at + rtt / 2 < latency {
                last_miss = at;
                at += rtt + schedule.next_gap(at + rtt);
            }
            let bounds = LatencyBounds::new(millis(last_miss), millis(at + rtt));
            let error = bounds.estimate_ms().abs_diff(latency_ms);
            let allowed = (latency_ms / 10).max(250);
            assert!(
                error <= allowed,
                "latency {latency_ms} ms: error {error} ms"
            );
        }
    }

    #[test]
    fn bounds_are_ordered() {
        let bounds = LatencyBounds::new(900, 400);
        assert_eq!((bounds.lower_ms, bounds.upper_ms), (400, 400));
        assert_eq!(LatencyBounds::new(1000, 1500).estimate_ms(), 1250);
        assert_eq!(LatencyBounds::new(1000, 1500).uncertainty_ms(), 500);
    }
}
