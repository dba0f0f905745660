//! The S3 replication monitor's library: event parsing, the failure-reason catalog, incidents and
//! pages as plain domain code over small ports (ledger, notifier, clock), plus the AWS adapters
//! (feature `aws`) and in-memory fakes (feature `fakes`).
//!
//! Layers, from the outside in:
//!
//! ```text
//! functions/*/main.rs   config parsed once, SDK clients built once, run(service_fn(handler))
//!        |
//! envelope/             direct / SNS / SQS payloads -> messages + the response Lambda needs
//!        |
//! replication/          S3 replication events -> one commit per batch (records + counters), pages
//! alarm/                CloudWatch alarm changes -> alarm incidents, trend, backlog count
//! canary/               probes under each rule, their timing, the set-up audit
//! redrive/              FAILED versions back to the replica (S3 Batch Replication), and proof
//! status/               what `replmon status` and `backlog` report
//! delivery/             pages, the notifier port, the outbox every page goes through
//!        |  ports (traits): ledger::Ledger, alarm::monitor::{AlarmStore, BacklogCounter},
//!        |  delivery::page::Notifier, clock::Clock, canary::ports, status::LedgerReader
//!        |
//! aws/                  adapters: dynamodb/ (one file per port), sns, s3, cloudwatch
//! fakes/                in-memory adapters for unit tests and benchmarks (count reads too)
//! ```
//!
//! A new event source gets a folder beside `replication/`, parses only message bodies, and
//! writes through the ports, sends pages through `delivery::outbox`; its adapters go under
//! `aws/`, its fakes under `fakes/`.

pub mod alarm;
pub mod backoff;
pub mod canary;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod envelope;
pub mod event;
pub mod incident;
pub mod ledger;
pub mod metrics;
pub mod names;
pub mod redrive;
pub mod replication;
pub mod report;
pub mod severity;
pub mod status;

#[cfg(feature = "allocator")]
pub mod allocator;
#[cfg(feature = "aws")]
pub mod aws;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
