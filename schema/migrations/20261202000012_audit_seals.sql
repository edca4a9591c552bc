-- Seals: Ed25519-signed checkpoints of the whole log. Each covers every event up to a log
-- cursor (transaction id, position: the readable horizon when it was made) and signs a digest
-- over every stream's head (id, version, position, hash) at that cursor, so a later change,
-- deletion or reordering of any covered event no longer matches. Appended only, like events.
CREATE TABLE audit_seals (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cursor_transaction_id xid8        NOT NULL,
    cursor_position       bigint      NOT NULL,
    streams               bigint      NOT NULL,
    digest                bytea       NOT NULL,
    public_key            bytea       NOT NULL,
    signature             bytea       NOT NULL,
    sealed_at             timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION audit_seals_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'seals are append-only: % on audit_seals is refused', TG_OP
        USING ERRCODE = 'SE403';
END
$$;
CREATE TRIGGER audit_seals_immutable BEFORE UPDATE OR DELETE ON audit_seals
    FOR EACH ROW EXECUTE FUNCTION audit_seals_refuse_change();
