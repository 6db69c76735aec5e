//! Project automation, in the style of rust-analyzer's xtask: `cargo xtask <command>`.
//!
//! | command | what it does |
//! |---|---|
//! | `ci` | everything CI checks: fmt, clippy, tests (memory, Redis, Redis Cluster, PostgreSQL, NATS), doctests, docs, tidy, cargo-deny |
//! | `test [args]` | the test suite only, with throwaway Redis, PostgreSQL and NATS servers |
//! | `bench [memory\|redis\|postgres\|nats\|saga\|queue\|http]` | benchmarks, printing medians and ratios |
//! | `redis` | starts a throwaway `redis-server` and prints its URL |
//! | `redis-cluster` | starts a throwaway 3-node Redis Cluster and prints its URL |
//! | `postgres` | starts a throwaway PostgreSQL (initdb + pg_ctl) and prints its URL |
//! | `nats` | starts a throwaway `nats-server -js` and prints its URL |

mod nats;
mod postgres;
mod redis;
#[cfg(test)]
mod tidy;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

type Result<T = ()> = std::result::Result<T, String>;

const USAGE: &str = "usage: cargo xtask <ci | test [args] | bench [memory|redis|postgres|nats|saga|queue|http] | redis | redis-cluster | postgres | nats>";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("test") => test(&args[1..]),
        Some("bench") => bench(args.get(1).map(String::as_str)),
        Some("redis") => redis::run_redis(&args[1..]).map_err(|e| e.to_string()),
        Some("redis-cluster") => redis::run_redis_cluster(&args[1..]).map_err(|e| e.to_string()),
        Some("postgres") => postgres::run_postgres(&args[1..]).map_err(|e| e.to_string()),
        Some("nats") => nats::run_nats(&args[1..]).map_err(|e| e.to_string()),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Runs a command in the workspace root, echoing it, failing on a non-zero exit.
fn run(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result {
    eprintln!("\n$ {program} {}", args.join(" "));
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    eprintln!(
        "  ({program} {} took {:.1?})",
        args.first().copied().unwrap_or(""),
        started.elapsed()
    );
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

fn has(program: &str, probe: &[&str]) -> bool {
    Command::new(program)
        .args(probe)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Throwaway Redis servers, killed when dropped.
struct RedisGuards {
    _single: Option<redis::RedisServer>,
    _cluster: Option<redis::RedisCluster>,
}

/// The environment test and bench children get: `BGOPS_TEST_REDIS_URL` and
/// `BGOPS_TEST_REDIS_CLUSTER_URL`, taken from this process's environment or pointing at
/// throwaway servers started here. (Children get them through `Command::envs`; setting
/// our own environment would need `unsafe` in edition 2024.)
/// `with_cluster`: also provide the cluster (the tests need it; the benchmarks do not).
fn redis_env(with_cluster: bool) -> Result<(Vec<(String, String)>, RedisGuards)> {
    let mut vars = Vec::new();
    let single = if let Ok(url) = env::var("BGOPS_TEST_REDIS_URL") {
        vars.push(("BGOPS_TEST_REDIS_URL".to_owned(), url));
        None
    } else {
        let server = redis::RedisServer::spawn().map_err(|e| {
            format!("cannot start redis-server (apt-get install redis-server): {e}")
        })?;
        eprintln!(
            "xtask: throwaway redis-server at {} (port {})",
            server.url(),
            server.port()
        );
        vars.push(("BGOPS_TEST_REDIS_URL".to_owned(), server.url().to_owned()));
        Some(server)
    };
    let cluster = if !with_cluster {
        None
    } else if let Ok(url) = env::var("BGOPS_TEST_REDIS_CLUSTER_URL") {
        vars.push(("BGOPS_TEST_REDIS_CLUSTER_URL".to_owned(), url));
        None
    } else {
        let cluster = redis::RedisCluster::spawn().map_err(|e| {
            format!("cannot start a Redis Cluster (needs redis-server and redis-cli): {e}")
        })?;
        eprintln!(
            "xtask: throwaway Redis Cluster at {} (ports {:?})",
            cluster.url(),
            cluster.ports()
        );
        vars.push((
            "BGOPS_TEST_REDIS_CLUSTER_URL".to_owned(),
            cluster.url().to_owned(),
        ));
        Some(cluster)
    };
    Ok((
        vars,
        RedisGuards {
            _single: single,
            _cluster: cluster,
        },
    ))
}

fn cargo(args: &[&str], envs: &[(String, String)]) -> Result {
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    run("cargo", args, &envs)
}

fn ci() -> Result {
    let started = Instant::now();
    cargo(&["fmt", "--all", "--", "--check"], &[])?;
    cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    test(&[])?;
    let envs = [("RUSTDOCFLAGS", "-D warnings")];
    run(
        "cargo",
        &["doc", "--workspace", "--no-deps", "--all-features"],
        &envs,
    )?;
    deny()?;
    eprintln!("\nxtask ci: all checks passed in {:.1?}", started.elapsed());
    Ok(())
}

/// Unit, integration and tidy tests (nextest when installed), then doctests (nextest does
/// not run those).
fn test(extra: &[String]) -> Result {
    let (mut envs, _servers) = redis_env(true)?;
    let _postgres = postgres::env(&mut envs)?;
    let (nats_vars, _nats) = nats::nats_env()?;
    envs.extend(nats_vars);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    if has("cargo-nextest", &["--version"]) {
        let mut args = vec![
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--no-fail-fast",
        ];
        args.extend(&extra);
        cargo(&args, &envs)?;
    } else {
        let mut args = vec![
            "test",
            "--workspace",
            "--all-features",
            "--all-targets",
            "--no-fail-fast",
        ];
        args.extend(&extra);
        cargo(&args, &envs)?;
    }
    cargo(&["test", "--workspace", "--all-features", "--doc"], &envs)
}

fn deny() -> Result {
    if !has("cargo-deny", &["--version"]) {
        eprintln!("xtask: cargo-deny missing; installing it (cargo install cargo-deny --locked)");
        cargo(&["install", "cargo-deny", "--locked"], &[])?;
    }
    eprintln!(
        "xtask: `cargo deny check advisories` needs the advisory database from the network; skipped here"
    );
    cargo(
        &[
            "deny",
            "--all-features",
            "check",
            "bans",
            "licenses",
            "sources",
        ],
        &[],
    )
}

fn bench(which: Option<&str>) -> Result {
    let (mut envs, _servers) = redis_env(false)?;
    let _postgres = postgres::env(&mut envs)?;
    let (nats_vars, _nats) = nats::nats_env()?;
    envs.extend(nats_vars);
    let crates: &[&str] = match which {
        None => &[
            "bgops-memory",
            "bgops-redis",
            "bgops-postgres",
            "bgops-nats",
            "bgops-saga",
            "bgops-queue",
            "bgops-axum",
        ],
        Some("memory") => &["bgops-memory"],
        Some("redis") => &["bgops-redis"],
        Some("postgres") => &["bgops-postgres"],
        Some("nats") => &["bgops-nats"],
        Some("saga") => &["bgops-saga"],
        Some("queue") => &["bgops-queue"],
        Some("http") => &["bgops-axum"],
        Some(other) => return Err(format!("unknown bench `{other}`; {USAGE}")),
    };
    for krate in crates {
        cargo(&["bench", "-p", krate], &envs)?;
    }
    Ok(())
}
