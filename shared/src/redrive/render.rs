//! The plan as the operator reads it (`replmon redrive`, `--dry-run`).

use super::plan::{caveats, Evidence};
use super::Plan;
use crate::delivery::text::untrusted;
use std::fmt::Write as _;

pub fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Re-drive of {}", untrusted(&plan.scope.describe()));
    if plan.incidents.is_empty() {
        let _ = writeln!(
            out,
            "  nothing to re-drive: no FAILED incident with object versions still missing"
        );
        return out;
    }
    let _ = writeln!(out, "Incidents ({}):", plan.incidents.len());
    for (incident, evidence) in &plan.incidents {
        let key = &incident.key;
        let _ = writeln!(
            out,
            "  {} -> {} rule {} {}: {} object versions missing (failures {} .. {})",
            untrusted(&key.source_bucket),
            untrusted(&key.destination_bucket),
            untrusted(&key.rule_id),
            untrusted(&key.cause.code()),
            incident.backlog_count,
            incident
                .first_seen
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "?".into()),
            incident
                .last_seen
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_else(|| "?".into()),
        );
        let _ = match evidence {
            Evidence::Cleared { probe_at } => writeln!(
                out,
                "    cause cleared: a canary probe put at {} arrived",
                probe_at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            Evidence::NotShown(why) => {
                writeln!(out, "    cause NOT shown cleared: {}", untrusted(why))
            }
        };
    }
    let request = &plan.request;
    let _ = writeln!(out, "Object versions the ledger lists: {}", plan.versions);
    let _ = writeln!(out, "Job (S3 Batch Replication, s3control CreateJob):");
    for (name, value) in [
        ("account", request.account_id.clone()),
        ("operation", "S3ReplicateObject".to_owned()),
        (
            "manifest",
            format!(
                "generated from s3://{}: replication status FAILED, eligible for replication, created after {}",
                request.source_bucket,
                request.created_after.format("%Y-%m-%dT%H:%M:%SZ")
            ),
        ),
        (
            "manifest output",
            format!("s3://{}/{}/", request.report_bucket, request.manifest_prefix),
        ),
        (
            "report",
            format!(
                "failed tasks only, s3://{}/{}/",
                request.report_bucket, request.report_prefix
            ),
        ),
        ("role", request.role_arn.clone()),
        ("priority", request.priority.to_string()),
        ("confirmation required", "false".to_owned()),
        ("client request token", request.token.clone()),
        ("attempt", plan.attempt.to_string()),
    ] {
        let _ = writeln!(out, "  {name:<22} {}", untrusted(&value));
    }
    let _ = writeln!(
        out,
        "Estimated request charges: ${:.4} (a job fee and a fee per object version; replicating the data is billed as live replication)",
        plan.estimated_cost_usd
    );
    let _ = writeln!(out, "Caveats:");
    for caveat in caveats() {
        let _ = writeln!(out, "  - {caveat}");
    }
    if let Some(running) = &plan.running {
        let _ = writeln!(
            out,
            "A re-drive of this source is already running: job {} ({}), started {}.",
            untrusted(running.job_id.as_deref().unwrap_or("not created yet")),
            untrusted(running.job_status.as_deref().unwrap_or("starting")),
            running.requested_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
    }
    out
}
