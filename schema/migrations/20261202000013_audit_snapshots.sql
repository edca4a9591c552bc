-- As-of snapshots: a project's audit view folded up to one of its events, kept so that a
-- replay folds only the events after the nearest one. A cache: never authoritative, any row
-- may be deleted (replays then fold from the project's first event), and rows of another fold
-- version are ignored.
CREATE TABLE audit_snapshots (
    project_id     text        NOT NULL,
    fold_version   integer     NOT NULL,
    stream_version bigint      NOT NULL,
    position       bigint      NOT NULL,
    recorded_at    timestamptz NOT NULL,
    view           jsonb       NOT NULL,
    PRIMARY KEY (project_id, fold_version, stream_version)
);
