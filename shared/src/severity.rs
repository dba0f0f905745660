//! How urgent a finding is. Carried as the `severity` SNS message attribute so subscribers can
//! route with filter policies (e.g. only `critical` and `high` to the pager, the rest to chat).

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing, nobody needs to act now (e.g. an object not tracked by RTC).
    Info,
    /// Needs attention in working hours (e.g. one object deleted before it could replicate).
    Warning,
    /// The replica is falling behind or losing objects; act today.
    High,
    /// Replication is broken for every object under the rule; act now.
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Upper-case label used in page subjects, e.g. `[CRITICAL]`.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
