//! Typed sagas (seed 004): steps with `act` and `compensate` over a user context type,
//! persisted after each step. They run on the same engine as dynamic sagas: each step is
//! registered as an operation named `{workflow_type}::{step name}`.

use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{SagaStatus, SagaStep, SagaWorkflow};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::engine::{NewSaga, SagaEngine};
use crate::error::{SagaError, SagaResult};
use crate::event::SagaEventStream;
use crate::handler::{BoxFuture, ErasedHandler, HandlerOutput, StepContext, StepError};

/// What a typed saga's context must be: serde both ways, cloneable (for fallback
/// snapshots), sendable.
pub trait SagaContext: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> SagaContext for T {}

/// One step of a typed saga.
///
/// `act` may change the context; the change is stored with the step's success (a failed
/// attempt's changes are dropped, so a retry sees the stored context). `compensate` undoes
/// `act`; it must be idempotent and a no-op when there is nothing to undo.
#[async_trait]
pub trait Step<C: SagaContext>: Send + Sync + 'static {
    /// Unique name within the saga (it names the stored operation: keep it stable).
    fn name(&self) -> &str;

    /// Does the step's work; returns its output (shown in events and stored as the step's
    /// result).
    async fn act(&self, context: &mut C, step: &StepContext) -> Result<Value, StepError>;

    /// Undoes the step. `step.output` holds what `act` returned.
    async fn compensate(&self, context: &mut C, step: &StepContext) -> Result<(), StepError> {
        let _ = (context, step);
        Ok(())
    }

    /// Retries of `act` after its first attempt (default 3).
    fn max_retries(&self) -> u32 {
        3
    }
}

/// A typed saga definition: a workflow type and its steps, in order.
///
/// ```
/// use async_trait::async_trait;
/// use bgops_saga::{Step, StepContext, StepError, TypedSaga};
/// use serde_json::{Value, json};
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Order { id: String, reservation: Option<String> }
///
/// struct Reserve;
/// #[async_trait]
/// impl Step<Order> for Reserve {
///     fn name(&self) -> &str { "reserve" }
///     async fn act(&self, order: &mut Order, step: &StepContext) -> Result<Value, StepError> {
///         order.reservation = Some(format!("r-{}", step.step_key()));
///         Ok(json!({ "reserved": true }))
///     }
/// }
///
/// let saga = TypedSaga::<Order>::new("order").step(Reserve);
/// assert_eq!(saga.step_names(), ["reserve"]);
/// ```
pub struct TypedSaga<C: SagaContext> {
    workflow_type: String,
    /// The steps and their parallel group, if any.
    steps: Vec<(Arc<dyn Step<C>>, Option<String>)>,
    timeout: Option<Duration>,
}

/// A parallel group of typed steps, added with [`TypedSaga::parallel`]: its steps run
/// concurrently, and the saga goes on once all of them succeeded. Each sees the context
/// as it was when the group began; their changes to different fields of the context are
/// all kept (merged field by field, in step order).
///
/// ```
/// use async_trait::async_trait;
/// use bgops_saga::{Parallel, Step, StepContext, StepError, TypedSaga};
/// use serde_json::{Value, json};
///
/// struct Notify(&'static str);
/// #[async_trait]
/// impl Step<Value> for Notify {
///     fn name(&self) -> &str { self.0 }
///     async fn act(&self, _: &mut Value, _: &StepContext) -> Result<Value, StepError> {
///         Ok(json!(null))
///     }
/// }
///
/// let saga = TypedSaga::<Value>::new("signup")
///     .parallel(Parallel::new().step(Notify("email")).step(Notify("sms")));
/// assert_eq!(saga.step_names(), ["email", "sms"]);
/// ```
pub struct Parallel<C: SagaContext> {
    steps: Vec<Arc<dyn Step<C>>>,
}

impl<C: SagaContext> Default for Parallel<C> {
    fn default() -> Self {
        Self { steps: Vec::new() }
    }
}

impl<C: SagaContext> Parallel<C> {
    /// An empty group.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a step to the group.
    #[must_use]
    pub fn step(mut self, step: impl Step<C>) -> Self {
        self.steps.push(Arc::new(step));
        self
    }
}

impl<C: SagaContext> TypedSaga<C> {
    /// A saga of workflow type `workflow_type` with no steps yet.
    pub fn new(workflow_type: impl Into<String>) -> Self {
        Self {
            workflow_type: workflow_type.into(),
            steps: Vec::new(),
            timeout: None,
        }
    }

