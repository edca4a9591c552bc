-- Data keys for personal fields in events (crypto-shredding). A personal field (a user's
-- email, name, company, bio, avatar; an invited address) is stored in the log sealed under its
-- subject's key; deleting the key row erases the field everywhere while the log, its hash
-- chains and seals stay untouched. Subjects: `user:<id>`, `email:<sha-256 of the address>`.
CREATE TABLE personal_keys (
    subject    text        PRIMARY KEY,
    key_id     text        NOT NULL UNIQUE,
    key        bytea       NOT NULL CHECK (length(key) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Subjects whose keys were destroyed. Events appended before personal fields were sealed hold
-- them in clear; readers replace those of an erased subject as they replace sealed fields
-- whose key is gone, so read models, replays and rebuilds forget both alike.
CREATE TABLE erased_subjects (
    subject   text        PRIMARY KEY,
    erased_at timestamptz NOT NULL DEFAULT now()
);
