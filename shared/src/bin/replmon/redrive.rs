//! `replmon redrive`: plan a re-drive, check its guard, ask, start it.

use anyhow::{anyhow, bail, Result};
use aws_config::SdkConfig;
use replmon_shared::aws::{DynamoDbLedger, S3ControlJobs, S3ObjectStore};
use replmon_shared::clock::SystemClock;
use replmon_shared::config::{ProcessEnvironment, RedriveConfig};
use replmon_shared::delivery::page::{Notifier, NotifyError, Page};
use replmon_shared::redrive::render::plan_text;
use replmon_shared::redrive::{RedriveError, Redrives, Scope};
use std::io::{BufRead, IsTerminal, Write};

/// The command line starts re-drives; their notices are the redrive function's.
struct NoPages;

impl Notifier for NoPages {
    async fn publish(&self, _page: &Page) -> Result<(), NotifyError> {
        Err(NotifyError::Refused(
            "the command line sends no pages; the redrive function does".into(),
        ))
    }
}

pub struct Request {
    pub bucket: String,
    pub destination: Option<String>,
    pub dry_run: bool,
    pub yes: bool,
    pub force: bool,
}

pub async fn redrive(sdk: &SdkConfig, ledger: DynamoDbLedger, request: Request) -> Result<()> {
    let config = RedriveConfig::from_env(&ProcessEnvironment)?;
    let redrives = Redrives {
        store: ledger,
        jobs: S3ControlJobs::new(sdk, config.s3control_endpoint.as_deref()),
        files: S3ObjectStore::new(sdk),
        notifier: NoPages,
        clock: SystemClock,
        settings: config.settings.clone(),
    };
    let scope = Scope {
        source_bucket: request.bucket.clone(),
        destination_bucket: request.destination.clone(),
    };
    let plan = redrives.plan(&scope, &config.account_id).await?;
    print!("{}", plan_text(&plan));
    if !plan.incidents.is_empty() {
        println!("{}", bytes_line(&redrives.store, &scope).await?);
    }
    if plan.incidents.is_empty() || request.dry_run {
        return Ok(());
    }
    if let Some(running) = &plan.running {
        bail!(
            "a re-drive of {} is running (job {}); `replmon status` shows how it goes",
            running.source_bucket,
            running.job_id.as_deref().unwrap_or("not created yet")
        );
    }
    let refused = plan.not_cleared();
    if !refused.is_empty() && !request.force {
        bail!(
            "not started: the cause is not shown to be cleared for {} incident(s). Fix the cause, wait for the canary's next probe under the rule to arrive, and run this again; or pass --force to re-drive anyway (versions whose cause persists fail again, and are charged)",
            refused.len()
        );
    }
    if !request.yes && !confirmed(&plan.versions)? {
        println!("not started");
        return Ok(());
    }
    let started = match redrives.start(&plan, request.force, "cli").await {
        Ok(started) => started,
        Err(error @ RedriveError::Jobs(_)) => {
            return Err(anyhow!(error).context(
                "CreateJob failed; running this again asks with the same token, so at most one job is created",
            ))
        }
        Err(error) => return Err(error.into()),
    };
    println!(
        "started: job {} (attempt {}); the redrive function follows it to its end and sends one notice. `replmon status` shows it.",
        started.job_id.as_deref().unwrap_or("?"),
        started.attempt
    );
    Ok(())
}

/// Versions the ledger lists as missing in scope, read page by page (at most `LIMIT`), and the
/// bytes of those whose events gave a size.
async fn bytes_line(ledger: &DynamoDbLedger, scope: &Scope) -> Result<String> {
    use replmon_shared::status::{BacklogCursor, LedgerReader};
    const LIMIT: usize = 100_000;
    let (mut versions, mut sized, mut bytes) = (0usize, 0usize, 0u64);
    let mut after: Option<BacklogCursor> = None;
    loop {
        let page = ledger
            .backlog_page(
                &scope.source_bucket,
                scope.destination_bucket.as_deref(),
                after.as_ref(),
                1_000,
            )
            .await?;
        for object in page.objects.iter().filter(|o| o.failed_at.is_some()) {
            versions += 1;
            if let Some(size) = object.size {
                sized += 1;
                bytes += size;
            }
        }
        match page.next {
            Some(next) if versions < LIMIT => after = Some(next),
            Some(_) => {
                return Ok(format!(
                    "Bytes the ledger lists: at least {bytes} ({sized} of the first {versions} FAILED versions have a size; more follow)"
                ))
            }
            None => {
                return Ok(format!(
                    "Bytes the ledger lists: {bytes} ({sized} of {versions} FAILED versions have a size)"
                ))
            }
        }
    }
}

fn confirmed(versions: &u64) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("not started: pass --yes to start without a terminal to confirm at");
    }
    print!("Start the job for {versions} object versions? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
