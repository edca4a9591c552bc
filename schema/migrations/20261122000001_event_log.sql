-- The event log: one append-only table, the system's source of truth.
--
-- Ordering and late commits: positions come from an identity sequence, so a slow transaction
-- can commit a smaller position after a faster one committed a larger. Readers therefore
-- order by (transaction_id, position) and read only rows whose transaction id is below the
-- current snapshot's xmin: every transaction below xmin has finished, so no row can later
-- appear behind a reader's cursor. A long-open transaction holds the horizon back; the
-- API exports that stall as a metric.

CREATE TABLE events (
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_id       text        NOT NULL CHECK (length(stream_id) BETWEEN 3 AND 200),
    stream_version  bigint      NOT NULL CHECK (stream_version >= 1),
    event_type      text        NOT NULL CHECK (length(event_type) BETWEEN 1 AND 200),
    schema_version  integer     NOT NULL CHECK (schema_version >= 1),
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}',
    command_id      uuid,
    recorded_at     timestamptz NOT NULL,
    hash            bytea       NOT NULL CHECK (length(hash) = 32),
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, stream_version)
);

CREATE INDEX events_transaction_position ON events (transaction_id, position);

-- Idempotent commands: a command id is stored once with the outcome of its append, so a
-- retried command gets the first answer instead of appending twice.
CREATE TABLE processed_commands (
    command_id      uuid PRIMARY KEY,
    stream_id       text        NOT NULL,
    first_position  bigint      NOT NULL,
    last_position   bigint      NOT NULL,
    first_version   bigint      NOT NULL,
    last_version    bigint      NOT NULL,
    transaction_id  xid8        NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);

-- Immutability, enforced by the database for every role including the owner.
CREATE FUNCTION events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on events is refused', TG_OP
        USING ERRCODE = 'SE403';
END
$$;

CREATE TRIGGER events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

-- No NOTIFY trigger here on purpose: NOTIFY takes a cluster-wide lock at commit, which would
-- serialise every appending transaction. `EventLog` sends a coalesced `strata_events`
-- notification after its appends commit instead (see schema::event_log::Notifier).

-- Appends events to one stream in one round trip.
--
-- p_expected_version: -1 = any, 0 = the stream must not exist, n = the stream must be at n.
-- Each event's hash chains it to the previous event of its stream:
--   hash = sha256(prev_hash || utf8(stream_id \n version \n event_type \n schema_version \n
--                                    recorded_at_unix_micros \n payload::text \n metadata::text))
-- with 32 zero bytes before the first event. `schema::chain` recomputes the same in Rust.
CREATE FUNCTION append_events(
    p_stream_id        text,
    p_expected_version bigint,
    p_command_id       uuid,
    p_event_types      text[],
    p_schema_versions  integer[],
    p_payloads         jsonb[],
    p_metadata         jsonb
) RETURNS TABLE (out_position bigint, out_stream_version bigint, out_transaction_id text)
LANGUAGE plpgsql
AS $$
DECLARE
    v_head      bigint;
    v_prev      bytea;
    v_now       timestamptz := now();
    v_micros    text := ((extract(epoch FROM now()) * 1000000)::bigint)::text;
    v_xid       text := pg_current_xact_id()::text;
    v_first_pos bigint;
    v_pos       bigint;
    i           integer;
BEGIN
    SELECT e.stream_version, e.hash INTO v_head, v_prev
    FROM events e WHERE e.stream_id = p_stream_id
    ORDER BY e.stream_version DESC LIMIT 1;
    IF NOT FOUND THEN
        v_head := 0;
        v_prev := decode(repeat('00', 32), 'hex');
    END IF;
    IF p_expected_version >= 0 AND p_expected_version <> v_head THEN
        RAISE EXCEPTION 'stream % is at version %, expected %', p_stream_id, v_head, p_expected_version
            USING ERRCODE = 'SE409', DETAIL = v_head::text;
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_event_types, 1), 0) LOOP
        v_prev := sha256(v_prev || convert_to(
            p_stream_id || E'\n' || (v_head + i)::text || E'\n' || p_event_types[i] || E'\n'
            || p_schema_versions[i]::text || E'\n' || v_micros || E'\n'
            || p_payloads[i]::text || E'\n' || p_metadata::text, 'UTF8'));
        INSERT INTO events (stream_id, stream_version, event_type, schema_version, payload,
                            metadata, command_id, recorded_at, hash)
        VALUES (p_stream_id, v_head + i, p_event_types[i], p_schema_versions[i], p_payloads[i],
                p_metadata, p_command_id, v_now, v_prev)
        RETURNING position INTO v_pos;
        IF i = 1 THEN v_first_pos := v_pos; END IF;
        out_position := v_pos;
        out_stream_version := v_head + i;
        out_transaction_id := v_xid;
        RETURN NEXT;
    END LOOP;
    IF p_command_id IS NOT NULL AND v_pos IS NOT NULL THEN
        INSERT INTO processed_commands (command_id, stream_id, first_position, last_position,
                                        first_version, last_version, transaction_id)
        VALUES (p_command_id, p_stream_id, v_first_pos, v_pos, v_head + 1,
                v_head + array_length(p_event_types, 1), v_xid::xid8);
    END IF;
END
$$;

-- The runtime role: reads and appends, never rewrites. Deployments make their login role a
-- member of it. Read-model tables created later by the migrating role are writable by it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'strata_runtime') THEN
        CREATE ROLE strata_runtime NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL; -- created concurrently
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'cannot create role strata_runtime: grant SELECT, INSERT on events by hand';
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'strata_runtime') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO strata_runtime', current_schema());
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO strata_runtime', current_schema());
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO strata_runtime', current_schema());
        REVOKE ALL ON events FROM strata_runtime;
        GRANT SELECT, INSERT ON events TO strata_runtime;
        REVOKE ALL ON processed_commands FROM strata_runtime;
        GRANT SELECT, INSERT ON processed_commands TO strata_runtime;
    END IF;
END
$$;
