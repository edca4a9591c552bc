-- What each projection's tables and fold looked like when its live generation was built
-- (a fingerprint of its table definitions and version). A projection whose code no longer
-- matches is rebuilt by `strata migrate`; the live runner refuses to fold into it until then.
ALTER TABLE projection_checkpoints ADD COLUMN definition text;
