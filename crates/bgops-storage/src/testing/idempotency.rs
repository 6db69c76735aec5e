//! What [`IdempotencyStore`](crate::IdempotencyStore) promises (semantics §2):
//!
//! - `begin` is one atomic step answering Started / InProgress / Completed / Mismatch as in
//!   the table of §2; under 100 concurrent `begin`s on one key exactly one is Started, also
//!   when they race to take over an expired lease;
//! - `complete`, `release` and `renew` act only for the current token; a token whose lease
//!   ran out and was taken over gets `LeaseLost`; an outcome, once recorded, is never
//!   overwritten;
//! - a recorded outcome (success or failure) is replayed until the TTL, counted from
//!   creation, runs out; then the key is free again;
//! - records are handed out shared (`Arc`) but are snapshots: later state changes leave a
//!   record already handed out as it was;
//! - records are scoped by tenant; `purge_expired` removes expired records and abandoned
//!   claims and nothing live;
//! - bad input is a [`StorageError::Invalid`], never a panic.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bgops_core::{OperationOutcome, OperationStatus};
use serde_json::json;

use super::{Fixture, LONG, assert_close, unique};
use crate::{BeginOutcome, BeginRequest, StorageError};

/// Defines one `#[tokio::test]` per idempotency case, each on a fresh `$fixture`.
#[macro_export]
macro_rules! idempotency_suite {
    ($fixture:expr) => {
        $crate::__conformance_cases!(
            $fixture,
            idempotency,
            [
                begin_creates_in_progress_record,
                second_begin_sees_in_progress,
                concurrent_begins_start_exactly_once,
                concurrent_begins_on_distinct_keys_all_start,
                completed_outcome_is_replayed,
                handed_out_records_are_snapshots,
                failed_outcome_is_replayed,
                other_fingerprint_is_mismatch_in_progress,
                other_fingerprint_is_mismatch_after_completion,
                other_fingerprint_is_mismatch_after_lease_expiry,
                absent_fingerprint_matches_any,
                expired_lease_is_taken_over_and_old_token_fenced,
                concurrent_takeovers_start_exactly_once,
                ttl_expiry_frees_the_key,
                outcome_is_kept_for_ttl_from_creation,
                outcome_is_never_overwritten,
                tenants_are_isolated,
                release_lets_a_retry_start,
                release_needs_the_current_token,
                release_keeps_a_completed_outcome,
                renew_extends_the_lease,
                renew_needs_the_current_token,
                unknown_key_is_not_found,
                delete_removes_the_record,
                purge_removes_expired_records_and_abandoned_claims,
                purge_respects_its_limit,
                key_of_255_bytes_is_accepted,
                invalid_input_is_rejected,
                parameters_and_user_round_trip,
            ]
        );
    };
}

fn request(tenant: &str, key: &str) -> BeginRequest {
    BeginRequest::new(tenant, key, "send_email").lease(LONG)
}

fn started(outcome: BeginOutcome) -> (String, Arc<bgops_core::IdempotencyRecord>) {
    match outcome {
        BeginOutcome::Started { token, record } => (token, record),
        other => panic!("expected Started, got {other:?}"),
    }
}

async fn begin_started(
    f: &Fixture,
    req: BeginRequest,
) -> (String, Arc<bgops_core::IdempotencyRecord>) {
    started(f.storage.begin(req).await.expect("begin"))
}

fn succeeded(value: serde_json::Value) -> OperationOutcome {
    OperationOutcome::Succeeded(value)
}

/// A first `begin` creates an `InProgress` record with a lease and a token.
pub async fn begin_creates_in_progress_record(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let (token, record) = begin_started(&f, request(&tenant, &key).fingerprint("fp-1")).await;
    assert!(!token.is_empty(), "the lease token must not be empty");
    assert_eq!(record.status, OperationStatus::InProgress);
    assert_eq!(record.tenant_id, tenant);
    assert_eq!(record.key, key);
    assert_eq!(record.operation_type, "send_email");
    assert_eq!(record.fingerprint.as_deref(), Some("fp-1"));
    assert!(record.result.is_none() && record.error.is_none() && record.completed_at.is_none());
    let lease = record
        .lease_expires_at
        .expect("an in-flight record has a lease expiry");
    assert!(
        lease > record.created_at,
        "the lease runs out after creation"
    );
    assert!(
        record.expires_at > record.created_at,
        "the record expires after creation"
    );

    let stored = f
        .storage
        .get_idempotency(&tenant, &key)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.status, OperationStatus::InProgress);
    assert_eq!(stored.fingerprint.as_deref(), Some("fp-1"));
}

