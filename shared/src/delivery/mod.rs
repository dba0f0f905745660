//! Delivery: the pages the functions send and the port they reach on-call through
//! ([`page::Notifier`], SNS in Lambda). The page bodies are built by each feature from its
//! incident; how a page is claimed so that it goes out once per incident and window is still
//! each feature's own (replication: the incident's page claim; alarm: the pending notification;
//! canary: the owed pages of a rule's health).

pub mod page;
