-- User balances: services' revenue accounts, reservations (holds), users' histories and idempotency keys.

-- accounts.kind gains 'service' (a service's revenue account).
ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check
    CHECK (kind IN ('organization', 'user', 'service', 'system'));

-- A reservation of an account's money, placed once and then captured or released once. The unique
-- reference (for an order: 'order:<user>:<service>:<order>') makes each reservation happen at most once,
-- forever. accounts.held always equals the sum of the account's 'held' reservations (`payledger verify`).
CREATE TABLE holds (
    id              BIGSERIAL PRIMARY KEY,
    reference       TEXT NOT NULL UNIQUE,
    account_id      BIGINT NOT NULL,
    amount          BIGINT NOT NULL CHECK (amount > 0),
    status          TEXT NOT NULL CHECK (status IN ('held', 'captured', 'released')),
    transaction_id  UUID,
    created_at      TIMESTAMPTZ NOT NULL,
    settled_at      TIMESTAMPTZ,
    CHECK ((status = 'captured') = (transaction_id IS NOT NULL))
);
CREATE INDEX holds_open_by_account ON holds (account_id) WHERE status = 'held';

-- A user's history: one line per operation per account, with its effect on the available balance
-- (amount) and on the reserved money (held_change). Lines that moved the balance name their ledger
-- transaction; `payledger verify` proves the lines agree with the entries. Ids are taken under the
-- account's lock, so they increase in the order the lines were applied to their account.
CREATE TABLE account_activity (
    id              BIGSERIAL PRIMARY KEY,
    account_id      BIGINT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('deposit', 'reservation', 'revenue_recognition', 'release',
                                                  'transfer', 'withdrawal', 'payout_hold', 'payout_release',
                                                  'payout', 'payout_return')),
    amount          BIGINT NOT NULL,
    held_change     BIGINT NOT NULL,
    counterparty    BIGINT,
    service_id      BIGINT,
    order_id        BIGINT,
    payout_id       UUID,
    transaction_id  UUID,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX account_activity_by_account ON account_activity (account_id, id);
CREATE INDEX account_activity_by_amount ON account_activity (account_id, amount, id);
CREATE INDEX account_activity_revenue ON account_activity (created_at) WHERE kind = 'revenue_recognition';

-- An Idempotency-Key, the fingerprint of the request that used it and the response it got, written in the
-- same transaction as the request's effect.
CREATE TABLE idempotency_keys (
    key          TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,
    status       INTEGER NOT NULL,
    response     TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);
