//! Configuration from the environment, parsed and validated once at start-up. Every error names
//! the variable, so a misconfigured deployment fails its first cold start with a clear message.

use crate::replication::MonitorSettings;

mod redrive;
use chrono::Duration;
pub use redrive::RedriveConfig;
use std::time::Duration as StdDuration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {var} is invalid: {reason} (got {value:?})")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
}

/// Reads variables; the process environment in Lambda, a map in tests.
pub trait Environment {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Environment for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Settings for the AWS SDK clients every function builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsSettings {
    /// Whole operation, retries included.
    pub operation_timeout: StdDuration,
    /// One attempt.
    pub attempt_timeout: StdDuration,
    pub connect_timeout: StdDuration,
    /// Attempts per operation (standard retry mode, with back-off and jitter).
    pub max_attempts: u32,
    /// One cheap call per client during init (`REPLMON_WARM_UP`, default false).
    pub warm_up: bool,
}

impl AwsSettings {
    pub fn from_env(env: &impl Environment) -> Result<Self, ConfigError> {
        Ok(AwsSettings {
            operation_timeout: StdDuration::from_millis(number(
                env,
                "REPLMON_AWS_OPERATION_TIMEOUT_MS",
                10_000,
                100,
                900_000,
            )?),
            attempt_timeout: StdDuration::from_millis(number(
                env,
                "REPLMON_AWS_ATTEMPT_TIMEOUT_MS",
                3_000,
                50,
                900_000,
            )?),
            connect_timeout: StdDuration::from_millis(number(
                env,
                "REPLMON_AWS_CONNECT_TIMEOUT_MS",
                1_000,
                50,
                60_000,
            )?),
            max_attempts: number(env, "REPLMON_AWS_MAX_ATTEMPTS", 3, 1, 10)? as u32,
            warm_up: warm_up(env)?,
        })
    }
}

/// Configuration of the replication-events function.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicationEventsConfig {
    pub table: String,
    pub page_topic_arn: String,
    pub monitor: MonitorSettings,
    pub aws: AwsSettings,
}

impl ReplicationEventsConfig {
    pub fn from_env(env: &impl Environment) -> Result<Self, ConfigError> {
        Ok(ReplicationEventsConfig {
            table: table_name(env)?,
            page_topic_arn: topic_arn(env)?,
            monitor: MonitorSettings {
                summary_window: Duration::seconds(number(
                    env,
                    "REPLMON_SUMMARY_WINDOW_SECONDS",
                    900,
                    1,
                    7 * 86_400,
                )? as i64),
                sample_keys: number(env, "REPLMON_PAGE_SAMPLE_KEYS", 10, 1, 50)? as usize,
                ledger_ttl: Duration::days(
                    number(env, "REPLMON_LEDGER_TTL_DAYS", 90, 1, 3650)? as i64
                ),
                page_lease: Duration::seconds(number(
                    env,
                    "REPLMON_PAGE_LEASE_SECONDS",
                    60,
                    1,
                    3600,
                )? as i64),
                concurrency: number(env, "REPLMON_WRITE_CONCURRENCY", 16, 1, 256)? as usize,
                ..MonitorSettings::default()
            },
            aws: AwsSettings::from_env(env)?,
        })
    }
}

/// Configuration of the alarm-events function.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmEventsConfig {
    pub table: String,
    pub page_topic_arn: String,
    pub alarm: crate::alarm::monitor::AlarmSettings,
    pub aws: AwsSettings,
}

impl AlarmEventsConfig {
    pub fn from_env(env: &impl Environment) -> Result<Self, ConfigError> {
        Ok(AlarmEventsConfig {
            table: table_name(env)?,
            page_topic_arn: topic_arn(env)?,
            alarm: crate::alarm::monitor::AlarmSettings {
                flap: crate::alarm::FlapRule {
                    max_transitions: number(env, "REPLMON_FLAP_TRANSITIONS", 4, 1, 100)? as usize,
                    window: Duration::seconds(number(
                        env,
                        "REPLMON_FLAP_WINDOW_SECONDS",
                        1800,
                        60,
                        86_400,
                    )? as i64),
                },
                trend_periods: number(env, "REPLMON_TREND_PERIODS", 30, 5, 1440)? as u32,
                ledger_ttl: Duration::days(
                    number(env, "REPLMON_LEDGER_TTL_DAYS", 90, 1, 3650)? as i64
                ),
                pending_lease: Duration::seconds(number(
                    env,
                    "REPLMON_PAGE_LEASE_SECONDS",
                    60,
                    1,
                    3600,
                )? as i64),
            },
            aws: AwsSettings::from_env(env)?,
        })
    }
}

