//! A fixed set of mutex-guarded shards chosen by key hash, so callers on different keys
//! rarely wait for one another.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use foldhash::quality::RandomState;
use parking_lot::Mutex;

/// The hash maps of this crate: foldhash is several times faster than SipHash on short
/// keys, and its `quality` variant with a random per-map seed still keeps keys chosen by
/// clients (idempotency keys come from HTTP headers) from piling into one bucket.
pub(crate) type Map<K, V> = HashMap<K, V, RandomState>;

/// How many shards: a power of two well above the core counts this runs on, small enough
/// that scans over all shards (purge, stats) stay cheap.
pub(crate) const SHARDS: usize = 64;

/// `SHARDS` values of `T`, each behind its own mutex.
#[derive(Debug)]
pub(crate) struct Sharded<T> {
    shards: Box<[Mutex<T>]>,
    hasher: RandomState,
}

impl<T: Default> Sharded<T> {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(T::default())).collect(),
            hasher: RandomState::default(),
        }
    }
}

impl<T> Sharded<T> {
    /// The shard that owns `key`.
    pub(crate) fn shard<K: Hash + ?Sized>(&self, key: &K) -> &Mutex<T> {
        self.shard_of(self.hash(key))
    }

    /// The hash of `key`, for shards that keep it (a `HashTable` shard hashes only once).
    pub(crate) fn hash<K: Hash + ?Sized>(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The shard that owns the key with `hash`. Middle bits choose it: hashbrown takes the
    /// low bits for the bucket and the top seven as a tag, so within one shard those stay
    /// as varied as the hash itself.
    pub(crate) fn shard_of(&self, hash: u64) -> &Mutex<T> {
        &self.shards[((hash >> 32) % SHARDS as u64) as usize]
    }

    /// Every shard, for scans.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Mutex<T>> {
        self.shards.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn keys_spread_over_the_shards() {
        let sharded: Sharded<()> = Sharded::new();
        let used: HashSet<*const Mutex<()>> = (0..1000)
            .map(|i| std::ptr::from_ref(sharded.shard(&("tenant", format!("key-{i}")))))
            .collect();
        // 1000 keys over 64 shards leave one empty with probability ~1e-5.
        assert!(
            used.len() >= SHARDS * 3 / 4,
            "only {} of {SHARDS} shards used",
            used.len()
        );
    }

    #[test]
    fn one_key_always_maps_to_one_shard() {
        let sharded: Sharded<()> = Sharded::new();
        let first = std::ptr::from_ref(sharded.shard(&("t", "k")));
        assert!((0..10).all(|_| std::ptr::eq(first, sharded.shard(&("t", "k")))));
    }
}
