-- Identifiers inside references (`subject: {identifier: {value: "B"}}`) used to be indexed
-- under the reference parameter itself, without their system, so a search by id
-- (`Observation?subject=B`) also matched a resource that merely claimed B in an identifier.
-- They now live under `<param>:identifier` with their system, reachable only through the
-- `:identifier` modifier. `meta.source` is now indexed too (`_source`).
--
-- The old rows are removed here, at once, so no search by id can match them after this
-- migration; the resources concerned are queued and reindexed from their JSON by the server
-- (`EmbeddedStore::reindex_queued`, run when the database is opened), with the same code
-- that indexes every write.
CREATE TABLE reindex_queue (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    PRIMARY KEY (resource_type, resource_id)
) WITHOUT ROWID;

-- The reference parameters as they stood: in the old rows only a reference's identifier
-- has an empty system (a literal reference's system is its type).
INSERT INTO reindex_queue (resource_type, resource_id)
SELECT DISTINCT resource_type, resource_id FROM search_token
WHERE system = ''
  AND ((resource_type = 'Patient' AND param = 'general-practitioner')
    OR (resource_type = 'Observation' AND param = 'subject')
    OR (resource_type = 'AuditEvent' AND param = 'agent')
    OR (resource_type <> 'Patient' AND param = 'patient'));

DELETE FROM search_token
WHERE system = ''
  AND ((resource_type = 'Patient' AND param = 'general-practitioner')
    OR (resource_type = 'Observation' AND param = 'subject')
    OR (resource_type = 'AuditEvent' AND param = 'agent')
    OR (resource_type <> 'Patient' AND param = 'patient'));

INSERT OR IGNORE INTO reindex_queue (resource_type, resource_id)
SELECT resource_type, id FROM resources
WHERE json_extract(content, '$.meta.source') IS NOT NULL;