/// While the first claim's lease is live, a second `begin` (same fingerprint) is told
/// InProgress and gets no token.
pub async fn second_begin_sees_in_progress(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    begin_started(&f, request(&tenant, &key).fingerprint("fp")).await;
    match f
        .storage
        .begin(request(&tenant, &key).fingerprint("fp"))
        .await
        .expect("begin")
    {
        BeginOutcome::InProgress(record) => {
            assert_eq!(record.status, OperationStatus::InProgress);
            assert_eq!(record.key, key);
        }
        other => panic!("expected InProgress, got {other:?}"),
    }
}

/// 100 concurrent `begin`s on one key: exactly one Started, 99 InProgress.
pub async fn concurrent_begins_start_exactly_once(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let outcomes = race(&f, 100, || request(&tenant, &key).fingerprint("fp")).await;
    let started = outcomes
        .iter()
        .filter(|o| matches!(o, BeginOutcome::Started { .. }))
        .count();
    let in_progress = outcomes
        .iter()
        .filter(|o| matches!(o, BeginOutcome::InProgress(_)))
        .count();
    assert_eq!(started, 1, "exactly one begin must be Started");
    assert_eq!(in_progress, 99, "every other begin must be InProgress");
}

/// Concurrent `begin`s on 50 different keys all start: keys do not block one another.
pub async fn concurrent_begins_on_distinct_keys_all_start(f: Fixture) {
    let tenant = unique("tenant");
    let storage = Arc::clone(&f.storage);
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let storage = Arc::clone(&storage);
            let req = request(&tenant, &format!("key-{i}"));
            tokio::spawn(async move { storage.begin(req).await })
        })
        .collect();
    let mut tokens = HashSet::new();
    for handle in handles {
        let (token, _) = started(handle.await.expect("join").expect("begin"));
        tokens.insert(token);
    }
    assert_eq!(tokens.len(), 50, "every claim gets its own token");
}

/// After `complete`, `begin` answers Completed with the stored result, and `get` shows it.
pub async fn completed_outcome_is_replayed(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let (token, _) = begin_started(&f, request(&tenant, &key).fingerprint("fp")).await;
    let done = f
        .storage
        .complete(&tenant, &key, &token, succeeded(json!({"order": 42})))
        .await
        .expect("complete");
    assert_eq!(done.status, OperationStatus::Completed);
    assert_eq!(done.result, Some(json!({"order": 42})));
    assert!(done.completed_at.is_some(), "completion time is recorded");
    assert!(
        done.lease_expires_at.is_none(),
        "a completed record holds no lease"
    );

    match f
        .storage
        .begin(request(&tenant, &key).fingerprint("fp"))
        .await
        .expect("begin")
    {
        BeginOutcome::Completed(record) => {
            assert_eq!(record.status, OperationStatus::Completed);
            assert_eq!(record.result, Some(json!({"order": 42})));
        }
        other => panic!("expected Completed, got {other:?}"),
    }
    let stored = f
        .storage
        .get_idempotency(&tenant, &key)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.status, OperationStatus::Completed);
    assert_eq!(stored.result, Some(json!({"order": 42})));
}

/// Records are shared (`Arc`), but a record once handed out never changes: `renew` and
/// `complete` leave the in-flight record the caller holds as it was.
pub async fn handed_out_records_are_snapshots(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let (token, begun) = begin_started(&f, request(&tenant, &key)).await;
    let before = bgops_core::IdempotencyRecord::clone(&begun);
    let held = f
        .storage
        .get_idempotency(&tenant, &key)
        .await
        .expect("get")
        .expect("in flight");
    f.storage
        .renew(&tenant, &key, &token, LONG + LONG)
        .await
        .expect("renew");
    let done = f
        .storage
        .complete(&tenant, &key, &token, succeeded(json!("done")))
        .await
        .expect("complete");
    assert_eq!(done.status, OperationStatus::Completed);
    assert_eq!(*begun, before, "the Started record is unchanged");
    assert_eq!(held.status, OperationStatus::InProgress, "{held:?}");
    assert_eq!(held.result, None);
    assert_eq!(held.lease_expires_at, before.lease_expires_at);
}

