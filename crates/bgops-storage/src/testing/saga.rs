//! What [`SagaStore`](crate::SagaStore) promises (semantics §4, store side):
//!
//! - `create_saga` is insert-if-absent by id, and by (tenant, idempotency key) when a key
//!   is set: the existing saga comes back unchanged; its history is stored as the first
//!   events; a saga created leased keeps owner and fence (the fence floor for later
//!   acquisitions) and gets its expiry from the store's clock, never from the caller;
//! - `acquire_saga_lease` hands out a fence higher than every earlier one on the saga and
//!   bumps the version; a live lease of another owner gives `None`; an expired one is taken
//!   over, and of N concurrent acquirers exactly one wins;
//! - `save_saga` is a compare-and-set on (fence, version): a stale fence is `LeaseLost`, a
//!   stale version `VersionConflict`, and the history entries are appended in the same
//!   step (a refused save appends nothing); clearing the lease fences its holder out;
//!   `renew: None` keeps the stored lease expiry, `renew: Some(d)` sets it to the store's
//!   now + `d`, and the receipt reports what was stored; every [`SagaEvent`] kind
//!   round-trips exactly;
//! - `list_sagas` filters by status and tenant, newest first, with limit and offset, and
//!   follows status changes; `list_recoverable_sagas` returns exactly the Running or
//!   Compensating sagas whose lease expired or is absent;
//! - `delete_saga` removes the saga, its history and its index entries;
//! - `purge_sagas` deletes finished sagas (with history and index entries) whose last
//!   write is older than the retention, in batches that say whether more are due, and
//!   never a saga still pending, running or compensating;
//! - bad input is a [`StorageError::Invalid`], never a panic.

use std::collections::HashSet;
use std::sync::Arc;

use bgops_core::{SagaEvent, SagaEventKind, SagaLease, SagaStatus, SagaStep, SagaWorkflow};
use serde_json::json;
use time::OffsetDateTime;

use super::{Fixture, LONG, assert_close, token, unique};
use crate::{BeginOutcome, BeginRequest, CreateSaga, SagaFilter, SagaSaved, StorageError};

/// Defines one `#[tokio::test]` per saga case, each on a fresh `$fixture`.
#[macro_export]
macro_rules! saga_suite {
    ($fixture:expr) => {
        $crate::__conformance_cases!(
            $fixture,
            saga,
            [
                create_then_get_round_trips,
                create_is_insert_if_absent_by_id,
                create_dedupes_by_tenant_and_idempotency_key,
                acquire_lease_sets_fence_and_version,
                live_lease_is_not_given_to_another_owner,
                expired_lease_is_taken_over_and_old_fence_lost,
                concurrent_lease_acquisitions_exactly_one_wins,
                acquire_on_missing_saga_is_not_found,
                save_is_a_fenced_compare_and_set,
                save_appends_history_atomically,
                concurrent_saves_exactly_one_wins,
                cleared_lease_fences_out_its_holder,
                history_is_kept_oldest_first,
                list_filters_by_status_and_tenant_newest_first,
                list_pages_with_limit_and_offset,
                list_recoverable_finds_abandoned_active_sagas,
                delete_removes_saga_history_and_index,
                invalid_saga_input_is_rejected,
                create_with_lease_sets_fence_floor_and_store_expiry,
                save_renews_keeps_or_releases_the_lease,
                history_round_trips_every_event_kind,
                purge_removes_finished_sagas_past_retention_only,
                purge_works_in_batches_with_more,
            ]
        );
    };
}

/// A whole second, so timestamps survive any backend's encoding unchanged.
fn base_time() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    OffsetDateTime::from_unix_timestamp(now.unix_timestamp()).expect("now is in range")
}

fn new_saga(tenant: &str, created_at: OffsetDateTime) -> SagaWorkflow {
    let steps = vec![
        SagaStep::new("reserve", "reserve_stock", json!({"sku": "A-1", "qty": 2}))
            .with_compensation("release_stock", json!({"sku": "A-1"})),
        SagaStep::new("charge", "charge_card", json!({"amount": 1250})),
    ];
    let mut saga = SagaWorkflow::new(tenant, "checkout", steps, created_at);
    saga.context = json!({"order": "o-1"});
    saga
}

/// A history event of `saga` named `name` (a step start, the name in its `name` field).
fn entry(saga: &SagaWorkflow, name: &str, status: SagaStatus, fence: u64) -> SagaEvent {
    SagaEvent {
        saga_id: saga.saga_id.as_str().into(),
        at: base_time(),
        fence,
        status,
        kind: SagaEventKind::StepStarted {
            step_index: 0,
            name: name.to_owned(),
            attempt: 1,
        },
    }
}

/// The names given to [`entry`], in order.
fn names(history: &[SagaEvent]) -> Vec<&str> {
    history
        .iter()
        .map(|event| match &event.kind {
            SagaEventKind::StepStarted { name, .. } => name.as_str(),
            other => other.name(),
        })
        .collect()
}

