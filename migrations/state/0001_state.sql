-- The replicated state machine. Every row here is written only by applying committed Raft
-- entries, in one transaction per batch together with sm_meta.last_applied.

-- last_applied and last_membership, as openraft JSON.
CREATE TABLE sm_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Cluster-wide settings decided through Raft: signing_key, bootstrapped_at.
CREATE TABLE cluster_settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    role        TEXT NOT NULL,
    apps        TEXT,             -- JSON array of app names, NULL for no limit
    created_at  INTEGER NOT NULL, -- unix seconds
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE regions (
    name        TEXT PRIMARY KEY,
    country     TEXT NOT NULL,
    latitude    REAL NOT NULL,
    longitude   REAL NOT NULL,
    version     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE apps (
    name        TEXT PRIMARY KEY,
    image       TEXT NOT NULL,
    replicas    INTEGER NOT NULL,
    port        INTEGER NOT NULL,
    residency   TEXT NOT NULL,    -- JSON array of jurisdictions
    regions     TEXT,             -- JSON array of region names, NULL when not pinned
    env         TEXT NOT NULL,    -- JSON object
    health      TEXT,             -- JSON health check
    version     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Operator-defined jurisdiction groups (EU and EEA are built in).
CREATE TABLE jurisdiction_groups (
    name      TEXT PRIMARY KEY,
    countries TEXT NOT NULL       -- JSON array of ISO codes
);
