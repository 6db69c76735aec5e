//! Parallel groups: adjacent steps with the same [`SagaStep::group`](bgops_core::SagaStep)
//! run concurrently.
//!
//! A group runs in rounds. Each round stores the intent of every member still to run in
//! one fenced write (one `step_started` event each), then calls their handlers at once
//! under the lease keep-alive. Each member's success is journaled as soon as it comes
//! (the last one's travels with the next intent), so a group of k members costs k writes
//! like k steps. A retryable failure with attempts left is retried in the next round,
//! after the longest backoff among the round's failures, once the round's other members
//! have finished. When a member fails for good,
//! the round's other members are waited for (their outcome must be known), those waiting
//! for a retry are marked failed too, and the saga compensates
//! exactly the members that succeeded (plus, after a crash or the saga deadline, those
//! whose outcome is unknown: see the crate docs). Compensations of group members run one
//! at a time in reverse step order, like those of ordinary steps.
//!
//! After a crash, a half-finished group resumes with the members not yet completed:
//! succeeded members are never called again.
//!
//! **Context.** Each member sees the context as it was when its round began. A member's
//! changes to a JSON object context are merged field by field (top level) in step order,
//! so members that change different fields all keep their changes; a field changed by two
//! members keeps the later member's value. Other contexts are replaced.

use std::collections::HashSet;
use std::ops::Range;
use std::time::Duration;

use bgops_core::SagaStepStatus;
use serde_json::Value;
use tracing::Instrument;

use super::Run;
use crate::error::SagaResult;
use futures::stream::FuturesUnordered;

use crate::handler::{BoxFuture, HandlerOutput, StepError};

/// A member's index and the result of its handler call.
pub(super) type MemberResult = (usize, Result<HandlerOutput, StepError>);
use crate::state::SagaOutcome;

