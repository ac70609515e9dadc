-- The node that took each call (README "CDRs and billing" `node`): with several nodes on one
-- store, a node that restarts closes as interrupted only its own open rows.
-- Rows written before this migration belong to the one node there was and
-- keep an empty node.
ALTER TABLE cdrs ADD COLUMN node TEXT NOT NULL DEFAULT '';
CREATE INDEX cdrs_open_by_node ON cdrs (node) WHERE ended_at IS NULL;
