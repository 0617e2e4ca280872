-- PostgreSQL schema; migrations/sqlite holds the same tables for SQLite.
-- Current version of every stored FHIR resource, as JSON, with the columns the policy engine
-- and paging need without parsing it: its patient compartment and its primary date.
CREATE TABLE resources (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    patient_id TEXT,
    sort_date BIGINT,
    content TEXT NOT NULL,
    PRIMARY KEY (resource_type, id)
);
CREATE INDEX resources_by_patient ON resources (patient_id, resource_type, sort_date);

-- Token, reference and string search parameters (strings are stored lower-cased).
CREATE TABLE search_token (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    param TEXT NOT NULL,
    system TEXT NOT NULL,
    value TEXT NOT NULL
);
-- Probes "does this resource have this token" (covering, so it wins over the value index).
CREATE INDEX search_token_by_resource ON search_token (resource_type, resource_id, param, system, value);
-- Finds resources by token when no patient narrows the search (identifier lookups).
CREATE INDEX search_token_by_value ON search_token (resource_type, param, value, system, resource_id);

-- Date search parameters as inclusive ranges of epoch milliseconds.
CREATE TABLE search_date (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    param TEXT NOT NULL,
    lo BIGINT NOT NULL,
    hi BIGINT NOT NULL
);
CREATE INDEX search_date_by_resource ON search_date (resource_type, resource_id, param, lo, hi);

-- Deny provisions of active Consent resources, flattened so every access can check them cheaply.
-- resource_type '' means every type; NULL period bounds mean open-ended.
CREATE TABLE consent_denial (
    consent_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    period_start BIGINT,
    period_end BIGINT
);
CREATE INDEX consent_denial_by_actor ON consent_denial (actor, patient_id);
CREATE INDEX consent_denial_by_consent ON consent_denial (consent_id);
