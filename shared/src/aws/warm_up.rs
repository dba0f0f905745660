//! Cold-start work moved out of the first invocation. The first call of each client pays for
//! loading the trusted roots, resolving credentials, and the connection and TLS handshake to that
//! service's endpoint. On Lambda at 128 MB that was measured at about 745 ms for the first SDK call
//! after a cold start, and about 21 ms once one cheap call had been made during init (the reference
//! in BENCHMARKS.md). One cheap, read-only call per client during init keeps that cost away from
//! the first event, which may be the page on-call is waiting for.

use futures::future::{join_all, BoxFuture};
use std::time::{Duration, Instant};

/// One client's warm-up: the service it reaches and a cheap, read-only call.
pub struct WarmUpCall<'a> {
    pub service: &'static str,
    pub call: BoxFuture<'a, Result<(), String>>,
}

impl<'a> WarmUpCall<'a> {
    pub fn new(
        service: &'static str,
        call: impl std::future::Future<Output = Result<(), String>> + Send + 'a,
    ) -> Self {
        WarmUpCall {
            service,
            call: Box::pin(call),
        }
    }
}

/// Run every call at once, for at most `budget`. Failures are logged, never fatal: a warm-up
/// only saves time, and the handler's own calls retry and report real problems.
pub async fn warm_up(calls: Vec<WarmUpCall<'_>>, budget: Duration) {
    let started = Instant::now();
    let services: Vec<&'static str> = calls.iter().map(|c| c.service).collect();
    let outcomes = tokio::time::timeout(budget, join_all(calls.into_iter().map(|c| c.call))).await;
    match outcomes {
        Ok(outcomes) => {
            let mut succeeded = 0;
            for (service, outcome) in services.iter().zip(outcomes) {
                match outcome {
                    Ok(()) => succeeded += 1,
                    Err(error) => {
                        tracing::warn!(service, %error, "warm-up call failed; the first invocation will connect instead")
                    }
                }
            }
            tracing::debug!(
                succeeded,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "clients warmed up"
            );
        }
        Err(_) => {
            tracing::warn!(
                ?services,
                budget_ms = budget.as_millis() as u64,
                "warm-up calls did not finish in time; continuing"
            );
        }
    }
}
