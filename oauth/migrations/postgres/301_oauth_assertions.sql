-- Client assertions (private_key_jwt) seen, by the hash of their `jti`, until they expire:
-- an assertion is used once.
CREATE TABLE oauth_assertions (
    jti_hash TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
