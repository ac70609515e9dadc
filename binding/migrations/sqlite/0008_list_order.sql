-- Listings (CDR exports, binding lists) read rows in the order (time, id)
-- and page by it: WHERE (started_at, id) > (cursor) ORDER BY started_at, id.
-- These indexes hold that order, so a listing reads its rows in index
-- order, one by one, with no sort that would gather them first, and a page
-- starts at its cursor without reading the rows before it. They replace
-- the indexes on the time alone, of which they are extensions.
CREATE INDEX cdrs_started_id ON cdrs(started_at, id);
CREATE INDEX cdrs_merchant_started_id ON cdrs(merchant, started_at, id);
DROP INDEX cdrs_started;
DROP INDEX cdrs_merchant_started;
CREATE INDEX bindings_created_id ON bindings(created_at, id);
CREATE INDEX bindings_merchant_created_id ON bindings(merchant, created_at, id);
