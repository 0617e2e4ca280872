-- What each region installed, with what grant: every runtime node serves from these rows.
-- The package is the signed envelope as verified at install; the component's bytes are kept
-- by each node under its sha256 and verified against the package whenever they are loaded.
CREATE TABLE region_installs (
    region TEXT NOT NULL,
    app TEXT NOT NULL,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    package TEXT NOT NULL,
    granted TEXT NOT NULL,
    installed_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    -- An upgrade asking for capabilities the installed version did not: it waits here until a
    -- region admin approves them, while the installed version keeps serving.
    pending_version TEXT,
    pending_sha256 TEXT,
    pending_package TEXT,
    pending_added TEXT,
    PRIMARY KEY (region, app)
);

-- Bumped by every change to region_installs, so nodes notice changes by polling one row
-- (and at once through NOTIFY on PostgreSQL).
CREATE TABLE region_changes (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL
);
INSERT INTO region_changes (id, seq) VALUES (1, 0);

-- Versions the store's revocation feed revoked, as applied by the runtime nodes.
CREATE TABLE runtime_revocations (
    app TEXT NOT NULL,
    version TEXT NOT NULL,
    reason TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (app, version)
);

-- The store key the feed must be signed with (pinned on first use) and how far it was read.
CREATE TABLE runtime_feed (
    id BIGINT PRIMARY KEY,
    store_key TEXT NOT NULL,
    next BIGINT NOT NULL
);

-- Every region admin action, allowed or refused.
CREATE TABLE region_audit (
    id BIGSERIAL PRIMARY KEY,
    at TEXT NOT NULL,
    region TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    app TEXT,
    detail TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX region_audit_by_region ON region_audit (region, id);