/// Creates `saga` unleased and without history; it must be new. Returns it as stored.
async fn create(f: &Fixture, saga: SagaWorkflow) -> SagaWorkflow {
    match f
        .storage
        .create_saga(&saga, None, &[])
        .await
        .expect("create")
    {
        CreateSaga::Created(receipt) => {
            assert_eq!(
                receipt,
                SagaSaved {
                    version: saga.version,
                    lease_expires_at: None
                }
            );
            saga
        }
        CreateSaga::Existing(saga) => panic!("expected Created, got Existing({})", saga.saga_id),
    }
}

/// `save_saga` keeping the stored lease expiry; returns the new version.
async fn save(f: &Fixture, saga: &SagaWorkflow, fence: u64, history: &[SagaEvent]) -> u64 {
    f.storage
        .save_saga(saga, fence, history, None)
        .await
        .expect("save")
        .version
}

/// The store's "now", read from a fresh idempotency claim (backends keep their own clock).
async fn store_now(f: &Fixture) -> OffsetDateTime {
    let request = BeginRequest::new(unique("clock"), unique("now"), "clock", token());
    match f.storage.begin(request).await.expect("begin") {
        BeginOutcome::Started(claim) => claim.created_at,
        other => panic!("expected Started, got {other:?}"),
    }
}

async fn acquire(
    f: &Fixture,
    saga_id: &str,
    owner: &str,
    lease: std::time::Duration,
) -> SagaWorkflow {
    f.storage
        .acquire_saga_lease(saga_id, owner, lease)
        .await
        .expect("acquire")
        .expect("lease free")
}

fn fence_of(saga: &SagaWorkflow) -> u64 {
    saga.lease.as_ref().expect("leased").fence
}

/// Puts `saga` into `status` through a leased save; returns it as stored.
async fn move_to(f: &Fixture, saga: &SagaWorkflow, status: SagaStatus) -> SagaWorkflow {
    let mut leased = acquire(f, &saga.saga_id, &unique("executor"), LONG).await;
    let fence = fence_of(&leased);
    leased.status = status;
    leased.version = save(f, &leased, fence, &[]).await;
    leased
}

/// A created saga reads back exactly as stored.
pub async fn create_then_get_round_trips(f: Fixture) {
    let saga = new_saga(&unique("tenant"), base_time());
    let created = create(&f, saga.clone()).await;
    assert_eq!(created.saga_id, saga.saga_id);
    assert_eq!(created.steps, saga.steps);
    let stored = f
        .storage
        .get_saga(&saga.saga_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored, created);
    assert_eq!(stored.context, json!({"order": "o-1"}));
    assert_eq!(
        f.storage.get_saga(&unique("missing")).await.expect("get"),
        None
    );
}

/// Creating a saga whose id exists returns the stored one unchanged.
pub async fn create_is_insert_if_absent_by_id(f: Fixture) {
    let saga = new_saga(&unique("tenant"), base_time());
    let created = create(&f, saga.clone()).await;
    let mut other = saga.clone();
    other.workflow_type = "something_else".into();
    match f
        .storage
        .create_saga(&other, None, &[])
        .await
        .expect("create")
    {
        CreateSaga::Existing(existing) => assert_eq!(existing, created),
        CreateSaga::Created(_) => panic!("a second create with the same id must not overwrite"),
    }
    let stored = f
        .storage
        .get_saga(&saga.saga_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.workflow_type, "checkout");
}

/// A second saga with the same tenant and idempotency key returns the first; the same key
/// under another tenant is a new saga.
pub async fn create_dedupes_by_tenant_and_idempotency_key(f: Fixture) {
    let (tenant, other_tenant, key) = (unique("tenant"), unique("tenant"), unique("key"));
    let mut first = new_saga(&tenant, base_time());
    first.idempotency_key = Some(key.clone());
    let first = create(&f, first).await;

    let mut second = new_saga(&tenant, base_time());
    second.idempotency_key = Some(key.clone());
    let second_id = second.saga_id.clone();
    let answer = f
        .storage
        .create_saga(&second, None, &[])
        .await
        .expect("create");
    match answer {
        CreateSaga::Existing(existing) => assert_eq!(
            existing.saga_id, first.saga_id,
            "same tenant and key: the first saga"
        ),
        CreateSaga::Created(_) => panic!("same tenant and key must not create a second saga"),
    }
    assert_eq!(
        f.storage.get_saga(&second_id).await.expect("get"),
        None,
        "no second saga"
    );

    let mut third = new_saga(&other_tenant, base_time());
    third.idempotency_key = Some(key);
    let third = create(&f, third).await;
    assert_ne!(third.saga_id, first.saga_id);
}

