-- The credential store: secrets and their digests, which must never enter the immutable event
-- log (a password hash or token digest kept forever could not be shredded). Mutable, written
-- by the auth module only. The facts around them (a user registered) are events as usual.

-- Email addresses claimed by accounts: uniqueness must hold before the user's stream exists.
CREATE TABLE user_emails (
    email      text PRIMARY KEY,
    user_id    text        NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_passwords (
    user_id       text PRIMARY KEY,
    password_hash text        NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Personal and app tokens: a 10-hex id and a 32-hex secret; only a keyed digest is stored.
CREATE TABLE api_tokens (
    id           text PRIMARY KEY CHECK (length(id) = 10),
    digest       bytea       NOT NULL,
    user_id      text        NOT NULL,
    name         text        NOT NULL,
    scopes       text[]      NOT NULL,
    last_chars   text        NOT NULL,
    app_id       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens (user_id) WHERE revoked_at IS NULL;

-- Single-use access codes of the login flow.
CREATE TABLE auth_access_codes (
    code       text PRIMARY KEY,
    app_id     text        NOT NULL,
    user_id    text        NOT NULL,
    challenge  text        NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Refresh tokens: rotated on every use (the old one stops working).
CREATE TABLE refresh_tokens (
    id         text PRIMARY KEY CHECK (length(id) = 10),
    digest     bytea       NOT NULL,
    app_id     text        NOT NULL,
    user_id    text        NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
