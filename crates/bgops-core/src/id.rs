//! The one home of id recipes: every id and token bgops makes comes from an
//! [`IdGenerator`], injectable so tests can make them predictable.

use std::fmt;
use std::sync::Arc;

/// Makes ids and tokens.
pub trait IdGenerator: Send + Sync + fmt::Debug {
    /// A new id that sorts by creation time (tasks, sagas): a UUIDv7 in hyphenated form.
    fn sortable_id(&self) -> String;

    /// A new unguessable token (lease tokens, lock owners): 32 lowercase hex digits.
    fn token(&self) -> String;
}

/// A shared id generator handle.
pub type SharedIds = Arc<dyn IdGenerator>;

/// UUIDv7 ids and random v4 tokens.
///
/// ```
/// use bgops_core::id::{IdGenerator, RandomIds};
/// let ids = RandomIds;
/// let (a, b) = (ids.sortable_id(), ids.sortable_id());
/// assert!(a < b || a[..13] == b[..13]); // ordered by their millisecond
/// assert_eq!(ids.token().len(), 32);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl IdGenerator for RandomIds {
    fn sortable_id(&self) -> String {
        let mut buf = uuid::Uuid::encode_buffer();
        uuid::Uuid::now_v7()
            .hyphenated()
            .encode_lower(&mut buf)
            .to_owned()
    }

    fn token(&self) -> String {
        let mut buf = uuid::Uuid::encode_buffer();
        uuid::Uuid::new_v4()
            .simple()
            .encode_lower(&mut buf)
            .to_owned()
    }
}

/// The default generator ([`RandomIds`]).
pub fn random() -> SharedIds {
    Arc::new(RandomIds)
}

/// Counting ids for tests: `{prefix}-000001`, `{prefix}-000002`, ... (tokens likewise,
/// prefixed `t`).
#[derive(Debug, Default)]
pub struct SequentialIds {
    prefix: String,
    next: std::sync::atomic::AtomicU64,
}

impl SequentialIds {
    /// Ids starting at `{prefix}-000001`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn bump(&self) -> u64 {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

impl IdGenerator for SequentialIds {
    fn sortable_id(&self) -> String {
        format!("{}-{:06}", self.prefix, self.bump())
    }

    fn token(&self) -> String {
        format!("t{}-{:06}", self.prefix, self.bump())
    }
}
