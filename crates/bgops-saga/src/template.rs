//! Saga templates: a named, versioned saga definition registered once and created by name
//! with parameters.
//!
//! A template turns parameters into steps when a saga is created; the steps are stored
//! with the saga, so a saga keeps the version it started with even after a newer version
//! is registered (its `template_version` says which). Keep the handlers of every version
//! that may still have sagas in flight registered.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use bgops_core::SagaStep;
use serde_json::Value;

use crate::engine::{NewSaga, SagaEngine};
use crate::error::{SagaError, SagaResult};

/// Builds a template's steps from the creation's parameters.
type Build = Arc<dyn Fn(&Value) -> Result<Vec<SagaStep>, String> + Send + Sync>;

/// Templates by name, then version.
#[derive(Default)]
pub(crate) struct Templates {
    by_name: RwLock<HashMap<String, BTreeMap<u32, Build>>>,
}

impl SagaEngine {
    /// Registers version `version` of template `name`: `build` turns the parameters given
    /// at creation into the saga's steps (an `Err` refuses the parameters). Sagas made
    /// from it have `workflow_type` = `name` and `template_version` = `version`.
    ///
    /// ```
    /// use bgops_core::SagaStep;
    /// use bgops_memory::MemoryStorage;
    /// use bgops_saga::SagaEngine;
    /// use serde_json::json;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bgops_saga::SagaError> {
    /// let engine = SagaEngine::new(std::sync::Arc::new(MemoryStorage::new()));
    /// engine.register_operation_handler("create_user", |_| async { Ok(json!(null)) });
    /// engine.register_saga_template("user_onboarding", 1, |params| {
    ///     let email = params["email"].as_str().ok_or("email is required")?;
    ///     Ok(vec![SagaStep::new("Create user", "create_user", json!({ "email": email }))])
    /// })?;
    /// let new = engine.new_saga_from_template("tenant1", "user_onboarding", &json!({ "email": "a@b.c" }))?;
    /// let outcome = engine.start(new).await?;
    /// assert_eq!(outcome.saga.template_version, Some(1));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`SagaError::Definition`] when this version of the template is already registered;
    /// [`SagaError::Invalid`] for an empty or too long name.
    pub fn register_saga_template<F>(&self, name: &str, version: u32, build: F) -> SagaResult<()>
    where
        F: Fn(&Value) -> Result<Vec<SagaStep>, String> + Send + Sync + 'static,
    {
        bgops_core::validate::name("template", name)?;
        let mut templates = self
            .inner
            .templates
            .by_name
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let versions = templates.entry(name.to_owned()).or_default();
        if versions.contains_key(&version) {
            return Err(SagaError::Definition {
                workflow_type: name.to_owned(),
                reason: format!("template version {version} is already registered"),
            });
        }
        versions.insert(version, Arc::new(build));
        Ok(())
    }

    /// The versions of template `name` registered here, oldest first.
    pub fn saga_template_versions(&self, name: &str) -> Vec<u32> {
        let templates = self
            .inner
            .templates
            .by_name
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        templates
            .get(name)
            .map(|v| v.keys().copied().collect())
            .unwrap_or_default()
    }

    /// A [`NewSaga`] for `tenant_id` from the latest version of template `name` with
    /// `params`; give it to [`create_saga`](Self::create_saga) or [`start`](Self::start)
    /// (after setting an idempotency key or timeout if wanted).
    ///
    /// # Errors
    /// [`SagaError::UnknownOperation`] (kind `template`) when no such template is
    /// registered; [`SagaError::Definition`] when the template refuses `params`.
    pub fn new_saga_from_template(
        &self,
        tenant_id: &str,
        name: &str,
        params: &Value,
    ) -> SagaResult<NewSaga> {
        self.template_saga(tenant_id, name, None, params)
    }

    /// Like [`new_saga_from_template`](Self::new_saga_from_template), with a given version.
    ///
    /// # Errors
    /// As [`new_saga_from_template`](Self::new_saga_from_template).
    pub fn new_saga_from_template_version(
        &self,
        tenant_id: &str,
        name: &str,
        version: u32,
        params: &Value,
    ) -> SagaResult<NewSaga> {
        self.template_saga(tenant_id, name, Some(version), params)
    }

    /// Creates a saga from the latest version of template `name` (the seed's
    /// `create_saga_workflow`, by name). With an idempotency key already used by this
    /// tenant, returns that saga.
    ///
    /// # Errors
    /// As [`new_saga_from_template`](Self::new_saga_from_template) and
    /// [`create`](Self::create).
    pub async fn create_from_template(
        &self,
        tenant_id: &str,
        name: &str,
        params: &Value,
        idempotency_key: Option<&str>,
    ) -> SagaResult<bgops_core::SagaWorkflow> {
        let mut new = self.new_saga_from_template(tenant_id, name, params)?;
        new.idempotency_key = idempotency_key.map(str::to_owned);
        Ok(self.create_saga(new).await?.into_saga())
    }

    /// Refuses a child-saga step whose template is not registered here (so the mistake
    /// shows at creation, not when the parent reaches the step).
    pub(crate) fn check_child_template(&self, step: &SagaStep) -> SagaResult<()> {
        let template = step.parameters["template"].as_str().unwrap_or_default();
        let known = self
            .inner
            .templates
            .by_name
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(template);
        if known {
            Ok(())
        } else {
            Err(SagaError::UnknownOperation {
                kind: "template",
                operation: template.to_owned(),
            })
        }
    }

    pub(crate) fn template_saga(
        &self,
        tenant_id: &str,
        name: &str,
        version: Option<u32>,
        params: &Value,
    ) -> SagaResult<NewSaga> {
        let (version, build) = {
            let templates = self
                .inner
                .templates
                .by_name
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let versions = templates.get(name);
            let found = match version {
                Some(v) => versions.and_then(|vs| vs.get_key_value(&v)),
                None => versions.and_then(BTreeMap::last_key_value),
            };
            let (v, build) = found.ok_or_else(|| SagaError::UnknownOperation {
                kind: "template",
                operation: match version {
                    Some(v) => format!("{name} v{v}"),
                    None => name.to_owned(),
                },
            })?;
            (*v, Arc::clone(build))
        };
        let steps = build(params).map_err(|reason| SagaError::Definition {
            workflow_type: name.to_owned(),
            reason: format!("template v{version} refused its parameters: {reason}"),
        })?;
        let mut new = NewSaga::new(tenant_id, name, steps);
        new.template_version = Some(version);
        Ok(new)
    }
}
