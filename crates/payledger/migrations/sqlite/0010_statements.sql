-- Bank statement reconciliation (issue 13): imported statements, their lines, the matches between lines and
-- bank payments, and the discrepancies an operator resolves.

-- bank_payments gains where a payment came from (a webhook notice, or a statement line an operator applied),
-- and the status 'duplicate': a notice that arrived after its line was applied from the statement, recorded
-- but never credited. SQLite cannot alter a CHECK constraint, so the table is rebuilt; every index on it is
-- recreated (all of them come from 0001; no later migration added one).
CREATE TABLE bank_payments_new (
    id               INTEGER PRIMARY KEY,
    operation_id     BLOB NOT NULL UNIQUE,
    amount           INTEGER NOT NULL CHECK (amount > 0),
    currency         TEXT NOT NULL,
    payer_inn        TEXT NOT NULL,
    document_number  TEXT NOT NULL,
    document_date    TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('received', 'applied', 'failed', 'duplicate')),
    received_at      TEXT NOT NULL,
    applied_at       TEXT,
    transaction_id   BLOB,
    failure_reason   TEXT,
    source           TEXT NOT NULL DEFAULT 'webhook' CHECK (source IN ('webhook', 'statement')),
    duplicate_of     INTEGER,
    CHECK ((status = 'duplicate') = (duplicate_of IS NOT NULL))
);
INSERT INTO bank_payments_new (id, operation_id, amount, currency, payer_inn, document_number, document_date,
                               status, received_at, applied_at, transaction_id, failure_reason)
    SELECT id, operation_id, amount, currency, payer_inn, document_number, document_date,
           status, received_at, applied_at, transaction_id, failure_reason
    FROM bank_payments;
DROP TABLE bank_payments;
ALTER TABLE bank_payments_new RENAME TO bank_payments;
CREATE INDEX bank_payments_waiting ON bank_payments (id) WHERE status = 'received';
CREATE UNIQUE INDEX bank_payments_by_transaction ON bank_payments (transaction_id) WHERE transaction_id IS NOT NULL;
-- Matching a line to its notice (and a late notice to its applied line) looks payments up by payer and number.
CREATE INDEX bank_payments_by_document ON bank_payments (payer_inn, document_number);
-- One late notice per statement-sourced payment.
CREATE UNIQUE INDEX bank_payments_one_late_notice ON bank_payments (duplicate_of) WHERE duplicate_of IS NOT NULL;

-- An import's counts (lines new, matched, pending) are read from its lines, not kept on this row: a batch
-- storing lines then never writes the import's row after its account locks (see the lock order).
CREATE TABLE statement_imports (
    id                  INTEGER PRIMARY KEY,
    sha256              BLOB NOT NULL UNIQUE,
    format              TEXT NOT NULL CHECK (format IN ('1c', 'camt053', 'csv')),
    file_name           TEXT,
    state               TEXT NOT NULL CHECK (state IN ('loading', 'complete')),
    line_count          INTEGER NOT NULL CHECK (line_count >= 0),
    imported_by         TEXT,
    started_at          TEXT NOT NULL,
    completed_at        TEXT
);

CREATE TABLE statement_accounts (
    id            INTEGER PRIMARY KEY,
    import_id     INTEGER NOT NULL REFERENCES statement_imports (id),
    account       TEXT NOT NULL,
    currency      TEXT NOT NULL,
    period_start  TEXT NOT NULL,
    period_end    TEXT NOT NULL,
    opening       INTEGER,
    credits       INTEGER,
    debits        INTEGER,
    closing       INTEGER,
    credit_lines  INTEGER NOT NULL CHECK (credit_lines >= 0),
    debit_lines   INTEGER NOT NULL CHECK (debit_lines >= 0),
    UNIQUE (import_id, account),
    CHECK (period_start <= period_end)
);
CREATE INDEX statement_accounts_by_account ON statement_accounts (account, period_start);

CREATE TABLE statement_lines (
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
    UNIQUE (account, fingerprint, occurrence)
);
CREATE INDEX statement_lines_by_document ON statement_lines (payer_inn, document_number) WHERE direction = 'credit';
CREATE INDEX statement_lines_by_day ON statement_lines (account, booking_date);
CREATE INDEX statement_lines_by_import ON statement_lines (import_id, id);

CREATE TABLE statement_matches (
    id          INTEGER PRIMARY KEY,
    line_id     INTEGER NOT NULL UNIQUE REFERENCES statement_lines (id),
    payment_id  INTEGER NOT NULL UNIQUE REFERENCES bank_payments (id),
    rule        TEXT NOT NULL CHECK (rule IN ('bank_ref', 'document', 'applied', 'late_notice')),
    matched_at  TEXT NOT NULL,
    matched_by  TEXT
);

CREATE TABLE statement_discrepancies (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('missing_notice', 'notice_without_line', 'amount_mismatch',
                                               'ambiguous', 'unknown_payer')),
    state        TEXT NOT NULL CHECK (state IN ('open', 'resolved', 'accepted')),
    line_id      INTEGER REFERENCES statement_lines (id),
    payment_id   INTEGER REFERENCES bank_payments (id),
    account      TEXT,
    day          TEXT NOT NULL,
    amount       INTEGER NOT NULL,
    currency     TEXT NOT NULL,
    details      TEXT NOT NULL DEFAULT '{}',
    note         TEXT,
    resolution   TEXT CHECK (resolution IN ('applied', 'notice', 'matched', 'accepted')),
    resolved_by  TEXT,
    resolved_at  TEXT,
    created_at   TEXT NOT NULL,
    CHECK (line_id IS NOT NULL OR payment_id IS NOT NULL),
    CHECK ((state = 'open') = (resolution IS NULL))
);
CREATE UNIQUE INDEX statement_discrepancies_one_per_line ON statement_discrepancies (line_id) WHERE line_id IS NOT NULL;
CREATE UNIQUE INDEX statement_discrepancies_one_per_notice ON statement_discrepancies (payment_id)
    WHERE kind = 'notice_without_line';
CREATE INDEX statement_discrepancies_by_day ON statement_discrepancies (day, id);
