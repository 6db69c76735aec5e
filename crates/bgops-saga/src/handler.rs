//! What a handler receives and returns, and the registry of handlers by operation name.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use serde_json::Value;

/// Everything a handler call knows about where it runs.
///
/// [`step_key`](Self::step_key) is stable across attempts and executors: use it as the
/// idempotency key of the step's external effects. `fence` rises whenever another executor
/// takes the saga over; a resource that records the highest fence it has seen can refuse
/// writes from a stale executor.
#[derive(Debug, Clone)]
pub struct StepContext {
    /// The saga.
    pub saga_id: Arc<str>,
    /// Its tenant.
    pub tenant_id: Arc<str>,
    /// Index of the step in the saga.
    pub step_index: usize,
    /// This call's attempt number, from 1.
    pub attempt: u32,
    /// The executor's fencing number.
    pub fence: u64,
    /// Whether this is the step's compensation.
    pub compensation: bool,
    /// The step's parameters (or its compensation parameters).
    pub parameters: Value,
    /// The step's output, when compensating a step that succeeded.
    pub output: Option<Value>,
}

impl StepContext {
    /// `{saga_id}:{index}` for the step, `{saga_id}:{index}:comp` for its compensation.
    pub fn step_key(&self) -> String {
        if self.compensation {
            format!("{}:{}:comp", self.saga_id, self.step_index)
        } else {
            format!("{}:{}", self.saga_id, self.step_index)
        }
    }
}

/// Whether a failure is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepErrorKind {
    /// Transient: retried with backoff while attempts remain.
    Retryable,
    /// Definitive: no retry; the saga compensates at once.
    Terminal,
}

/// A handler's failure.
///
/// ```
/// use bgops_saga::StepError;
/// let e = StepError::terminal("card declined");
/// assert!(e.is_terminal());
/// assert_eq!(e.to_string(), "card declined");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    /// Retryable or terminal.
    pub kind: StepErrorKind,
    /// What went wrong.
    pub message: String,
}

impl StepError {
    /// A transient failure: retried while attempts remain.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            kind: StepErrorKind::Retryable,
            message: message.into(),
        }
    }

    /// A definitive failure: not retried.
    pub fn terminal(message: impl Into<String>) -> Self {
        Self {
            kind: StepErrorKind::Terminal,
            message: message.into(),
        }
    }

    /// A retryable failure carrying any error's text.
    pub fn from_error(error: &(dyn std::error::Error + '_)) -> Self {
        Self::retryable(error.to_string())
    }

    /// Whether retries are skipped.
    pub fn is_terminal(&self) -> bool {
        self.kind == StepErrorKind::Terminal
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StepError {}

/// A boxed handler future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the engine stores after a successful call.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct HandlerOutput {
    /// The step's output (`result`).
    pub output: Value,
    /// The saga's new context, for handlers that change it (typed sagas).
    pub context: Option<Value>,
}

/// A handler behind a name: a closure (dynamic sagas) or a typed step.
pub(crate) trait ErasedHandler: Send + Sync {
    /// Whether the call needs the saga's context (so dynamic handlers skip cloning it).
    fn wants_context(&self) -> bool {
        false
    }

    /// Runs once.
    fn call(
        &self,
        step: StepContext,
        context: Value,
    ) -> BoxFuture<Result<HandlerOutput, StepError>>;
}

/// Adapts `Fn(StepContext) -> impl Future<Output = Result<Value, StepError>>`.
struct FnHandler<F>(F);

impl<F, Fut> ErasedHandler for FnHandler<F>
where
    F: Fn(StepContext) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Value, StepError>> + Send + 'static,
{
    fn call(
        &self,
        step: StepContext,
        _context: Value,
    ) -> BoxFuture<Result<HandlerOutput, StepError>> {
        let fut = (self.0)(step);
        Box::pin(async move {
            fut.await.map(|output| HandlerOutput {
                output,
                context: None,
            })
        })
    }
}

pub(crate) fn from_fn<F, Fut>(f: F) -> Arc<dyn ErasedHandler>
where
    F: Fn(StepContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, StepError>> + Send + 'static,
{
    Arc::new(FnHandler(f))
}

/// Handlers by name. Copy-on-write, so an execution takes one snapshot (one lock) and
/// looks handlers up without locking again.
#[derive(Default)]
pub(crate) struct Registry {
    maps: RwLock<Arc<Handlers>>,
}

/// Handlers by operation name. Looked up at every step and every validated step of a new
/// saga: foldhash (randomly seeded) instead of SipHash.
type ByName = HashMap<String, Arc<dyn ErasedHandler>, foldhash::quality::RandomState>;

#[derive(Default, Clone)]
pub(crate) struct Handlers {
    pub operations: ByName,
    pub compensations: ByName,
}

impl Handlers {
    pub(crate) fn operation(&self, name: &str) -> Option<&Arc<dyn ErasedHandler>> {
        self.operations.get(name)
    }

    /// A compensation is looked up among compensation handlers first, then among
    /// operations (the seed lets a compensation name an ordinary operation).
    pub(crate) fn compensation(&self, name: &str) -> Option<&Arc<dyn ErasedHandler>> {
        self.compensations
            .get(name)
            .or_else(|| self.operations.get(name))
    }
}

impl Registry {
    pub(crate) fn snapshot(&self) -> Arc<Handlers> {
        // A poisoned lock only means a panic happened while swapping an Arc; the map
        // inside is still whole.
        Arc::clone(
            &self
                .maps
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut Handlers)) {
        let mut guard = self
            .maps
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = Handlers::clone(&guard);
        f(&mut next);
        *guard = Arc::new(next);
    }
}