/// Configuration of the canary function.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryConfig {
    pub table: String,
    pub page_topic_arn: String,
    /// Source buckets to probe (`REPLMON_CANARY_BUCKETS`, comma separated).
    pub buckets: Vec<String>,
    pub metrics_namespace: String,
    pub canary: crate::canary::CanarySettings,
    pub aws: AwsSettings,
}

impl CanaryConfig {
    pub fn from_env(env: &impl Environment) -> Result<Self, ConfigError> {
        const BUCKETS: &str = "REPLMON_CANARY_BUCKETS";
        let raw = required(env, BUCKETS)?;
        let mut buckets: Vec<String> = Vec::new();
        for bucket in raw.split(',').map(str::trim).filter(|b| !b.is_empty()) {
            if !valid_bucket_name(bucket) {
                return Err(invalid(
                    BUCKETS,
                    &raw,
                    &format!("{bucket:?} is not an S3 bucket name (3-63 of a-z, 0-9, '.', '-')"),
                ));
            }
            if !buckets.iter().any(|b| b == bucket) {
                buckets.push(bucket.to_owned());
            }
        }
        if buckets.is_empty() {
            return Err(ConfigError::Missing(BUCKETS));
        }
        const SEGMENT: &str = "REPLMON_CANARY_PREFIX";
        let segment_text = env
            .get(SEGMENT)
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "replmon-canary/".into());
        let segment = crate::canary::setup::CanarySegment::new(segment_text.trim())
            .map_err(|reason| invalid(SEGMENT, &segment_text, &reason))?;
        let seconds = |var, default, min, max| -> Result<chrono::Duration, ConfigError> {
            Ok(Duration::seconds(
                number(env, var, default, min, max)? as i64
            ))
        };
        let poll = crate::canary::measure::PollSchedule {
            min_gap: StdDuration::from_millis(number(
                env,
                "REPLMON_CANARY_POLL_MIN_MS",
                450,
                50,
                60_000,
            )?),
            growth: number(env, "REPLMON_CANARY_POLL_GROWTH_PERCENT", 18, 1, 100)? as f64 / 100.0,
            max_gap: StdDuration::from_millis(number(
                env,
                "REPLMON_CANARY_POLL_MAX_MS",
                15_000,
                50,
                600_000,
            )?),
        };
        Ok(CanaryConfig {
            table: table_name(env)?,
            page_topic_arn: topic_arn(env)?,
            buckets,
            metrics_namespace: env
                .get("REPLMON_CANARY_METRICS_NAMESPACE")
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "ReplicationMonitor/Canary".into()),
            canary: crate::canary::CanarySettings {
                segment,
                budget: StdDuration::from_secs(number(
                    env,
                    "REPLMON_CANARY_BUDGET_SECONDS",
                    45,
                    1,
                    840,
                )?),
                deadline: seconds("REPLMON_CANARY_DEADLINE_SECONDS", 900, 10, 7 * 86_400)?,
                latency_threshold: seconds(
                    "REPLMON_CANARY_LATENCY_THRESHOLD_SECONDS",
                    900,
                    1,
                    7 * 86_400,
                )?,
                bad_probes_to_page: number(env, "REPLMON_CANARY_BAD_PROBES", 2, 1, 100)? as u32,
                poll,
                audit_period: seconds(
                    "REPLMON_CANARY_AUDIT_PERIOD_SECONDS",
                    86_400,
                    60,
                    30 * 86_400,
                )?,
                ttl: Duration::days(number(env, "REPLMON_LEDGER_TTL_DAYS", 90, 1, 3650)? as i64),
                rollup_retention: Duration::days(number(
                    env,
                    "REPLMON_CANARY_ROLLUP_DAYS",
                    400,
                    // A month's report and the week before it.
                    40,
                    3650,
                )? as i64),
                overlap_margin: Duration::seconds(60),
                hand_over_redrives: redrive::auto_redrive(env)?,
            },
            aws: AwsSettings::from_env(env)?,
        })
        .and_then(|config: CanaryConfig| {
            // Pending probes must outlive their deadline, or they expire unresolved.
            let needed = config.canary.deadline
                + Duration::from_std(config.canary.budget).unwrap_or_default();
            if config.canary.ttl <= needed {
                return Err(invalid(
                    "REPLMON_LEDGER_TTL_DAYS",
                    &config.canary.ttl.num_days().to_string(),
                    "must be longer than REPLMON_CANARY_DEADLINE_SECONDS plus the budget",
                ));
            }
            Ok(config)
        })
    }
}

