-- Call events (README "Call events"): an outbox. Each event is a row
-- written in the same transaction as the change it reports, and delivery
-- workers send it to the merchant's endpoint afterwards; nothing on a
-- call's path waits for a merchant's server.

-- A merchant's one endpoint. The secret signs every delivery, so it is
-- kept as given (it cannot be hashed) and only ever shown masked.
CREATE TABLE webhooks (
    merchant   TEXT PRIMARY KEY REFERENCES merchants(id),
    url        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Events are written only for merchants with an endpoint.
CREATE TABLE events (
    -- seq orders the rows as written; id is the event's public name: the
    -- time of what it reports in hex then 64 random bits, so that new ids
    -- land at the end of their unique index instead of anywhere in it.
    seq           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    type          TEXT NOT NULL,
    merchant      TEXT NOT NULL,
    -- call_id is the id of the call's CDR; NULL for an event of no call.
    call_id       TEXT,
    -- sequence numbers the events of one call 1, 2, 3 ... (1 for an event
    -- of no call); a call's events are delivered in this order.
    sequence      INTEGER NOT NULL,
    -- created_at is when what the event reports happened.
    created_at    INTEGER NOT NULL,
    -- data is the event's JSON data; NULL for the events of a call's own
    -- record (started, ringing, answered, refused, ended), whose data is
    -- read from the CDR row as it was when the event was written: the
    -- fields each shows do not change afterwards.
    data          TEXT,
    -- status: pending, delivered or failed (kept until retried by hand).
    status        TEXT NOT NULL DEFAULT 'pending',
    attempts      INTEGER NOT NULL DEFAULT 0,
    -- next_at is when the next attempt may be made. An event written
    -- while an earlier event of its call is not delivered waits with
    -- 9223372036854775807 (never), and the delivery of the event before it
    -- makes it due: only the first undelivered event of each call is ever
    -- due, so that the workers looking for due events (events_due) never
    -- pass over the events waiting behind them.
    next_at       INTEGER NOT NULL DEFAULT 0,
    -- claim names the delivery attempt that holds the event until
    -- claimed_until: no other worker (node) sends it meanwhile.
    claim         TEXT,
    claimed_until INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT NOT NULL DEFAULT '',
    delivered_at  INTEGER
);
CREATE UNIQUE INDEX events_call_sequence ON events(call_id, sequence) WHERE call_id IS NOT NULL;
CREATE INDEX events_due ON events(next_at) WHERE status = 'pending';
-- Only failed events are listed by status often enough to need an index
-- (pending ones are found by events_due); an index over every status
-- would be rewritten on each delivery.
CREATE INDEX events_failed ON events(seq) WHERE status = 'failed';
CREATE INDEX events_merchant_seq ON events(merchant, seq);
CREATE INDEX events_delivered ON events(delivered_at) WHERE status = 'delivered';

-- The events of a call's record are written by the database itself, in
-- the statement that changes the row (the call's own writes stay one
-- statement each): call.started when the call reaches a binding,
-- call.ringing when B rings, call.answered, and when the row ends
-- call.refused (the protection rules' dispositions) then call.ended.
CREATE TRIGGER cdrs_events_insert AFTER INSERT ON cdrs
WHEN NEW.merchant <> ''
    AND (NEW.binding_id <> '' OR NEW.ringing_at IS NOT NULL OR NEW.answered_at IS NOT NULL OR NEW.ended_at IS NOT NULL)
    AND EXISTS (SELECT 1 FROM webhooks WHERE merchant = NEW.merchant)
BEGIN
    INSERT INTO events (id, type, merchant, call_id, sequence, created_at, next_at)
    SELECT 'ev_' || printf('%016x', t.at) || lower(hex(randomblob(8))), t.type, NEW.merchant, NEW.id,
        (SELECT COALESCE(MAX(sequence), 0) FROM events WHERE call_id = NEW.id) + row_number() OVER (ORDER BY t.k),
        t.at,
        CASE WHEN row_number() OVER (ORDER BY t.k) = 1
            AND NOT EXISTS (SELECT 1 FROM events WHERE call_id = NEW.id AND status <> 'delivered')
            THEN 0 ELSE 9223372036854775807 END
    FROM (
        SELECT 1 AS k, 'call.started' AS type, NEW.started_at AS at WHERE NEW.binding_id <> ''
        UNION ALL SELECT 2, 'call.ringing', NEW.ringing_at WHERE NEW.ringing_at IS NOT NULL
        UNION ALL SELECT 3, 'call.answered', NEW.answered_at WHERE NEW.answered_at IS NOT NULL
        UNION ALL SELECT 4, 'call.refused', NEW.ended_at WHERE NEW.ended_at IS NOT NULL
            AND NEW.disposition IN ('quiet_hours', 'capped', 'blocked', 'declined', 'restricted')
        UNION ALL SELECT 5, 'call.ended', NEW.ended_at WHERE NEW.ended_at IS NOT NULL
    ) AS t
    ORDER BY t.k;
END;

CREATE TRIGGER cdrs_events_update AFTER UPDATE ON cdrs
WHEN NEW.merchant <> ''
    AND ((OLD.binding_id = '' AND NEW.binding_id <> '')
        OR (OLD.ringing_at IS NULL AND NEW.ringing_at IS NOT NULL)
        OR (OLD.answered_at IS NULL AND NEW.answered_at IS NOT NULL)
        OR (OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL))
    AND EXISTS (SELECT 1 FROM webhooks WHERE merchant = NEW.merchant)
BEGIN
    INSERT INTO events (id, type, merchant, call_id, sequence, created_at, next_at)
    SELECT 'ev_' || printf('%016x', t.at) || lower(hex(randomblob(8))), t.type, NEW.merchant, NEW.id,
        (SELECT COALESCE(MAX(sequence), 0) FROM events WHERE call_id = NEW.id) + row_number() OVER (ORDER BY t.k),
        t.at,
        CASE WHEN row_number() OVER (ORDER BY t.k) = 1
            AND NOT EXISTS (SELECT 1 FROM events WHERE call_id = NEW.id AND status <> 'delivered')
            THEN 0 ELSE 9223372036854775807 END
    FROM (
        SELECT 1 AS k, 'call.started' AS type, NEW.started_at AS at WHERE OLD.binding_id = '' AND NEW.binding_id <> ''
        UNION ALL SELECT 2, 'call.ringing', NEW.ringing_at WHERE OLD.ringing_at IS NULL AND NEW.ringing_at IS NOT NULL
        UNION ALL SELECT 3, 'call.answered', NEW.answered_at WHERE OLD.answered_at IS NULL AND NEW.answered_at IS NOT NULL
        UNION ALL SELECT 4, 'call.refused', NEW.ended_at WHERE OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL
            AND NEW.disposition IN ('quiet_hours', 'capped', 'blocked', 'declined', 'restricted')
        UNION ALL SELECT 5, 'call.ended', NEW.ended_at WHERE OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL
    ) AS t
    ORDER BY t.k;
END;

-- end_reported is set once a binding's end (released, expired, or closed
-- for good) has been reported as binding.ended: a release sets it with
-- its own event, and a sweep sets it for bindings whose end_at passed,
-- one conditional UPDATE each, so that every end is reported once however
-- many nodes sweep. Bindings that ended before this migration are not
-- reported.
ALTER TABLE bindings ADD COLUMN end_reported INTEGER NOT NULL DEFAULT 0;
UPDATE bindings SET end_reported = 1 WHERE end_at <= CAST(strftime('%s', 'now') AS INTEGER) * 1000000000;
CREATE INDEX bindings_end_unreported ON bindings(end_at) WHERE end_reported = 0;
