-- Blocks: a caller that may no longer ring a consignee, through any
-- binding to them, now or later, until an operator removes it. The caller
-- is a merchant (caller_kind 'merchant', caller its id: all its accounts)
-- or one PSTN number (caller_kind 'number', caller in E.164). merchant and
-- binding_id name the binding it was made through, which is how it is
-- listed: consignee is B, which no listing shows. source says who made it:
-- 'consignee' (their keys) or 'operator'.
CREATE TABLE blocks (
    id          TEXT PRIMARY KEY,
    consignee   TEXT NOT NULL,
    caller_kind TEXT NOT NULL,
    caller      TEXT NOT NULL,
    merchant    TEXT NOT NULL,
    binding_id  TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX blocks_pair ON blocks(consignee, caller_kind, caller);
CREATE INDEX blocks_merchant ON blocks(merchant, created_at, id);
