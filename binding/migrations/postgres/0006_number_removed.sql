-- removed_at is when a host number left the pool (`vnum number remove`),
-- NULL while it is in it. The row stays: the bindings it carried, which
-- bills count, refer to it. A removed number is not allocated, not taken
-- as a host number by signalling, and not listed; adding it again puts it
-- back.
ALTER TABLE numbers ADD COLUMN removed_at BIGINT;
