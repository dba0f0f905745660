//! Time as a port, so window and lease logic can be tested without sleeping.

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Lets a handler borrow a port it does not own.
impl<T: Clock> Clock for &T {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
}
