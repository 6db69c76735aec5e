//! Embedded, versioned migrations of the bgops schema.

use sqlx::PgPool;

use crate::error::PostgresError;

/// The migrations, in order: (version, name, SQL with `{schema}` placeholders).
const MIGRATIONS: &[(i32, &str, &str)] =
    &[(1, "init", include_str!("../migrations/0001_init.sql"))];

/// The schema version this crate reads and writes.
pub const SCHEMA_VERSION: i32 = 1;

/// Whether `name` is a plain lowercase SQL identifier (so it needs no quoting anywhere).
pub(crate) fn valid_schema_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Applies every migration newer than the schema's version, in one transaction, under an
/// advisory lock (concurrent callers wait, then find nothing left to do). Returns the
/// versions applied.
pub(crate) async fn migrate(pool: &PgPool, schema: &str) -> Result<Vec<i32>, PostgresError> {
    let failed = |version: i32| {
        let schema = schema.to_owned();
        move |source| PostgresError::Migrate {
            schema,
            version,
            source,
        }
    };
    let mut tx = pool.begin().await.map_err(failed(0))?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("bgops-migrate:{schema}"))
        .execute(&mut *tx)
        .await
        .map_err(failed(0))?;
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT statement_timestamp()
         );"
    ))
    .execute(&mut *tx)
    .await
    .map_err(failed(0))?;
    let current: i32 = sqlx::query_scalar(&format!(
        "SELECT coalesce(max(version), 0) FROM {schema}.schema_migrations"
    ))
    .fetch_one(&mut *tx)
    .await
    .map_err(failed(0))?;
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        sqlx::raw_sql(&sql.replace("{schema}", schema))
            .execute(&mut *tx)
            .await
            .map_err(failed(version))?;
        sqlx::query(&format!(
            "INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)"
        ))
        .bind(version)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(failed(version))?;
        applied.push(version);
    }
    tx.commit().await.map_err(failed(SCHEMA_VERSION))?;
    Ok(applied)
}

/// Checks that the schema exists at this crate's version; the error says to migrate.
pub(crate) async fn check(pool: &PgPool, schema: &str) -> Result<(), PostgresError> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT CASE WHEN to_regclass($1) IS NULL THEN NULL ELSE 0 END")
            .bind(format!("{schema}.schema_migrations"))
            .fetch_one(pool)
            .await
            .map_err(crate::error::map)?;
    let found = match found {
        None => 0,
        Some(_) => sqlx::query_scalar(&format!(
            "SELECT coalesce(max(version), 0) FROM {schema}.schema_migrations"
        ))
        .fetch_one(pool)
        .await
        .map_err(crate::error::map)?,
    };
    if found >= SCHEMA_VERSION {
        Ok(())
    } else {
        Err(PostgresError::SchemaMissing {
            schema: schema.to_owned(),
            found,
            need: SCHEMA_VERSION,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::valid_schema_name;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in ["bgops", "_x", "a1_b2", &"a".repeat(63)] {
            assert!(valid_schema_name(ok), "{ok}");
        }
        for bad in ["", "1a", "Bgops", "a-b", "a;drop", "a b", &"a".repeat(64)] {
            assert!(!valid_schema_name(bad), "{bad}");
        }
    }
}
