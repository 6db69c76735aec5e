//! Store decorators for tests: one [`Decorated`] wrapper delegates every method of every
//! store trait to an inner [`Storage`], calling a [`Hook`] around each call. Two hooks
//! cover what engine tests need:
//!
//! - [`CountingStorage`] counts the calls per [`Method`] (on a networked backend each is
//!   a round trip);
//! - [`FailingStorage`] fails chosen calls with a transient `Unavailable`, a `Corrupt`
//!   or a `Backend` error, before the call reaches the store (it never happened) or after
//!   (it happened and its answer was lost).
//!
//! Use these instead of hand-written copies of the traits in each crate's tests: a copy
//! has to follow every contract change, a decorator follows by construction.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
//! use bgops_storage::testing::decorators::{Fault, FailingStorage, Method};
//! use bgops_storage::{IdempotencyStore, Storage};
//! # fn backend() -> Arc<dyn Storage> { unimplemented!() }
//! # if false {
//! let store = FailingStorage::failing(backend());
//! // The next two `complete` calls reach the store, which records the outcome, but the
//! // caller sees `Unavailable`: as if the connection broke after the store answered.
//! store.hook().lose_answer(Method::Complete, Fault::Unavailable, 2);
//! # }
//! # }
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{SagaEvent, SagaWorkflow, Task};
use serde_json::Value;
use time::OffsetDateTime;

use crate::{
    BeginOutcome, BeginRequest, Completed, CreateSaga, HealthReport, IdempotencyStore, LockLease,
    LockStore, NewTask, SagaFilter, SagaSaved, SagaStore, Storage, StorageError, StorageResult,
    StorageStats, Submitted, Sweep, TaskFilter, TaskReceipt, TaskStore,
};

/// Every method of the store traits (and of [`Storage`]), as the hooks see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
#[allow(missing_docs)] // Each variant is the trait method of the same name.
pub enum Method {
    Begin,
    Complete,
    Release,
    Renew,
    GetIdempotency,
    DeleteIdempotency,
    PurgeExpired,
    CreateSaga,
    GetSaga,
    AcquireSagaLease,
    SaveSaga,
    GetSagaHistory,
    ListSagas,
    ListRecoverableSagas,
    DeleteSaga,
    PurgeSagas,
    AcquireLock,
    RenewLock,
    ReleaseLock,
    SubmitTask,
    ClaimTask,
    ClaimNextTask,
    CompleteTask,
    FailTask,
    FailTaskPermanently,
    RenewTaskLease,
    ReleaseTask,
    RetryTask,
    GetTask,
    GetTaskByKey,
    ListTasks,
    DeleteTask,
    RequeueExpiredTasks,
    PurgeTasks,
    Health,
    Stats,
}

impl Method {
    /// Every method, in declaration order.
    pub const ALL: [Method; 36] = [
        Self::Begin,
        Self::Complete,
        Self::Release,
        Self::Renew,
        Self::GetIdempotency,
        Self::DeleteIdempotency,
        Self::PurgeExpired,
        Self::CreateSaga,
        Self::GetSaga,
        Self::AcquireSagaLease,
        Self::SaveSaga,
        Self::GetSagaHistory,
        Self::ListSagas,
        Self::ListRecoverableSagas,
        Self::DeleteSaga,
        Self::PurgeSagas,
        Self::AcquireLock,
        Self::RenewLock,
        Self::ReleaseLock,
        Self::SubmitTask,
        Self::ClaimTask,
        Self::ClaimNextTask,
        Self::CompleteTask,
        Self::FailTask,
        Self::FailTaskPermanently,
        Self::RenewTaskLease,
        Self::ReleaseTask,
        Self::RetryTask,
        Self::GetTask,
        Self::GetTaskByKey,
        Self::ListTasks,
        Self::DeleteTask,
        Self::RequeueExpiredTasks,
        Self::PurgeTasks,
        Self::Health,
        Self::Stats,
    ];

