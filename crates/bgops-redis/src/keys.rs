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

    /// A saga's hash and history list: `<p>:{saga}:s:<id>`, `<p>:{saga}:h:<id>`.
    pub(crate) fn saga(&self, id: &str) -> (String, String) {
        (
            format!("{}:{{saga}}:s:{id}", self.prefix),
            format!("{}:{{saga}}:h:{id}", self.prefix),
        )
    }

    /// The saga id of a saga hash key (index members are hash keys).
    pub(crate) fn saga_id_of<'k>(&self, rec: &'k str) -> Option<&'k str> {
        rec.strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{saga}:s:")
    }

    /// `<p>:{saga}:key:enc(tenant):<key>` (string: the saga's hash key).
    pub(crate) fn saga_keymap(&self, tenant: &str, key: &str) -> String {
        format!("{}:{{saga}}:key:{}:{key}", self.prefix, enc(tenant))
    }

    /// Every saga index a saga of `tenant` may be in, in the order the saga scripts read
    /// them (`saga_common.lua`): all, active, tenant, then one per status for all sagas
    /// and for the tenant, both in [`SAGA_STATUSES`] order, then the finished index.
    pub(crate) fn saga_indexes(&self, tenant: &str) -> Vec<String> {
        let mut keys = vec![
            self.saga_index(None, None),
            self.saga_active(),
            self.saga_index(Some(tenant), None),
        ];
        keys.extend(SAGA_STATUSES.iter().map(|s| self.saga_index(None, Some(s))));
        keys.extend(
            SAGA_STATUSES
                .iter()
                .map(|s| self.saga_index(Some(tenant), Some(s))),
        );
        keys.push(self.saga_finished());
        keys
    }

    /// `<p>:{saga}:finished` (zset: saga hash key → server time of its last write while
    /// finished): what retention purges, oldest first.
    pub(crate) fn saga_finished(&self) -> String {
        format!("{}:{{saga}}:finished", self.prefix)
    }

    /// A saga index (zset: saga hash key → creation time): all, by status, by tenant, by
    /// tenant and status.
    pub(crate) fn saga_index(&self, tenant: Option<&str>, status: Option<&str>) -> String {
        let p = &self.prefix;
        match (tenant, status) {
            (None, None) => format!("{p}:{{saga}}:idx:all"),
            (None, Some(s)) => format!("{p}:{{saga}}:idx:st:{s}"),
            (Some(t), None) => format!("{p}:{{saga}}:idx:t:{}", enc(t)),
            (Some(t), Some(s)) => format!("{p}:{{saga}}:idx:ts:{}:{s}", enc(t)),
        }
    }

    /// `<p>:{saga}:active` (zset: saga hash key → lease expiry, 0 without a lease).
    pub(crate) fn saga_active(&self) -> String {
        format!("{}:{{saga}}:active", self.prefix)
    }

    /// A task's hash and history list: `<p>:{task}:t:<id>`, `<p>:{task}:h:<id>`.
    pub(crate) fn task(&self, id: &str) -> (String, String) {
        (
            format!("{}:{{task}}:t:{id}", self.prefix),
            format!("{}:{{task}}:h:{id}", self.prefix),
        )
    }

    /// `<p>:{task}:key:enc(queue):<key>` (string: the task's hash key).
    pub(crate) fn task_keymap(&self, queue: &str, key: &str) -> String {
        format!("{}:{{task}}:key:{}:{key}", self.prefix, enc(queue))
    }

    /// The keys every task script gets first, in this order (`task_common.lua`): the
    /// all-tasks index, one index per status in [`TASK_STATUSES`] order, the all-queues
    /// lease index, the finished index and the submission counter.
    pub(crate) fn task_globals(&self) -> Vec<String> {
        let p = &self.prefix;
        let mut keys = vec![self.task_index(None, None)];
        keys.extend(TASK_STATUSES.iter().map(|s| self.task_index(None, Some(s))));
        keys.extend([
            format!("{p}:{{task}}:leases"),
            format!("{p}:{{task}}:done"),
            format!("{p}:{{task}}:seq"),
        ]);
        keys
    }

    /// A queue's keys, in this order (`task_common.lua`): its meta hash (which holds the
    /// names of the others, so a script that only knows a task finds its queue's keys
    /// without building a name), ready, leases, all of the queue, then one index per
    /// status in [`TASK_STATUSES`] order.
    pub(crate) fn task_queue(&self, queue: &str) -> Vec<String> {
        let p = &self.prefix;
        let q = enc(queue);
        let mut keys = vec![
            format!("{p}:{{task}}:queue:{q}"),
            format!("{p}:{{task}}:ready:{q}"),
            format!("{p}:{{task}}:leases:{q}"),
            self.task_index(Some(queue), None),
        ];
        keys.extend(
            TASK_STATUSES
                .iter()
                .map(|s| self.task_index(Some(queue), Some(s))),
        );
        keys
    }

    /// A task index (zset: task hash key → submission order): all, by status, by queue,
    /// by queue and status.
    pub(crate) fn task_index(&self, queue: Option<&str>, status: Option<&str>) -> String {
        let p = &self.prefix;
        match (queue, status) {
            (None, None) => format!("{p}:{{task}}:idx:all"),
            (None, Some(s)) => format!("{p}:{{task}}:idx:st:{s}"),
            (Some(q), None) => format!("{p}:{{task}}:idx:q:{}", enc(q)),
            (Some(q), Some(s)) => format!("{p}:{{task}}:idx:qs:{}:{s}", enc(q)),
        }
    }
}

/// Saga statuses in the order of [`Keys::saga_indexes`] (and `saga_common.lua`).
pub(crate) const SAGA_STATUSES: [&str; 6] = [
    "pending",
    "running",
    "completed",
    "compensating",
    "compensated",
    "compensation_failed",
];

/// Task statuses in the order of [`Keys::task_globals`] (and `task_common.lua`).
pub(crate) const TASK_STATUSES: [&str; 4] = ["pending", "claimed", "completed", "failed"];

/// Length-prefixed text, so that `a:b` + `c` and `a` + `b:c` never build the same key.
fn enc(part: &str) -> String {
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
