//! The S3 replication monitor's library: event parsing, the failure-reason catalog, incidents and
//! pages as plain domain code over small ports (ledger, notifier, clock), plus the AWS adapters
//! (feature `aws`) and in-memory fakes (feature `fakes`).

pub mod alarm;
pub mod alarm_monitor;
pub mod canary;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod envelope;
pub mod event;
pub mod incident;
pub mod ledger;
pub mod metrics;
pub mod page;
pub mod replication;
pub mod severity;
pub mod status;

#[cfg(feature = "allocator")]
pub mod allocator;
#[cfg(feature = "aws")]
pub mod aws;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
