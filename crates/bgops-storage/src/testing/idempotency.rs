//! What [`IdempotencyStore`](crate::IdempotencyStore) promises (semantics §2):
//!
//! - `begin` is one atomic step answering Started / InProgress / Completed / Mismatch as in
//!   the table of §2; under 100 concurrent `begin`s on one key exactly one is Started, also
//!   when they race to take over an expired lease; a `begin` repeated with the token that
//!   holds the claim is Started again (same claim);
//! - `complete`, `release` and `renew` act only for the current token; a token whose lease
//!   ran out may still complete as long as nobody took over (late completion), and gets
//!   `LeaseLost` once someone did; an outcome, once recorded, is never overwritten, and a
//!   `complete` repeated by the completing token answers the first receipt;
//! - a recorded outcome (success or failure, with its payload bytes exactly) is replayed
//!   until the TTL, counted from creation, runs out; then the key is free again; an
//!   abandoned in-flight record also lives until its TTL;
//! - `renew` never extends a lease past the record's TTL;
//! - records are handed out shared (`Arc`) but are snapshots: later state changes leave a
//!   record already handed out as it was;
//! - records are scoped by tenant; `purge_expired` removes records past their TTL, in
//!   bounded batches that say whether more are due, and nothing live;
//! - bad input is a [`StorageError::Invalid`], never a panic.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bgops_core::{IdempotencyRecord, OperationOutcome, OperationStatus};
use bytes::Bytes;
use serde_json::json;

use super::{Fixture, LONG, assert_close, token, unique};
use crate::{BeginOutcome, BeginRequest, Claimed, StorageError};

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
                repeated_complete_answers_the_first_receipt,
                late_completion_without_takeover_is_kept,
                late_completion_after_takeover_is_lease_lost,
                abandoned_claim_lives_until_its_ttl,
                begin_repeated_with_the_holding_token_is_started_again,
                payload_bytes_round_trip_exactly,
                renew_never_passes_the_ttl,
                tenants_are_isolated,
                release_lets_a_retry_start,
                release_needs_the_current_token,
                release_keeps_a_completed_outcome,
                renew_extends_the_lease,
                renew_needs_the_current_token,
                unknown_key_is_not_found,
                delete_removes_the_record,
                purge_removes_only_records_past_their_ttl,
                purge_respects_its_limit,
                purge_works_in_batches,
                key_of_255_bytes_is_accepted,
                invalid_input_is_rejected,
                parameters_and_user_round_trip,
            ]
        );
    };
}

/// A request with a fresh token and a long lease.
fn request(tenant: &str, key: &str) -> BeginRequest {
    BeginRequest::new(tenant, key, "send_email", token()).lease(LONG)
}

/// The claim of a `Started` answer; panics on any other.
fn started(outcome: BeginOutcome) -> Claimed {
    match outcome {
        BeginOutcome::Started(claim) => claim,
        other => panic!("expected Started, got {other:?}"),
    }
}

/// `begin`, which must be Started with the request's own token.
async fn begin_started(f: &Fixture, req: BeginRequest) -> Claimed {
    let expected = req.token.clone();
    let claim = started(f.storage.begin(req).await.expect("begin"));
    assert_eq!(claim.token, expected, "the claim holds the request's token");
    claim
}

/// The stored record, which must exist.
async fn stored(f: &Fixture, tenant: &str, key: &str) -> Arc<IdempotencyRecord> {
    f.storage
        .get_idempotency(tenant, key)
        .await
        .expect("get")
        .expect("a stored record")
}

fn succeeded(value: serde_json::Value) -> OperationOutcome {
    OperationOutcome::succeeded(value)
}

fn lease_lost<T: std::fmt::Debug>(got: &Result<T, StorageError>) -> bool {
    matches!(got, Err(StorageError::LeaseLost { .. }))
}

