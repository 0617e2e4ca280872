-- The app store: publishers and their keys, immutable app versions, and the revocation feed.
-- Times are RFC 3339 UTC text with microseconds, so they compare as text.

CREATE TABLE store_publishers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE store_keys (
    key_id TEXT PRIMARY KEY,
    publisher TEXT NOT NULL REFERENCES store_publishers (id),
    public_key TEXT NOT NULL,
    added_at TEXT NOT NULL,
    -- Set when revoked; with compromised_since, only what was published from then on is void.
    revoked_at TEXT,
    compromised_since TEXT,
    reason TEXT
);

-- One row per app: its latest version's catalog entry.
CREATE TABLE store_apps (
    publisher TEXT NOT NULL REFERENCES store_publishers (id),
    id TEXT NOT NULL,
    latest_version TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    -- Lower-cased name, id and description: what catalog text search matches.
    search_text TEXT NOT NULL,
    for_clinician BIGINT NOT NULL,
    for_patient BIGINT NOT NULL,
    for_citizen BIGINT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (publisher, id)
);

-- The capabilities the latest version requests, for catalog filtering.
CREATE TABLE store_app_capabilities (
    publisher TEXT NOT NULL,
    app TEXT NOT NULL,
    capability TEXT NOT NULL,
    PRIMARY KEY (publisher, app, capability)
);

CREATE TABLE store_versions (
    publisher TEXT NOT NULL,
    app TEXT NOT NULL,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    key_id TEXT NOT NULL REFERENCES store_keys (key_id),
    -- The signed package envelope exactly as verified.
    envelope TEXT NOT NULL,
    published_at TEXT NOT NULL,
    yanked_at TEXT,
    revoked_at TEXT,
    revoke_reason TEXT,
    PRIMARY KEY (publisher, app, version)
);
CREATE INDEX store_versions_sha256 ON store_versions (sha256);
CREATE INDEX store_versions_key ON store_versions (key_id);

-- Append-only; seq only grows, and entries become visible in seq order.
CREATE TABLE store_revocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    publisher TEXT NOT NULL,
    app TEXT,
    version TEXT,
    key_id TEXT,
    compromised_since TEXT,
    reason TEXT NOT NULL,
    at TEXT NOT NULL
);
