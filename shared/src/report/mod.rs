//! `replmon report`: the month's replication evidence per source, rule and destination, read
//! from the canary's daily roll-ups, the object records, the incidents, the audit days and the
//! latest re-drive; rendered as one self-contained HTML page, Markdown or JSON.
//!
//! ```text
//! ports.rs     what it reads beyond `replmon status` (roll-ups, object records, audit days)
//! build.rs     the period, the rules a source has in it, verdicts, the summary table
//! canary.rs    the canary's figures from roll-ups (percentiles, confidence, blind time)
//! events.rs    failed and late versions, replication incidents, exposure
//! model.rs     what a report says (every renderer reads only this)
//! html.rs      one self-contained page (inline CSS and SVG, prints to PDF)
//! svg.rs       the pictures: daily latency, latency histogram, incident timeline
//! markdown.rs  a wiki page or pull request
//! palette.rs   the pictures' colours
//! text.rs      the summary table for a terminal
//! ```

mod build;
mod canary;
mod events;
pub mod html;
pub mod markdown;
pub mod model;
pub mod palette;
pub mod ports;
pub mod svg;
mod text;

#[cfg(test)]
mod tests;

pub use build::{report, verdict, ReportOptions};
pub use canary::wilson;
pub use events::missing_at;
pub use model::*;
pub use ports::{AuditDay, NotedFinding, ReportReader};
pub use text::summary_text;

/// Late versions listed per rule, slowest first (all are counted).
pub const MAX_LATE_LISTED: usize = 50;
