//! A probe's outcome: recorded, measured, cleaned up, counted into its rule's health, and the
//! pages that health owes sent.

use super::*;

impl<S, L, N, M, C> Canary<S, L, N, M, C>
where
    S: ObjectStore,
    L: CanaryStore,
    N: Notifier,
    M: ProbeMetrics,
    C: Clock,
{
    /// Measure, clean up and count every probe of the run, send what health owes, then record
    /// the probes. A probe stays in the pending partition until it is resolved, cleaned up and
    /// counted, so a failed health write loses no outcome: the next run counts it.
    pub(super) async fn finish(
        &self,
        bucket: &str,
        setup: Option<&ReplicationSetup>,
        probes: Vec<(ProbeRecord, bool)>,
        checks: Vec<ProbeRecord>,
        clock: &RunClock,
        report: &mut BucketReport,
    ) {
        let (probes, carried): (Vec<ProbeRecord>, Vec<bool>) = probes.into_iter().unzip();
        let settled = join_all(
            probes
                .into_iter()
                .map(|probe| self.settle(probe, setup, clock)),
        )
        .await;
        let mut probes: Vec<ProbeRecord> = Vec::with_capacity(settled.len());
        for (probe, problem) in settled {
            report.problems.extend(problem);
            probes.push(probe);
        }
        // Into their days' roll-ups: a probe a roll-up has is never added twice, and one that
        // could not be added stays pending (`rolled_up`) for the next run; health and pages
        // do not wait for it.
        let mut unrolled: BTreeMap<HealthKey, Vec<usize>> = BTreeMap::new();
        for (i, probe) in probes.iter().enumerate() {
            if probe.status != ProbeStatus::Pending && !probe.rolled_up {
                unrolled
                    .entry((probe.destination_bucket.clone(), probe.rule_id.clone()))
                    .or_default()
                    .push(i);
            }
        }
        for indices in unrolled.into_values() {
            let group: Vec<&ProbeRecord> = indices.iter().map(|&i| &probes[i]).collect();
            if self.roll_up(&group, report).await {
                for i in indices {
                    probes[i].rolled_up = true;
                }
            }
        }
        let mut by_rule: BTreeMap<HealthKey, Vec<usize>> = BTreeMap::new();
        if let Some(setup) = setup {
            // Every rule's health is visited each run, so pages a failed publish left owed go out.
            for rule in setup.enabled_rules() {
                by_rule
                    .entry((rule.destination_bucket.clone(), rule.id.clone()))
                    .or_default();
            }
        }
        for (i, probe) in probes.iter().enumerate() {
            if probe.status != ProbeStatus::Pending && !probe.counted {
                by_rule
                    .entry((probe.destination_bucket.clone(), probe.rule_id.clone()))
                    .or_default()
                    .push(i);
            }
        }
        for check in &checks {
            by_rule
                .entry((check.destination_bucket.clone(), check.rule_id.clone()))
                .or_default();
        }
        for ((destination, rule_id), indices) in by_rule {
            let mut group: Vec<&ProbeRecord> = indices.iter().map(|&i| &probes[i]).collect();
            group.extend(
                checks
                    .iter()
                    .filter(|c| c.destination_bucket == destination && c.rule_id == rule_id),
            );
            group.sort_by_key(|p| p.put_at);
            let counted = self
                .update_health(bucket, &destination, &rule_id, &group, clock, report)
                .await;
            if counted {
                for i in indices {
                    probes[i].counted = true;
                }
            }
        }
        let saved = join_all(probes.iter().map(|probe| {
            self.ledger
                .save_probe(probe, probe.put_at + self.settings.ttl)
        }))
        .await;
        for error in saved.into_iter().filter_map(Result::err) {
            report.errors.push(error.to_string());
        }
        for (probe, carried_over) in probes.iter().zip(carried) {
            report.probes.push(ProbeSummary::of(probe, carried_over));
        }
    }

    /// Count resolved probes (of one rule and destination) into their days' roll-ups, once
    /// each. `false` when a roll-up could not be written: the probes stay uncounted.
    pub(super) async fn roll_up(&self, probes: &[&ProbeRecord], report: &mut BucketReport) -> bool {
        const ATTEMPTS: u32 = 4;
        let mut days: BTreeMap<chrono::NaiveDate, Vec<&ProbeRecord>> = BTreeMap::new();
        for probe in probes.iter().filter(|p| p.status != ProbeStatus::Pending) {
            days.entry(DailyRollup::day_of(probe))
                .or_default()
                .push(probe);
        }
        for (day, probes) in days {
            let Some(first) = probes.first() else {
                continue;
            };
            let (source, destination, rule) = (
                first.source_bucket.as_str(),
                first.destination_bucket.as_str(),
                first.rule_id.as_str(),
            );
            let mut written = false;
            for _ in 0..ATTEMPTS {
                let (mut rollup, revision) = match self
                    .ledger
                    .daily_rollup(source, destination, rule, day)
                    .await
                {
                    Ok(Some((rollup, revision))) => (rollup, Some(revision)),
                    Ok(None) => (DailyRollup::new(source, destination, rule, day), None),
                    Err(e) => {
                        report.errors.push(e.to_string());
                        return false;
                    }
                };
                let added = probes.iter().filter(|p| rollup.add(p)).count();
                if added == 0 {
                    written = true;
                    break;
                }
                rollup.threshold_ms =
                    u64::try_from(self.settings.latency_threshold.num_milliseconds()).unwrap_or(0);
                rollup.bad_probes_to_page = self.settings.bad_probes_to_page;
                let expires_at = day_start(day) + self.settings.rollup_retention;
                match self
                    .ledger
                    .put_daily_rollup(&rollup, revision, expires_at)
                    .await
                {
                    Ok(true) => {
                        written = true;
                        break;
                    }
                    Ok(false) => continue, // another run wrote the day first: read again
                    Err(e) => {
                        report.errors.push(e.to_string());
                        return false;
                    }
                }
            }
            if !written {
                report.errors.push(format!(
                    "ledger: the {day} roll-up of {source} -> {destination} (rule {rule}) kept changing under this run"
                ));
                return false;
            }
        }
        true
    }

    /// Emit the metric of a probe resolved in this run, and clean up a resolved probe.
    pub(super) async fn settle(
        &self,
        mut probe: ProbeRecord,
        setup: Option<&ReplicationSetup>,
        clock: &RunClock,
    ) -> (ProbeRecord, Option<String>) {
        if probe.status != ProbeStatus::Pending && probe.resolved_at >= Some(clock.wall_start) {
            self.metrics.record(&ProbeMeasurement {
                source_bucket: &probe.source_bucket,
                destination_bucket: &probe.destination_bucket,
                rule_id: &probe.rule_id,
                at: probe.resolved_at.unwrap_or(probe.put_at),
                success: probe.status == ProbeStatus::Arrived,
                latency_seconds: probe.latency_ms.map(|ms| ms as f64 / 1000.0),
                uncertainty_seconds: probe.bounds().map(|b| b.uncertainty_ms() as f64 / 1000.0),
            });
        }
        if probe.status == ProbeStatus::Pending || probe.cleaned {
            return (probe, None);
        }
        let problem = match self.clean_up(&probe, setup, clock).await {
            Ok(true) => {
                probe.cleaned = true;
                None
            }
            Ok(false) => None, // still on its way to another destination: next run
            Err(error) => {
                probe.cleanup_attempts += 1;
                if probe.cleanup_attempts >= MAX_CLEANUP_ATTEMPTS {
                    // Given up, reported; the record says what was left where.
                    probe.cleaned = true;
                    probe.detail = Some(format!(
                        "{}cleanup abandoned after {} attempts: {error}",
                        probe
                            .detail
                            .as_deref()
                            .map(|d| format!("{d}; "))
                            .unwrap_or_default(),
                        probe.cleanup_attempts
                    ));
                    Some(format!("probe {} left in place: {error}", probe.key))
                } else {
                    Some(format!("cleaning up probe {}: {error}", probe.key))
                }
            }
        };
        (probe, problem)
    }

    /// Delete the probe's versions from the source and every destination it may have reached.
    /// `Ok(false)`: not yet, because the probe key also replicates to other destinations where
    /// it has not arrived (deleting the source now would fail that replication).
    pub(super) async fn clean_up(
        &self,
        probe: &ProbeRecord,
        setup: Option<&ReplicationSetup>,
        clock: &RunClock,
    ) -> Result<bool, StoreError> {
        if !self.settings.segment.owns(&probe.key) {
            // A record that does not name one of our keys is never acted on.
            return Err(StoreError::Refused {
                operation: "DeleteObject",
                bucket: probe.source_bucket.clone(),
                detail: format!("{} is outside the canary segment", probe.key),
            });
        }
        let tags: Vec<(String, String)> = setup
            .and_then(|s| s.rules.iter().find(|r| r.id == probe.rule_id))
            .map(|r| r.filter.tags.clone())
            .unwrap_or_default();
        let others: Vec<BucketRef<'_>> = setup
            .map(|s| s.destinations_for(&probe.key, &tags))
            .unwrap_or_default()
            .into_iter()
            .filter(|other| *other != probe.destination_bucket)
            .map(|bucket| BucketRef {
                bucket,
                region: None,
            })
            .collect();
        if !others.is_empty() && clock.now() < probe.deadline {
            let arrived = join_all(
                others
                    .iter()
                    .map(|other| self.store.head(*other, &probe.key, None)),
            )
            .await;
            if !arrived.iter().all(|r| matches!(r, Ok(Some(_)))) {
                return Ok(false);
            }
        }
        // In the source, exactly the version the PUT answered; in replicas, the probe's copies
        // (S3 gives a replica its source's version ID, the local simulator cannot): each
        // checked to carry this probe's token before it is deleted.
        let source =
            self.store
                .delete_probe(source_ref(probe), &probe.key, probe.version_id.as_deref());
        let replicas = join_all(
            [destination_ref(probe)]
                .into_iter()
                .chain(others)
                .map(|bucket| self.store.delete_probe(bucket, &probe.key, None)),
        );
        let (source, replicas) = futures::join!(source, replicas);
        std::iter::once(source)
            .chain(replicas)
            .try_for_each(|r| r.map(|_| ()))?;
        Ok(true)
    }

    /// Count the probes of one rule and destination into its health (optimistically, retrying
    /// on a concurrent write), then send the pages that health owes through the outbox.
    pub(super) async fn update_health(
        &self,
        bucket: &str,
        destination: &str,
        rule_id: &str,
        probes: &[&ProbeRecord],
        clock: &RunClock,
        report: &mut BucketReport,
    ) -> bool {
        const ATTEMPTS: u32 = 4;
        let limit = self.settings.bad_probes_to_page;
        let outbox = HealthPages {
            ledger: &self.ledger,
            now: clock.now(),
            expires_at: clock.wall_start + self.settings.ttl,
        };
        for _ in 0..ATTEMPTS {
            let (stored, revision) = match self.ledger.health(bucket, destination, rule_id).await {
                Ok(Some((health, revision))) => (Some(health), Some(revision)),
                Ok(None) => (None, None),
                Err(e) => {
                    report.errors.push(e.to_string());
                    return false;
                }
            };
            let mut health = stored
                .clone()
                .unwrap_or_else(|| RuleHealth::new(bucket, destination, rule_id));
            let mut recovered = None;
            for probe in probes {
                match health.count(probe, limit) {
                    Some(HealthChange::Opened) => {
                        let page = pages::incident_page(&health, probe, limit);
                        health.owe(page);
                    }
                    Some(HealthChange::Recovered { opened_at }) => {
                        health.owe(pages::recovery_notice(probe, opened_at, clock.now()));
                        recovered = Some(probe.put_at);
                    }
                    None => {}
                }
            }
            // Handed over before the health that counts the recovery is written: if this
            // fails, the run fails and the next one counts (and hands over) again.
            if let Some(probe_at) = recovered.filter(|_| self.settings.hand_over_redrives) {
                let hand = crate::redrive::HandOver {
                    source_bucket: bucket.to_owned(),
                    destination_bucket: destination.to_owned(),
                    rule_id: rule_id.to_owned(),
                    probe_at,
                };
                if let Err(e) = self.ledger.hand_over_redrive(&hand).await {
                    report.errors.push(e.to_string());
                    return false;
                }
            }
            // Nothing owed, or another run is sending what is owed: only the counts to write.
            if health.owed.is_empty() || outbox.held_by_another(&health) {
                if stored.as_ref() != Some(&health) {
                    match self
                        .ledger
                        .put_health(&health, revision, outbox.expires_at)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => continue, // another run counted first: read again
                        Err(e) => {
                            report.errors.push(e.to_string());
                            return false;
                        }
                    }
                }
                return true;
            }
            let owed = AtRevision {
                item: health,
                revision,
            };
            let claim = match outbox.claim(&owed).await {
                Ok(Claimed::Taken(claim)) => claim,
                Ok(Claimed::Changed(_) | Claimed::Held(_)) => continue,
                Err(e) => {
                    report.errors.push(e.to_string());
                    return false;
                }
            };
            let mut pages: Vec<Page> = claim
                .item
                .owed
                .iter()
                .map(|page| page.to_page(&claim.item))
                .collect();
            if claim.item.owed_dropped > 0 {
                if let Some(first) = pages.first_mut() {
                    *first = first.clone().with_note(&format!(
                        "{} earlier canary message(s) for this rule could not be published and were given up; the ledger's rule health and the canary's logs have them.",
                        claim.item.owed_dropped
                    ));
                }
            }
            let what = format!("{bucket} -> {destination} (rule {rule_id})");
            let delivered = deliver(&outbox, &self.notifier, &claim, &pages, &what).await;
            report.pages.extend(
                claim.item.owed[..delivered.sent]
                    .iter()
                    .map(|page| page.subject.clone()),
            );
            if let Some(e) = delivered.error {
                // Still owed (the claim was released): the next run sends it.
                let subject = &claim.item.owed[delivered.sent].subject;
                report.errors.push(format!("publishing \"{subject}\": {e}"));
            }
            return true;
        }
        report.errors.push(format!(
            "ledger: health of {bucket} -> {destination} (rule {rule_id}) kept changing under this run"
        ));
        false
    }
}

fn day_start(day: chrono::NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// S3 reported the probe's replication as failed (a replication failure event in the ledger).
pub(super) fn failed(probe: &mut ProbeRecord, reason: &str, at: DateTime<Utc>) {
    let meaning = catalog::explain(reason).meaning;
    probe.resolve(
        ProbeStatus::Failed,
        at,
        Some(format!("S3 reported failureReason {reason}: {meaning}")),
    );
}

pub(super) fn source_ref(probe: &ProbeRecord) -> BucketRef<'_> {
    BucketRef {
        bucket: &probe.source_bucket,
        region: probe.source_region.as_deref(),
    }
}

pub(super) fn destination_ref(probe: &ProbeRecord) -> BucketRef<'_> {
    BucketRef {
        bucket: &probe.destination_bucket,
        region: probe.destination_region.as_deref(),
    }
}