    /// The trait method's name (`begin`, `save_saga`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Begin => "begin",
            Self::Complete => "complete",
            Self::Release => "release",
            Self::Renew => "renew",
            Self::GetIdempotency => "get_idempotency",
            Self::DeleteIdempotency => "delete_idempotency",
            Self::PurgeExpired => "purge_expired",
            Self::CreateSaga => "create_saga",
            Self::GetSaga => "get_saga",
            Self::AcquireSagaLease => "acquire_saga_lease",
            Self::SaveSaga => "save_saga",
            Self::GetSagaHistory => "get_saga_history",
            Self::ListSagas => "list_sagas",
            Self::ListRecoverableSagas => "list_recoverable_sagas",
            Self::DeleteSaga => "delete_saga",
            Self::PurgeSagas => "purge_sagas",
            Self::AcquireLock => "acquire_lock",
            Self::RenewLock => "renew_lock",
            Self::ReleaseLock => "release_lock",
            Self::SubmitTask => "submit_task",
            Self::ClaimTask => "claim_task",
            Self::ClaimNextTask => "claim_next_task",
            Self::CompleteTask => "complete_task",
            Self::FailTask => "fail_task",
            Self::FailTaskPermanently => "fail_task_permanently",
            Self::RenewTaskLease => "renew_task_lease",
            Self::ReleaseTask => "release_task",
            Self::RetryTask => "retry_task",
            Self::GetTask => "get_task",
            Self::GetTaskByKey => "get_task_by_key",
            Self::ListTasks => "list_tasks",
            Self::DeleteTask => "delete_task",
            Self::RequeueExpiredTasks => "requeue_expired_tasks",
            Self::PurgeTasks => "purge_tasks",
            Self::Health => "health",
            Self::Stats => "stats",
        }
    }

    /// Whether the method may change what the store holds.
    pub fn is_write(self) -> bool {
        !matches!(
            self,
            Self::GetIdempotency
                | Self::GetSaga
                | Self::GetSagaHistory
                | Self::ListSagas
                | Self::ListRecoverableSagas
                | Self::GetTask
                | Self::GetTaskByKey
                | Self::ListTasks
                | Self::Health
                | Self::Stats
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What a [`Decorated`] store calls around each delegated call.
pub trait Hook: Send + Sync + 'static {
    /// Before the call: an error stops it (the inner store is not called).
    ///
    /// # Errors
    /// The error the caller sees instead of the call.
    fn before(&self, method: Method) -> StorageResult<()> {
        let _ = method;
        Ok(())
    }

    /// After the inner store answered `Ok`: an error replaces the answer (the call
    /// happened; its answer was lost).
    ///
    /// # Errors
    /// The error the caller sees instead of the answer.
    fn after(&self, method: Method) -> StorageResult<()> {
        let _ = method;
        Ok(())
    }
}

/// A [`Storage`] that delegates every method to `inner`, calling `hook` around each.
pub struct Decorated<H> {
    inner: Arc<dyn Storage>,
    hook: H,
}

impl<H: Hook> Decorated<H> {
    /// Wraps `inner` with `hook`.
    pub fn new(inner: Arc<dyn Storage>, hook: H) -> Self {
        Self { inner, hook }
    }

    /// The hook (to read counts, inject faults, ...).
    pub fn hook(&self) -> &H {
        &self.hook
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    async fn call<T>(
        &self,
        method: Method,
        call: impl Future<Output = StorageResult<T>> + Send,
    ) -> StorageResult<T> {
        self.hook.before(method)?;
        let answer = call.await?;
        self.hook.after(method)?;
        Ok(answer)
    }
}

impl<H> std::fmt::Debug for Decorated<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decorated")
            .field("backend", &self.inner.backend_name())
            .finish_non_exhaustive()
    }
}

