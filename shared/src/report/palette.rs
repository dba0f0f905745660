//! The report's colours, shared by its pictures and the browser test that checks they drew.

/// Daily p50 latency line.
pub const P50: &str = "#1c7ed6";
/// Daily p99 latency line.
pub const P99: &str = "#e8590c";
/// The 15-minute target line.
pub const TARGET: &str = "#c92a2a";
/// Latency histogram bars.
pub const HISTOGRAM: &str = "#5f3dc4";
/// Incident bars from S3's replication events.
pub const EVENT_INCIDENT: &str = "#f08c00";
/// Incident bars from the canary.
pub const CANARY_INCIDENT: &str = "#0ca678";
