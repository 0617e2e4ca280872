-- App-private key-value state, one namespace per region install (region, publisher/app).
CREATE TABLE app_kv (
    region TEXT NOT NULL,
    app TEXT NOT NULL,
    key TEXT NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (region, app, key)
);
