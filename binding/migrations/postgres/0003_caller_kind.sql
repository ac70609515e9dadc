-- caller_kind says what a CDR's caller is: 'account' (a merchant's SIP
-- login), 'number' (a PSTN caller, E.164), 'consignee' (B calling back) or
-- '' (unknown). A call back dials the last caller by this kind instead of
-- guessing it from the string, since a number can look like a user name.
ALTER TABLE cdrs ADD COLUMN caller_kind TEXT NOT NULL DEFAULT '';

-- Rows written before the kind was stored get it derived once, by the same
-- rule as sqlite/0003_caller_kind.sql: an account's user is that account;
-- a caller shaped like a phone number (E.164, or an 11-digit mobile
-- number) is a number; anything else stays unknown.
UPDATE cdrs SET caller_kind = CASE
    WHEN direction = 'callback' THEN 'consignee'
    WHEN caller = '' THEN ''
    WHEN caller IN (SELECT "user" FROM accounts) THEN 'account'
    WHEN caller ~ '^\+[1-9][0-9]{7,14}$' THEN 'number'
    WHEN caller ~ '^1[3-9][0-9]{9}$' THEN 'number'
    ELSE ''
END;

-- The call back's lookup of the last caller of a binding.
CREATE INDEX cdrs_binding_started ON cdrs(binding_id, started_at);
