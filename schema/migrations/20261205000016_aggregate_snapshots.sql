-- Aggregate snapshots: a stream's folded command state (its aggregate, as decisions see it) at
-- one stream version, so the first command on a big project in a fresh process folds only the
-- events after it. A cache: never authoritative (a command appends expecting the version it
-- decided on, so the log still decides), any row may be deleted at any time (the fold then
-- starts from the stream's first event), and a row of another `shape` (the state's layout, the
-- fold's version and the events' schema version) is ignored and replaced.
CREATE TABLE aggregate_snapshots (
    stream_id      text        PRIMARY KEY,
    shape          text        NOT NULL,
    stream_version bigint      NOT NULL CHECK (stream_version >= 1),
    state          text        NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now()
);
