-- A late notice names the statement payment it repeats either by its match key ('key') or as a notice that may
-- be it although the keys differ ('rival': its amount dated within the date tolerance, or another amount on its
-- date). A payment's own notice may still come after a rival named it, so only one late notice WITH ITS KEY
-- names a payment; rivals are not limited (each is held, and recovered when its own line is applied).
ALTER TABLE bank_payments ADD COLUMN late_match TEXT CHECK (late_match IN ('key', 'rival'));
UPDATE bank_payments SET late_match = 'key' WHERE status = 'duplicate';
ALTER TABLE bank_payments ADD CONSTRAINT bank_payments_late_match_of_duplicates
    CHECK ((status = 'duplicate') = (late_match IS NOT NULL));
DROP INDEX bank_payments_one_late_notice;
CREATE UNIQUE INDEX bank_payments_one_keyed_late_notice ON bank_payments (duplicate_of) WHERE late_match = 'key';
-- The statement payments a late notice names are found by the notice's duplicate_of.
CREATE INDEX bank_payments_by_original ON bank_payments (duplicate_of) WHERE duplicate_of IS NOT NULL;
