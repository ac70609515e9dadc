-- recorded says the call has a recording (README "Recordings"): set when
-- its file is begun at the bridge, so that a call a crash cut keeps it;
-- 0 for every call before recordings.
ALTER TABLE cdrs ADD COLUMN recorded INTEGER NOT NULL DEFAULT 0;
