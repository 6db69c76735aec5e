-- bgops schema, version 1. `{schema}` is replaced by the configured schema name.
-- Every timestamp is the database's (statement_timestamp()); the application's clock is
-- never stored, except a saga's own created_at/updated_at inside its document.

CREATE TABLE {schema}.idempotency (
    tenant_id        text        NOT NULL,
    key              text        NOT NULL,
    user_id          text,
    operation_type   text        NOT NULL,
    fingerprint      text,
    parameters       jsonb,
    status           text        NOT NULL CHECK (status IN ('in_progress', 'completed', 'failed')),
    token            text        NOT NULL,
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    lease_expires_at timestamptz,
    completed_at     timestamptz,
    result           jsonb,
    error            text,
    payload          bytea,
    -- set by a duplicate that waits for the outcome: complete then sends a NOTIFY
    -- (only then, so that lifecycles nobody waits for pay nothing for it)
    notify           boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, key)
-- room on each page, so that complete (which changes no indexed column) is a HOT update
) WITH (fillfactor = 85);
-- purge_expired: the oldest expiries first.
CREATE INDEX idempotency_expires ON {schema}.idempotency (expires_at);

CREATE TABLE {schema}.saga (
    saga_id          text        PRIMARY KEY,
    tenant_id        text        NOT NULL,
    idempotency_key  text,
    -- every status (the tenant listing merges one range per status)
    status           text        NOT NULL CHECK (status IN ('pending', 'running', 'completed',
                         'compensating', 'compensated', 'compensation_failed')),
    version          bigint      NOT NULL,
    -- the highest fence ever handed out on this saga (fences never repeat)
    fence_max        bigint      NOT NULL DEFAULT 0,
    lease_owner      text,
    lease_fence      bigint,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL,
    doc              jsonb       NOT NULL
-- room on each page: a save that keeps the status and lease expiry is a HOT update
) WITH (fillfactor = 80);
-- create_saga's dedupe by tenant and idempotency key.
CREATE UNIQUE INDEX saga_tenant_key ON {schema}.saga (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- list_sagas: newest first, by status, by tenant and status; by tenant alone as a merge
-- of its (tenant, status) ranges.
CREATE INDEX saga_created ON {schema}.saga (created_at DESC, saga_id DESC);
CREATE INDEX saga_status_created ON {schema}.saga (status, created_at DESC, saga_id DESC);
CREATE INDEX saga_tenant_created ON {schema}.saga (tenant_id, status, created_at DESC, saga_id DESC);
-- list_recoverable_sagas: active sagas by lease expiry (no lease sorts first).
CREATE INDEX saga_recoverable ON {schema}.saga ((coalesce(lease_expires_at, '-infinity'::timestamptz)))
    WHERE status IN ('running', 'compensating');

CREATE TABLE {schema}.saga_event (
    saga_id text   NOT NULL REFERENCES {schema}.saga (saga_id) ON DELETE CASCADE,
    seq     bigint GENERATED ALWAYS AS IDENTITY,
    event   jsonb  NOT NULL,
    PRIMARY KEY (saga_id, seq)
);

CREATE TABLE {schema}.lock (
    name       text        PRIMARY KEY,
    -- NULL while free: the row stays so that the fence keeps rising
    token      text,
    fence      bigint      NOT NULL,
    expires_at timestamptz
);
-- stats: locks held.
CREATE INDEX lock_held ON {schema}.lock (expires_at) WHERE token IS NOT NULL;

CREATE TABLE {schema}.task (
    task_id          text        PRIMARY KEY,
    -- submission order ("oldest first"): ids are not reliably ordered within a
    -- millisecond, and ids from a custom generator need not sort at all
    seq              bigint      GENERATED ALWAYS AS IDENTITY,
    queue            text        NOT NULL,
    task_type        text        NOT NULL,
    idempotency_key  text,
    payload          jsonb       NOT NULL,
    status           text        NOT NULL CHECK (status IN ('pending', 'claimed', 'completed', 'failed')),
    -- attempts used up (a release gives one back)
    attempts         integer     NOT NULL DEFAULT 0,
    -- claims ever made: the fencing number of the current claim, never repeated
    claim            integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL,
    result           jsonb,
    error            text,
    lease_worker     text,
    lease_expires_at timestamptz,
    history          jsonb       NOT NULL DEFAULT '[]',
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    available_at     timestamptz NOT NULL,
    finished_at      timestamptz
);
-- submit's dedupe, get_task_by_key.
CREATE UNIQUE INDEX task_queue_key ON {schema}.task (queue, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- claim_next: the oldest available pending task of a queue.
CREATE INDEX task_ready ON {schema}.task (queue, available_at, seq) WHERE status = 'pending';
-- claim_next (expired claims of a queue) and requeue_expired_tasks.
CREATE INDEX task_queue_leases ON {schema}.task (queue, lease_expires_at) WHERE status = 'claimed';
CREATE INDEX task_leases ON {schema}.task (lease_expires_at) WHERE status = 'claimed';
-- purge_tasks: finished tasks by finish time.
CREATE INDEX task_finished ON {schema}.task (finished_at) WHERE status IN ('completed', 'failed');
-- list_tasks: oldest first, by status, by queue and status; all tasks, or a queue's, as a
-- merge of the four status ranges. Every status change rewrites each index entry of the
-- row, so the task table keeps few indexes.
CREATE INDEX task_status_seq ON {schema}.task (status, seq);
CREATE INDEX task_queue_status_seq ON {schema}.task (queue, status, seq);
