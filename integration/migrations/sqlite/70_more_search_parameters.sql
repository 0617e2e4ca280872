-- Patient (gender, family, given, address…), Observation (status, encounter, combo-code),
-- Condition (category, onset-date, encounter), MedicationRequest (intent, authoredon,
-- encounter), DiagnosticReport (code, category, status, result, encounter) and Encounter
-- (class, type, status) are searchable by more of their R4 parameters: every resource of
-- those types is queued and reindexed from its JSON when the database is opened
-- (`EmbeddedStore::reindex_queued`).
INSERT OR IGNORE INTO reindex_queue (resource_type, resource_id)
SELECT resource_type, id FROM resources
WHERE resource_type IN ('Patient', 'Observation', 'Condition', 'MedicationRequest',
    'DiagnosticReport', 'Encounter');
