-- Statement lines' keys lead with a date, so the lines of a day, which a statement brings together, are
-- inserted into a few neighbouring index pages instead of a thousand scattered ones per chunk (each touched
-- page is written to the WAL, in full after a checkpoint). The identity is unchanged: the fingerprint hashes
-- the booking date, so (account, booking date, fingerprint, occurrence) is unique exactly when (account,
-- fingerprint, occurrence) is. A notice looks its line up by its document date, payer and number. The day
-- index is the identity's prefix now.
-- The ALTER locks the table: rather than queue behind a long report (and stall every notice behind itself),
-- it gives up after a while and the migration can be run again.
SET LOCAL lock_timeout = '30s';
ALTER TABLE statement_lines DROP CONSTRAINT statement_lines_account_fingerprint_occurrence_key,
    ADD CONSTRAINT statement_lines_identity UNIQUE (account, booking_date, fingerprint, occurrence);
DROP INDEX statement_lines_by_day;
DROP INDEX statement_lines_by_document;
CREATE INDEX statement_lines_by_document ON statement_lines (document_date, payer_inn, document_number)
    WHERE direction = 'credit';
