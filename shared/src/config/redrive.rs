//! Configuration of re-drives, shared by `replmon redrive` and the redrive function.

use super::{
    flag, invalid, number, required, valid_bucket_name, AwsSettings, ConfigError, Environment,
};
use crate::redrive::RedriveSettings;
use chrono::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct RedriveConfig {
    pub settings: RedriveSettings,
    /// The account the jobs run in: `REPLMON_ACCOUNT_ID`, else the job role's account (no STS
    /// call, no permission for it: the role Batch Operations assumes is in the buckets' account).
    pub account_id: String,
    /// `REPLMON_S3CONTROL_ENDPOINT`: an s3control endpoint used as it is (a local simulator).
    pub s3control_endpoint: Option<String>,
    /// `REPLMON_AUTO_REDRIVE`: start a re-drive by itself when the canary saw the rule recover.
    pub auto: bool,
    pub aws: AwsSettings,
}

impl RedriveConfig {
    pub fn from_env(env: &impl Environment) -> Result<Self, ConfigError> {
        const ROLE: &str = "REPLMON_REDRIVE_ROLE_ARN";
        let role_arn = required(env, ROLE)?;
        let role_account = iam_role_account(&role_arn).ok_or_else(|| {
            invalid(
                ROLE,
                &role_arn,
                "expected an IAM role ARN like arn:aws:iam::123456789012:role/replmon-redrive",
            )
        })?;
        const BUCKET: &str = "REPLMON_REDRIVE_REPORT_BUCKET";
        let report_bucket = required(env, BUCKET)?;
        if !valid_bucket_name(&report_bucket) {
            return Err(invalid(BUCKET, &report_bucket, "not an S3 bucket name"));
        }
        const ACCOUNT: &str = "REPLMON_ACCOUNT_ID";
        let account_id = match env.get(ACCOUNT).filter(|v| !v.trim().is_empty()) {
            Some(account) if is_account_id(account.trim()) => account.trim().to_owned(),
            Some(account) => return Err(invalid(ACCOUNT, &account, "expected 12 digits")),
            None => role_account.to_owned(),
        };
        const ENDPOINT: &str = "REPLMON_S3CONTROL_ENDPOINT";
        let s3control_endpoint = match env.get(ENDPOINT).filter(|v| !v.trim().is_empty()) {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                Some(url.trim().to_owned())
            }
            Some(url) => return Err(invalid(ENDPOINT, &url, "expected an http(s) URL")),
            None => None,
        };
        let defaults = RedriveSettings::default();
        Ok(RedriveConfig {
            settings: RedriveSettings {
                role_arn,
                report_bucket,
                report_prefix: env
                    .get("REPLMON_REDRIVE_REPORT_PREFIX")
                    .map(|p| p.trim().trim_matches('/').to_owned())
                    .filter(|p| !p.is_empty())
                    .unwrap_or(defaults.report_prefix),
                priority: number(env, "REPLMON_REDRIVE_PRIORITY", 10, 0, 2_147_483_647)? as i32,
                job_fee_usd: usd(env, "REPLMON_REDRIVE_JOB_FEE_USD", defaults.job_fee_usd)?,
                per_object_fee_usd: usd(
                    env,
                    "REPLMON_REDRIVE_OBJECT_FEE_USD",
                    defaults.per_object_fee_usd,
                )?,
                ledger_ttl: Duration::days(
                    number(env, "REPLMON_LEDGER_TTL_DAYS", 90, 1, 3650)? as i64
                ),
            },
            account_id,
            s3control_endpoint,
            auto: auto_redrive(env)?,
            aws: AwsSettings::from_env(env)?,
        })
    }
}

/// `REPLMON_AUTO_REDRIVE` (the canary hands recovered rules over; the redrive function starts
/// their re-drives).
pub(super) fn auto_redrive(env: &impl Environment) -> Result<bool, ConfigError> {
    flag(env, "REPLMON_AUTO_REDRIVE")
}

fn iam_role_account(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, "iam", "", account, resource]
            if is_account_id(account) && resource.starts_with("role/") =>
        {
            Some(account)
        }
        _ => None,
    }
}

fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

fn usd(env: &impl Environment, var: &'static str, default: f64) -> Result<f64, ConfigError> {
    let Some(raw) = env.get(var).filter(|v| !v.trim().is_empty()) else {
        return Ok(default);
    };
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v < 1_000.0)
        .ok_or_else(|| invalid(var, &raw, "expected an amount in USD, like 0.25"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name: &str| vars.get(name).cloned()
    }

    const ROLE: (&str, &str) = (
        "REPLMON_REDRIVE_ROLE_ARN",
        "arn:aws:iam::123456789012:role/replmon-redrive",
    );
    const BUCKET: (&str, &str) = ("REPLMON_REDRIVE_REPORT_BUCKET", "replmon-reports");

    #[test]
    fn the_account_comes_from_the_setting_or_the_role() {
        let config = RedriveConfig::from_env(&env(&[ROLE, BUCKET])).unwrap();
        assert_eq!(config.account_id, "123456789012");
        assert!(!config.auto);
        assert_eq!(config.settings.job_fee_usd, 0.25);
        let config = RedriveConfig::from_env(&env(&[
            ROLE,
            BUCKET,
            ("REPLMON_ACCOUNT_ID", "210987654321"),
            ("REPLMON_AUTO_REDRIVE", "true"),
            ("REPLMON_S3CONTROL_ENDPOINT", "http://127.0.0.1:4599"),
            ("REPLMON_REDRIVE_OBJECT_FEE_USD", "0.000002"),
        ]))
        .unwrap();
        assert_eq!(config.account_id, "210987654321");
        assert!(config.auto);
        assert_eq!(
            config.s3control_endpoint.as_deref(),
            Some("http://127.0.0.1:4599")
        );
        assert_eq!(config.settings.per_object_fee_usd, 0.000002);
    }

    #[test]
    fn bad_settings_name_their_variable() {
        for (vars, var) in [
            (vec![BUCKET], "REPLMON_REDRIVE_ROLE_ARN"),
            (
                vec![
                    ("REPLMON_REDRIVE_ROLE_ARN", "arn:aws:iam::1:user/x"),
                    BUCKET,
                ],
                "REPLMON_REDRIVE_ROLE_ARN",
            ),
            (vec![ROLE], "REPLMON_REDRIVE_REPORT_BUCKET"),
            (
                vec![ROLE, BUCKET, ("REPLMON_ACCOUNT_ID", "12")],
                "REPLMON_ACCOUNT_ID",
            ),
            (
                vec![ROLE, BUCKET, ("REPLMON_S3CONTROL_ENDPOINT", "localhost:1")],
                "REPLMON_S3CONTROL_ENDPOINT",
            ),
            (
                vec![ROLE, BUCKET, ("REPLMON_REDRIVE_JOB_FEE_USD", "-1")],
                "REPLMON_REDRIVE_JOB_FEE_USD",
            ),
            (
                vec![ROLE, BUCKET, ("REPLMON_AUTO_REDRIVE", "yes")],
                "REPLMON_AUTO_REDRIVE",
            ),
        ] {
            let error = RedriveConfig::from_env(&env(&vars)).unwrap_err();
            assert!(error.to_string().contains(var), "{error}");
        }
    }
}