fn valid_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}

/// `REPLMON_TABLE`: the DynamoDB table shared by all functions.
pub fn table_name(env: &impl Environment) -> Result<String, ConfigError> {
    const VAR: &str = "REPLMON_TABLE";
    let value = required(env, VAR)?;
    let valid_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !(3..=255).contains(&value.len()) || !valid_chars {
        return Err(invalid(
            VAR,
            &value,
            "a DynamoDB table name is 3-255 characters of a-z, A-Z, 0-9, '_', '-', '.'",
        ));
    }
    Ok(value)
}

/// `REPLMON_PAGE_TOPIC_ARN`: the SNS topic pages go to.
pub fn topic_arn(env: &impl Environment) -> Result<String, ConfigError> {
    const VAR: &str = "REPLMON_PAGE_TOPIC_ARN";
    let value = required(env, VAR)?;
    let parts: Vec<&str> = value.split(':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sns" || parts[5].is_empty() {
        return Err(invalid(
            VAR,
            &value,
            "expected an SNS topic ARN like arn:aws:sns:us-east-1:123456789012:replmon-pages",
        ));
    }
    Ok(value)
}

/// `REPLMON_WARM_UP`: whether init makes one cheap call per client (see `aws::warm_up`), so the
/// first invocation does not pay for connections, TLS and credentials. Off by default: with a
/// full CPU a handshake costs about a millisecond and the calls only lengthen init (BENCHMARKS.md);
/// the SAM template turns it on for its 128 MB functions, where the first call was measured at
/// hundreds of milliseconds.
fn warm_up(env: &impl Environment) -> Result<bool, ConfigError> {
    flag(env, "REPLMON_WARM_UP")
}

/// A true/false setting, false when unset or empty.
fn flag(env: &impl Environment, var: &'static str) -> Result<bool, ConfigError> {
    match env.get(var).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v.is_empty() || v == "false" || v == "0" => Ok(false),
        Some(v) if v == "true" || v == "1" => Ok(true),
        Some(v) => Err(invalid(var, &v, "expected true or false")),
    }
}

fn required(env: &impl Environment, var: &'static str) -> Result<String, ConfigError> {
    match env.get(var).map(|v| v.trim().to_owned()) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(ConfigError::Missing(var)),
    }
}

fn number(
    env: &impl Environment,
    var: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let Some(raw) = env.get(var).filter(|v| !v.trim().is_empty()) else {
        return Ok(default);
    };
    let value: u64 = raw
        .trim()
        .parse()
        .map_err(|_| invalid(var, &raw, "expected a whole number"))?;
    if !(min..=max).contains(&value) {
        return Err(invalid(
            var,
            &raw,
            &format!("must be between {min} and {max}"),
        ));
    }
    Ok(value)
}

