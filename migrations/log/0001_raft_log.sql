-- The Raft log and the vote. One row per log entry; the entry is openraft's Entry as JSON.
CREATE TABLE raft_log (
    idx   INTEGER PRIMARY KEY,
    entry TEXT NOT NULL
);

-- Single values: vote, last_purged (both JSON), node_id.
CREATE TABLE raft_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
