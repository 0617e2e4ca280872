-- kv is partitioned by the patient in context: a patient's partition is reachable only from a
-- launch for that patient. `patient` is '' for the install-wide partition (the `kv-install`
-- capability). Values stored before partitioning cannot be attributed to a patient, so they
-- are kept under '(unattributed)', which no launch reaches (FHIR ids have no parentheses), and
-- removed with the install.
ALTER TABLE app_kv RENAME TO app_kv_unpartitioned;
CREATE TABLE app_kv (
    region TEXT NOT NULL,
    app TEXT NOT NULL,
    patient TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (region, app, patient, key)
) WITHOUT ROWID;
INSERT INTO app_kv (region, app, patient, key, value)
    SELECT region, app, '(unattributed)', key, value FROM app_kv_unpartitioned;
DROP TABLE app_kv_unpartitioned;
