-- Regional workers: nodes, releases, instances (desired and observed), placement status and
-- the audit log of every placement decision.

ALTER TABLE apps ADD COLUMN cpu_millis INTEGER NOT NULL DEFAULT 100;
ALTER TABLE apps ADD COLUMN memory_mb INTEGER NOT NULL DEFAULT 128;

CREATE TABLE nodes (
    name            TEXT PRIMARY KEY,
    region          TEXT NOT NULL,
    cpu_millis      INTEGER NOT NULL,
    memory_mb       INTEGER NOT NULL,
    labels          TEXT NOT NULL,    -- JSON object
    advertise_host  TEXT NOT NULL,
    status          TEXT NOT NULL,    -- ready | draining | down
    generation      INTEGER NOT NULL, -- bumped whenever the node's assignments change
    registered_at   INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- Each release fixes what its instances run: image, port, env, health, resources.
CREATE TABLE releases (
    app         TEXT NOT NULL,
    number      INTEGER NOT NULL,
    config      TEXT NOT NULL,    -- JSON ReleaseConfig
    status      TEXT NOT NULL,    -- rolling | active | halted | superseded
    reason      TEXT,
    deadline_at INTEGER NOT NULL, -- unix seconds by which a rolling release must be healthy
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (app, number)
);

-- desired is what the control plane wants (run | stop); state is what the agent last reported.
CREATE TABLE instances (
    id          TEXT PRIMARY KEY,
    app         TEXT NOT NULL,
    release     INTEGER NOT NULL,
    node        TEXT NOT NULL,
    desired     TEXT NOT NULL,
    state       TEXT NOT NULL,
    exit_code   INTEGER,
    address     TEXT,
    detail      TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX instances_by_app ON instances (app, desired);
CREATE INDEX instances_by_node ON instances (node, desired);

-- What the scheduler could not place, per app: JSON list of {release, count, reason}.
CREATE TABLE app_status (
    app      TEXT PRIMARY KEY,
    unplaced TEXT NOT NULL
);

CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    app       TEXT NOT NULL,
    kind      TEXT NOT NULL,      -- placed | stopped | refused | release
    instance  TEXT,
    node      TEXT,
    region    TEXT,
    country   TEXT,
    policy    TEXT NOT NULL,
    detail    TEXT NOT NULL
);
CREATE INDEX audit_by_app ON audit (app, seq);
