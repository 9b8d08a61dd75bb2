-- The ledger, bank intake and operator tables for the embedded SQLite store.
-- Money is INTEGER minor units; ids of transactions and operations are 16-byte UUID blobs (random bank
-- operation ids make their index the largest one, so its entries are kept small); times are RFC 3339 text
-- in UTC.

CREATE TABLE organizations (
    id          INTEGER PRIMARY KEY,
    inn         TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE accounts (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('organization', 'user', 'system')),
    external_key    TEXT NOT NULL,
    currency        TEXT NOT NULL,
    balance         INTEGER NOT NULL DEFAULT 0,
    held            INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0),
    allow_negative  INTEGER NOT NULL DEFAULT 0,
    version         INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CONSTRAINT accounts_key UNIQUE (kind, external_key, currency),
    CONSTRAINT accounts_no_overdraft CHECK (allow_negative = 1 OR balance - held >= 0)
);

-- idempotency_key is set where no other table already makes the operation unique: a bank payment's
-- transaction is unique through bank_payments.operation_id and bank_payments.transaction_id.
-- WITHOUT ROWID: the time-ordered UUIDv7 id is the table's only B-tree, appended at its end.
CREATE TABLE ledger_transactions (
    id               BLOB PRIMARY KEY,
    kind             TEXT NOT NULL,
    idempotency_key  TEXT UNIQUE,
    created_at       TEXT NOT NULL
) WITHOUT ROWID;

-- Entries are appended only by the ledger engine, in the same transaction as the ledger transaction they
-- belong to and under the lock of the account they move. They carry no foreign keys: a key check is a
-- lookup per entry per key, which cost more than the entry itself (BENCHMARKS.md), and `payledger verify`
-- proves that every entry references an existing transaction and account.
CREATE TABLE entries (
    id              INTEGER PRIMARY KEY,
    transaction_id  BLOB NOT NULL,
    account_id      INTEGER NOT NULL,
    amount          INTEGER NOT NULL CHECK (amount <> 0),
    balance_before  INTEGER NOT NULL,
    balance_after   INTEGER NOT NULL,
    created_at      TEXT NOT NULL,
    CHECK (balance_after = balance_before + amount)
);
CREATE INDEX entries_by_account ON entries (account_id, id);
CREATE INDEX entries_by_transaction ON entries (transaction_id);

CREATE TABLE bank_payments (
    id               INTEGER PRIMARY KEY,
    operation_id     BLOB NOT NULL UNIQUE,
    amount           INTEGER NOT NULL CHECK (amount > 0),
    currency         TEXT NOT NULL,
    payer_inn        TEXT NOT NULL,
    document_number  TEXT NOT NULL,
    document_date    TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('received', 'applied', 'failed')),
    received_at      TEXT NOT NULL,
    applied_at       TEXT,
    transaction_id   BLOB,
    failure_reason   TEXT
);
CREATE INDEX bank_payments_waiting ON bank_payments (id) WHERE status = 'received';
CREATE UNIQUE INDEX bank_payments_by_transaction ON bank_payments (transaction_id) WHERE transaction_id IS NOT NULL;

CREATE TABLE notice_conflicts (
    id                INTEGER PRIMARY KEY,
    operation_id      BLOB NOT NULL,
    differing_fields  TEXT NOT NULL,
    notice            TEXT NOT NULL,
    received_at       TEXT NOT NULL
);

CREATE TABLE rejected_notices (
    id           INTEGER PRIMARY KEY,
    reason       TEXT NOT NULL,
    details      TEXT NOT NULL,
    body         TEXT NOT NULL,
    received_at  TEXT NOT NULL
);