/// Counts calls per [`Method`].
#[derive(Debug)]
pub struct Counts {
    calls: [AtomicU64; Method::ALL.len()],
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            calls: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Counts {
    /// Calls of `method` so far.
    pub fn of(&self, method: Method) -> u64 {
        self.calls[method.index()].load(Ordering::SeqCst)
    }

    /// Calls of every method so far.
    pub fn total(&self) -> u64 {
        Method::ALL.iter().map(|m| self.of(*m)).sum()
    }

    /// Calls of the methods that may write ([`Method::is_write`]).
    pub fn writes(&self) -> u64 {
        Method::ALL
            .iter()
            .filter(|m| m.is_write())
            .map(|m| self.of(*m))
            .sum()
    }

    /// The methods called so far, by name, with their counts.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        Method::ALL
            .iter()
            .map(|m| (m.name(), self.of(*m)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Sets every count back to zero.
    pub fn reset(&self) {
        for count in &self.calls {
            count.store(0, Ordering::SeqCst);
        }
    }
}

impl Hook for Counts {
    fn before(&self, method: Method) -> StorageResult<()> {
        self.calls[method.index()].fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A store that counts its calls: `store.hook().of(Method::Begin)`.
pub type CountingStorage = Decorated<Counts>;

impl CountingStorage {
    /// Counts the calls made to `inner`.
    pub fn counting(inner: Arc<dyn Storage>) -> Self {
        Self::new(inner, Counts::default())
    }
}

/// The error a [`FailingStorage`] answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// [`StorageError::Unavailable`]: the backend is down (transient: worth a retry).
    Unavailable,
    /// [`StorageError::Corrupt`]: what the store holds cannot be read.
    Corrupt,
    /// [`StorageError::Backend`]: any other backend failure (not transient).
    Backend,
}

impl Fault {
    /// The error for a call of `method`.
    pub fn error(self, method: Method) -> StorageError {
        let what = format!("injected fault in {}", method.name());
        match self {
            Self::Unavailable => StorageError::Unavailable {
                backend: "failing",
                source: what.into(),
            },
            Self::Corrupt => StorageError::Corrupt {
                key: format!("failing:{}", method.name()),
                reason: what,
            },
            Self::Backend => StorageError::Backend {
                backend: "failing",
                source: what.into(),
            },
        }
    }
}

/// When an injected fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// Instead of the call: it never reaches the store.
    Before,
    /// After the store applied it: its answer is lost.
    After,
}

#[derive(Debug, Clone)]
struct Rule {
    /// `None`: every method.
    method: Option<Method>,
    fault: Fault,
    when: When,
    /// `None`: until healed.
    remaining: Option<u64>,
}

/// Fails chosen calls; see [`FailingStorage`].
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<Rule>>,
    injected: AtomicU64,
}

impl Faults {
    /// The rules, also after a test thread panicked while holding them.
    fn rules(&self) -> MutexGuard<'_, Vec<Rule>> {
        self.rules.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, method: Option<Method>, fault: Fault, when: When, remaining: Option<u64>) {
        self.rules().push(Rule {
            method,
            fault,
            when,
            remaining,
        });
    }

    /// Every call of `method` fails with `fault` (never reaching the store) until
    /// [`heal`](Self::heal).
    pub fn fail(&self, method: Method, fault: Fault) {
        self.add(Some(method), fault, When::Before, None);
    }

    /// The next `times` calls of `method` fail with `fault`, never reaching the store.
    pub fn fail_times(&self, method: Method, fault: Fault, times: u64) {
        self.add(Some(method), fault, When::Before, Some(times));
    }

    /// The next `times` calls of `method` reach the store and are applied, but the caller
    /// gets `fault` instead of the answer (the connection broke after the store acted).
    pub fn lose_answer(&self, method: Method, fault: Fault, times: u64) {
        self.add(Some(method), fault, When::After, Some(times));
    }

    /// Every call of every method fails with `fault` until healed: the backend is down.
    pub fn fail_everything(&self, fault: Fault) {
        self.add(None, fault, When::Before, None);
    }

    /// Removes every injected fault: calls go through again.
    pub fn heal(&self) {
        self.rules().clear();
    }

    /// How many calls were failed so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    fn strike(&self, method: Method, when: When) -> StorageResult<()> {
        let mut rules = self.rules();
        let found = rules.iter_mut().position(|rule| {
            rule.when == when
                && rule.method.is_none_or(|m| m == method)
                && rule.remaining.is_none_or(|n| n > 0)
        });
        let Some(at) = found else {
            return Ok(());
        };
        let rule = &mut rules[at];
        let fault = rule.fault;
        if let Some(n) = &mut rule.remaining {
            *n -= 1;
            if *n == 0 {
                rules.remove(at);
            }
        }
        drop(rules);
        self.injected.fetch_add(1, Ordering::SeqCst);
        Err(fault.error(method))
    }
}

