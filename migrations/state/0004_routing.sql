-- Edge routing: where clients from some jurisdictions must be served, and the custom domains
-- the routers serve each app on.
ALTER TABLE apps ADD COLUMN origin_bound TEXT NOT NULL DEFAULT '[]'; -- JSON array of jurisdictions
ALTER TABLE apps ADD COLUMN domains TEXT NOT NULL DEFAULT '[]';      -- JSON array of host names

-- One row per custom domain, so a domain belongs to at most one app.
CREATE TABLE app_domains (
    domain TEXT PRIMARY KEY,
    app    TEXT NOT NULL
);
CREATE INDEX app_domains_by_app ON app_domains (app);

-- Edge routers, so each can forward to the others' regions.
CREATE TABLE routers (
    name          TEXT PRIMARY KEY,
    region        TEXT NOT NULL,
    url           TEXT NOT NULL,
    registered_at INTEGER NOT NULL
);
