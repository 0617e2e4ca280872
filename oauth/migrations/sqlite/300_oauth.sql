-- The authorization server's state. Codes and refresh tokens are kept as SHA-256 hashes
-- only: a copy of the database issues nothing.

-- An authorization request while the user signs in at the identity provider and decides:
-- `id` is the state sent to the provider; `browser` the hash of the cookie that binds the
-- request to the browser that made it.
CREATE TABLE oauth_requests (
    id TEXT PRIMARY KEY,
    browser TEXT NOT NULL,
    request TEXT NOT NULL,
    login_nonce TEXT NOT NULL,
    login_verifier TEXT NOT NULL,
    user_claims TEXT,
    expires_at INTEGER NOT NULL
);

-- Everything issued from one authorization (its code, refresh tokens and access tokens):
-- revoked as one.
CREATE TABLE oauth_families (
    family TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE oauth_codes (
    code_hash TEXT PRIMARY KEY,
    family TEXT NOT NULL REFERENCES oauth_families (family),
    granted TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);

-- Rotated on every use: a refresh token used twice revokes its family.
CREATE TABLE oauth_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family TEXT NOT NULL REFERENCES oauth_families (family),
    granted TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX oauth_refresh_tokens_by_family ON oauth_refresh_tokens (family);

-- EHR launches: the context the EHR chose, for one client, used once.
CREATE TABLE oauth_launches (
    id_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    context TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