/// A failure is an outcome too: it is stored and replayed, not run again.
pub async fn failed_outcome_is_replayed(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let (token, _) = begin_started(&f, request(&tenant, &key)).await;
    let outcome = OperationOutcome::Failed {
        error: "card declined".into(),
        result: Some(json!({"code": 7})),
    };
    let done = f
        .storage
        .complete(&tenant, &key, &token, outcome)
        .await
        .expect("complete");
    assert_eq!(done.status, OperationStatus::Failed);
    assert_eq!(done.error.as_deref(), Some("card declined"));

    match f
        .storage
        .begin(request(&tenant, &key))
        .await
        .expect("begin")
    {
        BeginOutcome::Completed(record) => {
            assert_eq!(record.status, OperationStatus::Failed);
            assert_eq!(record.error.as_deref(), Some("card declined"));
            assert_eq!(record.result, Some(json!({"code": 7})));
        }
        other => panic!("expected Completed (failed outcome), got {other:?}"),
    }
}

/// Another fingerprint on an in-flight key is a Mismatch.
pub async fn other_fingerprint_is_mismatch_in_progress(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    begin_started(&f, request(&tenant, &key).fingerprint("fp-a")).await;
    match f
        .storage
        .begin(request(&tenant, &key).fingerprint("fp-b"))
        .await
        .expect("begin")
    {
        BeginOutcome::Mismatch(record) => assert_eq!(record.fingerprint.as_deref(), Some("fp-a")),
        other => panic!("expected Mismatch, got {other:?}"),
    }
}

/// Another fingerprint on a completed key is a Mismatch, not a replay.
pub async fn other_fingerprint_is_mismatch_after_completion(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let (token, _) = begin_started(&f, request(&tenant, &key).fingerprint("fp-a")).await;
    f.storage
        .complete(&tenant, &key, &token, succeeded(json!(1)))
        .await
        .expect("complete");
    let outcome = f
        .storage
        .begin(request(&tenant, &key).fingerprint("fp-b"))
        .await
        .expect("begin");
    assert!(
        matches!(outcome, BeginOutcome::Mismatch(_)),
        "expected Mismatch, got {outcome:?}"
    );
}

/// Another fingerprint stays a Mismatch after the claim's lease ran out (the key is still
/// bound to the first request): the table of §2.
pub async fn other_fingerprint_is_mismatch_after_lease_expiry(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    begin_started(
        &f,
        request(&tenant, &key)
            .fingerprint("fp-a")
            .lease(f.short_lease),
    )
    .await;
    f.expire_short_lease().await;
    let outcome = f
        .storage
        .begin(request(&tenant, &key).fingerprint("fp-b"))
        .await
        .expect("begin");
    assert!(
        matches!(outcome, BeginOutcome::Mismatch(_)),
        "expected Mismatch, got {outcome:?}"
    );
}

/// A request without a fingerprint matches any record, and a record without one matches
/// any request.
pub async fn absent_fingerprint_matches_any(f: Fixture) {
    let tenant = unique("tenant");
    let key_a = unique("key");
    begin_started(&f, request(&tenant, &key_a).fingerprint("fp")).await;
    let outcome = f
        .storage
        .begin(request(&tenant, &key_a))
        .await
        .expect("begin");
    assert!(
        matches!(outcome, BeginOutcome::InProgress(_)),
        "got {outcome:?}"
    );

    let key_b = unique("key");
    begin_started(&f, request(&tenant, &key_b)).await;
    let outcome = f
        .storage
        .begin(request(&tenant, &key_b).fingerprint("fp"))
        .await
        .expect("begin");
    assert!(
        matches!(outcome, BeginOutcome::InProgress(_)),
        "got {outcome:?}"
    );
}