impl Hook for Faults {
    fn before(&self, method: Method) -> StorageResult<()> {
        self.strike(method, When::Before)
    }

    fn after(&self, method: Method) -> StorageResult<()> {
        self.strike(method, When::After)
    }
}

/// A store that fails chosen calls: `store.hook().fail(Method::Complete, Fault::Unavailable)`.
pub type FailingStorage = Decorated<Faults>;

impl FailingStorage {
    /// Wraps `inner`; no call fails until a fault is injected through [`Decorated::hook`].
    pub fn failing(inner: Arc<dyn Storage>) -> Self {
        Self::new(inner, Faults::default())
    }
}

#[async_trait]
impl<H: Hook> IdempotencyStore for Decorated<H> {
    async fn begin(&self, request: BeginRequest) -> StorageResult<BeginOutcome> {
        self.call(Method::Begin, self.inner.begin(request)).await
    }

    async fn complete(
        &self,
        tenant_id: &str,
        key: &str,
        token: &str,
        outcome: bgops_core::OperationOutcome,
    ) -> StorageResult<Completed> {
        let call = self.inner.complete(tenant_id, key, token, outcome);
        self.call(Method::Complete, call).await
    }

    async fn release(&self, tenant_id: &str, key: &str, token: &str) -> StorageResult<()> {
        let call = self.inner.release(tenant_id, key, token);
        self.call(Method::Release, call).await
    }

    async fn renew(
        &self,
        tenant_id: &str,
        key: &str,
        token: &str,
        lease: Duration,
    ) -> StorageResult<OffsetDateTime> {
        let call = self.inner.renew(tenant_id, key, token, lease);
        self.call(Method::Renew, call).await
    }

    async fn get_idempotency(
        &self,
        tenant_id: &str,
        key: &str,
    ) -> StorageResult<Option<Arc<bgops_core::IdempotencyRecord>>> {
        let call = self.inner.get_idempotency(tenant_id, key);
        self.call(Method::GetIdempotency, call).await
    }

    async fn delete_idempotency(&self, tenant_id: &str, key: &str) -> StorageResult<bool> {
        let call = self.inner.delete_idempotency(tenant_id, key);
        self.call(Method::DeleteIdempotency, call).await
    }

    async fn purge_expired(&self, limit: usize) -> StorageResult<Sweep> {
        let call = self.inner.purge_expired(limit);
        self.call(Method::PurgeExpired, call).await
    }
}

#[async_trait]
impl<H: Hook> SagaStore for Decorated<H> {
    async fn create_saga(
        &self,
        saga: &SagaWorkflow,
        lease: Option<Duration>,
        history: &[SagaEvent],
    ) -> StorageResult<CreateSaga> {
        let call = self.inner.create_saga(saga, lease, history);
        self.call(Method::CreateSaga, call).await
    }

    async fn get_saga(&self, saga_id: &str) -> StorageResult<Option<SagaWorkflow>> {
        self.call(Method::GetSaga, self.inner.get_saga(saga_id))
            .await
    }

