-- The object store: Speckle objects, content-addressed by the client's 32-character id, stored
-- once per project. Not events: a model can hold millions of objects; versions reference the
-- root id. `data` is the object's JSON exactly as sent, so a round trip returns equal JSON.
CREATE TABLE objects (
    project_id           text        NOT NULL,
    id                   text        NOT NULL CHECK (length(id) = 32),
    speckle_type         text        NOT NULL DEFAULT 'Base',
    total_children_count integer,
    closure              jsonb,
    data                 text        NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, id)
);
