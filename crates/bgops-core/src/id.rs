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
/// assert_eq!(uuid::Uuid::parse_str(&a).map(|u| u.get_version_num()), Ok(7));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl IdGenerator for RandomIds {
    fn sortable_id(&self) -> String {
        // The random bits come from the thread's CSPRNG: `Uuid::now_v7` asks the kernel
        // for them on every call (a `getrandom` system call per id, ~4 % of a memory
        // saga's cost).
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let random: [u8; 10] = rand::random();
        let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
        let mut buf = uuid::Uuid::encode_buffer();
        id.hyphenated().encode_lower(&mut buf).to_owned()
    }

    fn token(&self) -> String {
        // 128 bits of the thread's CSPRNG (ChaCha, reseeded from the OS).
        format!("{:032x}", rand::random::<u128>())
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