    /// Appends a step.
    #[must_use]
    pub fn step(mut self, step: impl Step<C>) -> Self {
        self.steps.push((Arc::new(step), None));
        self
    }

    /// Appends a parallel group (named after the index of its first step).
    #[must_use]
    pub fn parallel(mut self, group: Parallel<C>) -> Self {
        let name = format!("parallel@{}", self.steps.len());
        self.steps
            .extend(group.steps.into_iter().map(|s| (s, Some(name.clone()))));
        self
    }

    /// Sets a saga-level timeout for every saga created from this definition.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The steps' names, in order.
    pub fn step_names(&self) -> Vec<&str> {
        self.steps.iter().map(|(s, _)| s.name()).collect()
    }
}

/// Runs one side (act or compensate) of a typed step behind the engine's handler interface.
struct TypedHandler<C: SagaContext> {
    step: Arc<dyn Step<C>>,
    compensation: bool,
}

impl<C: SagaContext> ErasedHandler for TypedHandler<C> {
    fn wants_context(&self) -> bool {
        true
    }

    fn call(
        &self,
        ctx: StepContext,
        context: Value,
    ) -> BoxFuture<Result<HandlerOutput, StepError>> {
        let step = Arc::clone(&self.step);
        let compensation = self.compensation;
        Box::pin(async move {
            // A context that does not decode will not decode on a retry either.
            let mut typed: C = serde_json::from_value(context)
                .map_err(|e| StepError::terminal(format!("saga context does not decode: {e}")))?;
            let output = if compensation {
                step.compensate(&mut typed, &ctx).await?;
                Value::Null
            } else {
                step.act(&mut typed, &ctx).await?
            };
            let context = serde_json::to_value(&typed)
                .map_err(|e| StepError::terminal(format!("saga context does not encode: {e}")))?;
            Ok(HandlerOutput {
                output,
                context: Some(context),
            })
        })
    }
}

/// A registered typed saga: creates and runs sagas of its definition with a typed context.
pub struct TypedSagaHandle<C: SagaContext> {
    engine: SagaEngine,
    workflow_type: String,
    /// Name, operation, retries and parallel group of each step.
    steps: Vec<(String, String, u32, Option<String>)>,
    timeout: Option<Duration>,
    _context: PhantomData<fn() -> C>,
}

impl<C: SagaContext> Clone for TypedSagaHandle<C> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
            workflow_type: self.workflow_type.clone(),
            steps: self.steps.clone(),
            timeout: self.timeout,
            _context: PhantomData,
        }
    }
}

impl<C: SagaContext> std::fmt::Debug for TypedSagaHandle<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedSagaHandle")
            .field("workflow_type", &self.workflow_type)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

/// How a typed saga's execution ended, with its final context.
#[derive(Debug, Clone)]
pub struct TypedOutcome<C> {
    /// The end state.
    pub status: SagaStatus,
    /// The context as last stored.
    pub context: C,
    /// The saga as last stored.
    pub saga: SagaWorkflow,
}

impl<C> TypedOutcome<C> {
    /// Whether every step succeeded.
    pub fn succeeded(&self) -> bool {
        self.status == SagaStatus::Completed
    }
}

impl SagaEngine {
    /// Registers a typed saga's steps as operations of this engine and returns the handle
    /// that creates and runs it. Register it in every process that may recover it.
    ///
    /// # Errors
    /// [`SagaError::Definition`] when it has no steps or two steps share a name.
    pub fn register_saga<C: SagaContext>(
        &self,
        saga: TypedSaga<C>,
    ) -> SagaResult<TypedSagaHandle<C>> {
        let definition = |reason: &str| SagaError::Definition {
            workflow_type: saga.workflow_type.clone(),
            reason: reason.to_owned(),
        };
        bgops_core::validate::name("workflow_type", &saga.workflow_type)?;
        if saga.steps.is_empty() {
            return Err(definition("a saga needs at least one step"));
        }
        let mut seen = HashSet::new();
        if let Some(dup) = saga
            .steps
            .iter()
            .find(|(s, _)| !seen.insert(s.name().to_owned()))
        {
            return Err(definition(&format!(
                "two steps are named `{}`",
                dup.0.name()
            )));
        }
        let mut steps = Vec::with_capacity(saga.steps.len());
        self.inner.registry.update(|m| {
            for (step, group) in &saga.steps {
                let op = format!("{}::{}", saga.workflow_type, step.name());
                let act = TypedHandler {
                    step: Arc::clone(step),
                    compensation: false,
                };
                let comp = TypedHandler {
                    step: Arc::clone(step),
                    compensation: true,
                };
                m.operations.insert(op.clone(), Arc::new(act));
                m.compensations.insert(op.clone(), Arc::new(comp));
                steps.push((
                    step.name().to_owned(),
                    op,
                    step.max_retries(),
                    group.clone(),
                ));
            }
        });
        Ok(TypedSagaHandle {
            engine: self.clone(),
            workflow_type: saga.workflow_type,
            steps,
            timeout: saga.timeout,
            _context: PhantomData,
        })
    }
}

