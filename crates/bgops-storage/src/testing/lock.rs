//! What [`LockStore`](crate::LockStore) promises (semantics §6):
//!
//! - a held lock cannot be acquired again; of N concurrent acquisitions exactly one wins;
//! - every acquisition gets a fencing number strictly higher than every earlier one on the
//!   same name, across releases and expiry;
//! - only the current owner may renew or release; a lock whose TTL ran out belongs to
//!   nobody, and the next acquirer gets a higher fence while the old owner is refused;
//! - bad input is a [`StorageError::Invalid`], never a panic.

use std::sync::Arc;
use std::time::Duration;

use super::{Fixture, LONG, unique};
use crate::{LockLease, StorageError};

/// Defines one `#[tokio::test]` per lock case, each on a fresh `$fixture`.
#[macro_export]
macro_rules! lock_suite {
    ($fixture:expr) => {
        $crate::__conformance_cases!(
            $fixture,
            lock,
            [
                acquire_returns_a_lease,
                held_lock_cannot_be_acquired,
                fences_rise_across_acquisitions,
                only_the_owner_may_renew_or_release,
                expired_lock_goes_to_the_next_with_a_higher_fence,
                expired_lock_belongs_to_nobody,
                renew_extends_the_lock,
                concurrent_acquires_exactly_one_wins,
                names_are_independent,
                invalid_lock_input_is_rejected,
            ]
        );
    };
}

async fn acquire(f: &Fixture, name: &str, ttl: Duration) -> LockLease {
    f.storage
        .acquire_lock(name, ttl)
        .await
        .expect("acquire")
        .expect("the lock is free")
}

/// Acquiring a free lock returns a lease naming the lock, with a token and an expiry.
pub async fn acquire_returns_a_lease(f: Fixture) {
    let name = unique("lock");
    let lease = acquire(&f, &name, LONG).await;
    assert_eq!(lease.name, name);
    assert!(!lease.token.is_empty(), "the owner token must not be empty");
}

/// A held lock: `acquire_lock` gives `None`; after release it can be taken again.
pub async fn held_lock_cannot_be_acquired(f: Fixture) {
    let name = unique("lock");
    let lease = acquire(&f, &name, LONG).await;
    assert_eq!(
        f.storage.acquire_lock(&name, LONG).await.expect("acquire"),
        None
    );
    assert!(f.storage.release_lock(&lease).await.expect("release"));
    let again = acquire(&f, &name, LONG).await;
    assert_ne!(
        again.token, lease.token,
        "a new acquisition gets a new token"
    );
}

/// Fencing numbers rise strictly with every acquisition of a name, also after release.
pub async fn fences_rise_across_acquisitions(f: Fixture) {
    let name = unique("lock");
    let mut last = None;
    for _ in 0..5 {
        let lease = acquire(&f, &name, LONG).await;
        if let Some(previous) = last {
            assert!(
                lease.fence > previous,
                "fence {} after {previous}",
                lease.fence
            );
        }
        last = Some(lease.fence);
        assert!(f.storage.release_lock(&lease).await.expect("release"));
    }
}

/// A lease with another token (same name and fence) can neither renew nor release; the
/// owner still holds the lock.
pub async fn only_the_owner_may_renew_or_release(f: Fixture) {
    let name = unique("lock");
    let lease = acquire(&f, &name, LONG).await;
    let forged = LockLease {
        token: unique("not-the-owner"),
        ..lease.clone()
    };
    assert_eq!(
        f.storage.renew_lock(&forged, LONG).await.expect("renew"),
        None
    );
    assert!(!f.storage.release_lock(&forged).await.expect("release"));
    assert_eq!(
        f.storage.acquire_lock(&name, LONG).await.expect("acquire"),
        None,
        "still held"
    );
    assert!(
        f.storage
            .renew_lock(&lease, LONG)
            .await
            .expect("renew")
            .is_some()
    );
    assert!(f.storage.release_lock(&lease).await.expect("release"));
}

