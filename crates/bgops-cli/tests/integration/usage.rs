//! Bad input and an unreachable store, without any server.

use crate::support::bgops;

#[test]
fn no_url_is_a_usage_error_that_says_how_to_give_one() {
    let run = bgops(&["stats"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("BGOPS_URL"), "{}", run.stderr);
}

#[test]
fn an_unknown_scheme_names_the_supported_ones() {
    let run = bgops(&["--url", "mongodb://localhost", "stats"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("redis://"), "{}", run.stderr);
}

#[test]
fn bad_arguments_exit_2_with_the_choices() {
    let run = bgops(
        &["tasks", "list", "--status", "done"],
        &[("BGOPS_URL", "redis://x")],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("pending, claimed, completed, failed"),
        "{}",
        run.stderr
    );
    let run = bgops(&["sagas", "frobnicate"], &[]);
    assert_eq!(run.code, 2);
}

#[test]
fn an_unreachable_store_exits_3_without_leaking_the_password() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let run = bgops(
        &["--connect-timeout", "2s", "health"],
        &[("BGOPS_URL", "redis://user:hunter2@127.0.0.1:1")],
    );
    assert_eq!(run.code, 3, "stdout {} stderr {}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("cannot reach the store"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
}

#[test]
fn json_errors_are_json_on_stderr() {
    let run = bgops(&["--json", "--url", "mongodb://x", "stats"], &[]);
    assert_eq!(run.code, 2);
    let error: serde_json::Value = serde_json::from_str(run.stderr.trim()).expect("JSON error");
    assert_eq!(error["exit_code"], 2);
}

#[test]
fn unreachable_postgres_and_nats_exit_3() {
    for url in [
        "postgres://postgres@127.0.0.1:1/postgres",
        "nats://127.0.0.1:1",
    ] {
        let run = bgops(&["--connect-timeout", "2s", "stats"], &[("BGOPS_URL", url)]);
        assert_eq!(run.code, 3, "{url}: {}", run.stderr);
        assert!(
            run.stderr.contains("cannot reach the store"),
            "{}",
            run.stderr
        );
    }
}
