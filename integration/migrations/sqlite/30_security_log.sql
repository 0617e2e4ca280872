-- The security log: refused probes against patients the caller cannot reach, refused
-- administration of a region by callers without a role in it, and principals slowed down
-- for too many refusals. Operators read it (`healthcloud security-log`); it is never part of
-- a patient's audit trail, so nobody can write into a stranger's log.
CREATE TABLE security_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    sub TEXT NOT NULL,
    role TEXT NOT NULL,
    org TEXT,
    fhir_user TEXT,
    app TEXT,
    region TEXT,
    request TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX security_log_by_sub ON security_log (sub, id);
