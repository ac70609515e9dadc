-- Where each account's softphone registered (vnum is its registrar, RFC
-- 3261 §10), kept in the store so that any node can reach a softphone that
-- registered with another one. One row per account: a REGISTER replaces it,
-- an unREGISTER deletes it, and a row past expires_at counts as absent.
CREATE TABLE registrations (
    "user"     TEXT PRIMARY KEY,
    -- contact is the Contact URI the softphone gave.
    contact    TEXT NOT NULL,
    -- source is the host:port the REGISTER came from: requests go there,
    -- so that a softphone behind NAT is reached.
    source     TEXT NOT NULL,
    transport  TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    -- node is the node.id that took the REGISTER.
    node       TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
