-- Jobs that must run one after another (deliveries to one webhook) share an ordering key:
-- a worker claims a job only when no earlier job with its key is running or due.
ALTER TABLE jobs ADD COLUMN ordering_key text;
CREATE INDEX jobs_ordering ON jobs (ordering_key, id)
    WHERE ordering_key IS NOT NULL AND status IN ('pending', 'running');

-- Webhook signing secrets: credentials, so kept out of the immutable event log (the events
-- only say whether a secret is set) and deleted with the webhook.
CREATE TABLE webhook_secrets (
    webhook_id  text PRIMARY KEY,
    secret      text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per delivery (one event to one webhook), written by the delivery worker. `body` is
-- the exact bytes sent, so every retry and a manual redelivery carry the same signature.
-- status: 0 pending, 1 in flight, 2 delivered, 3 failed (the original's codes).
CREATE TABLE webhook_deliveries (
    id              text PRIMARY KEY,
    webhook_id      text        NOT NULL,
    project_id      text        NOT NULL,
    event_name      text        NOT NULL,
    source_position bigint,
    body            text        NOT NULL,
    status          smallint    NOT NULL DEFAULT 0,
    status_info     text        NOT NULL DEFAULT 'Pending',
    attempts        integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_update     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, last_update DESC);

-- Every HTTP attempt of a delivery.
CREATE TABLE webhook_delivery_attempts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id     text        NOT NULL REFERENCES webhook_deliveries (id),
    started_at      timestamptz NOT NULL DEFAULT now(),
    latency_ms      integer     NOT NULL,
    response_status integer,
    response_body   text,
    error           text,
    succeeded       boolean     NOT NULL
);
CREATE INDEX webhook_delivery_attempts_by_delivery ON webhook_delivery_attempts (delivery_id, id);