/// Acquiring the lease stores owner, fence and expiry and increments the version; the
/// same owner acquiring again gets the next fence.
pub async fn acquire_lease_sets_fence_and_version(f: Fixture) {
    let saga = create(&f, new_saga(&unique("tenant"), base_time())).await;
    let leased = acquire(&f, &saga.saga_id, "executor-a", LONG).await;
    let lease = leased.lease.clone().expect("leased");
    assert_eq!(lease.owner, "executor-a");
    assert_eq!(
        leased.version,
        saga.version + 1,
        "acquiring bumps the version"
    );
    let stored = f
        .storage
        .get_saga(&saga.saga_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.lease, Some(lease.clone()));
    assert_eq!(stored.version, leased.version);

    let again = acquire(&f, &saga.saga_id, "executor-a", LONG).await;
    assert_eq!(
        fence_of(&again),
        lease.fence + 1,
        "every acquisition raises the fence by one"
    );
}

/// A live lease of another owner: `None`, and the stored lease is untouched.
pub async fn live_lease_is_not_given_to_another_owner(f: Fixture) {
    let saga = create(&f, new_saga(&unique("tenant"), base_time())).await;
    let leased = acquire(&f, &saga.saga_id, "executor-a", LONG).await;
    let got = f
        .storage
        .acquire_saga_lease(&saga.saga_id, "executor-b", LONG)
        .await
        .expect("call");
    assert_eq!(got, None);
    let stored = f
        .storage
        .get_saga(&saga.saga_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.lease, leased.lease);
    assert_eq!(stored.version, leased.version);
}

/// After the lease expires another executor takes over with a higher fence, and the first
/// executor's save is `LeaseLost`.
pub async fn expired_lease_is_taken_over_and_old_fence_lost(f: Fixture) {
    let saga = create(&f, new_saga(&unique("tenant"), base_time())).await;
    let mut old = acquire(&f, &saga.saga_id, "executor-a", f.short_lease).await;
    f.expire_short_lease().await;
    let new = acquire(&f, &saga.saga_id, "executor-b", LONG).await;
    assert!(fence_of(&new) > fence_of(&old));
    assert_eq!(
        new.lease.as_ref().map(|l| l.owner.as_str()),
        Some("executor-b")
    );

    let old_fence = fence_of(&old);
    old.status = SagaStatus::Running;
    old.version = new.version;
    let got = f
        .storage
        .save_saga(
            &old,
            old_fence,
            &[entry(&old, "stale", SagaStatus::Running, 0)],
            None,
        )
        .await;
    assert!(
        matches!(got, Err(StorageError::LeaseLost { .. })),
        "got {got:?}"
    );
    let history = f
        .storage
        .get_saga_history(&saga.saga_id)
        .await
        .expect("history");
    assert!(history.is_empty(), "a refused save appends nothing");
}

/// 20 executors racing for one saga's lease: exactly one gets it.
pub async fn concurrent_lease_acquisitions_exactly_one_wins(f: Fixture) {
    let saga = create(&f, new_saga(&unique("tenant"), base_time())).await;
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let storage = Arc::clone(&f.storage);
            let id = saga.saga_id.clone();
            tokio::spawn(async move {
                storage
                    .acquire_saga_lease(&id, &format!("executor-{i}"), LONG)
                    .await
            })
        })
        .collect();
    let mut winners = 0;
    for handle in handles {
        winners += usize::from(handle.await.expect("join").expect("acquire").is_some());
    }
    assert_eq!(winners, 1);
}

/// Acquiring the lease of a saga that does not exist is `NotFound`.
pub async fn acquire_on_missing_saga_is_not_found(f: Fixture) {
    let got = f
        .storage
        .acquire_saga_lease(&unique("missing"), "executor", LONG)
        .await;
    assert!(
        matches!(got, Err(StorageError::NotFound { .. })),
        "got {got:?}"
    );
    let phantom = new_saga(&unique("tenant"), base_time());
    let got = f.storage.save_saga(&phantom, 0, &[], None).await;
    assert!(
        matches!(got, Err(StorageError::NotFound { .. })),
        "save of a missing saga: {got:?}"
    );
}

