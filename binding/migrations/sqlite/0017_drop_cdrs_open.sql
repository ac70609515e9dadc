-- cdrs_open (the open rows, by ended_at) has served no query since the
-- open rows are looked up by node (0004: cdrs_open_by_node, the same rows
-- by node): every call's first and last write kept it for nothing.
DROP INDEX IF EXISTS cdrs_open;
