//! Runtime configuration, built in code or read from the environment.

use std::time::Duration;

use crate::error::CoreError;
use crate::validate;

/// Settings shared by the manager, the stores and the engines.
///
/// ```
/// use std::time::Duration;
/// let config = bgops_core::Config::default().with_default_ttl(Duration::from_secs(3600));
/// assert_eq!(config.default_ttl, Duration::from_secs(3600));
/// assert_eq!(config.cleanup_interval, Duration::from_secs(300));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Redis URL; `None` means the in-memory backend.
    pub redis_url: Option<String>,
    /// How long idempotency records are kept (default 86 400 s).
    pub default_ttl: Duration,
    /// How often the background cleanup runs (default 300 s).
    pub cleanup_interval: Duration,
    /// How long an in-flight claim lives before another caller may take over (default 30 s).
    pub default_lease: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            redis_url: None,
            default_ttl: Duration::from_secs(86_400),
            cleanup_interval: Duration::from_secs(300),
            default_lease: Duration::from_secs(30),
        }
    }
}

/// Each setting with the variables it is read from, first match wins.
const TTL_VARS: [&str; 2] = ["BGOPS_DEFAULT_TTL", "DOTMAC_TASKS_DEFAULT_TTL"];
const CLEANUP_VARS: [&str; 2] = ["BGOPS_CLEANUP_INTERVAL", "DOTMAC_TASKS_CLEANUP_INTERVAL"];
const LEASE_VARS: [&str; 2] = ["BGOPS_DEFAULT_LEASE", "DOTMAC_TASKS_DEFAULT_LEASE"];
const REDIS_VARS: [&str; 2] = ["REDIS_URL", "DOTMAC_TASKS_REDIS_URL"];

impl Config {
    /// Reads the process environment: `REDIS_URL`, `BGOPS_DEFAULT_TTL`,
    /// `BGOPS_CLEANUP_INTERVAL`, `BGOPS_DEFAULT_LEASE` (seconds), with the seed's
    /// `DOTMAC_TASKS_*` names as aliases. Unset variables keep their defaults.
    ///
    /// # Errors
    /// [`CoreError::InvalidEnv`] naming the variable when a value is not a positive whole
    /// number of seconds (or an empty `REDIS_URL`).
    pub fn from_env() -> Result<Self, CoreError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Config::from_env`] with another source of variables (tests, config files).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, CoreError> {
        let mut config = Self::default();
        let first = |vars: &[&str]| {
            vars.iter()
                .find_map(|v| lookup(v).map(|value| ((*v).to_owned(), value)))
        };
        if let Some((var, value)) = first(&REDIS_VARS) {
            if value.trim().is_empty() {
                return Err(CoreError::InvalidEnv {
                    var,
                    value,
                    reason: "empty URL".into(),
                });
            }
            config.redis_url = Some(value);
        }
        if let Some((var, value)) = first(&TTL_VARS) {
            config.default_ttl = parse_secs(&var, &value)?;
        }
        if let Some((var, value)) = first(&CLEANUP_VARS) {
            config.cleanup_interval = parse_secs(&var, &value)?;
        }
        if let Some((var, value)) = first(&LEASE_VARS) {
            config.default_lease = parse_secs(&var, &value)?;
        }
        Ok(config)
    }

    /// Sets the Redis URL.
    pub fn with_redis_url(mut self, url: impl Into<String>) -> Self {
        self.redis_url = Some(url.into());
        self
    }

    /// Sets the default TTL of idempotency records.
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// Sets the background cleanup interval.
    pub fn with_cleanup_interval(mut self, interval: Duration) -> Self {
        self.cleanup_interval = interval;
        self
    }

    /// Sets the default in-flight lease.
    pub fn with_default_lease(mut self, lease: Duration) -> Self {
        self.default_lease = lease;
        self
    }
}

fn parse_secs(var: &str, value: &str) -> Result<Duration, CoreError> {
    let invalid = |reason: String| CoreError::InvalidEnv {
        var: var.to_owned(),
        value: value.to_owned(),
        reason,
    };
    let secs: u64 = value
        .trim()
        .parse()
        .map_err(|e| invalid(format!("expected a whole number of seconds ({e})")))?;
    let d = Duration::from_secs(secs);
    validate::duration("seconds", d).map_err(|e| invalid(e.to_string()))?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_when_unset() {
        assert_eq!(Config::from_lookup(env(&[])).unwrap(), Config::default());
    }

    #[test]
    fn reads_bgops_and_seed_names() {
        let c = Config::from_lookup(env(&[
            ("REDIS_URL", "redis://127.0.0.1:6379/0"),
            ("DOTMAC_TASKS_DEFAULT_TTL", "60"),
            ("BGOPS_CLEANUP_INTERVAL", "5"),
        ]))
        .unwrap();
        assert_eq!(c.redis_url.as_deref(), Some("redis://127.0.0.1:6379/0"));
        assert_eq!(c.default_ttl, Duration::from_secs(60));
        assert_eq!(c.cleanup_interval, Duration::from_secs(5));
    }

    #[test]
    fn bgops_name_wins_over_alias() {
        let c = Config::from_lookup(env(&[
            ("BGOPS_DEFAULT_TTL", "10"),
            ("DOTMAC_TASKS_DEFAULT_TTL", "20"),
        ]))
        .unwrap();
        assert_eq!(c.default_ttl, Duration::from_secs(10));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("BGOPS_DEFAULT_TTL", "abc"),
            ("BGOPS_DEFAULT_TTL", "0"),
            ("DOTMAC_TASKS_CLEANUP_INTERVAL", "-3"),
        ] {
            let err = Config::from_lookup(env(&[(var, value)])).unwrap_err();
            match &err {
                CoreError::InvalidEnv { var: v, .. } => assert_eq!(v, var),
                other => panic!("unexpected {other:?}"),
            }
            assert!(err.to_string().contains(var));
        }
    }
}