/// An in-flight claim whose lease ran out is taken over by the next `begin` with a new
/// token and lease (the record, created by the first request, stays); the old token can
/// then neither complete, release nor renew.
pub async fn expired_lease_is_taken_over_and_old_token_fenced(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let (old, first) = begin_started(&f, request(&tenant, &key).lease(f.short_lease)).await;
    f.expire_short_lease().await;
    let (new, record) = begin_started(&f, request(&tenant, &key)).await;
    assert_ne!(old, new, "a takeover gets a new token");
    assert_eq!(record.status, OperationStatus::InProgress);
    assert_eq!(
        record.created_at, first.created_at,
        "the record stays; its TTL still counts from creation"
    );
    assert!(
        record.lease_expires_at > first.lease_expires_at,
        "with a new lease"
    );

    let err = f
        .storage
        .complete(&tenant, &key, &old, succeeded(json!("stale")))
        .await;
    assert!(
        matches!(err, Err(StorageError::LeaseLost { .. })),
        "complete: {err:?}"
    );
    let err = f.storage.release(&tenant, &key, &old).await;
    assert!(
        matches!(err, Err(StorageError::LeaseLost { .. })),
        "release: {err:?}"
    );
    let err = f.storage.renew(&tenant, &key, &old, LONG).await;
    assert!(
        matches!(err, Err(StorageError::LeaseLost { .. })),
        "renew: {err:?}"
    );

    let done = f
        .storage
        .complete(&tenant, &key, &new, succeeded(json!("fresh")))
        .await
        .expect("complete");
    assert_eq!(done.result, Some(json!("fresh")));
}

/// 50 callers racing to take over one expired claim: exactly one is Started.
pub async fn concurrent_takeovers_start_exactly_once(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    begin_started(&f, request(&tenant, &key).lease(f.short_lease)).await;
    f.expire_short_lease().await;
    let outcomes = race(&f, 50, || request(&tenant, &key)).await;
    let started = outcomes
        .iter()
        .filter(|o| matches!(o, BeginOutcome::Started { .. }))
        .count();
    assert_eq!(started, 1, "exactly one takeover: {outcomes:?}");
}

/// When the TTL runs out the record is gone and the key can be used again, even with
/// another fingerprint.
pub async fn ttl_expiry_frees_the_key(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let req = request(&tenant, &key)
        .fingerprint("fp-a")
        .ttl(f.short_lease)
        .lease(f.short_lease);
    let (token, _) = begin_started(&f, req).await;
    f.storage
        .complete(&tenant, &key, &token, succeeded(json!(1)))
        .await
        .expect("complete");
    f.expire_short_lease().await;
    assert_eq!(
        f.storage.get_idempotency(&tenant, &key).await.expect("get"),
        None
    );
    let (_, record) = begin_started(&f, request(&tenant, &key).fingerprint("fp-b")).await;
    assert_eq!(record.fingerprint.as_deref(), Some("fp-b"));
}

/// The completed record lives for its TTL counted from creation (not from completion) and
/// is replayed meanwhile.
pub async fn outcome_is_kept_for_ttl_from_creation(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let ttl = Duration::from_secs(3600);
    let (token, created) = begin_started(&f, request(&tenant, &key).ttl(ttl)).await;
    f.expire_short_lease().await;
    let done = f
        .storage
        .complete(&tenant, &key, &token, succeeded(json!(1)))
        .await
        .expect("ok");
    assert_eq!(
        done.created_at, created.created_at,
        "completion keeps the creation time"
    );
    assert_close(
        done.expires_at - done.created_at,
        ttl,
        "expires_at - created_at",
    );
    f.expire_short_lease().await;
    let outcome = f
        .storage
        .begin(request(&tenant, &key))
        .await
        .expect("begin");
    assert!(
        matches!(outcome, BeginOutcome::Completed(_)),
        "got {outcome:?}"
    );
}

/// A recorded outcome is final: completing again (same token, other outcome) fails and the
/// first outcome stays.
pub async fn outcome_is_never_overwritten(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let (token, _) = begin_started(&f, request(&tenant, &key)).await;
    f.storage
        .complete(&tenant, &key, &token, succeeded(json!("first")))
        .await
        .expect("complete");
    let again = f
        .storage
        .complete(&tenant, &key, &token, succeeded(json!("second")))
        .await;
    assert!(again.is_err(), "a second complete must fail, got {again:?}");
    let renew = f.storage.renew(&tenant, &key, &token, LONG).await;
    assert!(
        renew.is_err(),
        "renewing a completed record must fail, got {renew:?}"
    );
    let stored = f
        .storage
        .get_idempotency(&tenant, &key)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.result, Some(json!("first")));
}