    async fn acquire_saga_lease(
        &self,
        saga_id: &str,
        owner: &str,
        lease: Duration,
    ) -> StorageResult<Option<SagaWorkflow>> {
        let call = self.inner.acquire_saga_lease(saga_id, owner, lease);
        self.call(Method::AcquireSagaLease, call).await
    }

    async fn save_saga(
        &self,
        saga: &SagaWorkflow,
        fence: u64,
        history: &[SagaEvent],
        renew: Option<Duration>,
    ) -> StorageResult<SagaSaved> {
        let call = self.inner.save_saga(saga, fence, history, renew);
        self.call(Method::SaveSaga, call).await
    }

    async fn get_saga_history(&self, saga_id: &str) -> StorageResult<Vec<SagaEvent>> {
        let call = self.inner.get_saga_history(saga_id);
        self.call(Method::GetSagaHistory, call).await
    }

    async fn list_sagas(&self, filter: &SagaFilter) -> StorageResult<Vec<SagaWorkflow>> {
        self.call(Method::ListSagas, self.inner.list_sagas(filter))
            .await
    }

    async fn list_recoverable_sagas(&self, limit: usize) -> StorageResult<Vec<String>> {
        let call = self.inner.list_recoverable_sagas(limit);
        self.call(Method::ListRecoverableSagas, call).await
    }

    async fn delete_saga(&self, saga_id: &str) -> StorageResult<bool> {
        self.call(Method::DeleteSaga, self.inner.delete_saga(saga_id))
            .await
    }

    async fn purge_sagas(&self, older_than: Duration, limit: usize) -> StorageResult<Sweep> {
        let call = self.inner.purge_sagas(older_than, limit);
        self.call(Method::PurgeSagas, call).await
    }
}

#[async_trait]
impl<H: Hook> LockStore for Decorated<H> {
    async fn acquire_lock(&self, name: &str, ttl: Duration) -> StorageResult<Option<LockLease>> {
        self.call(Method::AcquireLock, self.inner.acquire_lock(name, ttl))
            .await
    }

    async fn renew_lock(
        &self,
        lease: &LockLease,
        ttl: Duration,
    ) -> StorageResult<Option<LockLease>> {
        self.call(Method::RenewLock, self.inner.renew_lock(lease, ttl))
            .await
    }

    async fn release_lock(&self, lease: &LockLease) -> StorageResult<bool> {
        self.call(Method::ReleaseLock, self.inner.release_lock(lease))
            .await
    }
}

#[async_trait]
impl<H: Hook> TaskStore for Decorated<H> {
    async fn submit_task(&self, task: NewTask) -> StorageResult<Submitted> {
        self.call(Method::SubmitTask, self.inner.submit_task(task))
            .await
    }

    async fn claim_task(
        &self,
        task_id: &str,
        worker_id: &str,
        lease: Duration,
    ) -> StorageResult<Option<Task>> {
        let call = self.inner.claim_task(task_id, worker_id, lease);
        self.call(Method::ClaimTask, call).await
    }

    async fn claim_next_task(
        &self,
        queue: &str,
        worker_id: &str,
        lease: Duration,
    ) -> StorageResult<Option<Task>> {
        let call = self.inner.claim_next_task(queue, worker_id, lease);
        self.call(Method::ClaimNextTask, call).await
    }

    async fn complete_task(
        &self,
        task_id: &str,
        attempt: u32,
        result: Value,
    ) -> StorageResult<TaskReceipt> {
        let call = self.inner.complete_task(task_id, attempt, result);
        self.call(Method::CompleteTask, call).await
    }

    async fn fail_task(
        &self,
        task_id: &str,
        attempt: u32,
        error: &str,
        retry_after: Duration,
    ) -> StorageResult<TaskReceipt> {
        let call = self.inner.fail_task(task_id, attempt, error, retry_after);
        self.call(Method::FailTask, call).await
    }