/// `save_saga` stores with `version + 1` when fence and version match; a stale version is
/// `VersionConflict`, a wrong fence `LeaseLost` (checked first).
pub async fn save_is_a_fenced_compare_and_set(f: Fixture) {
    let saga = create(&f, new_saga(&unique("tenant"), base_time())).await;
    let mut leased = acquire(&f, &saga.saga_id, "executor", LONG).await;
    let fence = fence_of(&leased);
    let stale = leased.clone();
    leased.status = SagaStatus::Running;
    leased.current_step = 1;
    leased.context = json!({"order": "o-1", "reserved": true});
    let version = save(&f, &leased, fence, &[]).await;
    assert_eq!(version, leased.version + 1);
    let mut saved = leased.clone();
    saved.version = version;
    assert_eq!((saved.status, saved.current_step), (SagaStatus::Running, 1));
    let stored = f
        .storage
        .get_saga(&saga.saga_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored, saved);

    match f.storage.save_saga(&stale, fence, &[], None).await {
        Err(StorageError::VersionConflict {
            expected, found, ..
        }) => {
            assert_eq!((expected, found), (stale.version, saved.version));
        }
        other => panic!("expected VersionConflict, got {other:?}"),
    }
    let got = f.storage.save_saga(&saved, fence + 1, &[], None).await;
    assert!(
        matches!(got, Err(StorageError::LeaseLost { .. })),
        "wrong fence: {got:?}"
    );
    let got = f.storage.save_saga(&stale, fence + 1, &[], None).await;
    assert!(
        matches!(got, Err(StorageError::LeaseLost { .. })),
        "wrong fence and version: {got:?}"
    );
    let stored = f
        .storage
        .get_saga(&saga.saga_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored, saved, "refused saves change nothing");
}

/// History entries given to a successful save are appended with it, in order; a refused
/// save appends none.
pub async fn save_appends_history_atomically(f: Fixture) {
    let saga = create(&f, new_saga(&unique("tenant"), base_time())).await;
    let mut leased = acquire(&f, &saga.saga_id, "executor", LONG).await;
    let fence = fence_of(&leased);
    leased.status = SagaStatus::Running;
    let batch = [
        entry(&leased, "step_started", SagaStatus::Running, fence),
        entry(&leased, "step_succeeded", SagaStatus::Running, fence),
    ];
    let version = save(&f, &leased, fence, &batch).await;
    let mut saved = leased.clone();
    saved.version = version;
    let refused = f
        .storage
        .save_saga(
            &leased,
            fence,
            &[entry(&leased, "refused", SagaStatus::Running, fence)],
            None,
        )
        .await;
    assert!(
        matches!(refused, Err(StorageError::VersionConflict { .. })),
        "got {refused:?}"
    );
    let mut next = saved.clone();
    next.status = SagaStatus::Completed;
    save(
        &f,
        &next,
        fence,
        &[entry(&next, "finished", SagaStatus::Completed, fence)],
    )
    .await;

    let history = f
        .storage
        .get_saga_history(&saga.saga_id)
        .await
        .expect("history");
    assert_eq!(
        names(&history),
        ["step_started", "step_succeeded", "finished"]
    );
    assert_eq!(history[0], batch[0], "entries are stored as given");
}

