//! The redrive function's handler: a job status event follows its re-drive; the schedule sweeps
//! the open ones and, in automatic mode, starts those the canary handed over.

use super::trigger::Trigger;
use super::{BatchJobs, Followed, JobFiles, RedriveError, RedriveStore, Redrives, Scope};
use crate::clock::Clock;
use crate::delivery::page::Notifier;
use crate::ledger::Ledger;
use crate::status::LedgerReader;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    BadTrigger(#[from] super::trigger::BadTrigger),
    /// Some re-drives could not be looked at; the invocation fails so its error shows (the
    /// sweep tries them again on schedule).
    #[error("{0}")]
    Incomplete(String),
}

fn followed_json(source: &str, followed: &Followed) -> Value {
    match followed {
        Followed::Running(status) => {
            json!({"source_bucket": source, "state": "running", "job_status": status})
        }
        Followed::Finished(record) => json!({
            "source_bucket": source,
            "state": format!("{:?}", record.state).to_lowercase(),
            "job_id": record.job_id,
            "replicated": record.replicated,
            "still_failing": record.still_failing_count(),
            "notice_sent": record.notice_sent,
        }),
    }
}

/// Errors that only mean "later": the report not written yet, a race with another look.
fn passing(error: &RedriveError) -> bool {
    matches!(
        error,
        RedriveError::ReportPending(_) | RedriveError::Raced(_)
    )
}

impl<S, J, F, N, C> Redrives<S, J, F, N, C>
where
    S: RedriveStore + Ledger + LedgerReader,
    J: BatchJobs,
    F: JobFiles,
    N: Notifier,
    C: Clock,
{
    /// The Lambda entry point (`auto`: `REPLMON_AUTO_REDRIVE`).
    pub async fn handle(
        &self,
        payload: &str,
        auto: bool,
        account_id: &str,
    ) -> Result<Value, HandlerError> {
        let mut looked = Vec::new();
        let mut errors = Vec::new();
        match Trigger::parse(payload)? {
            Trigger::JobEvent { job_id, status } => {
                tracing::info!(%job_id, status = status.as_deref().unwrap_or(""), "batch job event");
                match self.on_job_event(&job_id).await {
                    Ok(Some(followed)) => looked.push(followed_json("", &followed)),
                    Ok(None) => {
                        looked.push(json!({"job_id": job_id, "state": "not a running re-drive"}))
                    }
                    Err(error) if passing(&error) => looked.push(
                        json!({"job_id": job_id, "state": "later", "why": error.to_string()}),
                    ),
                    Err(error) => errors.push(format!("job {job_id}: {error}")),
                }
            }
            Trigger::Sweep => {
                if auto {
                    self.start_handed_over(account_id, &mut looked, &mut errors)
                        .await;
                }
                for (source, result) in self.sweep().await {
                    match result {
                        Ok(followed) => looked.push(followed_json(&source, &followed)),
                        Err(error) if passing(&error) => looked.push(
                            json!({"source_bucket": source, "state": "later", "why": error.to_string()}),
                        ),
                        Err(error) => errors.push(format!("{source}: {error}")),
                    }
                }
            }
        }
        for error in &errors {
            tracing::error!(%error, "re-drive not followed");
        }
        if errors.is_empty() {
            Ok(json!({"redrives": looked}))
        } else {
            Err(HandlerError::Incomplete(errors.join("; ")))
        }
    }

    /// Start the re-drives the canary handed over (a rule recovered): each only when its
    /// guard holds, and the hand-over is dropped once handled either way.
    async fn start_handed_over(
        &self,
        account_id: &str,
        looked: &mut Vec<Value>,
        errors: &mut Vec<String>,
    ) {
        let handed = match self.store.handed_over().await {
            Ok(handed) => handed,
            Err(error) => {
                errors.push(format!("hand-overs: {error}"));
                return;
            }
        };
        for hand in handed {
            let scope = Scope {
                source_bucket: hand.source_bucket.clone(),
                destination_bucket: Some(hand.destination_bucket.clone()),
            };
            let outcome = match self.plan(&scope, account_id).await {
                Ok(plan) if plan.incidents.is_empty() || plan.running.is_some() => Ok(None),
                Ok(plan) if !plan.not_cleared().is_empty() => Ok(None),
                Ok(plan) => self.start(&plan, false, "auto").await.map(Some),
                Err(error) => Err(error),
            };
            match outcome {
                Ok(started) => {
                    if let Some(record) = &started {
                        looked.push(json!({"source_bucket": record.source_bucket, "state": "started", "job_id": record.job_id, "requested_by": "auto"}));
                    }
                    if let Err(error) = self.store.drop_hand_over(&hand).await {
                        errors.push(format!("hand-over of {}: {error}", hand.source_bucket));
                    }
                }
                Err(error) => errors.push(format!(
                    "automatic re-drive of {}: {error}",
                    scope.describe()
                )),
            }
        }
    }
}
