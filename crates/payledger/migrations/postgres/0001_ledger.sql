-- The ledger, bank intake and operator tables for PostgreSQL.
-- Money is BIGINT minor units. Rows are only appended to entries and ledger_transactions.

CREATE TABLE organizations (
    id          BIGSERIAL PRIMARY KEY,
    inn         TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    id              BIGSERIAL PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('organization', 'user', 'system')),
    external_key    TEXT NOT NULL,
    currency        TEXT NOT NULL,
    balance         BIGINT NOT NULL DEFAULT 0,
    held            BIGINT NOT NULL DEFAULT 0 CHECK (held >= 0),
    allow_negative  BOOLEAN NOT NULL DEFAULT FALSE,
    version         BIGINT NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT accounts_key UNIQUE (kind, external_key, currency),
    CONSTRAINT accounts_no_overdraft CHECK (allow_negative OR balance - held >= 0)
);

-- idempotency_key is set where no other table already makes the operation unique: a bank payment's
-- transaction is unique through bank_payments.operation_id and bank_payments.transaction_id.
CREATE TABLE ledger_transactions (
    id               UUID PRIMARY KEY,
    kind             TEXT NOT NULL,
    idempotency_key  TEXT UNIQUE,
    created_at       TIMESTAMPTZ NOT NULL
);

-- Entries are appended only by the ledger engine, in the same transaction as the ledger transaction they
-- belong to and under the lock of the account they move. They carry no foreign keys: a key check is a
-- lookup per entry per key, which cost more than the entry itself (BENCHMARKS.md), and `payledger verify`
-- proves that every entry references an existing transaction and account.
CREATE TABLE entries (
    id              BIGSERIAL PRIMARY KEY,
    transaction_id  UUID NOT NULL,
    account_id      BIGINT NOT NULL,
    amount          BIGINT NOT NULL CHECK (amount <> 0),
    balance_before  BIGINT NOT NULL,
    balance_after   BIGINT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    CHECK (balance_after = balance_before + amount)
);
CREATE INDEX entries_by_account ON entries (account_id, id);
CREATE INDEX entries_by_transaction ON entries (transaction_id);

CREATE TABLE bank_payments (
    id               BIGSERIAL PRIMARY KEY,
    operation_id     UUID NOT NULL UNIQUE,
    amount           BIGINT NOT NULL CHECK (amount > 0),
    currency         TEXT NOT NULL,
    payer_inn        TEXT NOT NULL,
    document_number  TEXT NOT NULL,
    document_date    TIMESTAMPTZ NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('received', 'applied', 'failed')),
    received_at      TIMESTAMPTZ NOT NULL,
    applied_at       TIMESTAMPTZ,
    transaction_id   UUID,
    failure_reason   TEXT
);
CREATE INDEX bank_payments_waiting ON bank_payments (id) WHERE status = 'received';
CREATE UNIQUE INDEX bank_payments_by_transaction ON bank_payments (transaction_id) WHERE transaction_id IS NOT NULL;

CREATE TABLE notice_conflicts (
    id                BIGSERIAL PRIMARY KEY,
    operation_id      UUID NOT NULL,
    differing_fields  TEXT NOT NULL,
    notice            TEXT NOT NULL,
    received_at       TIMESTAMPTZ NOT NULL
);

CREATE TABLE rejected_notices (
    id           BIGSERIAL PRIMARY KEY,
    reason       TEXT NOT NULL,
    details      TEXT NOT NULL,
    body         TEXT NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL
);

-- Operators' and `payledger verify`'s text form of an id.
CREATE FUNCTION uuid_hex(u UUID) RETURNS TEXT LANGUAGE SQL IMMUTABLE AS $$ SELECT replace(u::text, '-', '') $$;
