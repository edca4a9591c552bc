-- The index of uploaded files (file import, blobs): the bytes live in S3 under
-- `assets/<project_id>/<id>`; a row is written `pending` when an upload URL is handed out and
-- becomes `completed` once the stored object's ETag and size were checked (or `error`, with the
-- reason). Operational records like objects, not events: an import's story is its ingestion's.
CREATE TABLE file_uploads (
    id            text        PRIMARY KEY CHECK (length(id) = 10),
    project_id    text        NOT NULL,
    user_id       text        NOT NULL,
    file_name     text        NOT NULL,
    file_type     text        NOT NULL,
    file_size     bigint,
    etag          text,
    upload_status text        NOT NULL DEFAULT 'pending'
                              CHECK (upload_status IN ('pending', 'completed', 'error')),
    upload_error  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX file_uploads_project ON file_uploads (project_id, created_at DESC);
