-- User balances: services' revenue accounts, reservations (holds), users' histories and idempotency keys.

-- accounts.kind gains 'service' (a service's revenue account). SQLite cannot change a CHECK constraint, so
-- the table is rebuilt with the same rows; nothing references it by foreign key.
CREATE TABLE accounts_v2 (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('organization', 'user', 'service', 'system')),
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
INSERT INTO accounts_v2 (id, kind, external_key, currency, balance, held, allow_negative, version, created_at)
    SELECT id, kind, external_key, currency, balance, held, allow_negative, version, created_at FROM accounts;
DROP TABLE accounts;
ALTER TABLE accounts_v2 RENAME TO accounts;

-- A reservation of an account's money, placed once and then captured or released once. The unique
-- reference (for an order: 'order:<user>:<service>:<order>') makes each reservation happen at most once,
-- forever. accounts.held always equals the sum of the account's 'held' reservations (`payledger verify`).
CREATE TABLE holds (
    id              INTEGER PRIMARY KEY,
    reference       TEXT NOT NULL UNIQUE,
    account_id      INTEGER NOT NULL,
    amount          INTEGER NOT NULL CHECK (amount > 0),
    status          TEXT NOT NULL CHECK (status IN ('held', 'captured', 'released')),
    transaction_id  BLOB,
    created_at      TEXT NOT NULL,
    settled_at      TEXT,
    CHECK ((status = 'captured') = (transaction_id IS NOT NULL))
);
CREATE INDEX holds_open_by_account ON holds (account_id) WHERE status = 'held';

-- A user's history: one line per operation per account, with its effect on the available balance
-- (amount) and on the reserved money (held_change). Lines that moved the balance name their ledger
-- transaction; `payledger verify` proves the lines agree with the entries. Ids increase in the order the
-- lines were applied to their account.
CREATE TABLE account_activity (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('deposit', 'reservation', 'revenue_recognition', 'release',
                                                  'transfer', 'withdrawal', 'payout_hold', 'payout_release',
                                                  'payout', 'payout_return')),
    amount          INTEGER NOT NULL,
    held_change     INTEGER NOT NULL,
    counterparty    INTEGER,
    service_id      INTEGER,
    order_id        INTEGER,
    payout_id       BLOB,
    transaction_id  BLOB,
    created_at      TEXT NOT NULL
);
CREATE INDEX account_activity_by_account ON account_activity (account_id, id);
CREATE INDEX account_activity_by_amount ON account_activity (account_id, amount, id);
CREATE INDEX account_activity_revenue ON account_activity (created_at) WHERE kind = 'revenue_recognition';

-- An Idempotency-Key, the fingerprint of the request that used it and the response it got, written in the
-- same transaction as the request's effect. Rows are appended in rowid order; only the small unique index
-- on the (random) key takes random inserts, so it stays in the writer's cache.
CREATE TABLE idempotency_keys (
    id           INTEGER PRIMARY KEY,
    key          TEXT NOT NULL UNIQUE,
    fingerprint  TEXT NOT NULL,
    status       INTEGER NOT NULL,
    response     TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
