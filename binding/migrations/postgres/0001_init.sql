-- The PostgreSQL form of sqlite/0001_init.sql: the same tables, columns,
-- defaults and indexes. Times are BIGINT Unix nanoseconds in UTC; money is
-- BIGINT micro-units; flags are INTEGER 0/1 as on SQLite, so that every
-- query runs unchanged on both.

CREATE TABLE merchants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- "user" is a reserved word in PostgreSQL: it is quoted wherever it is used.
CREATE TABLE accounts (
    "user"     TEXT PRIMARY KEY,
    merchant   TEXT NOT NULL REFERENCES merchants(id),
    ha1_md5    TEXT NOT NULL,
    ha1_sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX accounts_merchant ON accounts(merchant);

CREATE TABLE numbers (
    host       TEXT PRIMARY KEY,
    -- Extensions on this host have a digit sum = ext_check (mod 10): a code
    -- in which any two members differ in at least two digits.
    ext_check  INTEGER NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE bindings (
    id           TEXT PRIMARY KEY,
    merchant     TEXT NOT NULL REFERENCES merchants(id),
    order_id     TEXT NOT NULL,
    host         TEXT NOT NULL REFERENCES numbers(host),
    extension    TEXT NOT NULL,
    consignee    TEXT NOT NULL,
    order_status TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    released_at  BIGINT,
    -- end_at is when the binding stops being active: expires_at, or
    -- released_at after a release.
    end_at       BIGINT NOT NULL,
    -- closed is set once the binding is known to have ended; it frees the
    -- (merchant, order) for a new binding.
    closed       INTEGER NOT NULL DEFAULT 0,
    -- retired is set once the quarantine after end_at has passed; it frees
    -- the (host, extension) for reuse.
    retired      INTEGER NOT NULL DEFAULT 0
);
-- The last guards against double allocation, whatever the code above does.
CREATE UNIQUE INDEX bindings_open_order ON bindings(merchant, order_id) WHERE closed = 0;
CREATE UNIQUE INDEX bindings_live_slot ON bindings(host, extension) WHERE retired = 0;
CREATE INDEX bindings_order ON bindings(merchant, order_id);
CREATE INDEX bindings_host ON bindings(host, retired);

CREATE TABLE cdrs (
    id             TEXT PRIMARY KEY,
    call_id        TEXT NOT NULL,
    merchant       TEXT NOT NULL,
    binding_id     TEXT NOT NULL,
    order_id       TEXT NOT NULL,
    host           TEXT NOT NULL,
    extension      TEXT NOT NULL,
    direction      TEXT NOT NULL,
    caller         TEXT NOT NULL,
    started_at     BIGINT NOT NULL,
    ringing_at     BIGINT,
    answered_at    BIGINT,
    ended_at       BIGINT,
    talk_seconds   INTEGER NOT NULL DEFAULT 0,
    billed_minutes INTEGER NOT NULL DEFAULT 0,
    fee            BIGINT NOT NULL DEFAULT 0,
    disposition    TEXT NOT NULL DEFAULT '',
    hangup_by      TEXT NOT NULL DEFAULT '',
    sip_status     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX cdrs_merchant_started ON cdrs(merchant, started_at);
CREATE INDEX cdrs_started ON cdrs(started_at);
CREATE INDEX cdrs_open ON cdrs(ended_at) WHERE ended_at IS NULL;
