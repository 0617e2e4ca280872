-- The types whose R4 definition has a business identifier are searchable by it
-- (`identifier=system|value`, as conditional creates and updates name what they mean): every
-- resource of those types is queued and reindexed from its JSON when the database is opened
-- (`EmbeddedStore::reindex_queued`).
INSERT INTO reindex_queue (resource_type, resource_id)
SELECT resource_type, id FROM resources
WHERE resource_type IN (
    'Condition', 'MedicationStatement', 'MedicationRequest', 'AllergyIntolerance',
    'Immunization', 'Encounter', 'Procedure', 'DiagnosticReport', 'Composition',
    'CarePlan', 'CareTeam', 'Goal', 'ServiceRequest', 'Task', 'Appointment',
    'EpisodeOfCare', 'QuestionnaireResponse', 'Consent'
)
ON CONFLICT DO NOTHING;
