//! bgops-axum over real TCP: a server on an ephemeral loopback port, a hyper client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

mod app;
mod cases;
mod faults;
mod support;
mod tower_stack;

use std::sync::Arc;

use bgops_storage::IdempotencyStore;

fn memory() -> Arc<dyn IdempotencyStore> {
    Arc::new(bgops_memory::MemoryStorage::new())
}

/// A Redis store under a unique prefix, on the server of the one URL policy
/// (`BGOPS_TEST_REDIS_URL`, or a throwaway server).
async fn redis() -> Option<Arc<dyn IdempotencyStore>> {
    let url = bgops_storage::testing::server::redis::url();
    let prefix = format!("bgops-test-{}", uuid::Uuid::new_v4().simple());
    let store = bgops_redis::RedisStorage::builder(url)
        .prefix(prefix)
        .pool_size(2)
        .build()
        .await;
    Some(Arc::new(store.expect("connecting to the test Redis")))
}

macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::cases::$case(crate::memory()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(store) = crate::redis().await {
                        crate::cases::$case(store).await;
                    }
                }
            )*
        }
    };
}

on_every_backend!(
    replay_is_byte_exact,
    methods_not_covered_pass_through,
    bad_keys_are_400,
    missing_key_required_or_optional,
    scope_separates_tenants_and_users,
    other_request_same_key_is_422,
    body_over_limit_is_413,
    deterministic_statuses_are_stored,
    transient_statuses_release_the_claim,
    panicking_handler_releases_the_claim,
    in_flight_duplicate_gets_409,
    in_flight_duplicate_202_as_in_seed,
    in_flight_duplicate_waits_and_replays,
    lease_is_renewed_while_handler_runs,
    streamed_and_large_responses_are_not_stored,
    exempt_paths_pass_through,
    operation_result_is_kept_in_the_record,
    custom_header_names,
    one_key_hundred_concurrent_requests,
    many_keys_at_once,
    client_disconnect_mid_handler_runs_once_and_retry_replays,
    long_paths_work,
    unscoped_request_cannot_address_a_scoped_key,
    corrupt_stored_response_is_500_naming_the_record,
);

#[tokio::test]
async fn store_down_fails_closed_with_503() {
    cases::store_down_fails_closed_with_503().await;
}

#[tokio::test]
async fn store_down_fails_open_when_chosen() {
    cases::store_down_fails_open_when_chosen().await;
}