    async fn renew_task_lease(
        &self,
        task_id: &str,
        attempt: u32,
        lease: Duration,
    ) -> StorageResult<TaskReceipt> {
        let call = self.inner.renew_task_lease(task_id, attempt, lease);
        self.call(Method::RenewTaskLease, call).await
    }

    async fn release_task(&self, task_id: &str, attempt: u32) -> StorageResult<TaskReceipt> {
        let call = self.inner.release_task(task_id, attempt);
        self.call(Method::ReleaseTask, call).await
    }

    async fn retry_task(&self, task_id: &str) -> StorageResult<TaskReceipt> {
        self.call(Method::RetryTask, self.inner.retry_task(task_id))
            .await
    }

    async fn get_task(&self, task_id: &str) -> StorageResult<Option<Task>> {
        self.call(Method::GetTask, self.inner.get_task(task_id))
            .await
    }

    async fn get_task_by_key(&self, queue: &str, key: &str) -> StorageResult<Option<Task>> {
        let call = self.inner.get_task_by_key(queue, key);
        self.call(Method::GetTaskByKey, call).await
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> StorageResult<Vec<Task>> {
        self.call(Method::ListTasks, self.inner.list_tasks(filter))
            .await
    }

    async fn delete_task(&self, task_id: &str) -> StorageResult<bool> {
        self.call(Method::DeleteTask, self.inner.delete_task(task_id))
            .await
    }

    async fn requeue_expired_tasks(&self, limit: usize) -> StorageResult<Sweep> {
        let call = self.inner.requeue_expired_tasks(limit);
        self.call(Method::RequeueExpiredTasks, call).await
    }

    async fn purge_tasks(&self, older_than: Duration, limit: usize) -> StorageResult<Sweep> {
        let call = self.inner.purge_tasks(older_than, limit);
        self.call(Method::PurgeTasks, call).await
    }

    async fn fail_task_permanently(
        &self,
        task_id: &str,
        attempt: u32,
        error: &str,
    ) -> StorageResult<TaskReceipt> {
        let call = self.inner.fail_task_permanently(task_id, attempt, error);
        self.call(Method::FailTaskPermanently, call).await
    }
}

#[async_trait]
impl<H: Hook> Storage for Decorated<H> {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }

    async fn health(&self) -> StorageResult<HealthReport> {
        self.call(Method::Health, self.inner.health()).await
    }

    async fn stats(&self) -> StorageResult<StorageStats> {
        self.call(Method::Stats, self.inner.stats()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_listed_once_in_order() {
        for (i, method) in Method::ALL.iter().enumerate() {
            assert_eq!(method.index(), i, "{method:?}");
        }
        let names: std::collections::HashSet<_> = Method::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names.len(), Method::ALL.len());
    }

    #[test]
    fn faults_strike_as_told_then_heal() {
        let faults = Faults::default();
        faults.fail_times(Method::Begin, Fault::Unavailable, 2);
        faults.lose_answer(Method::Complete, Fault::Corrupt, 1);
        assert!(matches!(
            faults.before(Method::Begin),
            Err(StorageError::Unavailable { .. })
        ));
        assert!(faults.before(Method::Complete).is_ok(), "only after");
        assert!(matches!(
            faults.after(Method::Complete),
            Err(StorageError::Corrupt { .. })
        ));
        assert!(faults.after(Method::Complete).is_ok(), "once");
        assert!(faults.before(Method::Begin).is_err());
        assert!(faults.before(Method::Begin).is_ok(), "twice");
        faults.fail_everything(Fault::Backend);
        assert!(Method::ALL.iter().all(|m| faults.before(*m).is_err()));
        faults.heal();
        assert!(Method::ALL.iter().all(|m| faults.before(*m).is_ok()));
        assert_eq!(faults.injected(), 3 + Method::ALL.len() as u64);
    }
}
