-- Calls follow the order. ttl_end is when a binding's lifetime (its ttl)
-- ends. expires_at is when the binding ends unless it is released: ttl_end,
-- or earlier once the order is closed (order_closed_at plus
-- protection.after_close); after_sale before then puts it back to ttl_end.
-- Rental counts the binding's days up to expires_at, so it stops with the
-- binding.
ALTER TABLE bindings ADD COLUMN ttl_end INTEGER NOT NULL DEFAULT 0;
UPDATE bindings SET ttl_end = expires_at;
ALTER TABLE bindings ADD COLUMN order_closed_at INTEGER;
-- calls makes a binding one-way: 'both' (calls to the consignee and their
-- calls back), 'to_consignee' (no calls back) or 'from_consignee' (no
-- calls to the consignee).
ALTER TABLE bindings ADD COLUMN calls TEXT NOT NULL DEFAULT 'both';
