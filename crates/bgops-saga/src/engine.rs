//! The engine: handler registration, creating sagas, executing and recovering them.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bgops_core::{
    SagaEvent, SagaEventKind, SagaStatus, SagaStep, SagaWorkflow, SharedClock, SharedIds,
    SharedMetrics, SystemClock, validate,
};
use bgops_storage::{CreateSaga, SagaStore};
use futures::channel::mpsc;
use serde_json::Value;

use crate::config::SagaConfig;
use crate::error::{SagaError, SagaResult};
use crate::event::SagaEventStream;
use crate::executor::{Mode, Run};
use crate::handler::{self, Registry, StepContext, StepError};
use crate::state::{Inner, SagaOutcome};

/// The saga engine. Cheap to clone (one `Arc`); clones share handlers and settings.
///
/// Register handlers by operation name, [`create`](Self::create) a saga, then
/// [`execute`](Self::execute) it (or [`execute_stream`](Self::execute_stream) to watch its
/// events). See the crate docs for an example.
#[derive(Clone)]
pub struct SagaEngine {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for SagaEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaEngine")
            .field("owner", &self.inner.owner)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Builds a [`SagaEngine`] with settings other than the defaults.
#[must_use]
pub struct SagaEngineBuilder {
    store: Arc<dyn SagaStore>,
    config: SagaConfig,
    clock: SharedClock,
    metrics: SharedMetrics,
    ids: SharedIds,
    owner: Option<String>,
}

impl SagaEngineBuilder {
    /// Sets the configuration.
    pub fn config(mut self, config: SagaConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the clock used for timestamps, lease expiry and timeouts. Give the engine the
    /// same clock as the store (a `ManualClock` in tests).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the metrics hooks.
    pub fn metrics(mut self, metrics: SharedMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Sets the id generator: saga ids (`sortable_id`) and the engine's owner name
    /// (`token`). Default: [`bgops_core::id::random`]; tests inject
    /// [`SequentialIds`](bgops_core::id::SequentialIds) for predictable ids.
    pub fn ids(mut self, ids: SharedIds) -> Self {
        self.ids = ids;
        self
    }

    /// Sets the executor name written into leases (default: `saga:{pid}:{token}`, new for
    /// each engine so that a restarted process never inherits a dead one's leases). Each
    /// execution appends `#n` to it.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Builds the engine.
    pub fn build(self) -> SagaEngine {
        let owner = self
            .owner
            .unwrap_or_else(|| format!("saga:{}:{}", std::process::id(), self.ids.token()));
        let inner = Arc::new_cyclic(|weak| {
            let registry = Registry::default();
            crate::child::register_handlers(&registry, weak);
            Inner {
                store: self.store,
                config: self.config,
                clock: self.clock,
                ids: self.ids,
                metrics: self.metrics,
                registry,
                templates: crate::template::Templates::default(),
                owner,
                executions: AtomicU64::new(0),
            }
        });
        SagaEngine { inner }
    }
}

/// A saga to create, with the optional settings of [`SagaEngine::create_saga`].
#[derive(Debug, Clone)]
#[must_use]
pub struct NewSaga {
    /// The saga's id; a fresh UUIDv7 when `None`. Creating with the id of an existing
    /// saga returns that saga (create-or-resume).
    pub saga_id: Option<String>,
    /// Owning tenant.
    pub tenant_id: String,
    /// Kind of workflow.
    pub workflow_type: String,
    /// The steps, in order.
    pub steps: Vec<SagaStep>,
    /// Creating again with this key returns the existing saga.
    pub idempotency_key: Option<String>,
    /// Saga-level timeout: past it the saga fails into compensation.
    pub timeout: Option<Duration>,
    /// Initial context (typed sagas).
    pub context: Value,
    /// The template version it is made from (set by
    /// [`SagaEngine::new_saga_from_template`]).
    pub template_version: Option<u32>,
}

impl NewSaga {
    /// A saga of `steps` for `tenant_id`.
    pub fn new(
        tenant_id: impl Into<String>,
        workflow_type: impl Into<String>,
        steps: Vec<SagaStep>,
    ) -> Self {
        Self {
            saga_id: None,
            tenant_id: tenant_id.into(),
            workflow_type: workflow_type.into(),
            steps,
            idempotency_key: None,
            timeout: None,
            context: Value::Null,
            template_version: None,
        }
    }

    /// Chooses the saga's id (instead of a fresh UUIDv7).
    pub fn saga_id(mut self, saga_id: impl Into<String>) -> Self {
        self.saga_id = Some(saga_id.into());
        self
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the saga-level timeout (whole seconds, rounded up).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the initial context.
    pub fn context(mut self, context: Value) -> Self {
        self.context = context;
        self
    }
}

/// What [`SagaEngine::create_saga`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Creation {
    /// The saga was stored as given.
    Created(SagaWorkflow),
    /// A saga with the same id, or the same tenant and idempotency key, already existed;
    /// it is returned unchanged.
    Existing(SagaWorkflow),
}

impl Creation {
    /// The saga, created or existing.
    pub fn into_saga(self) -> SagaWorkflow {
        match self {
            Self::Created(s) | Self::Existing(s) => s,
        }
    }

    /// Whether the saga already existed.
    pub fn is_existing(&self) -> bool {
        matches!(self, Self::Existing(_))
    }
}

impl SagaEngine {
    /// An engine on `store` with default settings and the system clock.
    pub fn new(store: Arc<dyn SagaStore>) -> Self {
        Self::builder(store).build()
    }

    /// A builder for an engine on `store`.
    pub fn builder(store: Arc<dyn SagaStore>) -> SagaEngineBuilder {
        SagaEngineBuilder {
            store,
            config: SagaConfig::default(),
            clock: Arc::new(SystemClock),
            metrics: bgops_core::metrics::noop(),
            ids: bgops_core::id::random(),
            owner: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &SagaConfig {
        &self.inner.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SagaStore> {
        &self.inner.store
    }

    /// The name this engine writes into the leases it takes (followed by `#n`, the
    /// execution's number).
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// Registers the handler of operation `operation` (replacing any before). It gets the
    /// step's [`StepContext`] and returns the step's output.
    pub fn register_operation_handler<F, Fut>(&self, operation: impl Into<String>, handler: F)
    where
        F: Fn(StepContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, StepError>> + Send + 'static,
    {
        let h = handler::from_fn(handler);
        let name = operation.into();
        self.inner.registry.update(|m| {
            m.operations.insert(name, h);
        });
    }

    /// Registers a compensation handler under `operation`: a step whose
    /// `compensation_operation` is `operation` runs it (compensation handlers are looked
    /// up first, then operation handlers of the same name).
    pub fn register_compensation_handler<F, Fut>(&self, operation: impl Into<String>, handler: F)
    where
        F: Fn(StepContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, StepError>> + Send + 'static,
    {
        let h = handler::from_fn(handler);
        let name = operation.into();
        self.inner.registry.update(|m| {
            m.compensations.insert(name, h);
        });
    }

    /// Whether a handler is registered for `operation`.
    pub fn has_operation_handler(&self, operation: &str) -> bool {
        self.inner
            .registry
            .snapshot()
            .operation(operation)
            .is_some()
    }

    /// Creates a saga (the seed's `create_saga_workflow`): status `Pending`, nothing run
    /// yet. With an idempotency key already used by this tenant, returns that saga.
    ///
    /// # Errors
    /// [`SagaError::Invalid`] for an empty tenant or workflow type, a bad key or no steps;
    /// [`SagaError::UnknownOperation`] when a step's operation has no handler here.
    pub async fn create(
        &self,
        tenant_id: &str,
        workflow_type: &str,
        steps: Vec<SagaStep>,
        idempotency_key: Option<&str>,
    ) -> SagaResult<SagaWorkflow> {
        let mut new = NewSaga::new(tenant_id, workflow_type, steps);
        new.idempotency_key = idempotency_key.map(str::to_owned);
        Ok(self.create_saga(new).await?.into_saga())
    }

    /// Creates a saga with every option; says whether it was new or already existed.
    ///
    /// # Errors
    /// As [`create`](Self::create).
    pub async fn create_saga(&self, new: NewSaga) -> SagaResult<Creation> {
        let mut saga = self.prepare(new)?;
        let created = SagaEvent {
            saga_id: Arc::from(saga.saga_id.as_str()),
            at: saga.created_at,
            fence: 0,
            status: SagaStatus::Pending,
            kind: SagaEventKind::Created,
        };
        let answer = self
            .inner
            .store
            .create_saga(&saga, None, std::slice::from_ref(&created))
            .await
            .map_err(|e| SagaError::from_store(&saga.saga_id, e))?;
        Ok(match answer {
            CreateSaga::Created(receipt) => {
                saga.version = receipt.version;
                Creation::Created(saga)
            }
            CreateSaga::Existing(existing) => Creation::Existing(existing),
        })
    }

    /// Creates a saga and runs it at once, saving two store writes: the saga is stored
    /// already leased to this engine with its first step's intent, so a new saga of n steps
    /// costs n + 1 writes in all (`create` then `execute` costs n + 3). When the
    /// idempotency key names an existing saga, that one is executed (or returned, if it
    /// has ended) instead.
    ///
    /// The creating write journals `created`, `resumed` and the first `step_started`
    /// (at fence 1).
    ///
    /// # Errors
    /// As [`create`](Self::create) and [`execute`](Self::execute).
    pub async fn start(&self, new: NewSaga) -> SagaResult<SagaOutcome> {
        let saga = self.prepare(new)?;
        Run::start_new(&self.inner, saga, None).await
    }

    /// Like [`start`](Self::start), in a task of its own, streaming its events.
    ///
    /// # Errors
    /// Input errors are returned at once; later failures end the stream with
    /// [`SagaEventKind::Aborted`].
    pub fn start_stream(&self, new: NewSaga) -> SagaResult<(String, SagaEventStream)> {
        let saga = self.prepare(new)?;
        let id = saga.saga_id.clone();
        let (tx, rx) = mpsc::unbounded();
        let inner = Arc::clone(&self.inner);
        // The execution ends the stream itself (`Finished` or `Aborted`).
        tokio::spawn(async move {
            let _ = Run::start_new(&inner, saga, Some(tx)).await;
        });
        Ok((id, SagaEventStream { rx }))
    }

    /// Validates `new` and builds the saga to store.
    fn prepare(&self, new: NewSaga) -> SagaResult<SagaWorkflow> {
        validate::name("tenant_id", &new.tenant_id)?;
        validate::name("workflow_type", &new.workflow_type)?;
        if let Some(key) = &new.idempotency_key {
            validate::idempotency_key(key)?;
        }
        if new.steps.is_empty() {
            return Err(bgops_core::CoreError::EmptyField { field: "steps" }.into());
        }
        check_groups(&new.workflow_type, &new.steps)?;
        let handlers = self.inner.registry.snapshot();
        for step in &new.steps {
            validate::name("step.name", &step.name)?;
            if step.operation == crate::child::CHILD_SAGA_OPERATION {
                self.check_child_template(step)?;
            }
            if handlers.operation(&step.operation).is_none() {
                return Err(SagaError::UnknownOperation {
                    kind: "operation",
                    operation: step.operation.clone(),
                });
            }
            if let Some(comp) = &step.compensation_operation {
                if handlers.compensation(comp).is_none() {
                    return Err(SagaError::UnknownOperation {
                        kind: "compensation",
                        operation: comp.clone(),
                    });
                }
            }
        }
        let saga_id = match new.saga_id {
            Some(id) => {
                validate::name("saga_id", &id)?;
                id
            }
            None => self.inner.ids.sortable_id(),
        };
        let now = self.inner.clock.now();
        // What `SagaWorkflow::new` builds, without the id it would draw.
        Ok(SagaWorkflow {
            saga_id,
            tenant_id: new.tenant_id,
            workflow_type: new.workflow_type,
            steps: new.steps,
            status: SagaStatus::Pending,
            current_step: 0,
            created_at: now,
            updated_at: now,
            timeout_seconds: new
                .timeout
                .map(|t| t.as_secs() + u64::from(t.subsec_nanos() > 0)),
            idempotency_key: new.idempotency_key,
            context: new.context,
            error: None,
            version: 0,
            lease: None,
            template_version: new.template_version,
        })
    }

    /// Runs the saga under its lease (the seed's `execute_saga_workflow`): from the start,
    /// or from where its journal says it stopped. Returns how it ended; a saga that had
    /// already ended is returned as found.
    ///
    /// # Errors
    /// [`SagaError::Busy`] when another executor holds a live lease;
    /// [`SagaError::LeaseLost`] when another executor took over midway (this one stopped);
    /// [`SagaError::NotFound`]; store failures.
    pub async fn execute(&self, saga_id: &str) -> SagaResult<SagaOutcome> {
        Run::start(&self.inner, saga_id, Mode::Forward, None).await
    }

    /// Like [`execute`](Self::execute), in a task of its own, streaming its events (for
    /// SSE). The last event is [`SagaEventKind::Finished`] or [`SagaEventKind::Aborted`].
    ///
    /// Must be called within a tokio runtime.
    pub fn execute_stream(&self, saga_id: &str) -> SagaEventStream {
        self.spawn_streamed(saga_id, Mode::Forward)
    }

    /// Resumes a saga whose executor died (its lease expired): succeeded steps are not run
    /// again, a step left started runs again, a compensating saga only compensates.
    /// Same as [`execute`](Self::execute), named for intent.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn recover(&self, saga_id: &str) -> SagaResult<SagaOutcome> {
        Run::start(&self.inner, saga_id, Mode::Forward, None).await
    }

    /// Tries again the compensations of a saga that ended `CompensationFailed`, each with
    /// a fresh round of retries; the steps already compensated are left alone.
    ///
    /// # Errors
    /// [`SagaError::InvalidState`] when the saga is not `CompensationFailed`; otherwise as
    /// [`execute`](Self::execute).
    pub async fn retry_compensation(&self, saga_id: &str) -> SagaResult<SagaOutcome> {
        Run::start(&self.inner, saga_id, Mode::RetryCompensation, None).await
    }

    /// Compensates a saga that ended `Completed`: its steps are compensated in reverse
    /// (parallel group members one at a time too), and it ends `Compensated` or
    /// `CompensationFailed`. This is how a parent saga undoes a child saga; it is the only
    /// way a completed saga changes again.
    ///
    /// # Errors
    /// [`SagaError::InvalidState`] when the saga is not `Completed`; otherwise as
    /// [`execute`](Self::execute).
    pub async fn compensate(&self, saga_id: &str) -> SagaResult<SagaOutcome> {
        Run::start(&self.inner, saga_id, Mode::Undo, None).await
    }

    /// Like [`retry_compensation`](Self::retry_compensation), streaming its events.
    pub fn retry_compensation_stream(&self, saga_id: &str) -> SagaEventStream {
        self.spawn_streamed(saga_id, Mode::RetryCompensation)
    }

    fn spawn_streamed(&self, saga_id: &str, mode: Mode) -> SagaEventStream {
        let (tx, rx) = mpsc::unbounded();
        let inner = Arc::clone(&self.inner);
        let id = saga_id.to_owned();
        // The execution ends the stream itself (`Finished` or `Aborted`).
        tokio::spawn(async move {
            let _ = Run::start(&inner, &id, mode, Some(tx)).await;
        });
        SagaEventStream { rx }
    }

    /// The saga, if it exists.
    ///
    /// # Errors
    /// Store failures.
    pub async fn get(&self, saga_id: &str) -> SagaResult<Option<SagaWorkflow>> {
        self.inner
            .store
            .get_saga(saga_id)
            .await
            .map_err(|e| SagaError::from_store(saga_id, e))
    }

    /// The saga's history (journal), oldest first.
    ///
    /// # Errors
    /// Store failures.
    pub async fn history(&self, saga_id: &str) -> SagaResult<Vec<SagaEvent>> {
        self.inner
            .store
            .get_saga_history(saga_id)
            .await
            .map_err(|e| SagaError::from_store(saga_id, e))
    }
}

/// A parallel group is one run of adjacent steps: a group name that comes back after
/// other steps is refused (it would be two groups under one name).
fn check_groups(workflow_type: &str, steps: &[SagaStep]) -> SagaResult<()> {
    let mut closed: Vec<&str> = Vec::new();
    let mut current: Option<&str> = None;
    for step in steps {
        let group = step.group.as_deref();
        if group != current {
            if let Some(done) = current {
                closed.push(done);
            }
            if let Some(g) = group {
                validate::name("step.group", g)?;
                if closed.contains(&g) {
                    return Err(SagaError::Definition {
                        workflow_type: workflow_type.to_owned(),
                        reason: format!("parallel group `{g}` is split by other steps"),
                    });
                }
            }
            current = group;
        }
    }
    Ok(())
}
