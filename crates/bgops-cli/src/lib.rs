//! # bgops-cli
//!
//! The `bgops` command, for the people who run services built on bgops: look up and delete
//! idempotency records, list sagas and read a saga's step timeline (with its compensations
//! and errors), hand a saga whose compensation failed back to the recoverer, list, retry,
//! delete and purge tasks, and check the store's health and counts.
//!
//! ```text
//! $ export BGOPS_URL=redis://127.0.0.1:6379
//! $ bgops sagas list --status compensation_failed
//! $ bgops sagas show 01939c1e-…
//! $ bgops sagas watch 01939c1e-…      # follow it live until it ends
//! $ bgops tasks list --queue emails --status failed --json | jq '.[].task_id'
//! ```
//!
//! The commands are a library ([`run`]) over `&dyn Storage`, so they are tested against
//! any backend; the binary only parses arguments ([`Cli`]), connects ([`connect()`]) and
//! prints a [`Report`] as a table or, with `--json`, as JSON.
//!
//! ## Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | the saga, task or record does not exist |
//! | 2 | bad arguments or input (also clap's own usage errors) |
//! | 3 | the store cannot be reached, or reports itself unhealthy |
//! | 4 | refused: the record is not in a state the command applies to, or is busy |
//! | 5 | the store failed otherwise (corrupt data, backend error) |
//!
//! ## Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `redis` | yes | `redis://` and `rediss://` URLs (bgops-redis) |
//! | `postgres` | yes | `postgres://` and `postgresql://` URLs (bgops-postgres; `--prefix` is the schema) |
//! | `nats` | yes | `nats://` URLs (bgops-nats, JetStream; `--prefix` names the buckets) |

mod args;
pub mod commands;
pub mod connect;
mod error;
pub mod output;

pub use args::{Cli, Command, KeysCommand, SagasCommand, TasksCommand};
pub use commands::{Report, run, watch_saga};
pub use connect::{ConnectOptions, SCHEMES, connect};
pub use error::{CliError, ExitCode};
