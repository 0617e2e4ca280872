-- Group is served (a cohort the workforce keeps): Groups imported before are queued and
-- indexed from their JSON when the database is opened.
INSERT OR IGNORE INTO reindex_queue (resource_type, resource_id)
SELECT resource_type, id FROM resources WHERE resource_type = 'Group';
