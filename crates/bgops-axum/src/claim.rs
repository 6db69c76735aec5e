//! The claim a first execution holds, released if the work is abandoned.

use std::sync::Arc;

use crate::layer::Shared;

/// A `Started` claim. Dropping it while still armed (the request future was cancelled,
/// e.g. the client went away) releases it in a spawned task, so a retry need not wait for
/// the lease to run out.
pub(crate) struct Claim {
    pub(crate) shared: Arc<Shared>,
    pub(crate) tenant: String,
    pub(crate) key: String,
    pub(crate) token: String,
    armed: bool,
}

impl Claim {
    pub(crate) fn new(shared: Arc<Shared>, tenant: String, key: String, token: String) -> Self {
        Self {
            shared,
            tenant,
            key,
            token,
            armed: true,
        }
    }

    /// Deletes the claim so that a retry runs the operation again.
    pub(crate) async fn release(mut self) {
        self.armed = false;
        if let Err(error) = self
            .shared
            .store
            .release(&self.tenant, &self.key, &self.token)
            .await
        {
            self.shared
                .config
                .metrics
                .storage_error("idempotency_release");
            tracing::warn!(%error, key = %self.key, "releasing an idempotency claim failed; it expires with its lease");
        }
    }

    /// The claim was completed: nothing to release.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = Arc::clone(&self.shared);
        let (tenant, key, token) = (
            std::mem::take(&mut self.tenant),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
        );
        handle.spawn(async move {
            if let Err(error) = shared.store.release(&tenant, &key, &token).await {
                tracing::debug!(%error, %key, "releasing an abandoned idempotency claim failed");
            }
        });
    }
}
