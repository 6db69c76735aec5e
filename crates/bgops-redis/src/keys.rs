//! The key layout (see `docs/redis-schema.md`). Every key is `<prefix>:{<tag>}:<rest>`;
//! the hash tag decides the Redis Cluster slot, so every key one script touches shares it.

/// Idempotency records and locks are spread over this many tags (slots), each with its
/// own cleanup index in the same slot. Changing it moves every key: it is fixed.
pub(crate) const BUCKETS: u32 = 16;

/// Builds keys under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>:{idem:<b>}:rec:<len>:<tenant>:<key>` (hash).
    pub(crate) fn idempotency(&self, tenant: &str, key: &str) -> (String, String) {
        let b = bucket(&[tenant, key]);
        (
            format!(
                "{}:{{idem:{b}}}:rec:{}:{tenant}:{key}",
                self.prefix,
                tenant.len()
            ),
            self.idempotency_index(b),
        )
    }

    /// `<prefix>:{idem:<b>}:index` (zset: record key → when purge should look at it).
    pub(crate) fn idempotency_index(&self, b: u32) -> String {
        format!("{}:{{idem:{b}}}:index", self.prefix)
    }

    /// Lock, fence counter and the bucket's held index.
    pub(crate) fn lock(&self, name: &str) -> [String; 3] {
        let b = bucket(&[name]);
        [
            format!("{}:{{lock:{b}}}:lock:{name}", self.prefix),
            format!("{}:{{lock:{b}}}:fence:{name}", self.prefix),
            self.lock_index(b),
        ]
    }

    /// `<prefix>:{lock:<b>}:held` (zset: lock name → expiry).
    pub(crate) fn lock_index(&self, b: u32) -> String {
        format!("{}:{{lock:{b}}}:held", self.prefix)
    }

    /// Base of every saga key: `<prefix>:{saga}:`; scripts append the rest.
    pub(crate) fn saga_base(&self) -> String {
        format!("{}:{{saga}}:", self.prefix)
    }

    /// Base of every task key: `<prefix>:{task}:`; scripts append the rest.
    pub(crate) fn task_base(&self) -> String {
        format!("{}:{{task}}:", self.prefix)
    }
}

/// Length-prefixed text, so that `a:b` + `c` and `a` + `b:c` never build the same key.
pub(crate) fn enc(part: &str) -> String {
    format!("{}:{part}", part.len())
}

/// A stable bucket (FNV-1a, not std's hasher, whose output may change between Rust
/// releases and would move keys).
pub(crate) fn bucket(parts: &[&str]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    }
    hash % BUCKETS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_one_tag_per_script() {
        let keys = Keys::new("bgops");
        let (rec, idx) = keys.idempotency("t1", "k1");
        let tag = |k: &str| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_owned();
        assert_eq!(tag(&rec), tag(&idx));
        let [lock, fence, held] = keys.lock("jobs");
        assert_eq!(tag(&lock), tag(&fence));
        assert_eq!(tag(&lock), tag(&held));
        assert!(rec.starts_with("bgops:{idem:"));
    }

    #[test]
    fn tenant_and_key_cannot_collide() {
        let keys = Keys::new("p");
        assert_ne!(
            keys.idempotency("a:b", "c").0,
            keys.idempotency("a", "b:c").0
        );
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        // Pinned: a change here would move every stored key.
        assert_eq!(bucket(&["tenant", "key"]), bucket(&["tenant", "key"]));
        let used: std::collections::BTreeSet<u32> =
            (0..200).map(|i| bucket(&["t", &i.to_string()])).collect();
        assert_eq!(used.len(), BUCKETS as usize);
    }
}
