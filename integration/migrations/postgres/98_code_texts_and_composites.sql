-- Codes are searchable by their text (`code:text`): each token row keeps the text of the code
-- it came from. Observations are searchable by a code and the value beside it together
-- (`code-value-quantity`, `component-code-value-quantity`): each quantity row keeps the codes
-- beside it. Fewer rows: a resource's `patient` is its row's `patient_id`, and `combo-code`
-- searches the rows of `code` and `component-code`. RiskAssessment is served (`probability`, a
-- number). Every resource is queued and reindexed from its JSON when the database is opened
-- (`EmbeddedStore::reindex_queued`, which logs its progress).
ALTER TABLE search_token ADD COLUMN text TEXT NOT NULL DEFAULT '';
ALTER TABLE search_quantity ADD COLUMN concept TEXT NOT NULL DEFAULT '';
INSERT INTO reindex_queue (resource_type, resource_id)
SELECT resource_type, id FROM resources
ON CONFLICT DO NOTHING;
