-- The patient index: which patient of each upstream source is which healthcloud patient,
-- matched by CPR number at the source. Only identities are kept, never clinical data.
-- `source_patient` is NULL when the source was asked and holds no such patient, so it is
-- not asked again until the row is stale (`checked_at`).
CREATE TABLE source_patients (
    source TEXT NOT NULL,
    patient TEXT NOT NULL,
    source_patient TEXT,
    checked_at TEXT NOT NULL,
    PRIMARY KEY (source, patient)
);
CREATE INDEX source_patients_by_source_id ON source_patients (source, source_patient);
