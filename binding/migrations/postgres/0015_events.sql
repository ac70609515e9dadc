-- The PostgreSQL form of sqlite/0015_events.sql: the same tables, columns
-- and indexes; the events of a call's record are written by one trigger
-- function, which the INSERT and UPDATE triggers on cdrs call.

CREATE TABLE webhooks (
    merchant   TEXT PRIMARY KEY REFERENCES merchants(id),
    url        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE events (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    type          TEXT NOT NULL,
    merchant      TEXT NOT NULL,
    call_id       TEXT,
    sequence      INTEGER NOT NULL,
    created_at    BIGINT NOT NULL,
    data          TEXT,
    status        TEXT NOT NULL DEFAULT 'pending',
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       BIGINT NOT NULL DEFAULT 0,
    claim         TEXT,
    claimed_until BIGINT NOT NULL DEFAULT 0,
    last_error    TEXT NOT NULL DEFAULT '',
    delivered_at  BIGINT
);
CREATE UNIQUE INDEX events_call_sequence ON events(call_id, sequence) WHERE call_id IS NOT NULL;
CREATE INDEX events_due ON events(next_at) WHERE status = 'pending';
CREATE INDEX events_failed ON events(seq) WHERE status = 'failed';
CREATE INDEX events_merchant_seq ON events(merchant, seq);
CREATE INDEX events_delivered ON events(delivered_at) WHERE status = 'delivered';

-- cdr_events writes the events a change of a CDR row reports, in the
-- statement that made it (see sqlite/0015_events.sql). The row is locked
-- by that statement, so two writes of one call number its events one
-- after the other, and a delivery that makes the call's next event due
-- (it locks the row too) sees the events written before it or is seen by
-- those written after.
CREATE FUNCTION cdr_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was_bound    boolean := false;
    was_ringing  boolean := false;
    was_answered boolean := false;
    was_ended    boolean := false;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        was_bound := OLD.binding_id <> '';
        was_ringing := OLD.ringing_at IS NOT NULL;
        was_answered := OLD.answered_at IS NOT NULL;
        was_ended := OLD.ended_at IS NOT NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM webhooks WHERE merchant = NEW.merchant) THEN
        RETURN NULL;
    END IF;
    INSERT INTO events (id, type, merchant, call_id, sequence, created_at, next_at)
    SELECT 'ev_' || lpad(to_hex(t.at), 16, '0') || right(replace(gen_random_uuid()::text, '-', ''), 16), t.type, NEW.merchant, NEW.id,
        (SELECT COALESCE(MAX(sequence), 0) FROM events WHERE call_id = NEW.id) + row_number() OVER (ORDER BY t.k),
        t.at,
        CASE WHEN row_number() OVER (ORDER BY t.k) = 1
            AND NOT EXISTS (SELECT 1 FROM events WHERE call_id = NEW.id AND status <> 'delivered')
            THEN 0 ELSE 9223372036854775807 END
    FROM (VALUES
        (1, 'call.started', NEW.started_at, NOT was_bound AND NEW.binding_id <> ''),
        (2, 'call.ringing', NEW.ringing_at, NOT was_ringing AND NEW.ringing_at IS NOT NULL),
        (3, 'call.answered', NEW.answered_at, NOT was_answered AND NEW.answered_at IS NOT NULL),
        (4, 'call.refused', NEW.ended_at, NOT was_ended AND NEW.ended_at IS NOT NULL
            AND NEW.disposition IN ('quiet_hours', 'capped', 'blocked', 'declined', 'restricted')),
        (5, 'call.ended', NEW.ended_at, NOT was_ended AND NEW.ended_at IS NOT NULL)
    ) AS t(k, type, at, happened)
    WHERE t.happened
    ORDER BY t.k;
    RETURN NULL;
END
$$;

CREATE TRIGGER cdrs_events_insert AFTER INSERT ON cdrs FOR EACH ROW
    WHEN (NEW.merchant <> '' AND (NEW.binding_id <> '' OR NEW.ringing_at IS NOT NULL
        OR NEW.answered_at IS NOT NULL OR NEW.ended_at IS NOT NULL))
    EXECUTE FUNCTION cdr_events();

CREATE TRIGGER cdrs_events_update AFTER UPDATE ON cdrs FOR EACH ROW
    WHEN (NEW.merchant <> '' AND ((OLD.binding_id = '' AND NEW.binding_id <> '')
        OR (OLD.ringing_at IS NULL AND NEW.ringing_at IS NOT NULL)
        OR (OLD.answered_at IS NULL AND NEW.answered_at IS NOT NULL)
        OR (OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL)))
    EXECUTE FUNCTION cdr_events();

ALTER TABLE bindings ADD COLUMN end_reported INTEGER NOT NULL DEFAULT 0;
UPDATE bindings SET end_reported = 1 WHERE end_at <= (extract(epoch FROM now()) * 1000000000)::bigint;
CREATE INDEX bindings_end_unreported ON bindings(end_at) WHERE end_reported = 0;
