-- Secrets that transactional mail carries: account email verification codes and password
-- reset tokens. Part of the credential store (mutable, never in the event log): the events
-- only say that a mail was asked for, under the row's id. `secret` holds the plain value
-- until the mail worker has handed the mail to the SMTP server, then it is erased and only
-- the keyed digest stays.
CREATE TABLE email_tokens (
    id         text PRIMARY KEY CHECK (length(id) = 10),
    purpose    text        NOT NULL CHECK (purpose IN ('verify_email', 'password_reset')),
    user_id    text        NOT NULL,
    email      text        NOT NULL,
    digest     bytea       NOT NULL,
    secret     text,
    attempts   integer     NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    sent_at    timestamptz
);
CREATE INDEX email_tokens_pending ON email_tokens (user_id, purpose, created_at DESC)
    WHERE used_at IS NULL;
