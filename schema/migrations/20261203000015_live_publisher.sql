-- Where the live-event publisher (one leader per database) got to, so a leader taking over
-- after another process died resumes there instead of at the read model's checkpoint, which
-- would skip what was applied but not yet published. At least once: a leader that dies
-- between publishing and recording may have its last events published again.
CREATE TABLE live_publisher (
    channel        text        PRIMARY KEY,
    transaction_id text        NOT NULL,
    position       bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
