//! The command line, as clap parses it.

use std::time::Duration;

use bgops_core::{SagaStatus, TaskStatus};
use clap::{Parser, Subcommand};

/// `bgops`: inspect and repair what a bgops store holds.
#[derive(Debug, Parser)]
#[command(name = "bgops", version, about, long_about = None)]
pub struct Cli {
    /// The store's URL (redis://, rediss://; see `bgops --help` for the schemes this build
    /// supports).
    #[arg(long, env = "BGOPS_URL", global = true, hide_env_values = true)]
    pub url: Option<String>,
    /// The key prefix the service's store was configured with (Redis).
    #[arg(long, env = "BGOPS_PREFIX", global = true)]
    pub prefix: Option<String>,
    /// How long to wait for the store to answer when connecting (e.g. `5s`, `500ms`).
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Print JSON (for scripts) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Idempotency records, by tenant and key.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Sagas: list, show a timeline, retry a failed compensation.
    #[command(subcommand)]
    Sagas(SagasCommand),
    /// Tasks of the idempotent queue.
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// Counts of records, sagas and tasks by status, and held locks.
    Stats,
    /// Whether the store answers, and how fast (exit code 3 when it does not).
    Health,
}

/// `bgops keys …`
#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Shows the record stored under a tenant and key.
    Get {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The key as stored.
        key: String,
    },
    /// Deletes the record (a later request with that key runs the operation again).
    Delete {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The key as stored.
        key: String,
        /// Delete even while the operation is in flight (its lease is live): a retry may
        /// then run it a second time, concurrently.
        #[arg(long)]
        force: bool,
    },
}

/// `bgops sagas …`
#[derive(Debug, Clone, Subcommand)]
pub enum SagasCommand {
    /// Lists sagas, newest first.
    List {
        /// Only this status (pending, running, completed, compensating, compensated,
        /// compensation_failed).
        #[arg(long, value_parser = parse_saga_status)]
        status: Option<SagaStatus>,
        /// Only this workflow type (filters the pages read, see `--scan`).
        #[arg(long = "type")]
        workflow_type: Option<String>,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Skip this many (of the store's listing).
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// With `--type`: read at most this many sagas to find `--limit` matches.
        #[arg(long, default_value_t = 5_000)]
        scan: usize,
    },
    /// Shows a saga: its steps, and its timeline of events with compensations and errors.
    Show {
        /// The saga id.
        id: String,
    },
    /// Follows a saga: prints its events as they are recorded (one line each; one JSON
    /// `SagaEvent` per line with `--json`) until it reaches an end state.
    Watch {
        /// The saga id.
        id: String,
        /// How often to read the store (e.g. `1s`, `250ms`).
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        interval: Duration,
        /// Keep following after an end state (a compensation retry may start it again).
        #[arg(long)]
        forever: bool,
    },
    /// Hands a saga whose compensation failed back to the recoverer: its failed
    /// compensations are marked to run again, and a service running the saga recoverer
    /// (with the workflow's handlers) compensates it.
    RetryCompensation {
        /// The saga id.
        id: String,
    },
}

/// `bgops tasks …`
#[derive(Debug, Clone, Subcommand)]
pub enum TasksCommand {
    /// Lists tasks, oldest first.
    List {
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Only this status (pending, claimed, completed, failed).
        #[arg(long, value_parser = parse_task_status)]
        status: Option<TaskStatus>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Skip this many.
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// Shows a task and its attempts.
    Show {
        /// The task id.
        id: String,
    },
    /// Puts a failed task back in its queue with a fresh set of attempts.
    Retry {
        /// The task id.
        id: String,
    },
    /// Deletes a task (and its idempotency key).
    Delete {
        /// The task id.
        id: String,
    },
    /// Deletes completed and failed tasks that finished more than `--older-than` ago.
    Purge {
        /// Age past which finished tasks go (e.g. `7d`, `12h`).
        #[arg(long, value_parser = parse_duration)]
        older_than: Duration,
        /// Delete at most this many.
        #[arg(long, default_value_t = 10_000)]
        limit: u64,
    },
}

/// Parses `30s`, `5m`, `2h`, `7d`, `1h 30m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("`{text}` is not a duration: {e}"))
}

/// Every saga status, for parsing and for the board's filters.
pub(crate) const SAGA_STATUSES: [SagaStatus; 6] = [
    SagaStatus::Pending,
    SagaStatus::Running,
    SagaStatus::Completed,
    SagaStatus::Compensating,
    SagaStatus::Compensated,
    SagaStatus::CompensationFailed,
];

/// Every task status.
pub(crate) const TASK_STATUSES: [TaskStatus; 4] = [
    TaskStatus::Pending,
    TaskStatus::Claimed,
    TaskStatus::Completed,
    TaskStatus::Failed,
];

fn parse_saga_status(text: &str) -> Result<SagaStatus, String> {
    SAGA_STATUSES
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| {
            let names: Vec<&str> = SAGA_STATUSES.iter().map(|s| s.as_str()).collect();
            format!(
                "unknown saga status `{text}`; use one of {}",
                names.join(", ")
            )
        })
}

fn parse_task_status(text: &str) -> Result<TaskStatus, String> {
    TASK_STATUSES
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| {
            let names: Vec<&str> = TASK_STATUSES.iter().map(|s| s.as_str()).collect();
            format!(
                "unknown task status `{text}`; use one of {}",
                names.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn statuses_and_durations_parse() {
        let cli = Cli::try_parse_from([
            "bgops",
            "sagas",
            "list",
            "--status",
            "compensation_failed",
            "--type",
            "order",
        ])
        .unwrap();
        let Command::Sagas(SagasCommand::List {
            status,
            workflow_type,
            ..
        }) = cli.command
        else {
            panic!("parsed {:?}", cli.command);
        };
        assert_eq!(status, Some(SagaStatus::CompensationFailed));
        assert_eq!(workflow_type.as_deref(), Some("order"));
        let cli = Cli::try_parse_from(["bgops", "tasks", "purge", "--older-than", "7d", "--json"])
            .unwrap();
        assert!(cli.json);
        assert!(matches!(
            cli.command,
            Command::Tasks(TasksCommand::Purge { older_than, .. })
                if older_than == Duration::from_secs(7 * 86_400)
        ));
    }

    #[test]
    fn bad_input_is_a_usage_error_naming_the_choices() {
        let error =
            Cli::try_parse_from(["bgops", "tasks", "list", "--status", "done"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(
            error
                .to_string()
                .contains("pending, claimed, completed, failed")
        );
        let error =
            Cli::try_parse_from(["bgops", "tasks", "purge", "--older-than", "soon"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
    }
}