/// After the TTL runs out another caller acquires with a higher fence; the old owner's
/// renew and release are refused and do not disturb the new owner.
pub async fn expired_lock_goes_to_the_next_with_a_higher_fence(f: Fixture) {
    let name = unique("lock");
    let old = acquire(&f, &name, f.short_lease).await;
    f.expire_short_lease().await;
    let new = acquire(&f, &name, LONG).await;
    assert!(
        new.fence > old.fence,
        "fence {} after {}",
        new.fence,
        old.fence
    );
    assert_ne!(new.token, old.token);
    assert_eq!(f.storage.renew_lock(&old, LONG).await.expect("renew"), None);
    assert!(!f.storage.release_lock(&old).await.expect("release"));
    assert_eq!(
        f.storage.acquire_lock(&name, LONG).await.expect("acquire"),
        None,
        "new owner"
    );
    assert!(f.storage.release_lock(&new).await.expect("release"));
}

/// A lock whose TTL ran out is not held by anyone, not even its former owner: renew gives
/// `None` and release `false`.
pub async fn expired_lock_belongs_to_nobody(f: Fixture) {
    let name = unique("lock");
    let lease = acquire(&f, &name, f.short_lease).await;
    f.expire_short_lease().await;
    assert_eq!(
        f.storage.renew_lock(&lease, LONG).await.expect("renew"),
        None
    );
    assert!(!f.storage.release_lock(&lease).await.expect("release"));
    let next = acquire(&f, &name, LONG).await;
    assert!(next.fence > lease.fence);
}

/// Renewing moves the expiry forward and keeps token and fence: the lock outlives its
/// first TTL.
pub async fn renew_extends_the_lock(f: Fixture) {
    let name = unique("lock");
    let lease = acquire(&f, &name, f.short_lease).await;
    let renewed = f
        .storage
        .renew_lock(&lease, LONG)
        .await
        .expect("renew")
        .expect("owner");
    assert_eq!(
        (renewed.token.as_str(), renewed.fence),
        (lease.token.as_str(), lease.fence)
    );
    assert!(
        renewed.expires_at > lease.expires_at,
        "renew extends the lock"
    );
    f.expire_short_lease().await;
    assert_eq!(
        f.storage.acquire_lock(&name, LONG).await.expect("acquire"),
        None,
        "still held"
    );
    assert!(f.storage.release_lock(&renewed).await.expect("release"));
}

/// 50 concurrent acquisitions of one free lock: exactly one wins.
pub async fn concurrent_acquires_exactly_one_wins(f: Fixture) {
    let name = unique("lock");
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let storage = Arc::clone(&f.storage);
            let name = name.clone();
            tokio::spawn(async move { storage.acquire_lock(&name, LONG).await })
        })
        .collect();
    let mut winners = 0;
    for handle in handles {
        if handle.await.expect("join").expect("acquire").is_some() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one acquisition must win");
}

/// Locks of different names do not exclude one another.
pub async fn names_are_independent(f: Fixture) {
    let (a, b) = (unique("lock-a"), unique("lock-b"));
    let lease_a = acquire(&f, &a, LONG).await;
    let lease_b = acquire(&f, &b, LONG).await;
    assert!(f.storage.release_lock(&lease_a).await.expect("release a"));
    assert_eq!(
        f.storage.acquire_lock(&b, LONG).await.expect("acquire"),
        None,
        "b still held"
    );
    assert!(f.storage.release_lock(&lease_b).await.expect("release b"));
}

/// Empty name or zero TTL: `StorageError::Invalid`.
pub async fn invalid_lock_input_is_rejected(f: Fixture) {
    let got = f.storage.acquire_lock("", LONG).await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "empty name: {got:?}"
    );
    let got = f
        .storage
        .acquire_lock(&unique("lock"), Duration::ZERO)
        .await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "zero ttl: {got:?}"
    );
    let lease = acquire(&f, &unique("lock"), LONG).await;
    let got = f.storage.renew_lock(&lease, Duration::ZERO).await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "renew with zero ttl: {got:?}"
    );
}