impl<C: SagaContext> TypedSagaHandle<C> {
    /// The workflow type.
    pub fn workflow_type(&self) -> &str {
        &self.workflow_type
    }

    /// Creates a saga with `context` as its initial context. With an idempotency key
    /// already used by this tenant, returns that saga.
    ///
    /// # Errors
    /// As [`SagaEngine::create`], plus [`SagaError::Context`].
    pub async fn create(
        &self,
        tenant_id: &str,
        context: &C,
        idempotency_key: Option<&str>,
    ) -> SagaResult<SagaWorkflow> {
        let new = self.new_saga(tenant_id, context, idempotency_key)?;
        Ok(self.engine.create_saga(new).await?.into_saga())
    }

    /// The [`NewSaga`] of this definition with `context`.
    ///
    /// # Errors
    /// [`SagaError::Context`] when `context` does not serialize.
    pub fn new_saga(
        &self,
        tenant_id: &str,
        context: &C,
        idempotency_key: Option<&str>,
    ) -> SagaResult<NewSaga> {
        let context = serde_json::to_value(context).map_err(|e| self.context_error(e))?;
        let steps = self
            .steps
            .iter()
            .map(|(name, op, retries, group)| {
                let mut step = SagaStep::new(name.as_str(), op.as_str(), Value::Null)
                    .with_compensation(op.as_str(), Value::Null)
                    .with_max_retries(*retries);
                step.group.clone_from(group);
                step
            })
            .collect();
        let mut new = NewSaga::new(tenant_id, self.workflow_type.as_str(), steps).context(context);
        new.idempotency_key = idempotency_key.map(str::to_owned);
        new.timeout = self.timeout;
        Ok(new)
    }

    /// Executes (or resumes) the saga; returns its end state and final context.
    ///
    /// # Errors
    /// As [`SagaEngine::execute`], plus [`SagaError::Context`].
    pub async fn execute(&self, saga_id: &str) -> SagaResult<TypedOutcome<C>> {
        let outcome = self.engine.execute(saga_id).await?;
        let context = self.context_of(&outcome.saga)?;
        Ok(TypedOutcome {
            status: outcome.status,
            context,
            saga: outcome.saga,
        })
    }

    /// Executes the saga in its own task, streaming its events.
    pub fn execute_stream(&self, saga_id: &str) -> SagaEventStream {
        self.engine.execute_stream(saga_id)
    }

    /// Creates and executes in one call (through [`SagaEngine::start`]: n + 1 store
    /// writes for n steps).
    ///
    /// # Errors
    /// As [`create`](Self::create) and [`execute`](Self::execute).
    pub async fn run(&self, tenant_id: &str, context: &C) -> SagaResult<TypedOutcome<C>> {
        let outcome = self
            .engine
            .start(self.new_saga(tenant_id, context, None)?)
            .await?;
        let context = self.context_of(&outcome.saga)?;
        Ok(TypedOutcome {
            status: outcome.status,
            context,
            saga: outcome.saga,
        })
    }

    /// The typed context stored in `saga`.
    ///
    /// # Errors
    /// [`SagaError::Context`] when it does not decode as `C`.
    pub fn context_of(&self, saga: &SagaWorkflow) -> SagaResult<C> {
        C::deserialize(&saga.context).map_err(|e| self.context_error(e))
    }

    fn context_error(&self, e: serde_json::Error) -> SagaError {
        SagaError::Context {
            workflow_type: self.workflow_type.clone(),
            source: Box::new(e),
        }
    }
}
