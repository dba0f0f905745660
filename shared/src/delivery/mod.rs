//! Delivery: the pages the functions send, the port they reach on-call through
//! ([`page::Notifier`], SNS in Lambda), and the outbox every feature sends them through
//! ([`outbox::deliver`]: claim with a lease, publish, confirm or release), so that a page goes out
//! at most once per incident and window whichever feature owes it.

pub mod outbox;
pub mod page;
pub mod text;
