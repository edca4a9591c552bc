-- A version made from a model-ingestion bundle references `bundle.<project>.<model>.<version>`.
-- The worker that turns the bundle into ordinary Speckle objects stores the root collection
-- under that reference, so the viewer, GraphQL `object` and the object routes load a
-- bundle-born version like any other. Every other object keeps its 32-character hash id.
ALTER TABLE objects DROP CONSTRAINT objects_id_check;
ALTER TABLE objects ADD CONSTRAINT objects_id_check
    CHECK (length(id) = 32 OR (id LIKE 'bundle.%' AND length(id) <= 64));
