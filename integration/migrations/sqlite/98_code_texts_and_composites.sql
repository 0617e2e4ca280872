-- Codes are searchable by their text (`code:text`), Observations by a code and its value
-- together (`code-value-quantity`, `component-code-value-quantity`), and RiskAssessment is
-- served (`probability`, a number): every resource is queued and reindexed from its JSON when
-- the database is opened (`EmbeddedStore::reindex_queued`, which logs its progress).
INSERT OR IGNORE INTO reindex_queue (resource_type, resource_id)
SELECT resource_type, id FROM resources;
