-- The calls that rang a consignee, counted for the caps of consignee
-- protection while a cap is in force: a call counts when vnum sends the
-- consignee's INVITE, answered or not. The caller is counted as the caps
-- count it: a merchant ('merchant', its id) with all its accounts, or one
-- PSTN number ('number', E.164). The rows hold B (consignee) and are in no
-- export.
CREATE TABLE rings (
    binding_id  TEXT NOT NULL,
    consignee   TEXT NOT NULL,
    caller_kind TEXT NOT NULL,
    caller      TEXT NOT NULL,
    cdr_id      TEXT NOT NULL DEFAULT '',
    at          INTEGER NOT NULL
);
-- calls_per_day: one caller's calls to one consignee in a local day.
CREATE INDEX rings_caller ON rings(consignee, caller_kind, caller, at);
-- calls_per_binding: every call over one binding's life.
CREATE INDEX rings_binding ON rings(binding_id);
