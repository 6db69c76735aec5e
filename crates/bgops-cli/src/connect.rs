//! From a URL to an `Arc<dyn Storage>`: one arm per backend, so a new backend plugs in
//! with its feature, its schemes in [`SCHEMES`] and one function here.

use std::sync::Arc;
use std::time::Duration;

use bgops_storage::Storage;

use crate::CliError;

/// How to reach the store.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The store's URL.
    pub url: String,
    /// The key prefix the service configured (Redis), if not the default.
    pub prefix: Option<String>,
    /// How long to wait for the store when connecting.
    pub timeout: Duration,
}

/// The URL schemes this build understands.
pub const SCHEMES: &[&str] = &[
    #[cfg(feature = "redis")]
    "redis",
    #[cfg(feature = "redis")]
    "rediss",
    #[cfg(feature = "postgres")]
    "postgres",
    #[cfg(feature = "postgres")]
    "postgresql",
    #[cfg(feature = "nats")]
    "nats",
];

/// Connects to the store at `options.url`.
///
/// # Errors
/// [`CliError::Usage`] for a URL without a scheme or with a scheme this build does not
/// support (naming the ones it does), [`CliError::Unreachable`] when the store does not
/// answer within the timeout.
pub async fn connect(options: &ConnectOptions) -> Result<Arc<dyn Storage>, CliError> {
    let Some((scheme, _)) = options.url.split_once("://") else {
        return Err(CliError::Usage(format!(
            "`{}` is not a store URL; expected e.g. redis://127.0.0.1:6379 (schemes: {})",
            redact(&options.url),
            schemes()
        )));
    };
    match scheme {
        #[cfg(feature = "redis")]
        "redis" | "rediss" => redis(options).await,
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => postgres(options).await,
        #[cfg(feature = "nats")]
        "nats" => nats(options).await,
        other => Err(CliError::Usage(format!(
            "unsupported store scheme `{other}://`; this build supports: {}",
            schemes()
        ))),
    }
}

fn schemes() -> String {
    if SCHEMES.is_empty() {
        return "none (built without backend features)".to_owned();
    }
    SCHEMES
        .iter()
        .map(|s| format!("{s}://"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, None), |(a, p)| (a, Some(p)));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{user}:***@{host}")
        }
        None => authority.to_owned(),
    };
    match path {
        Some(p) => format!("{scheme}://{authority}/{p}"),
        None => format!("{scheme}://{authority}"),
    }
}

#[cfg(feature = "redis")]
async fn redis(options: &ConnectOptions) -> Result<Arc<dyn Storage>, CliError> {
    let mut builder = bgops_redis::RedisStorage::builder(options.url.clone())
        .connect_timeout(options.timeout)
        .command_timeout(options.timeout)
        .pool_size(1);
    if let Some(prefix) = &options.prefix {
        builder = builder.prefix(prefix.clone());
    }
    let storage = builder.build().await.map_err(|e| build_error(options, e))?;
    Ok(Arc::new(storage))
}

/// A store that failed to build: unreachable, or unusable as given.
fn build_error(options: &ConnectOptions, error: bgops_storage::StorageError) -> CliError {
    if error.is_transient() {
        CliError::Unreachable(error)
    } else {
        CliError::Usage(format!(
            "cannot use store URL `{}`: {error}",
            redact(&options.url)
        ))
    }
}

/// PostgreSQL; `--prefix` is the schema. The schema is checked, never migrated: the
/// service migrates its own database.
#[cfg(feature = "postgres")]
async fn postgres(options: &ConnectOptions) -> Result<Arc<dyn Storage>, CliError> {
    use bgops_postgres::{PostgresError, PostgresStorage};
    let mut builder = PostgresStorage::builder(options.url.clone())
        .max_connections(1)
        .acquire_timeout(options.timeout);
    if let Some(prefix) = &options.prefix {
        builder = builder.schema(prefix.clone());
    }
    let connect = tokio::time::timeout(options.timeout, builder.build());
    match connect.await {
        Ok(Ok(storage)) => Ok(Arc::new(storage)),
        Ok(Err(e @ (PostgresError::InvalidUrl(_) | PostgresError::InvalidSchema(_)))) => {
            Err(CliError::Usage(format!(
                "cannot use store URL `{}`: {e}",
                redact(&options.url)
            )))
        }
        Ok(Err(e @ PostgresError::Connect { .. })) => Err(CliError::Unreachable(e.into())),
        Ok(Err(e)) => Err(CliError::Store(e.into())),
        Err(_) => Err(CliError::Unreachable(
            bgops_storage::StorageError::Unavailable {
                backend: "postgres",
                source: format!("no answer within {:?}", options.timeout).into(),
            },
        )),
    }
}

/// NATS JetStream; `--prefix` names its buckets and streams.
#[cfg(feature = "nats")]
async fn nats(options: &ConnectOptions) -> Result<Arc<dyn Storage>, CliError> {
    let mut builder =
        bgops_nats::NatsStorage::builder(options.url.clone()).connect_timeout(options.timeout);
    if let Some(prefix) = &options.prefix {
        builder = builder.prefix(prefix.clone());
    }
    // The NATS client reports a refused or failed connection as a plain backend error:
    // whatever stops the build here is, to the operator, a store that cannot be reached.
    let storage = builder.build().await.map_err(CliError::Unreachable)?;
    Ok(Arc::new(storage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("redis://user:secret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redact("rediss://:secret@host"), "rediss://:***@host");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }

    #[tokio::test]
    async fn unknown_schemes_are_usage_errors_naming_the_supported_ones() {
        let options = ConnectOptions {
            url: "mongodb://x".into(),
            prefix: None,
            timeout: Duration::from_secs(1),
        };
        let Err(error) = connect(&options).await else {
            panic!("connected to mongodb");
        };
        assert_eq!(error.exit_code(), crate::ExitCode::Usage);
        assert!(error.to_string().contains("mongodb://"), "{error}");
        let options = ConnectOptions {
            url: "localhost:6379".into(),
            ..options
        };
        let Err(error) = connect(&options).await else {
            panic!("connected without a scheme");
        };
        assert_eq!(error.exit_code(), crate::ExitCode::Usage);
    }
}
