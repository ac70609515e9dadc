-- The SIP dialogs of a call's legs while the call goes on: leg_a the
-- caller's, leg_b the one vnum dialled, each in signalling's own text, set
-- when the leg is answered. A node that starts again after a crash sends a
-- BYE in each dialog of the calls it closes as interrupted, so that no leg
-- stays up (and billed by the carrier) until the peer's own timers end it.
-- They hold numbers the CDR does not (leg B's names the consignee): they are
-- in no export, and the row forgets them when it ends.
ALTER TABLE cdrs ADD COLUMN leg_a TEXT;
ALTER TABLE cdrs ADD COLUMN leg_b TEXT;