/// 10 executors saving the same version with the right fence at once: exactly one wins,
/// the others get `VersionConflict`.
pub async fn concurrent_saves_exactly_one_wins(f: Fixture) {
    let saga = create(&f, new_saga(&unique("tenant"), base_time())).await;
    let leased = acquire(&f, &saga.saga_id, "executor", LONG).await;
    let fence = fence_of(&leased);
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let storage = Arc::clone(&f.storage);
            let mut copy = leased.clone();
            copy.current_step = i;
            tokio::spawn(async move {
                let note = entry(&copy, &format!("save-{i}"), SagaStatus::Running, fence);
                storage.save_saga(&copy, fence, &[note], None).await
            })
        })
        .collect();
    let (mut wins, mut conflicts) = (0, 0);
    for handle in handles {
        match handle.await.expect("join") {
            Ok(_) => wins += 1,
            Err(StorageError::VersionConflict { .. }) => conflicts += 1,
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!((wins, conflicts), (1, 9));
    let history = f
        .storage
        .get_saga_history(&saga.saga_id)
        .await
        .expect("history");
    assert_eq!(history.len(), 1, "only the winning save's entry is kept");
}

/// Saving with the lease cleared releases it: the former holder's fence no longer
/// writes, and the next acquisition gets a fence above it.
pub async fn cleared_lease_fences_out_its_holder(f: Fixture) {
    let saga = create(&f, new_saga(&unique("tenant"), base_time())).await;
    let mut leased = acquire(&f, &saga.saga_id, "executor-a", LONG).await;
    let fence = fence_of(&leased);
    leased.lease = None;
    leased.status = SagaStatus::Running;
    let receipt = f
        .storage
        .save_saga(&leased, fence, &[], None)
        .await
        .expect("save");
    assert_eq!(receipt.lease_expires_at, None, "released");
    let version = receipt.version;
    let mut released = leased.clone();
    released.version = version;
    let stored = f
        .storage
        .get_saga(&saga.saga_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.lease, None);
    let got = f.storage.save_saga(&released, fence, &[], None).await;
    assert!(
        matches!(got, Err(StorageError::LeaseLost { .. })),
        "old fence after release: {got:?}"
    );
    let next = acquire(&f, &saga.saga_id, "executor-b", LONG).await;
    assert!(
        fence_of(&next) > fence,
        "fences keep rising after a release"
    );
}

/// History given to `create_saga` and then to saves is kept oldest first; a saga
/// without history has none.
pub async fn history_is_kept_oldest_first(f: Fixture) {
    let empty = create(&f, new_saga(&unique("tenant"), base_time())).await;
    assert!(
        f.storage
            .get_saga_history(&empty.saga_id)
            .await
            .expect("history")
            .is_empty()
    );
    let saga = new_saga(&unique("tenant"), base_time());
    let first = [
        entry(&saga, "created", SagaStatus::Pending, 0),
        entry(&saga, "note", SagaStatus::Pending, 0),
    ];
    let created = f
        .storage
        .create_saga(&saga, None, &first)
        .await
        .expect("create");
    assert!(matches!(created, CreateSaga::Created(_)), "{created:?}");
    let mut leased = acquire(&f, &saga.saga_id, "executor", LONG).await;
    let fence = fence_of(&leased);
    leased.status = SagaStatus::Running;
    let later = entry(&leased, "resumed", SagaStatus::Running, fence);
    save(&f, &leased, fence, &[later]).await;
    let history = f
        .storage
        .get_saga_history(&saga.saga_id)
        .await
        .expect("history");
    assert_eq!(names(&history), ["created", "note", "resumed"]);
    let none = f
        .storage
        .get_saga_history(&unique("missing"))
        .await
        .expect("history of nothing");
    assert!(none.is_empty());
}

/// `list_sagas` filters by status and tenant, newest first, and follows status changes.
pub async fn list_filters_by_status_and_tenant_newest_first(f: Fixture) {
    let (tenant, other) = (unique("tenant"), unique("tenant"));
    let base = base_time();
    let mut ids = Vec::new();
    for i in 0..4 {
        let saga = create(&f, new_saga(&tenant, base + time::Duration::seconds(i))).await;
        ids.push(saga.saga_id);
    }
    create(&f, new_saga(&other, base)).await;
    let running = f
        .storage
        .get_saga(&ids[1])
        .await
        .expect("get")
        .expect("saga");
    move_to(&f, &running, SagaStatus::Running).await;

    let list = |status: Option<SagaStatus>, tenant: &str| SagaFilter {
        status,
        tenant_id: Some(tenant.to_owned()),
        limit: 0,
        offset: 0,
    };
    let pending = f
        .storage
        .list_sagas(&list(Some(SagaStatus::Pending), &tenant))
        .await
        .expect("list");
    let pending: Vec<_> = pending.iter().map(|s| s.saga_id.as_str()).collect();
    assert_eq!(
        pending,
        [ids[3].as_str(), ids[2].as_str(), ids[0].as_str()],
        "newest first"
    );
    let running = f
        .storage
        .list_sagas(&list(Some(SagaStatus::Running), &tenant))
        .await
        .expect("list");
    assert_eq!(
        running
            .iter()
            .map(|s| s.saga_id.as_str())
            .collect::<Vec<_>>(),
        [ids[1].as_str()]
    );
    let all = f
        .storage
        .list_sagas(&list(None, &tenant))
        .await
        .expect("list");
    assert_eq!(all.len(), 4, "only this tenant's sagas");
    assert!(all.iter().all(|s| s.tenant_id == tenant));

    let by_status = SagaFilter {
        status: Some(SagaStatus::Running),
        ..SagaFilter::default()
    };
    let running_anywhere = f.storage.list_sagas(&by_status).await.expect("list");
    assert!(
        running_anywhere
            .iter()
            .all(|s| s.status == SagaStatus::Running)
    );
    assert!(running_anywhere.iter().any(|s| s.saga_id == ids[1]));
}

/// `limit` and `offset` page through the newest-first list.
pub async fn list_pages_with_limit_and_offset(f: Fixture) {
    let tenant = unique("tenant");
    let base = base_time();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            create(&f, new_saga(&tenant, base + time::Duration::seconds(i)))
                .await
                .saga_id,
        );
    }
    ids.reverse();
    let page = |limit, offset| SagaFilter {
        status: None,
        tenant_id: Some(tenant.clone()),
        limit,
        offset,
    };
    let got = f.storage.list_sagas(&page(2, 1)).await.expect("list");
    assert_eq!(
        got.iter().map(|s| s.saga_id.clone()).collect::<Vec<_>>(),
        ids[1..3]
    );
    let got = f.storage.list_sagas(&page(2, 4)).await.expect("list");
    assert_eq!(
        got.iter().map(|s| s.saga_id.clone()).collect::<Vec<_>>(),
        ids[4..]
    );
    assert!(
        f.storage
            .list_sagas(&page(2, 5))
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        f.storage.list_sagas(&page(0, 0)).await.expect("list").len(),
        5,
        "0 means the default page"
    );
}

