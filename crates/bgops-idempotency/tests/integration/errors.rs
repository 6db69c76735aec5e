//! Begin errors are classified; a begin whose answer was lost is harmless.

use std::time::Duration;

use bgops_idempotency::{IdempotencyError, KeyRequest, KeyStatus};
use bgops_storage::testing::decorators::{Fault, Method};

use crate::support::fixture;

/// Issue 10 item 7: the store applied the `begin` but the answer was lost. The claim it
/// made is released in the background, so the retry runs instead of waiting a lease out.
#[tokio::test(start_paused = true)]
async fn a_lost_begin_does_not_block_the_key() {
    let f = fixture(Duration::from_secs(60));
    f.store
        .hook()
        .lose_answer(Method::Begin, Fault::Unavailable, 1);
    let lost = f.engine.begin(KeyRequest::new("t1", "e1", "op")).await;
    assert!(matches!(lost, Err(ref e) if e.is_transient()), "{lost:?}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let retry = f
        .engine
        .begin(KeyRequest::new("t1", "e1", "op"))
        .await
        .unwrap();
    assert!(matches!(retry, KeyStatus::Created(_)), "{retry:?}");
}

#[tokio::test(start_paused = true)]
async fn corrupt_and_backend_errors_are_not_transient() {
    let f = fixture(Duration::from_secs(1));
    f.store.hook().fail_times(Method::Begin, Fault::Corrupt, 1);
    let corrupt = f.engine.begin(KeyRequest::new("t1", "e2", "op")).await;
    match corrupt {
        Err(IdempotencyError::Corrupt { record, .. }) => assert_eq!(record, "failing:begin"),
        other => panic!("{other:?}"),
    }
    f.store.hook().fail_times(Method::Begin, Fault::Backend, 1);
    let backend = f.engine.begin(KeyRequest::new("t1", "e2", "op")).await;
    assert!(
        matches!(backend, Err(IdempotencyError::Storage(_))),
        "{backend:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn bad_input_is_invalid_and_never_reaches_the_store() {
    let f = fixture(Duration::from_secs(1));
    for request in [
        KeyRequest::new("", "k", "op"),
        KeyRequest::new("t", "a b", "op"),
        KeyRequest::new("t", "k", "x".repeat(256)),
        KeyRequest::new("t", "k", "op").ttl(Duration::ZERO),
    ] {
        let e = f.engine.begin(request).await.unwrap_err();
        assert!(e.is_invalid_input(), "{e:?}");
    }
    assert_eq!(f.store.hook().injected(), 0);
    // A long operation type is fine once bounded.
    let long = bgops_idempotency::bounded_operation_type(&"x".repeat(600)).into_owned();
    assert!(matches!(
        f.engine
            .begin(KeyRequest::new("t", "k", long))
            .await
            .unwrap(),
        KeyStatus::Created(_)
    ));
}
