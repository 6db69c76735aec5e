//! The commands, over `&dyn Storage`: each returns a [`Report`] that the binary prints as
//! a table or as JSON.

mod keys;
mod sagas;
mod store;
mod tasks;

use bgops_storage::Storage;
use serde_json::Value;

use crate::{CliError, Command};

pub use sagas::{RETRY_OPERATOR, watch as watch_saga};

/// What a command produced: JSON for scripts and text for people, from the same data.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The `--json` output.
    pub json: Value,
    /// The table or summary for people.
    pub text: String,
}

impl Report {
    /// A report whose text and JSON are given.
    pub fn new(json: Value, text: impl Into<String>) -> Self {
        Self {
            json,
            text: text.into(),
        }
    }
}

/// Runs one command against `storage`.
///
/// # Errors
/// [`CliError`] with the meaning of its [`exit code`](CliError::exit_code): not found,
/// bad input, store unreachable, refused by the record's state, other store failures.
pub async fn run(storage: &dyn Storage, command: &Command) -> Result<Report, CliError> {
    match command {
        Command::Keys(cmd) => keys::run(storage, cmd).await,
        Command::Sagas(cmd) => sagas::run(storage, cmd).await,
        Command::Tasks(cmd) => tasks::run(storage, cmd).await,
        Command::Stats => store::stats(storage).await,
        Command::Health => store::health(storage).await,
    }
}

/// Serializes a model for `--json` (the models are plain data and always serialize).
fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, CliError> {
    serde_json::to_value(value)
        .map_err(|e| CliError::Store(bgops_storage::StorageError::Serialization(e)))
}