/// Recoverable: Running or Compensating with an expired or no lease; not Pending, not
/// live-leased, not terminal.
pub async fn list_recoverable_finds_abandoned_active_sagas(f: Fixture) {
    let tenant = unique("tenant");
    let make = || new_saga(&tenant, base_time());
    let pending = create(&f, make()).await;
    let live = create(&f, make()).await;
    let expired_running = create(&f, make()).await;
    let unleased_running = create(&f, make()).await;
    let expired_compensating = create(&f, make()).await;
    let mut terminal = Vec::new();
    for status in [
        SagaStatus::Completed,
        SagaStatus::Compensated,
        SagaStatus::CompensationFailed,
    ] {
        let saga = create(&f, make()).await;
        let mut saved = move_to(&f, &saga, status).await;
        let fence = fence_of(&saved);
        saved.lease = None;
        save(&f, &saved, fence, &[]).await;
        terminal.push(saga.saga_id);
    }
    move_to(&f, &live, SagaStatus::Running).await;
    for (saga, status) in [
        (&expired_running, SagaStatus::Running),
        (&expired_compensating, SagaStatus::Compensating),
    ] {
        let mut leased = acquire(&f, &saga.saga_id, "doomed", f.short_lease).await;
        let fence = fence_of(&leased);
        leased.status = status;
        save(&f, &leased, fence, &[]).await;
    }
    let mut unleased = move_to(&f, &unleased_running, SagaStatus::Running).await;
    let fence = fence_of(&unleased);
    unleased.lease = None;
    save(&f, &unleased, fence, &[]).await;
    f.expire_short_lease().await;

    let found: HashSet<String> = f
        .storage
        .list_recoverable_sagas(100)
        .await
        .expect("list")
        .into_iter()
        .collect();
    let expected: HashSet<String> = [&expired_running, &unleased_running, &expired_compensating]
        .iter()
        .map(|s| s.saga_id.clone())
        .collect();
    assert_eq!(found, expected, "exactly the abandoned active sagas");
    assert!(!found.contains(&pending.saga_id) && !found.contains(&live.saga_id));
    assert_eq!(
        f.storage
            .list_recoverable_sagas(2)
            .await
            .expect("list")
            .len(),
        2,
        "limit"
    );
}

/// Deleting removes the saga, its history, its index entries and its idempotency key.
pub async fn delete_removes_saga_history_and_index(f: Fixture) {
    let (tenant, key) = (unique("tenant"), unique("key"));
    let mut saga = new_saga(&tenant, base_time());
    saga.idempotency_key = Some(key.clone());
    let created = entry(&saga, "created", SagaStatus::Pending, 0);
    f.storage
        .create_saga(&saga, None, &[created])
        .await
        .expect("create");
    assert!(f.storage.delete_saga(&saga.saga_id).await.expect("delete"));
    assert_eq!(f.storage.get_saga(&saga.saga_id).await.expect("get"), None);
    assert!(
        f.storage
            .get_saga_history(&saga.saga_id)
            .await
            .expect("history")
            .is_empty()
    );
    let filter = SagaFilter {
        tenant_id: Some(tenant.clone()),
        ..SagaFilter::default()
    };
    assert!(
        f.storage
            .list_sagas(&filter)
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        !f.storage
            .delete_saga(&saga.saga_id)
            .await
            .expect("delete again")
    );

    let mut again = new_saga(&tenant, base_time());
    again.idempotency_key = Some(key);
    create(&f, again).await;
}

/// Empty ids, tenants or owners and zero leases: `StorageError::Invalid`.
pub async fn invalid_saga_input_is_rejected(f: Fixture) {
    let mut no_tenant = new_saga("", base_time());
    no_tenant.tenant_id = String::new();
    let got = f.storage.create_saga(&no_tenant, None, &[]).await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "empty tenant: {got:?}"
    );
    let mut no_id = new_saga(&unique("tenant"), base_time());
    no_id.saga_id = String::new();
    let got = f.storage.create_saga(&no_id, None, &[]).await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "empty id: {got:?}"
    );
    let saga = create(&f, new_saga(&unique("tenant"), base_time())).await;
    let got = f
        .storage
        .acquire_saga_lease(&saga.saga_id, "executor", std::time::Duration::ZERO)
        .await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "zero lease: {got:?}"
    );
    let got = f.storage.acquire_saga_lease(&saga.saga_id, "", LONG).await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "empty owner: {got:?}"
    );
}

