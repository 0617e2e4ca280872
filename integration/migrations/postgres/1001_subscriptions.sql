-- What was written that a subscription topic may be about, in the transaction of the write
-- (so no change is lost to a crash between the write and its notification), in order.
CREATE TABLE change_events (
    seq BIGSERIAL PRIMARY KEY,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    patient_id TEXT,
    deleted BIGINT NOT NULL,
    recorded BIGINT NOT NULL
);

-- Topic-based subscriptions (R4 backport): who made each (the claims its notifications are
-- checked under), the Subscription as made (without its secret), the key of its websockets'
-- binding tokens (never shown), where its delivery stands (the last change handled, the
-- back-off after failures, the node delivering it now), and when it was switched off (kept a
-- day, for its status).
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    subscriber TEXT NOT NULL,
    resource TEXT NOT NULL,
    topic TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    secret TEXT NOT NULL,
    binding_key TEXT NOT NULL,
    end_at BIGINT NOT NULL,
    events_since_start BIGINT NOT NULL,
    cursor BIGINT NOT NULL,
    last_sent BIGINT NOT NULL,
    retry_at BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    created BIGINT NOT NULL,
    ended_at BIGINT NOT NULL
);
CREATE INDEX subscriptions_owner ON subscriptions (owner);

-- ServiceRequest is searched by performer (the organization asked to perform it): those
-- stored before are indexed again when the database is opened.
INSERT INTO reindex_queue (resource_type, resource_id)
SELECT resource_type, id FROM resources WHERE resource_type = 'ServiceRequest'
ON CONFLICT DO NOTHING;
