-- Observations are now searchable by `identifier` (what a client's conditional create,
-- `If-None-Exist: identifier=system|value`, finds them by). Those that carry one are queued
-- and reindexed from their JSON when the database is opened (`EmbeddedStore::reindex_queued`).
INSERT OR IGNORE INTO reindex_queue (resource_type, resource_id)
SELECT resource_type, id FROM resources
WHERE resource_type = 'Observation' AND json_extract(content, '$.identifier') IS NOT NULL;