/// A saga created leased: the store keeps owner and fence (1) and sets the expiry from its
/// own clock (the `expires_at` given is ignored), a later acquire gets fence 2; a leased
/// saga without a lease duration is `Invalid`.
pub async fn create_with_lease_sets_fence_floor_and_store_expiry(f: Fixture) {
    let mut saga = new_saga(&unique("tenant"), base_time());
    saga.status = SagaStatus::Running;
    saga.lease = Some(SagaLease {
        owner: "executor-a".into(),
        fence: 1,
        // Deliberately far off: the store must not take it.
        expires_at: OffsetDateTime::UNIX_EPOCH,
    });
    let got = f.storage.create_saga(&saga, None, &[]).await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "leased without a duration: {got:?}"
    );
    let before = store_now(&f).await;
    let receipt = match f
        .storage
        .create_saga(&saga, Some(f.short_lease), &[])
        .await
        .expect("create")
    {
        CreateSaga::Created(receipt) => receipt,
        CreateSaga::Existing(existing) => panic!("expected Created, got {existing:?}"),
    };
    assert_eq!(receipt.version, saga.version);
    let until = receipt.lease_expires_at.expect("created leased");
    assert_close(until - before, f.short_lease, "lease expiry - store's now");
    let stored = f
        .storage
        .get_saga(&saga.saga_id)
        .await
        .expect("get")
        .expect("stored");
    let lease = stored.lease.clone().expect("leased");
    assert_eq!(
        (lease.owner.as_str(), lease.fence, lease.expires_at),
        ("executor-a", 1, until)
    );
    // The creator writes with fence 1 at once, without an acquire.
    let mut running = stored.clone();
    running.current_step = 1;
    save(&f, &running, 1, &[]).await;
    let got = f
        .storage
        .acquire_saga_lease(&saga.saga_id, "executor-b", LONG)
        .await
        .expect("acquire");
    assert_eq!(got, None, "the created lease is live");
    f.expire_short_lease().await;
    let taken = acquire(&f, &saga.saga_id, "executor-b", LONG).await;
    assert_eq!(fence_of(&taken), 2, "the created lease set the fence floor");
}

/// `save_saga` with `renew: None` keeps the stored expiry (whatever `saga.lease` says),
/// with `renew: Some(d)` sets it to the store's now + `d`, and with `saga.lease = None`
/// releases the lease; each receipt reports the expiry stored.
pub async fn save_renews_keeps_or_releases_the_lease(f: Fixture) {
    let saga = create(&f, new_saga(&unique("tenant"), base_time())).await;
    let mut leased = acquire(&f, &saga.saga_id, "executor", LONG).await;
    let fence = fence_of(&leased);
    let held = leased.lease.clone().expect("leased").expires_at;
    if let Some(lease) = &mut leased.lease {
        lease.expires_at = OffsetDateTime::UNIX_EPOCH;
    }
    leased.status = SagaStatus::Running;
    let kept = f
        .storage
        .save_saga(&leased, fence, &[], None)
        .await
        .expect("save");
    assert_eq!(kept.version, leased.version + 1);
    assert_eq!(kept.lease_expires_at, Some(held), "renew: None keeps it");
    let stored = f
        .storage
        .get_saga(&saga.saga_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.lease.as_ref().map(|l| l.expires_at), Some(held));

    f.time.advance(std::time::Duration::from_secs(2)).await;
    leased.version = kept.version;
    let before = store_now(&f).await;
    let renewed = f
        .storage
        .save_saga(&leased, fence, &[], Some(LONG))
        .await
        .expect("save");
    let until = renewed.lease_expires_at.expect("still leased");
    assert!(until > held, "renewed past the first expiry");
    assert_close(until - before, LONG, "renewed expiry - store's now");
    let stored = f
        .storage
        .get_saga(&saga.saga_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.lease.as_ref().map(|l| l.expires_at), Some(until));
    assert_eq!(stored.version, renewed.version);

    leased.version = renewed.version;
    leased.lease = None;
    let released = f
        .storage
        .save_saga(&leased, fence, &[], Some(LONG))
        .await
        .expect("save");
    assert_eq!(released.lease_expires_at, None);
    let stored = f
        .storage
        .get_saga(&saga.saga_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.lease, None);
}

