-- no-transaction
-- Statement lines' keys lead with a date, so the lines of a day, which a statement brings together, are
-- inserted into a few neighbouring index pages instead of a thousand scattered ones per chunk; each commit
-- writes every page it touched to the WAL, so scattered keys made a million-line import write gigabytes
-- (measured with SQLite alone, a million rows in 1,000-row transactions: 71 s with the old keys, 30 s with
-- these). The identity is unchanged: the fingerprint hashes the booking date, so (account, booking date,
-- fingerprint, occurrence) is unique exactly when (account, fingerprint, occurrence) is. A notice looks its
-- line up by its document date, payer and number. The day index is the identity's prefix now.
--
-- SQLite cannot change a table's UNIQUE constraint, so the table is rebuilt, as its documentation prescribes
-- (https://www.sqlite.org/lang_altertable.html#otheralter): foreign keys off (outside a transaction), one
-- transaction, a foreign key check, foreign keys back on.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE statement_lines_new (
    id               INTEGER PRIMARY KEY,
    import_id        INTEGER NOT NULL REFERENCES statement_imports (id),
    account          TEXT NOT NULL,
    fingerprint      BLOB NOT NULL,
    occurrence       INTEGER NOT NULL CHECK (occurrence >= 1),
    direction        TEXT NOT NULL CHECK (direction IN ('credit', 'debit')),
    -- Only a customer's payment is reconciled against notices; reversals, transfers between our own accounts
    -- and the bank's own orders are kept for the statement's totals and never matched or applied.
    nature           TEXT NOT NULL DEFAULT 'payment'
                     CHECK (nature IN ('payment', 'reversal', 'own_transfer', 'bank_order')),
    amount           INTEGER NOT NULL CHECK (amount > 0),
    currency         TEXT NOT NULL,
    booking_date     TEXT NOT NULL,
    document_number  TEXT NOT NULL,
    document_date    TEXT NOT NULL,
    payer_inn        TEXT,
    payer_name       TEXT,
    payer_account    TEXT,
    payer_bik        TEXT,
    bank_ref         TEXT,
    end_to_end_id    TEXT,
    purpose          TEXT,
    source_line      INTEGER NOT NULL,
    raw              TEXT NOT NULL,
    UNIQUE (account, booking_date, fingerprint, occurrence)
);
INSERT INTO statement_lines_new SELECT id, import_id, account, fingerprint, occurrence, direction, nature, amount,
    currency, booking_date, document_number, document_date, payer_inn, payer_name, payer_account, payer_bik, bank_ref,
    end_to_end_id, purpose, source_line, raw FROM statement_lines;
DROP TABLE statement_lines;
ALTER TABLE statement_lines_new RENAME TO statement_lines;
CREATE INDEX statement_lines_by_document ON statement_lines (document_date, payer_inn, document_number)
    WHERE direction = 'credit';
CREATE INDEX statement_lines_by_import ON statement_lines (import_id, id);
-- Abort (the named CHECK fails) if a match or a discrepancy names a line that is not there.
CREATE TEMP TABLE statement_lines_rebuilt (
    dangling INTEGER NOT NULL CONSTRAINT every_match_and_discrepancy_names_a_stored_line CHECK (dangling = 0)
);
INSERT INTO statement_lines_rebuilt
    SELECT (SELECT COUNT(*) FROM pragma_foreign_key_check('statement_matches'))
         + (SELECT COUNT(*) FROM pragma_foreign_key_check('statement_discrepancies'));
DROP TABLE statement_lines_rebuilt;
COMMIT;
PRAGMA foreign_keys = ON;
