-- Projector checkpoints: where each projection has read the log up to, written in the same
-- transaction as its read-model changes. `generation` names the physical tables in use
-- (`<table>_g<generation>`); readers go through a view per table, swapped atomically by a
-- rebuild.
CREATE TABLE projection_checkpoints (
    projection      text PRIMARY KEY,
    generation      integer     NOT NULL DEFAULT 1,
    transaction_id  xid8        NOT NULL DEFAULT '0',
    position        bigint      NOT NULL DEFAULT 0,
    events_applied  bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    failed_at       timestamptz,
    error           text,
    error_position  bigint
);

-- Reaction jobs (the outbox): written by projectors in their checkpoint transaction, claimed
-- by workers with FOR UPDATE SKIP LOCKED under a lease, so a worker that dies mid-job leaves a
-- job another worker takes once the lease runs out.
CREATE TABLE jobs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text        NOT NULL,
    payload         jsonb       NOT NULL,
    dedupe_key      text UNIQUE,
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    max_attempts    integer     NOT NULL DEFAULT 10 CHECK (max_attempts >= 1),
    run_at          timestamptz NOT NULL DEFAULT now(),
    locked_by       text,
    locked_until    timestamptz,
    last_error      text,
    source_position bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);

CREATE INDEX jobs_claimable ON jobs (kind, run_at) WHERE status IN ('pending', 'running');

-- Every attempt, kept for operators and for delivery histories.
CREATE TABLE job_attempts (
    job_id      bigint      NOT NULL REFERENCES jobs (id),
    attempt     integer     NOT NULL,
    worker      text        NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome     text CHECK (outcome IN ('succeeded', 'failed', 'abandoned')),
    error       text,
    PRIMARY KEY (job_id, attempt)
);

-- Wake-up hint for workers.
CREATE FUNCTION jobs_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('strata_jobs', current_schema());
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify_insert
    AFTER INSERT ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify();
