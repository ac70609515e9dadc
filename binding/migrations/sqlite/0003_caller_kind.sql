-- caller_kind says what a CDR's caller is: 'account' (a merchant's SIP
-- login), 'number' (a PSTN caller, E.164), 'consignee' (B calling back) or
-- '' (unknown). A call back dials the last caller by this kind instead of
-- guessing it from the string, since a number can look like a user name.
ALTER TABLE cdrs ADD COLUMN caller_kind TEXT NOT NULL DEFAULT '';

-- Rows written before the kind was stored get it derived once, the way the
-- call back used to guess it: a caller that is an account's user is that
-- account; else one shaped like a phone number as signalling writes it
-- (E.164, or an 11-digit mobile number) is a number; anything else stays
-- unknown and is never dialled.
UPDATE cdrs SET caller_kind = CASE
    WHEN direction = 'callback' THEN 'consignee'
    WHEN caller = '' THEN ''
    WHEN caller IN (SELECT user FROM accounts) THEN 'account'
    WHEN length(caller) BETWEEN 9 AND 16 AND caller GLOB '+[1-9]*'
        AND substr(caller, 2) NOT GLOB '*[^0-9]*' THEN 'number'
    WHEN length(caller) = 11 AND caller GLOB '1[3-9]*' AND caller NOT GLOB '*[^0-9]*' THEN 'number'
    ELSE ''
END;

-- The call back's lookup of the last caller of a binding.
CREATE INDEX cdrs_binding_started ON cdrs(binding_id, started_at);
