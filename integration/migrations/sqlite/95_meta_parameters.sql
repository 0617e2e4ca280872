-- Every type is searchable by _lastUpdated, _tag, _security and _profile (from meta); strings
-- are indexed in their Danish and accent-free forms and as written (`:exact`); dates without a
-- zone are Copenhagen's: every resource is queued and reindexed from its JSON when the
-- database is opened (`EmbeddedStore::reindex_queued`, which logs its progress).
INSERT OR IGNORE INTO reindex_queue (resource_type, resource_id)
SELECT resource_type, id FROM resources;