impl Run<'_> {
    /// Runs the group `range` to its end. `None` when every member succeeded; otherwise
    /// the saga's outcome after compensation. With `begun`, this round's intents are
    /// already stored (the creating write).
    pub(super) async fn run_group(
        &mut self,
        range: Range<usize>,
        mut begun: bool,
    ) -> SagaResult<Option<SagaOutcome>> {
        // Members whose last attempt is known (in this run) to have failed.
        let mut failed_cleanly: HashSet<usize> = HashSet::new();
        loop {
            let todo: Vec<usize> = range
                .clone()
                .filter(|&k| self.saga.steps[k].status != SagaStepStatus::Completed)
                .collect();
            if todo.is_empty() {
                return Ok(None);
            }
            if let Some(k) = todo.iter().copied().find(|&k| {
                !matches!(
                    self.saga.steps[k].status,
                    SagaStepStatus::Pending | SagaStepStatus::Running
                )
            }) {
                self.start_compensation(format!("step {k} found in an unexpected state"));
                return self.compensate().await.map(Some);
            }
            if self.timed_out() {
                self.fail_cleanly_failed(&todo, &failed_cleanly, "saga timed out");
                self.start_compensation("saga timed out".into());
                return self.compensate().await.map(Some);
            }
            if !begun {
                if let Some(&k) = todo.iter().find(|&&k| {
                    let step = &self.saga.steps[k];
                    step.status == SagaStepStatus::Running
                        && !failed_cleanly.contains(&k)
                        && step.attempts > step.max_retries
                }) {
                    let reason = format!(
                        "step {k} ({}): attempts exhausted, outcome of the last one unknown",
                        self.saga.steps[k].name
                    );
                    self.start_compensation(reason);
                    return self.compensate().await.map(Some);
                }
            }
            let mut handlers = Vec::with_capacity(todo.len());
            for &k in &todo {
                let op = &self.saga.steps[k].operation;
                let Some(handler) = self.handlers.operation(op).cloned() else {
                    let reason = format!("no handler registered for operation `{op}`");
                    self.fail_step(k, &reason);
                    self.fail_cleanly_failed(&todo, &failed_cleanly, "another member failed");
                    self.start_compensation(reason);
                    return self.compensate().await.map(Some);
                };
                handlers.push(handler);
            }
            if begun {
                begun = false;
            } else {
                for &k in &todo {
                    self.begin_attempt(k);
                }
                self.flush().await?;
            }
            failed_cleanly.clear();
            let base = self.saga.context.clone();
            let step_timeout = self.inner.config.step_timeout;
            let mut running: FuturesUnordered<BoxFuture<MemberResult>> = todo
                .iter()
                .zip(&handlers)
                .map(|(&k, handler)| {
                    let ctx = self.step_context(k, false);
                    let context = self.context_for(handler.as_ref());
                    let span = tracing::info_span!(
                        "bgops.saga.step",
                        step_index = k,
                        step = %self.saga.steps[k].name,
                        attempt = self.saga.steps[k].attempts,
                    );
                    let call = handler.call(ctx, context);
                    let fut: BoxFuture<MemberResult> = Box::pin(
                        async move {
                            let r = match step_timeout {
                                Some(t) => {
                                    tokio::time::timeout(t, call).await.unwrap_or_else(|_| {
                                        Err(StepError::retryable(format!(
                                            "handler timed out after {t:?}"
                                        )))
                                    })
                                }
                                None => call.await,
                            };
                            (k, r)
                        }
                        .instrument(span),
                    );
                    fut
                })
                .collect();
            let mut left = todo.len();
            let mut failure: Option<String> = None;
            let mut delay = Duration::ZERO;
            while left > 0 {
                let Some((k, result)) = self.next_member(&mut running).await? else {
                    // The saga's deadline passed: the members still running were dropped
                    // mid-call (outcome unknown, so compensated with the others).
                    self.fail_cleanly_failed(&todo, &failed_cleanly, "saga timed out");
                    self.start_compensation("saga timed out".into());
                    return self.compensate().await.map(Some);
                };
                left -= 1;
                match result {
                    Ok(mut out) => {
                        if let Some(changed) = out.context.take() {
                            merge_context(&mut self.saga.context, &base, changed);
                        }
                        self.complete_step(k, out);
                        if left > 0 {
                            // Journaled at once, so a crash while the others still run
                            // does not call this member again.
                            self.flush().await?;
                        }
                    }
                    Err(e) => {
                        let step = &self.saga.steps[k];
                        if !e.is_terminal() && step.attempts <= step.max_retries {
                            let d = self.inner.config.retry.delay(step.attempts);
                            self.retry_step(k, &e, d);
                            delay = delay.max(d);
                            failed_cleanly.insert(k);
                        } else {
                            let reason = format!("step {k} ({}) failed: {}", step.name, e.message);
                            self.fail_step(k, &e.message);
                            failure.get_or_insert(reason);
                        }
                    }
                }
            }
            if let Some(reason) = failure {
                self.fail_cleanly_failed(&todo, &failed_cleanly, "another member failed");
                self.start_compensation(reason);
                return self.compensate().await.map(Some);
            }
            self.sleep(delay).await?;
        }
    }

    /// Marks failed the members whose last attempt is known to have failed and that still
    /// show `Running` (waiting for a retry that will not come): they had no effect, so they
    /// are not compensated.
    fn fail_cleanly_failed(&mut self, todo: &[usize], failed: &HashSet<usize>, why: &str) {
        for &k in todo {
            if failed.contains(&k) && self.saga.steps[k].status == SagaStepStatus::Running {
                self.fail_step(k, why);
            }
        }
    }
}

/// Applies a member's context change: for JSON objects, the top-level fields that differ
/// from `base` (the context the member saw); otherwise the new value.
fn merge_context(context: &mut Value, base: &Value, changed: Value) {
    match (context, base, changed) {
        (Value::Object(context), Value::Object(base), Value::Object(changed)) => {
            for (field, value) in changed {
                if base.get(&field) != Some(&value) {
                    context.insert(field, value);
                }
            }
        }
        (context, _, changed) => *context = changed,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::merge_context;

    #[test]
    fn members_changing_different_fields_keep_both_changes() {
        let base = json!({ "a": 0, "b": 0, "c": 0 });
        let mut context = base.clone();
        merge_context(&mut context, &base, json!({ "a": 1, "b": 0, "c": 0 }));
        merge_context(&mut context, &base, json!({ "a": 0, "b": 2, "c": 0 }));
        assert_eq!(context, json!({ "a": 1, "b": 2, "c": 0 }));
    }

    #[test]
    fn a_field_changed_by_two_members_keeps_the_later_change() {
        let base = json!({ "a": 0 });
        let mut context = base.clone();
        merge_context(&mut context, &base, json!({ "a": 1 }));
        merge_context(&mut context, &base, json!({ "a": 2 }));
        assert_eq!(context, json!({ "a": 2 }));
    }

    #[test]
    fn a_non_object_context_is_replaced() {
        let mut context = json!(1);
        merge_context(&mut context, &json!(1), json!(3));
        assert_eq!(context, json!(3));
    }
}