fn invalid(var: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        var,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:pages";

    #[test]
    fn defaults_apply() {
        let config = ReplicationEventsConfig::from_env(&env(&[
            ("REPLMON_TABLE", "replmon"),
            ("REPLMON_PAGE_TOPIC_ARN", TOPIC),
        ]))
        .unwrap();
        assert_eq!(config.monitor, MonitorSettings::default());
        assert_eq!(config.aws.max_attempts, 3);
        assert!(!config.aws.warm_up);
    }

    #[test]
    fn warm_up_can_be_turned_on_and_off_and_rejects_other_words() {
        let with = |value: &str| {
            CanaryConfig::from_env(&env(&[
                ("REPLMON_TABLE", "replmon"),
                ("REPLMON_PAGE_TOPIC_ARN", TOPIC),
                ("REPLMON_CANARY_BUCKETS", "primary-a"),
                ("REPLMON_WARM_UP", value),
            ]))
        };
        assert!(!with("false").unwrap().aws.warm_up);
        assert!(!with(" 0 ").unwrap().aws.warm_up);
        assert!(with("TRUE").unwrap().aws.warm_up);
        let error = with("sometimes").unwrap_err().to_string();
        assert!(error.contains("REPLMON_WARM_UP"), "{error}");
    }

    #[test]
    fn alarm_config_defaults_and_errors() {
        let config = AlarmEventsConfig::from_env(&env(&[
            ("REPLMON_TABLE", "replmon"),
            ("REPLMON_PAGE_TOPIC_ARN", TOPIC),
        ]))
        .unwrap();
        assert_eq!(
            config.alarm,
            crate::alarm::monitor::AlarmSettings::default()
        );
        let error = AlarmEventsConfig::from_env(&env(&[
            ("REPLMON_TABLE", "replmon"),
            ("REPLMON_PAGE_TOPIC_ARN", TOPIC),
            ("REPLMON_FLAP_TRANSITIONS", "0"),
        ]))
        .unwrap_err();
        assert!(
            error.to_string().contains("REPLMON_FLAP_TRANSITIONS"),
            "{error}"
        );
        assert!(AlarmEventsConfig::from_env(&env(&[]))
            .unwrap_err()
            .to_string()
            .contains("REPLMON_TABLE"));
    }

    #[test]
    fn canary_config_defaults_and_errors() {
        let config = CanaryConfig::from_env(&env(&[
            ("REPLMON_TABLE", "replmon"),
            ("REPLMON_PAGE_TOPIC_ARN", TOPIC),
            (
                "REPLMON_CANARY_BUCKETS",
                " primary-a , primary-b,primary-a,",
            ),
        ]))
        .unwrap();
        assert_eq!(config.buckets, ["primary-a", "primary-b"]);
        assert_eq!(config.canary, crate::canary::CanarySettings::default());
        assert_eq!(config.metrics_namespace, "ReplicationMonitor/Canary");
        for (var, value) in [
            ("REPLMON_CANARY_BUCKETS", "Not_A_Bucket"),
            ("REPLMON_CANARY_BUCKETS", " , "),
            ("REPLMON_CANARY_PREFIX", "no-slash"),
            ("REPLMON_CANARY_BUDGET_SECONDS", "0"),
            ("REPLMON_CANARY_BAD_PROBES", "many"),
        ] {
            let mut pairs = vec![
                ("REPLMON_TABLE", "replmon"),
                ("REPLMON_PAGE_TOPIC_ARN", TOPIC),
                ("REPLMON_CANARY_BUCKETS", "primary-a"),
            ];
            pairs.retain(|(k, _)| *k != var);
            pairs.push((var, value));
            let error = CanaryConfig::from_env(&env(&pairs)).unwrap_err();
            assert!(error.to_string().contains(var), "{var}: {error}");
        }
    }

    #[test]
    fn errors_name_the_variable() {
        let missing = ReplicationEventsConfig::from_env(&env(&[("REPLMON_PAGE_TOPIC_ARN", TOPIC)]))
            .unwrap_err();
        assert!(missing.to_string().contains("REPLMON_TABLE"), "{missing}");
        let bad_topic = ReplicationEventsConfig::from_env(&env(&[
            ("REPLMON_TABLE", "t-1"),
            ("REPLMON_PAGE_TOPIC_ARN", "pages"),
        ]))
        .unwrap_err();
        assert!(
            bad_topic.to_string().contains("REPLMON_PAGE_TOPIC_ARN"),
            "{bad_topic}"
        );
        let bad_table = ReplicationEventsConfig::from_env(&env(&[
            ("REPLMON_TABLE", "a b"),
            ("REPLMON_PAGE_TOPIC_ARN", TOPIC),
        ]))
        .unwrap_err();
        assert!(
            bad_table.to_string().contains("REPLMON_TABLE"),
            "{bad_table}"
        );
        let bad_window = ReplicationEventsConfig::from_env(&env(&[
            ("REPLMON_TABLE", "t-1"),
            ("REPLMON_PAGE_TOPIC_ARN", TOPIC),
            ("REPLMON_SUMMARY_WINDOW_SECONDS", "soon"),
        ]))
        .unwrap_err();
        assert!(
            bad_window
                .to_string()
                .contains("REPLMON_SUMMARY_WINDOW_SECONDS"),
            "{bad_window}"
        );
    }
}
