-- A merchant's own consignee protection, only ever stricter than the
-- platform's (protection.*): its own quiet window ('' for none), caps (0
-- for the platform's), announce mode ('' for the platform's) and whether
-- its calls are to be recorded. No row is no protection of its own.
CREATE TABLE merchant_protection (
    merchant          TEXT PRIMARY KEY REFERENCES merchants(id),
    quiet_hours       TEXT NOT NULL DEFAULT '',
    calls_per_day     INTEGER NOT NULL DEFAULT 0,
    calls_per_binding INTEGER NOT NULL DEFAULT 0,
    announce          TEXT NOT NULL DEFAULT '',
    record            INTEGER NOT NULL DEFAULT 0,
    updated_at        BIGINT NOT NULL
);
-- The clip that names a merchant to the consignee in the notice: 8 kHz
-- mono samples, at most 5 s (80 KB of 16-bit PCM), in the encoding they
-- were uploaded in: 'pcm16', 'alaw' or 'ulaw'.
CREATE TABLE merchant_clips (
    merchant   TEXT PRIMARY KEY REFERENCES merchants(id),
    encoding   TEXT NOT NULL,
    samples    BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
