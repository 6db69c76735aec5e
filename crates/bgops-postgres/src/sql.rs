//! Every statement of the backend, built once per schema (so that sqlx prepares each
//! once per connection). `{s}` is the schema; times are `statement_timestamp()` (the
//! database's, stable within a statement, and current inside a long transaction), and
//! durations are bound as microseconds (`$n * interval '1 microsecond'`).

/// The database's now, in microseconds since the epoch (for task history entries).
const NOW_US: &str = "(extract(epoch from statement_timestamp()) * 1000000)::bigint";

/// The idempotency record's columns, as [`crate::idempotency`] reads them.
pub(crate) const IDEM_COLS: &str = "tenant_id, key, user_id, operation_type, fingerprint, \
    parameters, status, token, created_at, expires_at, lease_expires_at, completed_at, \
    result, error, payload";

/// The saga's columns, as [`crate::saga`] reads them.
pub(crate) const SAGA_COLS: &str = "doc, version, lease_owner, lease_fence, lease_expires_at";

/// The task's columns, as [`crate::task`] reads them.
pub(crate) const TASK_COLS: &str = "task_id, queue, task_type, idempotency_key, payload, \
    status, attempts, claim, max_attempts, result, error, lease_worker, lease_expires_at, \
    history, created_at, updated_at, available_at, finished_at";

/// A task receipt's columns.
const RECEIPT_COLS: &str = "status, attempts, lease_expires_at, available_at, updated_at";

/// Closes the open (last) attempt of `t.history` with `outcome` and error `err` (SQL).
fn close_last(outcome: &str, err: &str) -> String {
    format!(
        "jsonb_set(t.history, ARRAY[(jsonb_array_length(t.history) - 1)::text], \
         (t.history -> -1) || jsonb_build_object('finished_us', {NOW_US}, 'outcome', '{outcome}', \
         'error', {err}::text))"
    )
}

/// The statements, for one schema.
#[derive(Debug)]
pub(crate) struct Sql {
    pub schema: String,
    pub idem_channel: String,
    pub task_channel: String,
    // idempotency
    pub begin: String,
    pub complete: String,
    pub complete_notify: String,
    pub idem_state: String,
    pub idem_watch: String,
    pub release: String,
    pub renew: String,
    pub idem_get: String,
    pub idem_delete: String,
    pub idem_purge: String,
    // locks
    pub lock_acquire: String,
    pub lock_renew: String,
    pub lock_release: String,
    // sagas
    pub saga_create: String,
    pub saga_find: String,
    pub saga_get: String,
    pub saga_acquire: String,
    pub saga_exists: String,
    pub saga_save: String,
    pub saga_state: String,
    pub saga_history: String,
    pub saga_list: [String; 4],
    pub saga_recoverable: String,
    pub saga_delete: String,
    // tasks
    pub task_submit: String,
    pub task_submit_notify: String,
    pub task_by_key: String,
    pub task_get: String,
    pub task_exists: String,
    pub task_claim: String,
    pub task_claim_next: String,
    pub task_complete: String,
    pub task_fail: String,
    pub task_fail_permanently: String,
    pub task_renew: String,
    pub task_release: String,
    pub task_retry: String,
    pub task_list: [String; 4],
    pub task_delete: String,
    pub task_requeue: String,
    pub task_purge: String,
    // stats
    pub stats: String,
}

