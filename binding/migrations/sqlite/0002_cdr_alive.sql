-- alive_at is the last time an answered call was known to be going on
-- (README "CDRs and billing": its row is kept current while it is answered). After a crash
-- the row is closed at alive_at with the talk time known then.
ALTER TABLE cdrs ADD COLUMN alive_at INTEGER;
