//! The event stream of an execution.

use bgops_core::SagaStatus;
use bgops_saga::{SagaEvent, SagaEventKind, StepError};
use futures::StreamExt;

use crate::dynamic::{register_ok, steps3};
use crate::support::{Recorder, Setup};

#[tokio::test]
async fn execute_stream_yields_every_transition_in_order() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    let r = rec.clone();
    engine.register_operation_handler("do_c", move |step| {
        r.record("do_c");
        async move {
            if step.attempt == 1 {
                Err(StepError::retryable("blip"))
            } else {
                Err(StepError::terminal("no stock"))
            }
        }
    });
    let saga = engine.create("t1", "w", steps3(), None).await.unwrap();
    let events: Vec<SagaEvent> = engine.execute_stream(&saga.saga_id).collect().await;
    let kinds: Vec<(&str, Option<usize>)> = events
        .iter()
        .map(|e| (e.kind.name(), e.kind.step_index()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("resumed", None),
            ("step_started", Some(0)),
            ("step_succeeded", Some(0)),
            ("step_started", Some(1)),
            ("step_succeeded", Some(1)),
            ("step_started", Some(2)),
            ("step_retrying", Some(2)),
            ("step_started", Some(2)),
            ("step_failed", Some(2)),
            ("compensating", None),
            ("compensation_started", Some(1)),
            ("step_compensated", Some(1)),
            ("compensation_started", Some(0)),
            ("step_compensated", Some(0)),
            ("finished", None),
        ]
    );
    let last = events.last().unwrap();
    assert_eq!(last.kind, SagaEventKind::Finished);
    assert_eq!(last.status, SagaStatus::Compensated);
    assert_eq!(&*last.saga_id, saga.saga_id);
    // The journal holds exactly the streamed events, after the `created` of `create`:
    // one fact, recorded once.
    let journal = engine.history(&saga.saga_id).await.unwrap();
    assert_eq!(journal[0].kind, SagaEventKind::Created);
    assert_eq!(&journal[1..], &events[..]);
    let sse = events[2].to_sse();
    assert!(sse.starts_with("event: step_succeeded\ndata: {"), "{sse}");
    let data = sse
        .strip_prefix("event: step_succeeded\ndata: ")
        .unwrap()
        .trim_end();
    let parsed: SagaEvent = serde_json::from_str(data).unwrap();
    assert_eq!(parsed, events[2], "the SSE payload is the event itself");
    assert!(sse.ends_with("\n\n"));
}

#[tokio::test]
async fn a_stream_that_cannot_run_ends_with_aborted() {
    let s = Setup::new();
    let engine = s.engine();
    let events: Vec<SagaEvent> = engine.execute_stream("missing").collect().await;
    assert_eq!(events.len(), 1);
    assert!(
        matches!(&events[0].kind, SagaEventKind::Aborted { error } if error.contains("not found"))
    );
}
