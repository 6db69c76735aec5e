//! The SSE streams, over TCP.

use bgops_storage::{SagaStore as _, TaskStore as _};
use std::sync::Arc;
use std::time::Duration;

use bgops_core::{SagaEvent, SagaEventKind, SagaStatus};
use bgops_storage::NewTask;
use serde_json::json;

use crate::support::{EventStream, get, seed, serve};

#[tokio::test]
async fn a_saga_stream_sends_only_new_events_as_saga_event_json() {
    let board = serve(|b| b).await;
    let s = seed(board.storage.as_ref()).await;
    // The page showed 7 events; the stream starts after them.
    let mut stream = EventStream::open(
        board.addr,
        &format!("/bgops/live/sagas/{}?from=7", s.saga_id),
    )
    .await;
    stream.until("text/event-stream").await;
    assert!(
        stream.seen.contains("x-accel-buffering: no"),
        "{}",
        stream.seen
    );
    // An executor takes the saga and records an event.
    let mut saga = board
        .storage
        .acquire_saga_lease(&s.saga_id, "executor-1", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let fence = saga.lease.as_ref().unwrap().fence;
    saga.status = SagaStatus::Compensating;
    let event = SagaEvent {
        saga_id: Arc::from(s.saga_id.as_str()),
        at: time::OffsetDateTime::now_utc(),
        fence,
        status: SagaStatus::Compensating,
        kind: SagaEventKind::CompensationStarted {
            step_index: 0,
            name: "reserve".into(),
            attempt: 1,
        },
    };
    board
        .storage
        .save_saga(&saga, fence, std::slice::from_ref(&event), None)
        .await
        .unwrap();
    let seen = stream.until("\"compensation_started\"").await.to_owned();
    assert!(seen.contains("id: 8"), "{seen}");
    assert!(
        !seen.contains("\"created\""),
        "old events are not resent: {seen}"
    );
    let data = seen
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("a data line");
    let parsed: SagaEvent = serde_json::from_str(data).expect("the data is a SagaEvent");
    assert_eq!(parsed, event);
}

#[tokio::test]
async fn a_reconnecting_browser_resumes_after_its_last_event_id() {
    let board = serve(|b| b).await;
    let s = seed(board.storage.as_ref()).await;
    let path = format!("/bgops/live/sagas/{}", s.saga_id);
    // From the start: all seven, numbered 1..=7.
    let mut all = EventStream::open(board.addr, &path).await;
    let seen = all.until("id: 7").await;
    assert!(seen.contains("id: 1\n"), "{seen}");
    assert!(seen.contains("\"created\""), "{seen}");
    // A browser that saw six resumes with the seventh only.
    let mut resumed = EventStream::open_with(board.addr, &path, "Last-Event-ID: 6").await;
    let seen = resumed.until("id: 7").await;
    assert!(!seen.contains("id: 6"), "{seen}");
    assert!(seen.contains("\"finished\""), "{seen}");
    // A saga that does not exist has no stream.
    let mut missing = EventStream::open(board.addr, "/bgops/live/sagas/none").await;
    missing.until("404").await;
}

#[tokio::test]
async fn the_overview_stream_follows_the_counts() {
    let board = serve(|b| b).await;
    seed(board.storage.as_ref()).await;
    let mut stream = EventStream::open(board.addr, "/bgops/live/overview").await;
    let first = stream.until("event: overview").await.to_owned();
    assert!(first.contains(r#"["tasks.pending",1]"#), "{first}");
    board
        .storage
        .submit_task(NewTask::new(
            "emails",
            "send_email",
            json!({"to": "c@example.com"}),
        ))
        .await
        .unwrap();
    stream.until(r#"["tasks.pending",2]"#).await;
    // The page itself still renders (the stream holds no lock).
    assert_eq!(get(board.addr, "/bgops").await.status, 200);
}
