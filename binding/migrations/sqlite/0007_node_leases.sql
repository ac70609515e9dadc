-- One row per node.id: which process serves that node now. `vnum serve`
-- takes its node's lease at start, renews it while it serves and releases
-- it when it stops cleanly. A second process with the same node.id finds
-- the lease held and refuses to start; only the lease's holder closes the
-- node's open CDR rows as interrupted. A released lease keeps its row, so
-- the next holder knows whether the last one stopped cleanly.
CREATE TABLE node_leases (
    node        TEXT PRIMARY KEY,
    -- token names one taking of the lease: a renewal, the release and the
    -- taking over of an expired lease each change the row only while it
    -- still carries the token they read.
    token       TEXT NOT NULL,
    -- host and pid name the holder for people; machine names its kernel
    -- boot and process namespace, so that a process with the same machine
    -- can tell whether pid still runs.
    host        TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    machine     TEXT NOT NULL,
    taken_at    INTEGER NOT NULL,
    renewed_at  INTEGER NOT NULL,
    -- expires_at is the last renewal plus the lease's lifetime: past it,
    -- the holder is taken to be gone and anyone may take the lease.
    expires_at  INTEGER NOT NULL,
    -- released_at is set when the holder let the lease go on a clean stop.
    released_at INTEGER
);