impl Sql {
    pub(crate) fn new(schema: &str) -> Self {
        let s = schema;
        let idem_channel = format!("{s}_idempotency_done");
        let task_channel = format!("{s}_task_submitted");
        let claim_set = format!(
            "status = 'claimed', attempts = t.attempts + 1, claim = t.claim + 1, \
             lease_worker = $2, lease_expires_at = statement_timestamp() + $3 * interval '1 microsecond', \
             updated_at = statement_timestamp(), \
             history = (CASE WHEN t.status = 'claimed' THEN {} ELSE t.history END) \
               || jsonb_build_array(jsonb_build_object('attempt', t.claim + 1, 'worker_id', $2::text, \
                  'claimed_us', {NOW_US}))",
            close_last("lease_expired", "NULL")
        );
        let claimable = "((t.status = 'pending' AND t.available_at <= statement_timestamp()) \
             OR (t.status = 'claimed' AND t.lease_expires_at <= statement_timestamp() \
                 AND t.attempts < t.max_attempts))";
        let finish = |set: &str| {
            format!(
                "UPDATE {s}.task t SET {set}, lease_worker = NULL, lease_expires_at = NULL, \
                 updated_at = statement_timestamp() \
                 WHERE t.task_id = $1 AND t.status = 'claimed' AND t.claim = $2 \
                 RETURNING {RECEIPT_COLS}"
            )
        };
        let submit = format!(
            "INSERT INTO {s}.task AS t (task_id, queue, task_type, idempotency_key, payload, \
               status, max_attempts, created_at, updated_at, available_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, statement_timestamp(), \
               statement_timestamp(), statement_timestamp() + $7 * interval '1 microsecond') \
             ON CONFLICT (queue, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
             RETURNING {TASK_COLS}"
        );
        let complete = format!(
            "UPDATE {s}.idempotency SET status = $4, result = $5, error = $6, payload = $7, \
               completed_at = statement_timestamp(), lease_expires_at = NULL \
             WHERE tenant_id = $1 AND key = $2 AND token = $3 AND status = 'in_progress' \
               AND expires_at > statement_timestamp() \
             RETURNING completed_at, expires_at, notify"
        );
        Self {
            begin: format!(
                "WITH up AS ( \
                   INSERT INTO {s}.idempotency AS r (tenant_id, key, user_id, operation_type, \
                     fingerprint, parameters, status, token, created_at, expires_at, lease_expires_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, 'in_progress', $7, statement_timestamp(), \
                     statement_timestamp() + $8 * interval '1 microsecond', \
                     statement_timestamp() + least($8, $9) * interval '1 microsecond') \
                   ON CONFLICT (tenant_id, key) DO UPDATE SET \
                     user_id = CASE WHEN r.expires_at <= statement_timestamp() THEN excluded.user_id ELSE r.user_id END, \
                     operation_type = CASE WHEN r.expires_at <= statement_timestamp() THEN excluded.operation_type ELSE r.operation_type END, \
                     fingerprint = CASE WHEN r.expires_at <= statement_timestamp() THEN excluded.fingerprint ELSE r.fingerprint END, \
                     parameters = CASE WHEN r.expires_at <= statement_timestamp() THEN excluded.parameters ELSE r.parameters END, \
                     created_at = CASE WHEN r.expires_at <= statement_timestamp() THEN excluded.created_at ELSE r.created_at END, \
                     lease_expires_at = CASE WHEN r.expires_at <= statement_timestamp() THEN excluded.lease_expires_at \
                       ELSE least(statement_timestamp() + $9 * interval '1 microsecond', r.expires_at) END, \
                     expires_at = CASE WHEN r.expires_at <= statement_timestamp() THEN excluded.expires_at ELSE r.expires_at END, \
                     status = 'in_progress', token = excluded.token, completed_at = NULL, \
                     notify = CASE WHEN r.expires_at <= statement_timestamp() THEN false ELSE r.notify END, \
                     result = NULL, error = NULL, payload = NULL \
                   WHERE r.expires_at <= statement_timestamp() \
                     OR (r.status = 'in_progress' \
                         AND (r.fingerprint IS NULL OR excluded.fingerprint IS NULL \
                              OR r.fingerprint = excluded.fingerprint) \
                         AND (r.token = excluded.token OR r.lease_expires_at <= statement_timestamp())) \
                   RETURNING 'started'::text AS outcome, {IDEM_COLS}) \
                 SELECT * FROM up \
                 UNION ALL \
                 SELECT CASE \
                     WHEN c.expires_at <= statement_timestamp() THEN 'retry' \
                     WHEN c.fingerprint IS NOT NULL AND $5::text IS NOT NULL AND c.fingerprint <> $5::text THEN 'mismatch' \
                     WHEN c.status <> 'in_progress' THEN 'completed' \
                     WHEN c.token = $7 OR c.lease_expires_at <= statement_timestamp() THEN 'retry' \
                     ELSE 'in_progress' END, {IDEM_COLS} \
                 FROM {s}.idempotency c \
                 WHERE c.tenant_id = $1 AND c.key = $2 AND NOT EXISTS (SELECT 1 FROM up)"
            ),
            complete_notify: format!(
                "WITH done AS ({complete}) \
                 SELECT done.*, CASE WHEN done.notify \
                   THEN pg_notify('{idem_channel}', $1 || '/' || $2)::text END FROM done"
            ),
            complete,
            idem_state: format!(
                "SELECT status, token, completed_at, expires_at, \
                   expires_at > statement_timestamp() AS live \
                 FROM {s}.idempotency WHERE tenant_id = $1 AND key = $2"
            ),
            idem_watch: format!(
                "UPDATE {s}.idempotency SET notify = true WHERE tenant_id = $1 AND key = $2 \
                   AND status = 'in_progress' AND expires_at > statement_timestamp() RETURNING 1"
            ),
            release: format!(
                "DELETE FROM {s}.idempotency WHERE tenant_id = $1 AND key = $2 AND token = $3 \
                   AND status = 'in_progress' AND expires_at > statement_timestamp()"
            ),
            renew: format!(
                "UPDATE {s}.idempotency SET lease_expires_at = \
                   least(statement_timestamp() + $4 * interval '1 microsecond', expires_at) \
                 WHERE tenant_id = $1 AND key = $2 AND token = $3 AND status = 'in_progress' \
                   AND expires_at > statement_timestamp() \
                 RETURNING lease_expires_at"
            ),
            idem_get: format!(
                "SELECT {IDEM_COLS} FROM {s}.idempotency \
                 WHERE tenant_id = $1 AND key = $2 AND expires_at > statement_timestamp()"
            ),
            idem_delete: format!("DELETE FROM {s}.idempotency WHERE tenant_id = $1 AND key = $2"),
            idem_purge: format!(
                "WITH due AS (SELECT tenant_id, key FROM {s}.idempotency \
                   WHERE expires_at <= statement_timestamp() ORDER BY expires_at LIMIT $1 + 1 \
                   FOR UPDATE SKIP LOCKED), \
                 gone AS (DELETE FROM {s}.idempotency r USING (SELECT * FROM due LIMIT $1) d \
                   WHERE r.tenant_id = d.tenant_id AND r.key = d.key RETURNING 1) \
                 SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM due)"
            ),
            lock_acquire: format!(
                "INSERT INTO {s}.lock AS l (name, token, fence, expires_at) \
                 VALUES ($1, $2, 1, statement_timestamp() + $3 * interval '1 microsecond') \
                 ON CONFLICT (name) DO UPDATE SET token = excluded.token, fence = l.fence + 1, \
                   expires_at = excluded.expires_at \
                 WHERE l.token IS NULL OR l.expires_at <= statement_timestamp() \
                 RETURNING fence, expires_at"
            ),
            lock_renew: format!(
                "UPDATE {s}.lock SET expires_at = statement_timestamp() + $4 * interval '1 microsecond' \
                 WHERE name = $1 AND token = $2 AND fence = $3 AND expires_at > statement_timestamp() \
                 RETURNING expires_at"
            ),
            lock_release: format!(
                "UPDATE {s}.lock SET token = NULL, expires_at = NULL \
                 WHERE name = $1 AND token = $2 AND fence = $3 AND expires_at > statement_timestamp()"
            ),
            saga_create: format!(
                "WITH ins AS ( \
                   INSERT INTO {s}.saga (saga_id, tenant_id, idempotency_key, status, version, \
                     fence_max, lease_owner, lease_fence, lease_expires_at, created_at, doc) \
                   VALUES ($1, $2, $3, $4, $5, coalesce($7, 0), $6, $7, \
                     CASE WHEN $6::text IS NULL THEN NULL \
                       ELSE statement_timestamp() + $8 * interval '1 microsecond' END, $9, $10) \
                   ON CONFLICT DO NOTHING \
                   RETURNING saga_id, lease_expires_at), \
                 ev AS (INSERT INTO {s}.saga_event (saga_id, event) \
                   SELECT ins.saga_id, u.e FROM ins, unnest($11::jsonb[]) WITH ORDINALITY AS u(e, n) \
                   ORDER BY u.n RETURNING 1) \
                 SELECT lease_expires_at, (SELECT count(*) FROM ev) FROM ins"
            ),
            saga_find: format!(
                "SELECT {SAGA_COLS} FROM {s}.saga WHERE saga_id = $1 \
                 UNION ALL \
                 SELECT {SAGA_COLS} FROM {s}.saga WHERE tenant_id = $2 AND idempotency_key = $3 \
                 LIMIT 1"
            ),
            saga_get: format!("SELECT {SAGA_COLS} FROM {s}.saga WHERE saga_id = $1"),
            saga_acquire: format!(
                "UPDATE {s}.saga s SET lease_owner = $2, lease_fence = s.fence_max + 1, \
                   fence_max = s.fence_max + 1, version = s.version + 1, \
                   lease_expires_at = statement_timestamp() + $3 * interval '1 microsecond' \
                 WHERE s.saga_id = $1 AND (s.lease_owner IS NULL OR s.lease_owner = $2 \
                   OR s.lease_expires_at <= statement_timestamp()) \
                 RETURNING {SAGA_COLS}"
            ),
            saga_exists: format!("SELECT 1 FROM {s}.saga WHERE saga_id = $1"),
            saga_save: format!(
                "WITH up AS ( \
                   UPDATE {s}.saga s SET status = $4, version = s.version + 1, doc = $5, \
                     lease_owner = $6, lease_fence = $7, \
                     fence_max = greatest(s.fence_max, coalesce($7, 0)), \
                     lease_expires_at = CASE WHEN $6::text IS NULL THEN NULL \
                       WHEN $8::bigint IS NULL THEN coalesce(s.lease_expires_at, statement_timestamp()) \
                       ELSE statement_timestamp() + $8 * interval '1 microsecond' END \
                   WHERE s.saga_id = $1 AND coalesce(s.lease_fence, 0) = $2 AND s.version = $3 \
                   RETURNING s.saga_id, s.version, s.lease_expires_at), \
                 ev AS (INSERT INTO {s}.saga_event (saga_id, event) \
                   SELECT up.saga_id, u.e FROM up, unnest($9::jsonb[]) WITH ORDINALITY AS u(e, n) \
                   ORDER BY u.n RETURNING 1) \
                 SELECT version, lease_expires_at, (SELECT count(*) FROM ev) FROM up"
            ),
            saga_state: format!(
                "SELECT version, coalesce(lease_fence, 0) FROM {s}.saga WHERE saga_id = $1"
            ),
            saga_history: format!(
                "SELECT event FROM {s}.saga_event WHERE saga_id = $1 ORDER BY seq"
            ),
            saga_list: {
                let page = |filter: &str| {
                    format!(
                        "SELECT {SAGA_COLS} FROM {s}.saga WHERE {filter} \
                         ORDER BY created_at DESC, saga_id DESC LIMIT $1 OFFSET $2"
                    )
                };
                let statuses = [
                    "pending",
                    "running",
                    "completed",
                    "compensating",
                    "compensated",
                    "compensation_failed",
                ];
                let tenant_only = statuses
                    .map(|status| {
                        format!(
                            "(SELECT {SAGA_COLS}, created_at, saga_id FROM {s}.saga \
                               WHERE tenant_id = $4 AND status = '{status}' \
                               ORDER BY created_at DESC, saga_id DESC LIMIT $1 + $2)"
                        )
                    })
                    .join(" UNION ALL ");
                [
                    page("TRUE"),
                    page("status = $3"),
                    format!(
                        "SELECT {SAGA_COLS} FROM ({tenant_only}) u \
                         ORDER BY created_at DESC, saga_id DESC LIMIT $1 OFFSET $2"
                    ),
                    page("tenant_id = $4 AND status = $3"),
                ]
            },
            saga_recoverable: format!(
                "SELECT saga_id FROM {s}.saga WHERE status IN ('running', 'compensating') \
                   AND coalesce(lease_expires_at, '-infinity'::timestamptz) <= statement_timestamp() \
                 ORDER BY coalesce(lease_expires_at, '-infinity'::timestamptz) LIMIT $1"
            ),
            saga_delete: format!("DELETE FROM {s}.saga WHERE saga_id = $1"),
            task_submit_notify: format!(
                "WITH ins AS ({submit}) \
                 SELECT ins.*, pg_notify('{task_channel}', ins.queue)::text FROM ins"
            ),
            task_submit: submit,
            task_by_key: format!(
                "SELECT {TASK_COLS} FROM {s}.task WHERE queue = $1 AND idempotency_key = $2"
            ),
            task_get: format!("SELECT {TASK_COLS} FROM {s}.task WHERE task_id = $1"),
            task_exists: format!("SELECT status, claim FROM {s}.task WHERE task_id = $1"),
            task_claim: format!(
                "UPDATE {s}.task t SET {claim_set} WHERE t.task_id = $1 AND {claimable} \
                 RETURNING {TASK_COLS}"
            ),
            task_claim_next: format!(
                "WITH expired AS ( \
                   SELECT task_id FROM {s}.task WHERE queue = $1 AND status = 'claimed' \
                     AND lease_expires_at <= statement_timestamp() AND attempts < max_attempts \
                   ORDER BY lease_expires_at LIMIT 1 FOR UPDATE SKIP LOCKED), \
                 ready AS ( \
                   SELECT task_id FROM {s}.task WHERE queue = $1 AND status = 'pending' \
                     AND available_at <= statement_timestamp() \
                   ORDER BY available_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED), \
                 pick AS (SELECT task_id AS picked FROM expired UNION ALL SELECT task_id FROM ready LIMIT 1) \
                 UPDATE {s}.task t SET {claim_set} FROM pick WHERE t.task_id = pick.picked \
                 RETURNING {TASK_COLS}"
            ),
            task_complete: finish(&format!(
                "status = 'completed', result = $3, error = NULL, \
                 finished_at = statement_timestamp(), history = {}",
                close_last("completed", "NULL")
            )),
            task_fail: finish(&format!(
                "status = CASE WHEN t.attempts >= t.max_attempts THEN 'failed' ELSE 'pending' END, \
                 error = $3, \
                 available_at = CASE WHEN t.attempts >= t.max_attempts THEN t.available_at \
                   ELSE statement_timestamp() + $4 * interval '1 microsecond' END, \
                 finished_at = CASE WHEN t.attempts >= t.max_attempts THEN statement_timestamp() END, \
                 history = {}",
                close_last("failed", "$3")
            )),
            task_fail_permanently: finish(&format!(
                "status = 'failed', error = $3, finished_at = statement_timestamp(), history = {}",
                close_last("failed", "$3")
            )),
            task_renew: format!(
                "UPDATE {s}.task t SET \
                   lease_expires_at = statement_timestamp() + $3 * interval '1 microsecond', \
                   updated_at = statement_timestamp() \
                 WHERE t.task_id = $1 AND t.status = 'claimed' AND t.claim = $2 \
                 RETURNING {RECEIPT_COLS}"
            ),
            task_release: finish(&format!(
                "status = 'pending', attempts = greatest(t.attempts - 1, 0), \
                 available_at = statement_timestamp(), history = {}",
                close_last("released", "NULL")
            )),
            task_retry: format!(
                "UPDATE {s}.task t SET status = 'pending', attempts = 0, finished_at = NULL, \
                   available_at = statement_timestamp(), updated_at = statement_timestamp() \
                 WHERE t.task_id = $1 AND t.status = 'failed' \
                 RETURNING {RECEIPT_COLS}"
            ),
            task_list: {
                // One index range per status, merged in submission order.
                let merged = |filter: &str| {
                    let parts = ["pending", "claimed", "completed", "failed"].map(|status| {
                        format!(
                            "(SELECT {TASK_COLS}, seq FROM {s}.task WHERE {filter} \
                               status = '{status}' ORDER BY seq LIMIT $1 + $2)"
                        )
                    });
                    format!(
                        "SELECT {TASK_COLS} FROM ({}) u ORDER BY seq LIMIT $1 OFFSET $2",
                        parts.join(" UNION ALL ")
                    )
                };
                let page = |filter: &str| {
                    format!(
                        "SELECT {TASK_COLS} FROM {s}.task WHERE {filter} \
                         ORDER BY seq LIMIT $1 OFFSET $2"
                    )
                };
                [
                    merged(""),
                    merged("queue = $3 AND"),
                    page("status = $4"),
                    page("queue = $3 AND status = $4"),
                ]
            },
            task_delete: format!("DELETE FROM {s}.task WHERE task_id = $1"),
            task_requeue: format!(
                "WITH due AS (SELECT task_id FROM {s}.task \
                   WHERE status = 'claimed' AND lease_expires_at <= statement_timestamp() \
                   ORDER BY lease_expires_at LIMIT $1 + 1 FOR UPDATE SKIP LOCKED), \
                 moved AS (UPDATE {s}.task t SET \
                   status = CASE WHEN t.attempts >= t.max_attempts THEN 'failed' ELSE 'pending' END, \
                   error = CASE WHEN t.attempts >= t.max_attempts THEN 'lease expired' ELSE t.error END, \
                   finished_at = CASE WHEN t.attempts >= t.max_attempts THEN statement_timestamp() END, \
                   available_at = statement_timestamp(), updated_at = statement_timestamp(), \
                   lease_worker = NULL, lease_expires_at = NULL, history = {} \
                   FROM (SELECT task_id FROM due LIMIT $1) d WHERE t.task_id = d.task_id RETURNING 1) \
                 SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM due)",
                close_last("lease_expired", "NULL")
            ),
            task_purge: format!(
                "WITH due AS (SELECT task_id FROM {s}.task \
                   WHERE status IN ('completed', 'failed') \
                     AND finished_at <= statement_timestamp() - $2 * interval '1 microsecond' \
                   ORDER BY finished_at LIMIT $1 + 1 FOR UPDATE SKIP LOCKED), \
                 gone AS (DELETE FROM {s}.task t USING (SELECT task_id FROM due LIMIT $1) d \
                   WHERE t.task_id = d.task_id RETURNING 1) \
                 SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM due)"
            ),
            stats: format!(
                "SELECT 'idempotency' AS kind, '' AS status, count(*) FROM {s}.idempotency \
                 UNION ALL SELECT 'saga', status, count(*) FROM {s}.saga GROUP BY status \
                 UNION ALL SELECT 'task', status, count(*) FROM {s}.task GROUP BY status \
                 UNION ALL SELECT 'lock', '', count(*) FROM {s}.lock \
                   WHERE token IS NOT NULL AND expires_at > statement_timestamp()"
            ),
            schema: schema.to_owned(),
            idem_channel,
            task_channel,
        }
    }
}
