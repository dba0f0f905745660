//! The per-alarm state machine: what a state change means given the stored record (open an
//! incident, page, recover, hold back while flapping, or ignore an older change).

use super::{AlarmChange, AlarmState};
use chrono::{DateTime, Duration, Utc};

/// Flapping rule: more than `max_transitions` state changes within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlapRule {
    pub max_transitions: usize,
    pub window: Duration,
}

impl Default for FlapRule {
    fn default() -> Self {
        FlapRule {
            max_transitions: 4,
            window: Duration::minutes(30),
        }
    }
}

/// What the monitor remembers about one alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmRecord {
    pub alarm_key: String,
    pub alarm_name: String,
    pub state: AlarmState,
    pub state_time: DateTime<Utc>,
    /// Set while an incident is open (since the ALARM that opened it).
    pub incident_opened_at: Option<DateTime<Utc>>,
    /// Times of recent state changes, within the flapping window.
    pub transitions: Vec<DateTime<Utc>>,
    /// Set while pages are held because the alarm flaps.
    pub flapping_since: Option<DateTime<Utc>>,
    /// A notification decided for `state_time` but not yet confirmed sent.
    pub pending: Option<AlarmNotification>,
    /// When the pending notification was handed to an invocation to send.
    pub pending_since: Option<DateTime<Utc>>,
}

/// What on-call hears about a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmNotification {
    /// ALARM: incident opened; page.
    Opened,
    /// OK after ALARM: incident resolved; notice with its duration.
    Recovered { open_seconds: i64 },
    /// INSUFFICIENT_DATA: notice.
    InsufficientData,
    /// Too many changes: one page, then pages are held until it is stable.
    Flapping { transitions: usize },
}

impl AlarmNotification {
    pub fn kind(self) -> &'static str {
        match self {
            AlarmNotification::Opened => "alarm",
            AlarmNotification::Recovered { .. } => "alarm-recovered",
            AlarmNotification::InsufficientData => "alarm-insufficient-data",
            AlarmNotification::Flapping { .. } => "alarm-flapping",
        }
    }

    pub fn code(self) -> String {
        match self {
            AlarmNotification::Opened => "OPENED".into(),
            AlarmNotification::Recovered { open_seconds } => format!("RECOVERED:{open_seconds}"),
            AlarmNotification::InsufficientData => "INSUFFICIENT_DATA".into(),
            AlarmNotification::Flapping { transitions } => format!("FLAPPING:{transitions}"),
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        match code.split_once(':') {
            None if code == "OPENED" => Some(AlarmNotification::Opened),
            None if code == "INSUFFICIENT_DATA" => Some(AlarmNotification::InsufficientData),
            Some(("RECOVERED", s)) => s
                .parse()
                .ok()
                .map(|open_seconds| AlarmNotification::Recovered { open_seconds }),
            Some(("FLAPPING", n)) => n
                .parse()
                .ok()
                .map(|transitions| AlarmNotification::Flapping { transitions }),
            _ => None,
        }
    }
}

/// The outcome of applying a change to what is stored.
#[derive(Debug, Clone, PartialEq)]
pub enum AlarmDecision {
    /// Older than (or the same as) what is stored and nothing pending: nothing to do.
    Stale,
    /// The same change again, and its notification was never confirmed: send it now.
    Resend(AlarmNotification),
    /// Store the new record; send its pending notification if any.
    Apply(AlarmRecord),
}

/// Apply a state change. Order-safe: a change not newer than the stored state changes nothing.
pub fn decide(stored: Option<&AlarmRecord>, change: &AlarmChange, rule: FlapRule) -> AlarmDecision {
    if let Some(stored) = stored {
        if change.state_time < stored.state_time {
            return AlarmDecision::Stale;
        }
        if change.state_time == stored.state_time {
            return match stored.pending {
                Some(pending) if change.state == stored.state => AlarmDecision::Resend(pending),
                _ => AlarmDecision::Stale,
            };
        }
    }
    let previous = stored.map(|s| s.state).or(change.previous_state);
    let changed = previous != Some(change.state);
    let mut transitions: Vec<DateTime<Utc>> = stored
        .map(|s| s.transitions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| change.state_time - *t < rule.window)
        .collect();
    // Stable again once a whole window passed without a change.
    let mut flapping_since = stored.and_then(|s| s.flapping_since);
    if flapping_since.is_some() && transitions.is_empty() {
        flapping_since = None;
    }
    if changed {
        transitions.push(change.state_time);
    }
    let mut incident_opened_at = stored.and_then(|s| s.incident_opened_at);
    let mut notification = match change.state {
        AlarmState::Alarm if incident_opened_at.is_none() => {
            incident_opened_at = Some(change.state_time);
            Some(AlarmNotification::Opened)
        }
        AlarmState::Alarm => None,
        AlarmState::Ok => incident_opened_at
            .take()
            .map(|opened| AlarmNotification::Recovered {
                open_seconds: (change.state_time - opened).num_seconds(),
            }),
        AlarmState::InsufficientData if changed => Some(AlarmNotification::InsufficientData),
        AlarmState::InsufficientData => None,
    };
    if transitions.len() > rule.max_transitions {
        if flapping_since.is_none() {
            flapping_since = Some(change.state_time);
            notification = Some(AlarmNotification::Flapping {
                transitions: transitions.len(),
            });
        } else {
            // Held: the flapping page said it all.
            notification = None;
        }
    } else if flapping_since.is_some() {
        notification = None;
    }
    AlarmDecision::Apply(AlarmRecord {
        alarm_key: change.alarm_key(),
        alarm_name: change.alarm_name.clone(),
        state: change.state,
        state_time: change.state_time,
        incident_opened_at,
        transitions,
        flapping_since,
        // A notification decided earlier but never confirmed is not dropped by a newer change
        // that has nothing to say (a held change, an OK with no incident); a newer message wins.
        pending: notification.or(stored.and_then(|s| s.pending)),
        pending_since: None,
    })
}
