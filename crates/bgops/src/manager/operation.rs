//! One view of any background operation by id: the seed's `BackgroundOperation` model.

use bgops_core::{
    BackgroundOperation, IdempotencyRecord, OperationKind, OperationStatus, SagaStatus,
    SagaWorkflow, Task, TaskStatus,
};

use bgops_storage::{StorageError, StorageResult};

use super::BackgroundOperationsManager;
use crate::Error;

impl BackgroundOperationsManager {
    /// The background operation with this id, whatever it is: an idempotency record of
    /// `tenant_id` (by key), a saga of `tenant_id`, or a task (tasks are scoped by queue,
    /// not tenant), in that order. `None` when nothing has this id. The status endpoint of
    /// a service and the CLI show this view.
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Idempotency`] when the store fails.
    pub async fn get_operation(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<BackgroundOperation>, Error> {
        if bgops_storage::validate_address(tenant_id, id).is_ok() {
            if let Some(record) = self.inner.engine.get(tenant_id, id).await? {
                return Ok(Some(from_record(&record)));
            }
        }
        let storage = &self.inner.storage;
        if let Some(saga) = not_an_id_is_none(storage.get_saga(id).await)? {
            if saga.tenant_id == tenant_id {
                return Ok(Some(from_saga(&saga)));
            }
        }
        let task = not_an_id_is_none(storage.get_task(id).await)?;
        Ok(task.map(|task| from_task(&task)))
    }
}

/// An id that is not valid for this kind of operation names none of them.
fn not_an_id_is_none<T>(found: StorageResult<Option<T>>) -> StorageResult<Option<T>> {
    match found {
        Err(StorageError::Invalid(_)) => Ok(None),
        other => other,
    }
}

fn from_record(record: &IdempotencyRecord) -> BackgroundOperation {
    BackgroundOperation {
        operation_id: record.key.clone(),
        kind: OperationKind::IdempotencyKey,
        tenant_id: record.tenant_id.clone(),
        operation_type: record.operation_type.clone(),
        status: record.status,
        idempotency_key: Some(record.key.clone()),
        saga_id: None,
        created_at: record.created_at,
        updated_at: record.completed_at.unwrap_or(record.created_at),
        result: record.result.clone(),
        error: record.error.clone(),
    }
}

fn from_saga(saga: &SagaWorkflow) -> BackgroundOperation {
    let status = match saga.status {
        SagaStatus::Pending => OperationStatus::Pending,
        SagaStatus::Running | SagaStatus::Compensating => OperationStatus::InProgress,
        SagaStatus::Completed => OperationStatus::Completed,
        SagaStatus::Compensated | SagaStatus::CompensationFailed => OperationStatus::Failed,
    };
    BackgroundOperation {
        operation_id: saga.saga_id.clone(),
        kind: OperationKind::Saga,
        tenant_id: saga.tenant_id.clone(),
        operation_type: saga.workflow_type.clone(),
        status,
        idempotency_key: saga.idempotency_key.clone(),
        saga_id: Some(saga.saga_id.clone()),
        created_at: saga.created_at,
        updated_at: saga.updated_at,
        result: Some(saga.context.clone()),
        error: saga.error.clone(),
    }
}

fn from_task(task: &Task) -> BackgroundOperation {
    let status = match task.status {
        TaskStatus::Pending => OperationStatus::Pending,
        TaskStatus::Claimed => OperationStatus::InProgress,
        TaskStatus::Completed => OperationStatus::Completed,
        TaskStatus::Failed => OperationStatus::Failed,
    };
    BackgroundOperation {
        operation_id: task.task_id.clone(),
        kind: OperationKind::Task,
        tenant_id: task.queue.clone(),
        operation_type: task.task_type.clone(),
        status,
        idempotency_key: task.idempotency_key.clone(),
        saga_id: None,
        created_at: task.created_at,
        updated_at: task.updated_at,
        result: task.result.clone(),
        error: task.error.clone(),
    }
}