/// The same key under two tenants is two independent records; one tenant never sees,
/// completes or deletes the other's.
pub async fn tenants_are_isolated(f: Fixture) {
    let (tenant_a, tenant_b, key) = (unique("tenant-a"), unique("tenant-b"), unique("key"));
    let (token_a, _) = begin_started(&f, request(&tenant_a, &key).fingerprint("a")).await;
    assert_eq!(
        f.storage
            .get_idempotency(&tenant_b, &key)
            .await
            .expect("get"),
        None
    );

    let wrong = f
        .storage
        .complete(&tenant_b, &key, &token_a, succeeded(json!("b")))
        .await;
    assert!(
        wrong.is_err(),
        "tenant B must not complete A's claim: {wrong:?}"
    );
    assert!(
        !f.storage
            .delete_idempotency(&tenant_b, &key)
            .await
            .expect("delete")
    );

    f.storage
        .complete(&tenant_a, &key, &token_a, succeeded(json!("a")))
        .await
        .expect("complete");
    let (token_b, record_b) = begin_started(&f, request(&tenant_b, &key).fingerprint("b")).await;
    assert_eq!(record_b.tenant_id, tenant_b);
    f.storage
        .complete(&tenant_b, &key, &token_b, succeeded(json!("b")))
        .await
        .expect("complete");

    let a = f
        .storage
        .get_idempotency(&tenant_a, &key)
        .await
        .expect("get")
        .expect("a");
    let b = f
        .storage
        .get_idempotency(&tenant_b, &key)
        .await
        .expect("get")
        .expect("b");
    assert_eq!(
        (a.result.as_ref(), &a.tenant_id),
        (Some(&json!("a")), &tenant_a)
    );
    assert_eq!(
        (b.result.as_ref(), &b.tenant_id),
        (Some(&json!("b")), &tenant_b)
    );
}

/// `release` deletes the in-flight claim: the next `begin` is Started.
pub async fn release_lets_a_retry_start(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let (token, _) = begin_started(&f, request(&tenant, &key)).await;
    f.storage
        .release(&tenant, &key, &token)
        .await
        .expect("release");
    assert_eq!(
        f.storage.get_idempotency(&tenant, &key).await.expect("get"),
        None
    );
    let (again, _) = begin_started(&f, request(&tenant, &key)).await;
    assert_ne!(again, token);
}

/// `release` with a token that is not the current one fails and leaves the claim alone.
pub async fn release_needs_the_current_token(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    begin_started(&f, request(&tenant, &key)).await;
    let err = f.storage.release(&tenant, &key, "not-the-token").await;
    assert!(
        matches!(err, Err(StorageError::LeaseLost { .. })),
        "got {err:?}"
    );
    let outcome = f
        .storage
        .begin(request(&tenant, &key))
        .await
        .expect("begin");
    assert!(
        matches!(outcome, BeginOutcome::InProgress(_)),
        "claim kept: {outcome:?}"
    );
}

/// Releasing after completion must not throw the outcome away.
pub async fn release_keeps_a_completed_outcome(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let (token, _) = begin_started(&f, request(&tenant, &key)).await;
    f.storage
        .complete(&tenant, &key, &token, succeeded(json!("kept")))
        .await
        .expect("complete");
    let released = f.storage.release(&tenant, &key, &token).await;
    assert!(
        released.is_err(),
        "release after completion must fail, got {released:?}"
    );
    let stored = f
        .storage
        .get_idempotency(&tenant, &key)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(stored.result, Some(json!("kept")));
}

/// `renew` moves the lease expiry forward: the claim outlives its first lease.
pub async fn renew_extends_the_lease(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let (token, record) = begin_started(&f, request(&tenant, &key).lease(f.short_lease)).await;
    let until = f
        .storage
        .renew(&tenant, &key, &token, LONG)
        .await
        .expect("renew");
    assert!(
        until > record.lease_expires_at.expect("lease"),
        "renew extends the lease"
    );
    f.expire_short_lease().await;
    let outcome = f
        .storage
        .begin(request(&tenant, &key))
        .await
        .expect("begin");
    assert!(
        matches!(outcome, BeginOutcome::InProgress(_)),
        "still held: {outcome:?}"
    );
    f.storage
        .complete(&tenant, &key, &token, succeeded(json!(1)))
        .await
        .expect("complete");
}

/// `renew` with a token that is not the current one is `LeaseLost`.
pub async fn renew_needs_the_current_token(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    begin_started(&f, request(&tenant, &key)).await;
    let err = f.storage.renew(&tenant, &key, "not-the-token", LONG).await;
    assert!(
        matches!(err, Err(StorageError::LeaseLost { .. })),
        "got {err:?}"
    );
}

