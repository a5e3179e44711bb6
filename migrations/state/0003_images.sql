-- Images pushed without a registry: the name -> digest mapping is replicated here; the tar
-- blobs (`docker save` output) stay on the disks of the servers listed in `holders`.
CREATE TABLE images (
    name      TEXT PRIMARY KEY,   -- image reference, e.g. web:1.4
    digest    TEXT NOT NULL,      -- sha256:<hex> of the tar
    size      INTEGER NOT NULL,   -- bytes
    holders   TEXT NOT NULL,      -- JSON array of server node ids holding the blob
    pushed_at INTEGER NOT NULL
);