/// A first `begin` creates an `InProgress` record with a lease held by the request's token.
pub async fn begin_creates_in_progress_record(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let claim = begin_started(&f, request(&tenant, &key).fingerprint("fp-1")).await;
    assert!(
        claim.lease_expires_at > claim.created_at,
        "the lease runs out after creation"
    );
    assert!(
        claim.expires_at > claim.created_at,
        "the record expires after creation"
    );

    let record = stored(&f, &tenant, &key).await;
    assert_eq!(record.status, OperationStatus::InProgress);
    assert_eq!(record.tenant_id, tenant);
    assert_eq!(record.key, key);
    assert_eq!(record.operation_type, "send_email");
    assert_eq!(record.fingerprint.as_deref(), Some("fp-1"));
    assert!(record.result.is_none() && record.error.is_none() && record.completed_at.is_none());
    assert!(record.payload.is_none());
    assert_eq!(record.created_at, claim.created_at);
    assert_eq!(record.expires_at, claim.expires_at);
    assert_eq!(record.lease_expires_at, Some(claim.lease_expires_at));
}

/// While the first claim's lease is live, a second `begin` (same fingerprint, another
/// token) is told InProgress, with the holder's lease expiry.
pub async fn second_begin_sees_in_progress(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let claim = begin_started(&f, request(&tenant, &key).fingerprint("fp")).await;
    match f
        .storage
        .begin(request(&tenant, &key).fingerprint("fp"))
        .await
        .expect("begin")
    {
        BeginOutcome::InProgress { lease_expires_at } => {
            assert_eq!(lease_expires_at, claim.lease_expires_at);
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
        .filter(|o| matches!(o, BeginOutcome::Started(_)))
        .count();
    let in_progress = outcomes
        .iter()
        .filter(|o| matches!(o, BeginOutcome::InProgress { .. }))
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
        let claim = started(handle.await.expect("join").expect("begin"));
        tokens.insert(claim.token);
    }
    assert_eq!(tokens.len(), 50, "every claim keeps its own token");
}

/// After `complete`, `begin` answers Completed with the stored result, and `get` shows it.
pub async fn completed_outcome_is_replayed(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let claim = begin_started(&f, request(&tenant, &key).fingerprint("fp")).await;
    let done = f
        .storage
        .complete(&tenant, &key, &claim.token, succeeded(json!({"order": 42})))
        .await
        .expect("complete");
    assert!(done.completed_at >= claim.created_at);
    assert_eq!(
        done.expires_at, claim.expires_at,
        "completion keeps the TTL"
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
    let record = stored(&f, &tenant, &key).await;
    assert_eq!(record.status, OperationStatus::Completed);
    assert_eq!(record.result, Some(json!({"order": 42})));
    assert_eq!(record.completed_at, Some(done.completed_at));
    assert_eq!(
        record.lease_expires_at, None,
        "a completed record holds no lease"
    );
}

/// Records are shared (`Arc`), but a record once handed out never changes: `renew` and
/// `complete` leave the in-flight record the caller holds as it was.
pub async fn handed_out_records_are_snapshots(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let claim = begin_started(&f, request(&tenant, &key)).await;
    let held = stored(&f, &tenant, &key).await;
    let before = IdempotencyRecord::clone(&held);
    f.storage
        .renew(&tenant, &key, &claim.token, LONG + LONG)
        .await
        .expect("renew");
    f.storage
        .complete(&tenant, &key, &claim.token, succeeded(json!("done")))
        .await
        .expect("complete");
    assert_eq!(*held, before, "the record handed out is unchanged");
    assert_eq!(held.status, OperationStatus::InProgress);
    let now = stored(&f, &tenant, &key).await;
    assert_eq!(now.status, OperationStatus::Completed);
}

/// A failure is an outcome too: it is stored and replayed, not run again.
pub async fn failed_outcome_is_replayed(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let claim = begin_started(&f, request(&tenant, &key)).await;
    let outcome = OperationOutcome::failed("card declined").with_result(json!({"code": 7}));
    f.storage
        .complete(&tenant, &key, &claim.token, outcome)
        .await
        .expect("complete");

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

/// Another fingerprint on an in-flight key is a Mismatch, and the record keeps the first.
pub async fn other_fingerprint_is_mismatch_in_progress(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    begin_started(&f, request(&tenant, &key).fingerprint("fp-a")).await;
    let outcome = f
        .storage
        .begin(request(&tenant, &key).fingerprint("fp-b"))
        .await
        .expect("begin");
    assert_eq!(outcome, BeginOutcome::Mismatch);
    let record = stored(&f, &tenant, &key).await;
    assert_eq!(record.fingerprint.as_deref(), Some("fp-a"));
}

/// Another fingerprint on a completed key is a Mismatch, not a replay.
pub async fn other_fingerprint_is_mismatch_after_completion(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let claim = begin_started(&f, request(&tenant, &key).fingerprint("fp-a")).await;
    f.storage
        .complete(&tenant, &key, &claim.token, succeeded(json!(1)))
        .await
        .expect("complete");
    let outcome = f
        .storage
        .begin(request(&tenant, &key).fingerprint("fp-b"))
        .await
        .expect("begin");
    assert_eq!(outcome, BeginOutcome::Mismatch);
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
    assert_eq!(outcome, BeginOutcome::Mismatch);
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
        matches!(outcome, BeginOutcome::InProgress { .. }),
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
        matches!(outcome, BeginOutcome::InProgress { .. }),
        "got {outcome:?}"
    );
}

/// An in-flight claim whose lease ran out is taken over by the next `begin` with its token
/// and a new lease (the record, created by the first request, stays); the old token can
/// then neither complete, release nor renew.
pub async fn expired_lease_is_taken_over_and_old_token_fenced(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let first = begin_started(&f, request(&tenant, &key).lease(f.short_lease)).await;
    f.expire_short_lease().await;
    let second = begin_started(&f, request(&tenant, &key)).await;
    assert_ne!(first.token, second.token, "a takeover holds a new token");
    assert_eq!(
        second.created_at, first.created_at,
        "the record stays; its TTL still counts from creation"
    );
    assert_eq!(second.expires_at, first.expires_at);
    assert!(
        second.lease_expires_at > first.lease_expires_at,
        "with a new lease"
    );
    let record = stored(&f, &tenant, &key).await;
    assert_eq!(record.status, OperationStatus::InProgress);

    let old = &first.token;
    let err = f
        .storage
        .complete(&tenant, &key, old, succeeded(json!("stale")))
        .await;
    assert!(lease_lost(&err), "complete: {err:?}");
    let err = f.storage.release(&tenant, &key, old).await;
    assert!(lease_lost(&err), "release: {err:?}");
    let err = f.storage.renew(&tenant, &key, old, LONG).await;
    assert!(lease_lost(&err), "renew: {err:?}");

    f.storage
        .complete(&tenant, &key, &second.token, succeeded(json!("fresh")))
        .await
        .expect("complete");
    assert_eq!(stored(&f, &tenant, &key).await.result, Some(json!("fresh")));
}

/// 50 callers racing to take over one expired claim: exactly one is Started.
pub async fn concurrent_takeovers_start_exactly_once(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    begin_started(&f, request(&tenant, &key).lease(f.short_lease)).await;
    f.expire_short_lease().await;
    let outcomes = race(&f, 50, || request(&tenant, &key)).await;
    let started = outcomes
        .iter()
        .filter(|o| matches!(o, BeginOutcome::Started(_)))
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
    let claim = begin_started(&f, req).await;
    f.storage
        .complete(&tenant, &key, &claim.token, succeeded(json!(1)))
        .await
        .expect("complete");
    f.expire_short_lease().await;
    assert_eq!(
        f.storage.get_idempotency(&tenant, &key).await.expect("get"),
        None
    );
    begin_started(&f, request(&tenant, &key).fingerprint("fp-b")).await;
    let record = stored(&f, &tenant, &key).await;
    assert_eq!(record.fingerprint.as_deref(), Some("fp-b"));
    assert_eq!(record.status, OperationStatus::InProgress);
}

/// The completed record lives for its TTL counted from creation (not from completion) and
/// is replayed meanwhile.
pub async fn outcome_is_kept_for_ttl_from_creation(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let ttl = Duration::from_secs(3600);
    let claim = begin_started(&f, request(&tenant, &key).ttl(ttl)).await;
    f.expire_short_lease().await;
    let done = f
        .storage
        .complete(&tenant, &key, &claim.token, succeeded(json!(1)))
        .await
        .expect("ok");
    assert_eq!(
        done.expires_at, claim.expires_at,
        "the TTL is not restarted"
    );
    assert_close(
        done.expires_at - claim.created_at,
        ttl,
        "expires_at - created_at",
    );
    assert_eq!(stored(&f, &tenant, &key).await.created_at, claim.created_at);
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

/// A recorded outcome is final: completing again (same token, other outcome) leaves the
/// first outcome; another token is `LeaseLost`; a completed record cannot be renewed.
pub async fn outcome_is_never_overwritten(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let claim = begin_started(&f, request(&tenant, &key)).await;
    f.storage
        .complete(&tenant, &key, &claim.token, succeeded(json!("first")))
        .await
        .expect("complete");
    // Whatever the repeated call answers, the outcome stays the first.
    let _ = f
        .storage
        .complete(&tenant, &key, &claim.token, succeeded(json!("second")))
        .await;
    let other = f
        .storage
        .complete(&tenant, &key, &token(), succeeded(json!("third")))
        .await;
    assert!(lease_lost(&other), "another token: {other:?}");
    let renew = f.storage.renew(&tenant, &key, &claim.token, LONG).await;
    assert!(lease_lost(&renew), "renewing a completed record: {renew:?}");
    let record = stored(&f, &tenant, &key).await;
    assert_eq!(record.result, Some(json!("first")));
    assert_eq!(record.status, OperationStatus::Completed);
}

/// `complete` repeated by the completing token (its first answer was lost) answers `Ok`
/// with the first receipt and changes nothing, even with another outcome; `release` after
/// completion is `LeaseLost`.
pub async fn repeated_complete_answers_the_first_receipt(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let claim = begin_started(&f, request(&tenant, &key)).await;
    let outcome = succeeded(json!("first")).with_payload(&b"first"[..]);
    let first = f
        .storage
        .complete(&tenant, &key, &claim.token, outcome)
        .await
        .expect("complete");
    let before = stored(&f, &tenant, &key).await;
    f.time.advance(Duration::from_secs(1)).await;
    let again = f
        .storage
        .complete(
            &tenant,
            &key,
            &claim.token,
            OperationOutcome::failed("second").with_payload(&b"second"[..]),
        )
        .await
        .expect("a repeated complete by the completing token succeeds");
    assert_eq!(again, first, "the first receipt");
    let after = stored(&f, &tenant, &key).await;
    assert_eq!(*after, *before, "nothing changed");
    let released = f.storage.release(&tenant, &key, &claim.token).await;
    assert!(
        lease_lost(&released),
        "release after complete: {released:?}"
    );
    assert_eq!(*stored(&f, &tenant, &key).await, *before);
}

/// Late completion: a claim whose lease ran out with nobody taking over can still
/// complete with its token; the record becomes Completed and is replayed.
pub async fn late_completion_without_takeover_is_kept(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let claim = begin_started(&f, request(&tenant, &key).lease(f.short_lease)).await;
    f.expire_short_lease().await;
    f.storage
        .complete(&tenant, &key, &claim.token, succeeded(json!("late")))
        .await
        .expect("a late completion without takeover is kept");
    let record = stored(&f, &tenant, &key).await;
    assert_eq!(record.status, OperationStatus::Completed);
    assert_eq!(record.result, Some(json!("late")));
    match f
        .storage
        .begin(request(&tenant, &key))
        .await
        .expect("begin")
    {
        BeginOutcome::Completed(record) => assert_eq!(record.result, Some(json!("late"))),
        other => panic!("expected the late outcome replayed, got {other:?}"),
    }
}

/// Once another `begin` took the expired claim over, the old token's late `complete` is
/// `LeaseLost` and the record stays the new holder's.
pub async fn late_completion_after_takeover_is_lease_lost(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let first = begin_started(&f, request(&tenant, &key).lease(f.short_lease)).await;
    f.expire_short_lease().await;
    let second = begin_started(&f, request(&tenant, &key)).await;
    let late = f
        .storage
        .complete(&tenant, &key, &first.token, succeeded(json!("late")))
        .await;
    assert!(lease_lost(&late), "late complete after takeover: {late:?}");
    let record = stored(&f, &tenant, &key).await;
    assert_eq!(record.status, OperationStatus::InProgress);
    assert_eq!(record.lease_expires_at, Some(second.lease_expires_at));
}

/// An abandoned in-flight record is not dropped when its lease runs out: `get` still
/// returns it (it lives until its TTL), so only a takeover lets a retry run.
pub async fn abandoned_claim_lives_until_its_ttl(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let claim = begin_started(&f, request(&tenant, &key).lease(f.short_lease)).await;
    f.expire_short_lease().await;
    f.expire_short_lease().await;
    let record = stored(&f, &tenant, &key).await;
    assert_eq!(record.status, OperationStatus::InProgress);
    assert_eq!(record.created_at, claim.created_at);
    // A purge leaves it too: its TTL has not passed.
    f.storage.purge_expired(1000).await.expect("purge");
    assert_eq!(
        stored(&f, &tenant, &key).await.status,
        OperationStatus::InProgress
    );
}

/// A `begin` repeated with the token that holds the claim (its answer was lost) is
/// Started again with the same record (same creation time); another token is told
/// InProgress while the lease is live.
pub async fn begin_repeated_with_the_holding_token_is_started_again(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let req = request(&tenant, &key).fingerprint("fp");
    let first = begin_started(&f, req.clone()).await;
    let again = begin_started(&f, req.clone()).await;
    assert_eq!(again.token, first.token);
    assert_eq!(again.created_at, first.created_at);
    assert_eq!(again.expires_at, first.expires_at);
    let other = f
        .storage
        .begin(request(&tenant, &key).fingerprint("fp"))
        .await
        .expect("begin");
    assert!(
        matches!(other, BeginOutcome::InProgress { .. }),
        "another token: {other:?}"
    );
    // The repeated claim is the claim: its token completes.
    f.storage
        .complete(&tenant, &key, &again.token, succeeded(json!(1)))
        .await
        .expect("complete");
    assert!(matches!(
        f.storage.begin(req).await.expect("begin"),
        BeginOutcome::Completed(_)
    ));
}

/// Payload bytes come back exactly: not UTF-8, empty, and about 100 KiB; `get` and the
/// `Completed` answer of `begin` both carry them.
pub async fn payload_bytes_round_trip_exactly(f: Fixture) {
    let tenant = unique("tenant");
    let large: Vec<u8> = (0..100 * 1024).map(|i: u32| (i * 7 % 251) as u8).collect();
    let cases: [(&str, Bytes); 4] = [
        (
            "non-utf8",
            Bytes::from_static(&[0xff, 0x00, 0xfe, b'=', 0x80, 0x0a, 0x00]),
        ),
        ("empty", Bytes::new()),
        ("large", Bytes::from(large)),
        ("prefixed", Bytes::from_static(b"=base64? {\"json\": no}")),
    ];
    for (what, payload) in cases {
        let key = unique(what);
        let claim = begin_started(&f, request(&tenant, &key)).await;
        let outcome = succeeded(json!({"what": what})).with_payload(payload.clone());
        f.storage
            .complete(&tenant, &key, &claim.token, outcome)
            .await
            .expect("complete");
        let record = stored(&f, &tenant, &key).await;
        assert_eq!(record.payload.as_ref(), Some(&payload), "{what}: get");
        assert_eq!(record.result, Some(json!({"what": what})), "{what}");
        match f
            .storage
            .begin(request(&tenant, &key))
            .await
            .expect("begin")
        {
            BeginOutcome::Completed(record) => {
                assert_eq!(record.payload.as_ref(), Some(&payload), "{what}: replay");
            }
            other => panic!("{what}: expected Completed, got {other:?}"),
        }
    }
    // A failure keeps its payload too; an outcome without one has none.
    let key = unique("failed");
    let claim = begin_started(&f, request(&tenant, &key)).await;
    let outcome = OperationOutcome::failed("no").with_payload(&b"\x00\x01"[..]);
    f.storage
        .complete(&tenant, &key, &claim.token, outcome)
        .await
        .expect("complete");
    let record = stored(&f, &tenant, &key).await;
    assert_eq!(record.payload.as_deref(), Some(&b"\x00\x01"[..]));
    let key = unique("none");
    let claim = begin_started(&f, request(&tenant, &key)).await;
    f.storage
        .complete(&tenant, &key, &claim.token, succeeded(json!(1)))
        .await
        .expect("complete");
    assert_eq!(stored(&f, &tenant, &key).await.payload, None);
}

/// `renew` never extends a lease past the record's TTL.
pub async fn renew_never_passes_the_ttl(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let ttl = Duration::from_secs(60);
    let claim = begin_started(&f, request(&tenant, &key).ttl(ttl).lease(f.short_lease)).await;
    let until = f
        .storage
        .renew(&tenant, &key, &claim.token, LONG)
        .await
        .expect("renew");
    assert!(
        until <= claim.expires_at,
        "lease {until} renewed past the TTL {}",
        claim.expires_at
    );
    assert!(until > claim.lease_expires_at, "but still extended");
    let record = stored(&f, &tenant, &key).await;
    assert_eq!(record.lease_expires_at, Some(until));
}

/// The same key under two tenants is two independent records; one tenant never sees,
/// completes or deletes the other's.
pub async fn tenants_are_isolated(f: Fixture) {
    let (tenant_a, tenant_b, key) = (unique("tenant-a"), unique("tenant-b"), unique("key"));
    let claim_a = begin_started(&f, request(&tenant_a, &key).fingerprint("a")).await;
    assert_eq!(
        f.storage
            .get_idempotency(&tenant_b, &key)
            .await
            .expect("get"),
        None
    );

    let wrong = f
        .storage
        .complete(&tenant_b, &key, &claim_a.token, succeeded(json!("b")))
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
        .complete(&tenant_a, &key, &claim_a.token, succeeded(json!("a")))
        .await
        .expect("complete");
    let claim_b = begin_started(&f, request(&tenant_b, &key).fingerprint("b")).await;
    f.storage
        .complete(&tenant_b, &key, &claim_b.token, succeeded(json!("b")))
        .await
        .expect("complete");

    let a = stored(&f, &tenant_a, &key).await;
    let b = stored(&f, &tenant_b, &key).await;
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
    let claim = begin_started(&f, request(&tenant, &key)).await;
    f.storage
        .release(&tenant, &key, &claim.token)
        .await
        .expect("release");
    assert_eq!(
        f.storage.get_idempotency(&tenant, &key).await.expect("get"),
        None
    );
    let again = begin_started(&f, request(&tenant, &key)).await;
    assert_ne!(again.token, claim.token);
}

/// `release` with a token that is not the current one fails and leaves the claim alone.
pub async fn release_needs_the_current_token(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    begin_started(&f, request(&tenant, &key)).await;
    let err = f.storage.release(&tenant, &key, "not-the-token").await;
    assert!(lease_lost(&err), "got {err:?}");
    let outcome = f
        .storage
        .begin(request(&tenant, &key))
        .await
        .expect("begin");
    assert!(
        matches!(outcome, BeginOutcome::InProgress { .. }),
        "claim kept: {outcome:?}"
    );
}

/// Releasing after completion must not throw the outcome away.
pub async fn release_keeps_a_completed_outcome(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let claim = begin_started(&f, request(&tenant, &key)).await;
    f.storage
        .complete(&tenant, &key, &claim.token, succeeded(json!("kept")))
        .await
        .expect("complete");
    let released = f.storage.release(&tenant, &key, &claim.token).await;
    assert!(
        lease_lost(&released),
        "release after completion must be LeaseLost, got {released:?}"
    );
    assert_eq!(stored(&f, &tenant, &key).await.result, Some(json!("kept")));
}

/// `renew` moves the lease expiry forward: the claim outlives its first lease.
pub async fn renew_extends_the_lease(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let claim = begin_started(&f, request(&tenant, &key).lease(f.short_lease)).await;
    let until = f
        .storage
        .renew(&tenant, &key, &claim.token, LONG)
        .await
        .expect("renew");
    assert!(until > claim.lease_expires_at, "renew extends the lease");
    f.expire_short_lease().await;
    let outcome = f
        .storage
        .begin(request(&tenant, &key))
        .await
        .expect("begin");
    assert!(
        matches!(outcome, BeginOutcome::InProgress { lease_expires_at } if lease_expires_at == until),
        "still held: {outcome:?}"
    );
    f.storage
        .complete(&tenant, &key, &claim.token, succeeded(json!(1)))
        .await
        .expect("complete");
}

/// `renew` with a token that is not the current one is `LeaseLost`.
pub async fn renew_needs_the_current_token(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    begin_started(&f, request(&tenant, &key)).await;
    let err = f.storage.renew(&tenant, &key, "not-the-token", LONG).await;
    assert!(lease_lost(&err), "got {err:?}");
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
    let claim = begin_started(&f, request(&tenant, &key)).await;
    f.storage
        .complete(&tenant, &key, &claim.token, succeeded(json!(1)))
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

/// `purge_expired` removes records past their TTL (completed or abandoned in flight) and
/// keeps live claims, live outcomes and abandoned claims whose TTL has not passed.
pub async fn purge_removes_only_records_past_their_ttl(f: Fixture) {
    let tenant = unique("tenant");
    let short = f.short_lease;
    for i in 0..3 {
        let key = format!("expiring-{i}");
        let claim = begin_started(&f, request(&tenant, &key).ttl(short).lease(short)).await;
        f.storage
            .complete(&tenant, &key, &claim.token, succeeded(json!(i)))
            .await
            .expect("complete");
    }
    begin_started(&f, request(&tenant, "abandoned").ttl(short).lease(short)).await;
    begin_started(&f, request(&tenant, "lease-run-out").lease(short)).await;
    begin_started(&f, request(&tenant, "live-claim")).await;
    let claim = begin_started(&f, request(&tenant, "live-outcome")).await;
    f.storage
        .complete(&tenant, "live-outcome", &claim.token, succeeded(json!(1)))
        .await
        .expect("ok");
    f.expire_short_lease().await;

    let sweep = f.storage.purge_expired(1000).await.expect("purge");
    // A backend whose server expires keys by itself may count fewer; never more.
    assert!(
        sweep.done <= 4,
        "purge removed {} records, at most 4 were past their TTL",
        sweep.done
    );
    assert!(!sweep.more, "one batch of 1000 covers them all");
    assert!(sweep.corrupt.is_empty(), "{sweep:?}");
    let outcome = f
        .storage
        .begin(request(&tenant, "abandoned").fingerprint("other"))
        .await;
    assert!(
        matches!(outcome, Ok(BeginOutcome::Started(_))),
        "purged claim: {outcome:?}"
    );
    for i in 0..3 {
        let key = format!("expiring-{i}");
        assert_eq!(
            f.storage.get_idempotency(&tenant, &key).await.expect("get"),
            None
        );
    }
    for (key, status) in [
        ("lease-run-out", OperationStatus::InProgress),
        ("live-claim", OperationStatus::InProgress),
        ("live-outcome", OperationStatus::Completed),
    ] {
        assert_eq!(stored(&f, &tenant, key).await.status, status, "{key}");
    }
}

/// `purge_expired(limit)` removes at most `limit` records.
pub async fn purge_respects_its_limit(f: Fixture) {
    let tenant = unique("tenant");
    for i in 0..5 {
        let key = format!("abandoned-{i}");
        let req = request(&tenant, &key)
            .ttl(f.short_lease)
            .lease(f.short_lease);
        begin_started(&f, req).await;
    }
    f.expire_short_lease().await;
    let sweep = f.storage.purge_expired(2).await.expect("purge");
    assert!(sweep.done <= 2, "purge_expired(2) removed {}", sweep.done);
    let mut total = sweep.done;
    for _ in 0..5 {
        total += f.storage.purge_expired(2).await.expect("purge").done;
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

/// Cleanup in batches: with more due records than `limit`, a batch removes `limit`, says
/// `more`, and the next batches continue until none are due (`more = false`); `done`
/// counts what each batch removed.
pub async fn purge_works_in_batches(f: Fixture) {
    let tenant = unique("tenant");
    let total = 25u64;
    for i in 0..total {
        let key = format!("due-{i}");
        let req = request(&tenant, &key)
            .ttl(f.short_lease)
            .lease(f.short_lease);
        let claim = begin_started(&f, req).await;
        if i % 2 == 0 {
            f.storage
                .complete(&tenant, &key, &claim.token, succeeded(json!(i)))
                .await
                .expect("complete");
        }
    }
    begin_started(&f, request(&tenant, "live")).await;
    f.expire_short_lease().await;

    let first = f.storage.purge_expired(10).await.expect("purge");
    // A backend whose server expires keys by itself may have fewer left to remove.
    assert!(first.done <= 10, "{first:?}");
    let mut removed = first.done;
    let mut more = first.more;
    if first.done == 10 {
        assert!(
            more,
            "15 due records remain after the first batch: {first:?}"
        );
    }
    let mut batches = 1;
    while more {
        let sweep = f.storage.purge_expired(10).await.expect("purge");
        assert!(sweep.done <= 10, "{sweep:?}");
        removed += sweep.done;
        more = sweep.more;
        batches += 1;
        assert!(batches <= 10, "batches never end: {sweep:?}");
    }
    assert!(removed <= total, "removed {removed} of {total}");
    let last = f.storage.purge_expired(10).await.expect("purge");
    assert_eq!((last.done, last.more), (0, false), "nothing left: {last:?}");
    for i in 0..total {
        let key = format!("due-{i}");
        assert_eq!(
            f.storage.get_idempotency(&tenant, &key).await.expect("get"),
            None
        );
    }
    assert_eq!(
        stored(&f, &tenant, "live").await.status,
        OperationStatus::InProgress
    );
}

/// A key of exactly 255 bytes is the longest accepted.
pub async fn key_of_255_bytes_is_accepted(f: Fixture) {
    let tenant = unique("tenant");
    let mut key = unique("k");
    key.push_str(&"x".repeat(255));
    key.truncate(255);
    assert_eq!(key.len(), 255);
    let claim = begin_started(&f, request(&tenant, &key)).await;
    f.storage
        .complete(&tenant, &key, &claim.token, succeeded(json!(1)))
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

/// Empty tenant or operation type, zero or huge TTL or lease, an oversized key or one with
/// a space, a bad token: `StorageError::Invalid`, on every method that takes them.
pub async fn invalid_input_is_rejected(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let bad = [
        ("empty tenant", request("", &key)),
        ("blank tenant", request("  ", &key)),
        (
            "empty operation type",
            BeginRequest::new(&tenant, &key, "", token()),
        ),
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
        (
            "empty token",
            BeginRequest::new(&tenant, &key, "send_email", ""),
        ),
        (
            "token with a space",
            BeginRequest::new(&tenant, &key, "send_email", "a token"),
        ),
        (
            "token over 64 bytes",
            BeginRequest::new(&tenant, &key, "send_email", "t".repeat(65)),
        ),
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
    let claim = begin_started(&f, request(&tenant, &key)).await;
    let got = f
        .storage
        .renew(&tenant, &key, &claim.token, Duration::ZERO)
        .await;
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
    let claim = begin_started(&f, req).await;
    let record = stored(&f, &tenant, &key).await;
    assert_eq!(record.user_id.as_deref(), Some("user-1"));
    assert_eq!(record.parameters.as_ref(), Some(&params));
    f.storage
        .complete(&tenant, &key, &claim.token, succeeded(params.clone()))
        .await
        .expect("complete");
    let record = stored(&f, &tenant, &key).await;
    assert_eq!(record.user_id.as_deref(), Some("user-1"));
    assert_eq!(record.parameters.as_ref(), Some(&params));
    assert_eq!(record.result, Some(params));
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
