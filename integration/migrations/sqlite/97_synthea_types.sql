-- Claim, ExplanationOfBenefit, ImagingStudy, MedicationAdministration, SupplyDelivery, Media and
-- Device are served: resources of those types imported before are queued, placed in their
-- patient's compartment and indexed from their JSON when the database is opened.
INSERT OR IGNORE INTO reindex_queue (resource_type, resource_id)
SELECT resource_type, id FROM resources
WHERE resource_type IN ('Claim', 'ExplanationOfBenefit', 'ImagingStudy',
    'MedicationAdministration', 'SupplyDelivery', 'Media', 'Device');
