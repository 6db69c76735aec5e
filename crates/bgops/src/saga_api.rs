//! The seed's saga API on the manager (feature `saga`): handler registration,
//! `create_saga_workflow`, `execute_saga_workflow`, over one [`SagaEngine`].

use bgops_core::{SagaEvent, SagaStep, SagaWorkflow};
use bgops_saga::{
    Creation, NewSaga, SagaEngine, SagaEventStream, SagaOutcome, StepContext, StepError,
};
use serde_json::Value;

use crate::{BackgroundOperationsManager, Error};

impl BackgroundOperationsManager {
    /// The saga engine (for the typed API, event streams, recovery and everything else the
    /// seed-style methods below do not cover).
    pub fn saga_engine(&self) -> &SagaEngine {
        &self.inner.sagas
    }

    /// Registers the handler of a saga operation (the seed's `register_operation_handler`).
    pub fn register_operation_handler<F, Fut>(&self, operation: impl Into<String>, handler: F)
    where
        F: Fn(StepContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, StepError>> + Send + 'static,
    {
        self.inner
            .sagas
            .register_operation_handler(operation, handler);
    }

    /// Registers a compensation handler (the seed's `register_compensation_handler`).
    pub fn register_compensation_handler<F, Fut>(&self, operation: impl Into<String>, handler: F)
    where
        F: Fn(StepContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, StepError>> + Send + 'static,
    {
        self.inner
            .sagas
            .register_compensation_handler(operation, handler);
    }

    /// Creates a saga workflow (status `Pending`). With an `idempotency_key` this tenant
    /// already used, returns that saga instead of creating another.
    ///
    /// Steps can be built in code ([`SagaStep::new`]) or deserialized from the seed's step
    /// dicts (`{"name", "operation", "parameters", "compensation_operation",
    /// "compensation_parameters", "max_retries"}`).
    ///
    /// # Errors
    /// [`Error::Saga`] for bad input (empty tenant, no steps, an operation without a
    /// handler) or a store failure.
    pub async fn create_saga_workflow(
        &self,
        tenant_id: &str,
        workflow_type: &str,
        steps: Vec<SagaStep>,
        idempotency_key: Option<&str>,
    ) -> Result<SagaWorkflow, Error> {
        Ok(self
            .inner
            .sagas
            .create(tenant_id, workflow_type, steps, idempotency_key)
            .await?)
    }

    /// Executes a saga to its end and says whether every step succeeded (the seed's
    /// `execute_saga_workflow`); `false` means it failed and was compensated (or its
    /// compensation failed — see [`get_saga`](Self::get_saga)).
    ///
    /// # Errors
    /// [`Error::Saga`] when the saga does not exist, another executor holds it, or the
    /// store fails.
    pub async fn execute_saga_workflow(&self, saga_id: &str) -> Result<bool, Error> {
        Ok(self.execute_saga(saga_id).await?.succeeded())
    }

    /// Executes a saga and returns how it ended, with the saga as stored.
    ///
    /// # Errors
    /// As [`execute_saga_workflow`](Self::execute_saga_workflow).
    pub async fn execute_saga(&self, saga_id: &str) -> Result<SagaOutcome, Error> {
        Ok(self.inner.sagas.execute(saga_id).await?)
    }

    /// The saga, if it exists.
    ///
    /// # Errors
    /// [`Error::Saga`] when the store fails.
    pub async fn get_saga(&self, saga_id: &str) -> Result<Option<SagaWorkflow>, Error> {
        Ok(self.inner.sagas.get(saga_id).await?)
    }

    /// The saga's history (its journal of [`SagaEvent`]s, the same events its execution
    /// streams), oldest first.
    ///
    /// # Errors
    /// [`Error::Saga`] when the store fails.
    pub async fn get_saga_history(&self, saga_id: &str) -> Result<Vec<SagaEvent>, Error> {
        Ok(self.inner.sagas.history(saga_id).await?)
    }

    /// Creates a saga with every option of [`NewSaga`]: a saga-level timeout (past it the
    /// saga fails into compensation), a chosen id, an idempotency key, an initial context.
    /// Says whether it was created or already existed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bgops::Error> {
    /// use std::time::Duration;
    /// use bgops::BackgroundOperationsManager;
    /// use bgops_core::SagaStep;
    /// use bgops_saga::NewSaga;
    /// use serde_json::json;
    ///
    /// let manager = BackgroundOperationsManager::in_memory();
    /// manager.register_operation_handler("create_user", |_| async { Ok(json!(null)) });
    /// let steps = vec![SagaStep::new("Create user", "create_user", json!({}))];
    /// let new = NewSaga::new("tenant1", "onboarding", steps)
    ///     .timeout(Duration::from_secs(60))
    ///     .idempotency_key("signup-ada");
    /// let saga = manager.create_saga(new).await?.into_saga();
    /// assert_eq!(saga.timeout_seconds, Some(60));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`create_saga_workflow`](Self::create_saga_workflow).
    pub async fn create_saga(&self, new: NewSaga) -> Result<Creation, Error> {
        Ok(self.inner.sagas.create_saga(new).await?)
    }

    /// Registers version `version` of saga template `name` (see
    /// [`SagaEngine::register_saga_template`]).
    ///
    /// # Errors
    /// [`Error::Saga`] when this version is already registered.
    pub fn register_saga_template<F>(&self, name: &str, version: u32, build: F) -> Result<(), Error>
    where
        F: Fn(&Value) -> Result<Vec<SagaStep>, String> + Send + Sync + 'static,
    {
        Ok(self
            .inner
            .sagas
            .register_saga_template(name, version, build)?)
    }

    /// Creates a saga from the latest version of template `name` with `params` (the seed's
    /// `create_saga_workflow`, by name); with an idempotency key this tenant already used,
    /// returns that saga.
    ///
    /// # Errors
    /// [`Error::Saga`] for an unknown template, parameters it refuses, or a store failure.
    pub async fn create_saga_from_template(
        &self,
        tenant_id: &str,
        name: &str,
        params: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<SagaWorkflow, Error> {
        Ok(self
            .inner
            .sagas
            .create_from_template(tenant_id, name, params, idempotency_key)
            .await?)
    }

    /// Executes a saga in its own task and streams its events (for SSE:
    /// [`SagaEvent::to_sse`]); the last is `finished` or `aborted`.
    pub fn execute_saga_stream(&self, saga_id: &str) -> SagaEventStream {
        self.inner.sagas.execute_stream(saga_id)
    }
}
