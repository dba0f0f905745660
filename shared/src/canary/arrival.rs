//! Waiting for a probe: polling its destination with back-off, and re-checking probes carried
//! over from earlier runs.

use super::*;

impl<S, L, N, M, C> Canary<S, L, N, M, C>
where
    S: ObjectStore,
    L: CanaryStore,
    N: Notifier,
    M: ProbeMetrics,
    C: Clock,
{
    /// HEAD the destination on the back-off schedule until the replica is found, the destination
    /// keeps failing, or the budget ends.
    pub(super) async fn poll(&self, probe: &mut ProbeRecord, acked: Instant, clock: &RunClock) {
        const ERRORS_TO_GIVE_UP: u32 = 3;
        const FAILURE_CHECK_EVERY: u32 = 4;
        let mut waited = Duration::ZERO;
        let mut last_miss: Option<Instant> = None;
        let mut errors = 0;
        let mut last_error = None;
        loop {
            waited += self.settings.poll.next_gap(waited);
            let at = acked + waited;
            if at > clock.budget_end {
                break;
            }
            tokio::time::sleep_until(at).await;
            let sent = Instant::now();
            probe.head_requests += 1;
            let found = self
                .store
                .head(destination_ref(probe), &probe.key, None)
                .await;
            let answered = Instant::now();
            waited = waited.max(answered.saturating_duration_since(acked));
            match found {
                Ok(Some(_)) => {
                    let lower = last_miss.map_or(Duration::ZERO, |m| m - acked);
                    let bounds = LatencyBounds::new(millis(lower), millis(answered - acked));
                    self.arrived(probe, bounds, clock.wall(answered));
                    return;
                }
                Ok(None) => {
                    last_miss = Some(sent);
                    errors = 0;
                    // Every few looks, ask the ledger whether S3 already reported the probe's
                    // replication as failed (replication-events records it within seconds).
                    if probe.head_requests.is_multiple_of(FAILURE_CHECK_EVERY) {
                        if let Ok(Some(reason)) = self.ledger.replication_failure(probe).await {
                            probe.last_miss_at = last_miss.map(|m| clock.wall(m));
                            failed(probe, &reason, clock.now());
                            return;
                        }
                    }
                }
                Err(error) => {
                    errors += 1;
                    last_error = Some(error);
                    if errors >= ERRORS_TO_GIVE_UP {
                        break;
                    }
                }
            }
        }
        probe.last_miss_at = last_miss.map(|m| clock.wall(m));
        // Given up after errors in a row, or not one answer in the whole budget.
        let unreadable = errors >= ERRORS_TO_GIVE_UP || (errors > 0 && last_miss.is_none());
        match last_error.filter(|_| unreadable) {
            Some(error) => self.cannot_verify(probe, &error, clock).await,
            _ => self.unarrived(probe, clock).await,
        }
    }

    /// The destination cannot be read: unless S3 reported the replication as failed (which says
    /// more), the probe cannot be verified.
    pub(super) async fn cannot_verify(
        &self,
        probe: &mut ProbeRecord,
        error: &StoreError,
        clock: &RunClock,
    ) {
        if let Ok(Some(reason)) = self.ledger.replication_failure(probe).await {
            failed(probe, &reason, clock.now());
            return;
        }
        probe.resolve(
            ProbeStatus::Unverifiable,
            clock.now(),
            Some(format!("the destination cannot be read: {error}")),
        );
    }

    pub(super) fn arrived(
        &self,
        probe: &mut ProbeRecord,
        bounds: LatencyBounds,
        at: DateTime<Utc>,
    ) {
        probe.set_bounds(bounds);
        let threshold = self.settings.latency_threshold.num_milliseconds().max(0) as u64;
        let status = if bounds.estimate_ms() > threshold {
            ProbeStatus::Slow
        } else {
            ProbeStatus::Arrived
        };
        probe.resolve(status, at, None);
    }

    /// Not in the destination (yet): ask the ledger and the source why, and settle the probe once
    /// S3 has given up or the deadline has passed.
    pub(super) async fn unarrived(&self, probe: &mut ProbeRecord, clock: &RunClock) {
        let (failure, source) = futures::join!(
            self.ledger.replication_failure(probe),
            self.store
                .head(source_ref(probe), &probe.key, probe.version_id.as_deref(),)
        );
        let now = clock.now();
        if let Ok(Some(reason)) = failure {
            failed(probe, &reason, now);
            return;
        }
        match source {
            Ok(Some(facts)) => probe.source_status = facts.replication_status,
            Ok(None) => probe.detail = Some("the probe is gone from the source bucket".into()),
            Err(_) => {}
        }
        if probe.source_status.as_deref() == Some("FAILED") {
            probe.resolve(
                ProbeStatus::Failed,
                now,
                Some("the source object's ReplicationStatus is FAILED".into()),
            );
        } else if now >= probe.deadline {
            let status = if probe.source_status.as_deref() == Some("PENDING") {
                ProbeStatus::Stalled
            } else {
                ProbeStatus::Missing
            };
            probe.resolve(status, now, None);
        }
    }

    /// Probes from earlier runs, each looked at once (marked as carried over).
    pub(super) async fn recheck_all(
        &self,
        pending: Vec<ProbeRecord>,
        clock: &RunClock,
    ) -> Vec<(ProbeRecord, bool)> {
        join_all(
            pending
                .into_iter()
                .map(|probe| async { (self.recheck(probe, clock).await, true) }),
        )
        .await
    }

    /// One look at a probe from an earlier run.
    pub(super) async fn recheck(&self, mut probe: ProbeRecord, clock: &RunClock) -> ProbeRecord {
        if probe.status != ProbeStatus::Pending {
            return probe; // resolved earlier: only its cleanup or its counting is left
        }
        let sent = Instant::now();
        probe.head_requests += 1;
        let found = self
            .store
            .head(destination_ref(&probe), &probe.key, None)
            .await;
        let answered = clock.now();
        match found {
            Ok(Some(_)) => {
                let since_put =
                    |at: DateTime<Utc>| (at - probe.put_at).num_milliseconds().max(0) as u64;
                let lower = probe.last_miss_at.map_or(0, since_put);
                let bounds = LatencyBounds::new(lower, since_put(answered));
                self.arrived(&mut probe, bounds, answered);
            }
            Ok(None) => {
                probe.last_miss_at = Some(clock.wall(sent));
                self.unarrived(&mut probe, clock).await;
            }
            Err(error) if answered >= probe.deadline => {
                self.cannot_verify(&mut probe, &error, clock).await;
            }
            Err(_) => {} // still time: the next run looks again
        }
        probe
    }
}
