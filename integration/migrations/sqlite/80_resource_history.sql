-- Earlier versions of every resource, kept when a version is replaced (update, a re-import)
-- or deleted: read back by `vread` and `_history`, never searched. A deletion is a version of
-- its own without content, so a deleted resource answers 410 rather than 404. Who opted out of
-- what and when (a Consent's versions) is kept this way too.
CREATE TABLE resource_history (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    patient_id TEXT,
    content TEXT,
    PRIMARY KEY (resource_type, id, version_id)
);
