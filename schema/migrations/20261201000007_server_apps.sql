-- Third-party applications registered on this server (the original's `server_apps`), beside
-- the default apps the code defines. Part of the credential store: the secret is what an app
-- presents with an access code; it is shown to the app's author (and admins), as the original
-- does, so it is kept as issued rather than as a digest.
CREATE TABLE server_apps (
    id                       text PRIMARY KEY CHECK (length(id) = 10),
    secret                   text        NOT NULL,
    name                     text        NOT NULL,
    description              text        NOT NULL,
    terms_and_conditions_link text,
    logo                     text,
    public                   boolean     NOT NULL DEFAULT false,
    redirect_url             text        NOT NULL,
    scopes                   text[]      NOT NULL,
    author_id                text,
    created_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX server_apps_author ON server_apps (author_id);
