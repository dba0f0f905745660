//! `replmon report`: the period's replication evidence as one HTML page, Markdown or JSON.

use anyhow::{anyhow, bail, Context, Result};
use chrono::{Datelike, NaiveDate, Utc};
use replmon_shared::aws::DynamoDbLedger;
use replmon_shared::canary::setup::CanarySegment;
use replmon_shared::report::{html, markdown, report, summary_text, Period, ReportOptions};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Html,
    Md,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Request {
    /// The calendar month, YYYY-MM (UTC). Default: the last complete month.
    #[arg(long, value_parser = parse_month, conflicts_with_all = ["from", "to"])]
    pub month: Option<Period>,
    /// The first day, YYYY-MM-DD (UTC), with --to.
    #[arg(long, requires = "to", value_parser = parse_day)]
    pub from: Option<NaiveDate>,
    /// The last day, YYYY-MM-DD (UTC, included), with --from.
    #[arg(long, requires = "from", value_parser = parse_day)]
    pub to: Option<NaiveDate>,
    /// Only this source bucket (repeat for more).
    #[arg(long = "bucket")]
    pub buckets: Vec<String>,
    /// html: one self-contained page (prints to PDF); md: a wiki page or pull request; json:
    /// the same figures for machines.
    #[arg(long, value_enum, default_value = "html")]
    pub format: Format,
    /// Write here (and print the summary table) instead of to standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn parse_month(text: &str) -> Result<Period, String> {
    let invalid = || format!("{text:?}: expected a month like 2026-11");
    let (year, month) = text.split_once('-').ok_or_else(invalid)?;
    let (year, month): (i32, u32) = (
        year.parse().map_err(|_| invalid())?,
        month.parse().map_err(|_| invalid())?,
    );
    if year.to_string().len() != 4 || month.to_string().len() > 2 {
        return Err(invalid());
    }
    Period::month(year, month).ok_or_else(invalid)
}

fn parse_day(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("{text:?}: expected a day like 2026-11-03"))
}

pub async fn run(ledger: &DynamoDbLedger, segment: CanarySegment, request: Request) -> Result<()> {
    let now = Utc::now();
    let period = match (request.month, request.from, request.to) {
        (Some(period), _, _) => period,
        (None, Some(from), Some(to)) => {
            Period::days(from, to).ok_or_else(|| anyhow!("--from {from} is after --to {to}"))?
        }
        _ => Period::last_month(now).ok_or_else(|| anyhow!("no month before {}", now.month()))?,
    };
    if period.from > now {
        bail!("the period {} has not started yet", period.label);
    }
    if request.to.is_some_and(|to| to > now.date_naive()) {
        bail!("--to is after today ({} UTC)", now.date_naive());
    }
    let options = ReportOptions {
        period,
        buckets: request.buckets,
        canary_segment: Some(segment),
    };
    let report = report(ledger, &options, now).await?;
    let text = match request.format {
        Format::Html => html::html(&report),
        Format::Md => markdown::markdown(&report),
        Format::Json => serde_json::to_string_pretty(&report)? + "\n",
    };
    match request.out {
        None => print!("{text}"),
        Some(path) => {
            std::fs::write(&path, text)
                .with_context(|| format!("writing the report to {}", path.display()))?;
            println!("wrote {}", path.display());
            print!("{}", summary_text(&report));
        }
    }
    Ok(())
}
