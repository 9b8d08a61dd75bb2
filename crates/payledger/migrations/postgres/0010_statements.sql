-- Bank statement reconciliation (issue 13): imported statements, their lines, the matches between lines and
-- bank payments, and the discrepancies an operator resolves.

-- bank_payments gains where a payment came from (a webhook notice, or a statement line an operator applied),
-- and the status 'duplicate': a notice that arrived after its line was applied from the statement, recorded
-- but never credited.
ALTER TABLE bank_payments DROP CONSTRAINT bank_payments_status_check;
ALTER TABLE bank_payments ADD CONSTRAINT bank_payments_status_check
    CHECK (status IN ('received', 'applied', 'failed', 'duplicate'));
ALTER TABLE bank_payments ADD COLUMN source TEXT NOT NULL DEFAULT 'webhook' CHECK (source IN ('webhook', 'statement'));
ALTER TABLE bank_payments ADD COLUMN duplicate_of BIGINT;
ALTER TABLE bank_payments ADD CONSTRAINT bank_payments_duplicate_names_one
    CHECK ((status = 'duplicate') = (duplicate_of IS NOT NULL));
-- Matching a line to its notice (and a late notice to its applied line) looks payments up by payer and number.
CREATE INDEX bank_payments_by_document ON bank_payments (payer_inn, document_number);
-- One late notice per statement-sourced payment.
CREATE UNIQUE INDEX bank_payments_one_late_notice ON bank_payments (duplicate_of) WHERE duplicate_of IS NOT NULL;

-- An import's counts (lines new, matched, pending) are read from its lines, not kept on this row: a batch
-- storing lines then never writes the import's row after its account locks (see the lock order).
CREATE TABLE statement_imports (
    id                  BIGSERIAL PRIMARY KEY,
    sha256              BYTEA NOT NULL UNIQUE,
    format              TEXT NOT NULL CHECK (format IN ('1c', 'camt053', 'csv')),
    file_name           TEXT,
    state               TEXT NOT NULL CHECK (state IN ('loading', 'complete')),
    line_count          BIGINT NOT NULL CHECK (line_count >= 0),
    imported_by         TEXT,
    started_at          TIMESTAMPTZ NOT NULL,
    completed_at        TIMESTAMPTZ
);

CREATE TABLE statement_accounts (
    id            BIGSERIAL PRIMARY KEY,
    import_id     BIGINT NOT NULL REFERENCES statement_imports (id),
    account       TEXT NOT NULL,
    currency      TEXT NOT NULL,
    period_start  DATE NOT NULL,
    period_end    DATE NOT NULL,
    opening       BIGINT,
    credits       BIGINT,
    debits        BIGINT,
    closing       BIGINT,
    credit_lines  BIGINT NOT NULL CHECK (credit_lines >= 0),
    debit_lines   BIGINT NOT NULL CHECK (debit_lines >= 0),
    UNIQUE (import_id, account),
    CHECK (period_start <= period_end)
);
CREATE INDEX statement_accounts_by_account ON statement_accounts (account, period_start);

CREATE TABLE statement_lines (
    id               BIGSERIAL PRIMARY KEY,
    import_id        BIGINT NOT NULL REFERENCES statement_imports (id),
    account          TEXT NOT NULL,
    fingerprint      BYTEA NOT NULL,
    occurrence       INTEGER NOT NULL CHECK (occurrence >= 1),
    direction        TEXT NOT NULL CHECK (direction IN ('credit', 'debit')),
    -- Only a customer's payment is reconciled against notices; reversals, transfers between our own accounts
    -- and the bank's own orders are kept for the statement's totals and never matched or applied.
    nature           TEXT NOT NULL DEFAULT 'payment'
                     CHECK (nature IN ('payment', 'reversal', 'own_transfer', 'bank_order')),
    amount           BIGINT NOT NULL CHECK (amount > 0),
    currency         TEXT NOT NULL,
    booking_date     DATE NOT NULL,
    document_number  TEXT NOT NULL,
    document_date    DATE NOT NULL,
    payer_inn        TEXT,
    payer_name       TEXT,
    payer_account    TEXT,
    payer_bik        TEXT,
    bank_ref         TEXT,
    end_to_end_id    TEXT,
    purpose          TEXT,
    source_line      BIGINT NOT NULL,
    raw              JSONB NOT NULL,
    UNIQUE (account, fingerprint, occurrence)
);
CREATE INDEX statement_lines_by_document ON statement_lines (payer_inn, document_number) WHERE direction = 'credit';
CREATE INDEX statement_lines_by_day ON statement_lines (account, booking_date);
CREATE INDEX statement_lines_by_import ON statement_lines (import_id, id);

CREATE TABLE statement_matches (
    id          BIGSERIAL PRIMARY KEY,
    line_id     BIGINT NOT NULL UNIQUE REFERENCES statement_lines (id),
    payment_id  BIGINT NOT NULL UNIQUE REFERENCES bank_payments (id),
    rule        TEXT NOT NULL CHECK (rule IN ('bank_ref', 'document', 'applied', 'late_notice')),
    matched_at  TIMESTAMPTZ NOT NULL,
    matched_by  TEXT
);

CREATE TABLE statement_discrepancies (
    id           BIGSERIAL PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('missing_notice', 'notice_without_line', 'amount_mismatch',
                                               'ambiguous', 'unknown_payer')),
    state        TEXT NOT NULL CHECK (state IN ('open', 'resolved', 'accepted')),
    line_id      BIGINT REFERENCES statement_lines (id),
    payment_id   BIGINT REFERENCES bank_payments (id),
    account      TEXT,
    day          DATE NOT NULL,
    amount       BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    details      JSONB NOT NULL DEFAULT '{}',
    note         TEXT,
    resolution   TEXT CHECK (resolution IN ('applied', 'notice', 'matched', 'accepted')),
    resolved_by  TEXT,
    resolved_at  TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL,
    CHECK (line_id IS NOT NULL OR payment_id IS NOT NULL),
    CHECK ((state = 'open') = (resolution IS NULL))
);
CREATE UNIQUE INDEX statement_discrepancies_one_per_line ON statement_discrepancies (line_id) WHERE line_id IS NOT NULL;
CREATE UNIQUE INDEX statement_discrepancies_one_per_notice ON statement_discrepancies (payment_id)
    WHERE kind = 'notice_without_line';
CREATE INDEX statement_discrepancies_by_day ON statement_discrepancies (day, id);
