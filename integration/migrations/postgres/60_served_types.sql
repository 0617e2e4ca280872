-- Practitioner, PractitionerRole, Location, Medication, Provenance, DocumentReference,
-- Composition, CarePlan, CareTeam, Goal, ServiceRequest, Task, Appointment, EpisodeOfCare and
-- QuestionnaireResponse are now served: what was imported of them was kept, indexed only by
-- its compartment, and is queued here to be indexed by its type's own search parameters
-- (and placed in the compartment its definition names, e.g. Task.for) when the database is
-- opened (`EmbeddedStore::reindex_queued`).
INSERT INTO reindex_queue (resource_type, resource_id)
SELECT resource_type, id FROM resources
WHERE resource_type IN ('Practitioner', 'PractitionerRole', 'Location', 'Medication',
    'Provenance', 'DocumentReference', 'Composition', 'CarePlan', 'CareTeam', 'Goal',
    'ServiceRequest', 'Task', 'Appointment', 'EpisodeOfCare', 'QuestionnaireResponse')
ON CONFLICT DO NOTHING;
