-- Quantity search parameters (Observation value-quantity, component-value-quantity): each
-- value as an inclusive range of millionths, with its unit (system and code); Observations are
-- queued and reindexed from their JSON when the database is opened.
CREATE TABLE search_quantity (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    param TEXT NOT NULL,
    system TEXT NOT NULL,
    code TEXT NOT NULL,
    lo BIGINT NOT NULL,
    hi BIGINT NOT NULL,
    PRIMARY KEY (resource_type, resource_id, param, system, code, lo, hi)
) WITHOUT ROWID;
INSERT OR IGNORE INTO reindex_queue (resource_type, resource_id)
SELECT resource_type, id FROM resources WHERE resource_type = 'Observation';