/// Acting on a key that has no record: `complete` is `NotFound`, the others fail too.
pub async fn unknown_key_is_not_found(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let err = f
        .storage
        .complete(&tenant, &key, "token", succeeded(json!(1)))
        .await;
    assert!(
        matches!(err, Err(StorageError::NotFound { .. })),
        "complete: {err:?}"
    );
    assert!(
        f.storage.release(&tenant, &key, "token").await.is_err(),
        "release"
    );
    assert!(
        f.storage.renew(&tenant, &key, "token", LONG).await.is_err(),
        "renew"
    );
    assert_eq!(
        f.storage.get_idempotency(&tenant, &key).await.expect("get"),
        None
    );
}

/// `delete_idempotency` removes the record (`true`), a second delete finds nothing.
pub async fn delete_removes_the_record(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let (token, _) = begin_started(&f, request(&tenant, &key)).await;
    f.storage
        .complete(&tenant, &key, &token, succeeded(json!(1)))
        .await
        .expect("complete");
    assert!(
        f.storage
            .delete_idempotency(&tenant, &key)
            .await
            .expect("delete")
    );
    assert_eq!(
        f.storage.get_idempotency(&tenant, &key).await.expect("get"),
        None
    );
    assert!(
        !f.storage
            .delete_idempotency(&tenant, &key)
            .await
            .expect("delete again")
    );
    begin_started(&f, request(&tenant, &key)).await;
}

/// `purge_expired` removes records past their TTL and claims whose lease ran out, and
/// keeps live claims and live outcomes.
pub async fn purge_removes_expired_records_and_abandoned_claims(f: Fixture) {
    let tenant = unique("tenant");
    let short = f.short_lease;
    for i in 0..3 {
        let key = format!("expiring-{i}");
        let (token, _) = begin_started(&f, request(&tenant, &key).ttl(short).lease(short)).await;
        f.storage
            .complete(&tenant, &key, &token, succeeded(json!(i)))
            .await
            .expect("complete");
    }
    begin_started(&f, request(&tenant, "abandoned").lease(short)).await;
    begin_started(&f, request(&tenant, "live-claim")).await;
    let (token, _) = begin_started(&f, request(&tenant, "live-outcome")).await;
    f.storage
        .complete(&tenant, "live-outcome", &token, succeeded(json!(1)))
        .await
        .expect("ok");
    f.expire_short_lease().await;

    let removed = f.storage.purge_expired(1000).await.expect("purge");
    // A backend whose server expires keys by itself may count fewer; never more.
    assert!(
        removed <= 4,
        "purge removed {removed} records, at most 4 were expired"
    );
    assert_eq!(
        f.storage
            .get_idempotency(&tenant, "abandoned")
            .await
            .expect("get"),
        None
    );
    let outcome = f
        .storage
        .begin(request(&tenant, "abandoned").fingerprint("other"))
        .await;
    assert!(
        matches!(outcome, Ok(BeginOutcome::Started { .. })),
        "purged claim: {outcome:?}"
    );
    for i in 0..3 {
        let key = format!("expiring-{i}");
        assert_eq!(
            f.storage.get_idempotency(&tenant, &key).await.expect("get"),
            None
        );
    }
    let live = f
        .storage
        .get_idempotency(&tenant, "live-claim")
        .await
        .expect("get");
    assert_eq!(live.map(|r| r.status), Some(OperationStatus::InProgress));
    let kept = f
        .storage
        .get_idempotency(&tenant, "live-outcome")
        .await
        .expect("get");
    assert_eq!(kept.map(|r| r.status), Some(OperationStatus::Completed));
}

/// `purge_expired(limit)` removes at most `limit` records.
pub async fn purge_respects_its_limit(f: Fixture) {
    let tenant = unique("tenant");
    for i in 0..5 {
        let key = format!("abandoned-{i}");
        begin_started(&f, request(&tenant, &key).lease(f.short_lease)).await;
    }
    f.expire_short_lease().await;
    let removed = f.storage.purge_expired(2).await.expect("purge");
    assert!(removed <= 2, "purge_expired(2) removed {removed}");
    let mut total = removed;
    for _ in 0..5 {
        total += f.storage.purge_expired(2).await.expect("purge");
    }
    assert!(total <= 5, "purged {total} of 5 records");
    for i in 0..5 {
        let key = format!("abandoned-{i}");
        assert_eq!(
            f.storage.get_idempotency(&tenant, &key).await.expect("get"),
            None
        );
    }
}

