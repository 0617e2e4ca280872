-- The key each export client's de-identified exports are pseudonymized under (its
-- pseudonyms stay the same from one export to the next, and differ from every other
-- client's): made at the client's first de-identified export.
CREATE TABLE export_keys (
    owner TEXT PRIMARY KEY,
    key TEXT NOT NULL
);