/// Every kind of [`SagaEvent`] is stored and read back exactly (facts, JSON values,
/// times, fences, statuses), in order.
pub async fn history_round_trips_every_event_kind(f: Fixture) {
    let saga = new_saga(&unique("tenant"), base_time());
    let at = base_time();
    let kinds = vec![
        SagaEventKind::Created,
        SagaEventKind::Resumed,
        SagaEventKind::StepStarted {
            step_index: 0,
            name: "reserve".into(),
            attempt: 1,
        },
        SagaEventKind::StepSucceeded {
            step_index: 0,
            name: "reserve".into(),
            output: json!({"ids": [1, 2, 3], "note": "é✓ \"quoted\"", "nested": {"null": null}}),
        },
        SagaEventKind::StepRetrying {
            step_index: 1,
            name: "charge".into(),
            attempt: 2,
            error: "timeout\nline two".into(),
            delay_ms: 1500,
        },
        SagaEventKind::StepFailed {
            step_index: 1,
            name: "charge".into(),
            error: "declined".into(),
        },
        SagaEventKind::Compensating {
            reason: "step charge failed".into(),
        },
        SagaEventKind::CompensationStarted {
            step_index: 0,
            name: "reserve".into(),
            attempt: 1,
        },
        SagaEventKind::CompensationRetrying {
            step_index: 0,
            name: "reserve".into(),
            attempt: 1,
            error: "busy".into(),
            delay_ms: 0,
        },
        SagaEventKind::StepCompensated {
            step_index: 0,
            name: "reserve".into(),
        },
        SagaEventKind::CompensationFailed {
            step_index: 0,
            name: "reserve".into(),
            error: "gone".into(),
        },
        SagaEventKind::Finished,
        SagaEventKind::Aborted {
            error: "lease lost".into(),
        },
    ];
    let statuses = [
        SagaStatus::Pending,
        SagaStatus::Running,
        SagaStatus::Compensating,
        SagaStatus::Compensated,
        SagaStatus::CompensationFailed,
        SagaStatus::Completed,
    ];
    let events: Vec<SagaEvent> = kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| SagaEvent {
            saga_id: saga.saga_id.as_str().into(),
            at: at + time::Duration::seconds(i as i64),
            fence: i as u64 * 7,
            status: statuses[i % statuses.len()],
            kind,
        })
        .collect();
    let (first, rest) = events.split_at(2);
    f.storage
        .create_saga(&saga, None, first)
        .await
        .expect("create");
    let mut leased = acquire(&f, &saga.saga_id, "executor", LONG).await;
    let fence = fence_of(&leased);
    let (middle, last) = rest.split_at(5);
    leased.version = save(&f, &leased, fence, middle).await;
    save(&f, &leased, fence, last).await;
    let history = f
        .storage
        .get_saga_history(&saga.saga_id)
        .await
        .expect("history");
    assert_eq!(history, events);
}

/// Creates a saga and finishes it (`status`, lease released); returns its id.
async fn finished(f: &Fixture, tenant: &str, status: SagaStatus) -> String {
    let saga = create(f, new_saga(tenant, base_time())).await;
    let mut saved = move_to(f, &saga, status).await;
    let fence = fence_of(&saved);
    saved.lease = None;
    // As an engine does: a write stamps the saga with the time it was made.
    saved.updated_at = store_now(f).await;
    let done = entry(&saved, "finished", status, fence);
    save(f, &saved, fence, &[done]).await;
    saga.saga_id
}

/// Finished sagas past the retention go, with their history and index entries; recent
/// ones and unfinished ones (however old) stay.
pub async fn purge_removes_finished_sagas_past_retention_only(f: Fixture) {
    let tenant = unique("tenant");
    let mut old = Vec::new();
    for status in [
        SagaStatus::Completed,
        SagaStatus::Compensated,
        SagaStatus::CompensationFailed,
    ] {
        old.push(finished(&f, &tenant, status).await);
    }
    let pending = create(&f, new_saga(&tenant, base_time())).await;
    let running = create(&f, new_saga(&tenant, base_time())).await;
    move_to(&f, &running, SagaStatus::Running).await;
    f.expire_short_lease().await;
    let recent = finished(&f, &tenant, SagaStatus::Completed).await;

    let sweep = f
        .storage
        .purge_sagas(f.short_lease, 100)
        .await
        .expect("purge");
    assert_eq!((sweep.done, sweep.more), (3, false), "{sweep:?}");
    for id in &old {
        assert_eq!(f.storage.get_saga(id).await.expect("get"), None);
        assert!(
            f.storage
                .get_saga_history(id)
                .await
                .expect("history")
                .is_empty()
        );
    }
    for id in [&pending.saga_id, &running.saga_id, &recent] {
        assert!(
            f.storage.get_saga(id).await.expect("get").is_some(),
            "{id} kept"
        );
    }
    let filter = SagaFilter {
        tenant_id: Some(tenant),
        ..SagaFilter::default()
    };
    assert_eq!(f.storage.list_sagas(&filter).await.expect("list").len(), 3);
    let again = f
        .storage
        .purge_sagas(f.short_lease, 100)
        .await
        .expect("purge again");
    assert_eq!((again.done, again.more), (0, false));
}

/// A batch stops at `limit` and says `more` while due sagas remain.
pub async fn purge_works_in_batches_with_more(f: Fixture) {
    let tenant = unique("tenant");
    for _ in 0..3 {
        finished(&f, &tenant, SagaStatus::Completed).await;
    }
    f.expire_short_lease().await;
    let first = f
        .storage
        .purge_sagas(f.short_lease, 2)
        .await
        .expect("purge");
    assert_eq!((first.done, first.more), (2, true), "{first:?}");
    let second = f
        .storage
        .purge_sagas(f.short_lease, 2)
        .await
        .expect("purge");
    assert_eq!((second.done, second.more), (1, false), "{second:?}");
}
