-- Every app gets an integer id, handed out in creation order and never handed out again, and
-- the tables that grow with each create (releases, app_status, audit) are keyed by it instead
-- of by the app's name.
--
-- Why: a row keyed by name lands on a leaf page of its B-tree picked by the name, so a batch
-- of creates dirties one leaf per create in each such tree, and SQLite writes every dirtied
-- page whole to the WAL at commit and again at checkpoint. Keyed by an id that grows, the
-- rows of a batch share the tree's last leaves. Only `apps` itself stays reachable by name
-- (its unique index), so a create now dirties one leaf chosen by name instead of four.
--
-- Ids of deleted apps are kept in `deleted_apps`, so the audit of a name can still be read
-- after the app is gone (and after it was created again: all its incarnations).

CREATE TABLE apps_by_id (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL UNIQUE,
    image        TEXT NOT NULL,
    replicas     INTEGER NOT NULL,
    port         INTEGER NOT NULL,
    residency    TEXT NOT NULL,    -- JSON array of jurisdictions
    regions      TEXT,             -- JSON array of region names, NULL when not pinned
    env          TEXT NOT NULL,    -- JSON object
    health       TEXT,             -- JSON health check
    version      INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    cpu_millis   INTEGER NOT NULL DEFAULT 100,
    memory_mb    INTEGER NOT NULL DEFAULT 128,
    origin_bound TEXT NOT NULL DEFAULT '[]', -- JSON array of jurisdictions
    domains      TEXT NOT NULL DEFAULT '[]'  -- JSON array of host names
);
INSERT INTO apps_by_id (name, image, replicas, port, residency, regions, env, health, version,
                        created_at, updated_at, cpu_millis, memory_mb, origin_bound, domains)
    SELECT name, image, replicas, port, residency, regions, env, health, version,
           created_at, updated_at, cpu_millis, memory_mb, origin_bound, domains
    FROM apps ORDER BY created_at, name;
DROP TABLE apps;
ALTER TABLE apps_by_id RENAME TO apps;

-- Former ids of names whose app was deleted; `deleted_at` in unix seconds (0: before ids).
CREATE TABLE deleted_apps (
    name       TEXT NOT NULL,
    id         INTEGER NOT NULL,
    deleted_at INTEGER NOT NULL,
    PRIMARY KEY (name, id)
) WITHOUT ROWID;
-- Names the audit holds that no app has any more: one id each, after every app's.
INSERT INTO deleted_apps (name, id, deleted_at)
    SELECT app, (SELECT COALESCE(MAX(id), 0) FROM apps) + ROW_NUMBER() OVER (ORDER BY app), 0
    FROM (SELECT DISTINCT app FROM audit WHERE app NOT IN (SELECT name FROM apps));
-- New apps get ids after those too (AUTOINCREMENT continues from sqlite_sequence).
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'apps', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'apps');
UPDATE sqlite_sequence SET seq = MAX(seq, (SELECT COALESCE(MAX(id), 0) FROM deleted_apps))
    WHERE name = 'apps';

CREATE TABLE releases_by_id (
    app_id      INTEGER NOT NULL,
    number      INTEGER NOT NULL,
    app         TEXT NOT NULL,
    config      TEXT NOT NULL,    -- JSON ReleaseConfig
    status      TEXT NOT NULL,    -- rolling | active | halted | superseded
    reason      TEXT,
    deadline_at INTEGER NOT NULL, -- unix seconds by which a rolling release must be healthy
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (app_id, number)
) WITHOUT ROWID;
INSERT INTO releases_by_id (app_id, number, app, config, status, reason, deadline_at,
                            created_at, updated_at)
    SELECT a.id, r.number, r.app, r.config, r.status, r.reason, r.deadline_at, r.created_at,
           r.updated_at
    FROM releases r JOIN apps a ON a.name = r.app;
DROP TABLE releases;
ALTER TABLE releases_by_id RENAME TO releases;
CREATE INDEX releases_rolling ON releases (deadline_at) WHERE status = 'rolling';

CREATE TABLE app_status_by_id (
    app_id   INTEGER PRIMARY KEY,
    app      TEXT NOT NULL,
    unplaced TEXT NOT NULL
);
INSERT INTO app_status_by_id (app_id, app, unplaced)
    SELECT a.id, s.app, s.unplaced FROM app_status s JOIN apps a ON a.name = s.app;
DROP TABLE app_status;
ALTER TABLE app_status_by_id RENAME TO app_status;

-- NULL only for an entry about a name that never had an id (none is written so today).
ALTER TABLE audit ADD COLUMN app_id INTEGER;
UPDATE audit SET app_id = COALESCE(
    (SELECT id FROM apps WHERE name = audit.app),
    (SELECT MAX(id) FROM deleted_apps WHERE name = audit.app));
DROP INDEX audit_by_app;
CREATE INDEX audit_by_app ON audit (app_id, seq);
CREATE INDEX audit_without_id ON audit (app, seq) WHERE app_id IS NULL;
