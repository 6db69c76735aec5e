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
    /// Redis URL (`REDIS_URL`); selects the Redis backend.
    pub redis_url: Option<String>,
    /// PostgreSQL URL (`DATABASE_URL`); selects the PostgreSQL backend.
    pub database_url: Option<String>,
    /// NATS URL (`NATS_URL`); selects the NATS JetStream backend.
    pub nats_url: Option<String>,
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
            database_url: None,
            nats_url: None,
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
const DATABASE_VARS: [&str; 2] = ["DATABASE_URL", "BGOPS_DATABASE_URL"];
const NATS_VARS: [&str; 2] = ["NATS_URL", "BGOPS_NATS_URL"];

impl Config {
    /// Reads the process environment: `REDIS_URL`, `DATABASE_URL`, `NATS_URL` (at most
    /// one of them), `BGOPS_DEFAULT_TTL`,
    /// `BGOPS_CLEANUP_INTERVAL`, `BGOPS_DEFAULT_LEASE` (seconds), with the seed's
    /// `DOTMAC_TASKS_*` names as aliases. Unset variables keep their defaults.
    ///
    /// # Errors
    /// [`CoreError::InvalidEnv`] naming the variable when a value is not a positive whole
    /// number of seconds, an empty URL, or more than one backend URL.
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
        let url = |vars: &[&str]| -> Result<Option<(String, String)>, CoreError> {
            match first(vars) {
                Some((var, value)) if value.trim().is_empty() => Err(CoreError::InvalidEnv {
                    var,
                    value,
                    reason: "empty URL".into(),
                }),
                found => Ok(found),
            }
        };
        let redis = url(&REDIS_VARS)?;
        let database = url(&DATABASE_VARS)?;
        let nats = url(&NATS_VARS)?;
        let set: Vec<&(String, String)> =
            [&redis, &database, &nats].into_iter().flatten().collect();
        if let [_, second, ..] = set.as_slice() {
            return Err(CoreError::InvalidEnv {
                var: second.0.clone(),
                value: second.1.clone(),
                reason: format!(
                    "{} is set too; set one backend URL only (REDIS_URL, DATABASE_URL or NATS_URL)",
                    set[0].0
                ),
            });
        }
        config.redis_url = redis.map(|(_, v)| v);
        config.database_url = database.map(|(_, v)| v);
        config.nats_url = nats.map(|(_, v)| v);
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

    /// Sets the PostgreSQL URL.
    pub fn with_database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }

    /// Sets the NATS URL.
    pub fn with_nats_url(mut self, url: impl Into<String>) -> Self {
        self.nats_url = Some(url.into());
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

    #[test]
    fn one_backend_url_at_most() {
        let c = Config::from_lookup(env(&[("DATABASE_URL", "postgres://db")])).unwrap();
        assert_eq!(c.database_url.as_deref(), Some("postgres://db"));
        assert_eq!((c.redis_url, c.nats_url), (None, None));
        let c = Config::from_lookup(env(&[("NATS_URL", "nats://n:4222")])).unwrap();
        assert_eq!(c.nats_url.as_deref(), Some("nats://n:4222"));
        let err = Config::from_lookup(env(&[
            ("REDIS_URL", "redis://r"),
            ("NATS_URL", "nats://n:4222"),
        ]))
        .unwrap_err();
        match &err {
            CoreError::InvalidEnv { var, reason, .. } => {
                assert_eq!(var, "NATS_URL");
                assert!(reason.contains("REDIS_URL"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            Config::from_lookup(env(&[("DATABASE_URL", " ")])),
            Err(CoreError::InvalidEnv { .. })
        ));
    }
}
