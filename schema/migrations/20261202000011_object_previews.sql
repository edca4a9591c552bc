-- Preview images of versions' root objects, one row per (project, object), as the original's
-- `object_preview`: the preview worker's operational record (like webhook deliveries, not
-- events; the images are derived data, re-rendered at will). The PNGs live in S3 under
-- `previews/<project_id>/<object_id>/<angle>.png`; `angles` names the ones stored.
-- A version with no row yet is pending: its job is queued (the `speckle` projection enqueues
-- one per created version).
CREATE TABLE object_previews (
    project_id   text        NOT NULL,
    object_id    text        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('rendering', 'done', 'empty', 'failed')),
    attempts     integer     NOT NULL DEFAULT 0,
    angles       text[]      NOT NULL DEFAULT '{}',
    error        text,
    duration_ms  integer,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, object_id)
);
CREATE INDEX object_previews_failed ON object_previews (updated_at) WHERE status = 'failed';