/// A key of exactly 255 bytes is the longest accepted.
pub async fn key_of_255_bytes_is_accepted(f: Fixture) {
    let tenant = unique("tenant");
    let mut key = unique("k");
    key.push_str(&"x".repeat(255));
    key.truncate(255);
    assert_eq!(key.len(), 255);
    let (token, _) = begin_started(&f, request(&tenant, &key)).await;
    f.storage
        .complete(&tenant, &key, &token, succeeded(json!(1)))
        .await
        .expect("complete");
    assert!(
        f.storage
            .get_idempotency(&tenant, &key)
            .await
            .expect("get")
            .is_some()
    );
}

/// Empty tenant or operation type, zero or huge TTL or lease, an oversized key or one with a
/// space:
/// `StorageError::Invalid`, on every method that takes them.
pub async fn invalid_input_is_rejected(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let bad = [
        ("empty tenant", request("", &key)),
        ("blank tenant", request("  ", &key)),
        ("empty operation type", BeginRequest::new(&tenant, &key, "")),
        ("zero ttl", request(&tenant, &key).ttl(Duration::ZERO)),
        ("zero lease", request(&tenant, &key).lease(Duration::ZERO)),
        (
            "ttl over ten years",
            request(&tenant, &key).ttl(Duration::from_secs(11 * 365 * 86_400)),
        ),
        (
            "lease over ten years",
            request(&tenant, &key).lease(Duration::from_secs(u64::MAX)),
        ),
        ("empty key", request(&tenant, "")),
        ("key over 255 bytes", request(&tenant, &"k".repeat(256))),
        ("key with a space", request(&tenant, "a key")),
        ("key with non-ASCII", request(&tenant, "clé")),
    ];
    for (what, req) in bad {
        let got = f.storage.begin(req).await;
        assert!(
            matches!(got, Err(StorageError::Invalid(_))),
            "{what}: {got:?}"
        );
    }
    let long = "k".repeat(256);
    let got = f.storage.get_idempotency(&tenant, &long).await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "get with long key: {got:?}"
    );
    let got = f.storage.get_idempotency("", &key).await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "get with empty tenant: {got:?}"
    );
    let got = f.storage.complete("", &key, "t", succeeded(json!(1))).await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "complete, empty tenant: {got:?}"
    );
    let got = f.storage.release(&tenant, "a key", "t").await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "release, bad key: {got:?}"
    );
    let got = f.storage.delete_idempotency(&tenant, &long).await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "delete, long key: {got:?}"
    );
    let (token, _) = begin_started(&f, request(&tenant, &key)).await;
    let got = f.storage.renew(&tenant, &key, &token, Duration::ZERO).await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "renew, zero lease: {got:?}"
    );
}

/// User id and parameters (also large ones) come back as given.
pub async fn parameters_and_user_round_trip(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let big: Vec<_> = (0..2000).map(|i| json!({"n": i, "s": "é✓"})).collect();
    let params = json!({"to": "user@example.com", "items": big});
    let req = request(&tenant, &key)
        .user_id("user-1")
        .parameters(params.clone());
    let (token, record) = begin_started(&f, req).await;
    assert_eq!(record.user_id.as_deref(), Some("user-1"));
    assert_eq!(record.parameters.as_ref(), Some(&params));
    let done = f
        .storage
        .complete(&tenant, &key, &token, succeeded(params.clone()))
        .await;
    let done = done.expect("complete");
    assert_eq!(done.result.as_ref(), Some(&params));
    let stored = f
        .storage
        .get_idempotency(&tenant, &key)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.user_id.as_deref(), Some("user-1"));
    assert_eq!(stored.parameters, Some(params));
}

/// Runs `n` concurrent `begin`s built by `make`.
async fn race(f: &Fixture, n: usize, make: impl Fn() -> BeginRequest) -> Vec<BeginOutcome> {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let storage = Arc::clone(&f.storage);
            let req = make();
            tokio::spawn(async move { storage.begin(req).await })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(n);
    for handle in handles {
        outcomes.push(handle.await.expect("join").expect("begin"));
    }
    outcomes
}
