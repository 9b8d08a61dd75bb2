-- Payout requests, their status history, and the durable job queue that processes them.

-- A payout request. The full card or account number is only in recipient_secret, encrypted with the card vault's
-- key (AES-256-GCM, bound to the payout id); the API shows recipient_last4. A payout with a source holds the
-- amount on that account under the reservation 'payout:<id>' until it completes (captured to the payout clearing
-- account), fails or is cancelled (released). archived_at is set when a cancelled payout is deleted: it leaves
-- the API, the row and its history stay for audit.
CREATE TABLE payouts (
    id                 BLOB PRIMARY KEY,
    amount             INTEGER NOT NULL CHECK (amount > 0),
    currency           TEXT NOT NULL,
    recipient_type     TEXT NOT NULL CHECK (recipient_type IN ('card', 'bank_account')),
    recipient_last4    TEXT NOT NULL,
    recipient_holder   TEXT NOT NULL,
    recipient_bik      TEXT,
    recipient_secret   TEXT NOT NULL,
    description        TEXT NOT NULL DEFAULT '',
    status             TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled',
                                                       'returned')),
    failure_reason     TEXT,
    attempts           INTEGER NOT NULL DEFAULT 0,
    gateway_reference  TEXT,
    source_kind        TEXT CHECK (source_kind IN ('organization', 'user')),
    source_key         TEXT,
    source_account_id  INTEGER,
    hold_reference     TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    archived_at        TEXT,
    CHECK ((source_kind IS NULL) = (source_account_id IS NULL)),
    CHECK ((source_kind IS NULL) = (hold_reference IS NULL))
);
CREATE INDEX payouts_by_created ON payouts (created_at, id) WHERE archived_at IS NULL;
CREATE INDEX payouts_by_amount ON payouts (amount, id) WHERE archived_at IS NULL;
CREATE INDEX payouts_by_status ON payouts (status, created_at) WHERE archived_at IS NULL;

-- Every status change of a payout (and its deletion), with who made it: the detail view's status_history and
-- the audit trail. Appended in the transaction of the change.
CREATE TABLE payout_events (
    id           INTEGER PRIMARY KEY,
    payout_id    BLOB NOT NULL,
    from_status  TEXT,
    to_status    TEXT NOT NULL,
    actor        TEXT NOT NULL,
    reason       TEXT,
    created_at   TEXT NOT NULL
);
CREATE INDEX payout_events_by_payout ON payout_events (payout_id, id);

-- The job queue. A job is enqueued in the transaction of the state change that needs it. Workers claim a due
-- job by setting a lease (owner and expiry); a worker that dies loses its lease when it expires and the job runs
-- again, so every handler is idempotent. A failed attempt is retried at run_at with exponential backoff and
-- jitter; past max_attempts the job is dead and listed for operators.
CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY,
    kind              TEXT NOT NULL,
    payload           TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('queued', 'done', 'dead')),
    run_at            TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  TEXT,
    last_error        TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE INDEX jobs_due ON jobs (run_at, id) WHERE status = 'queued';
CREATE INDEX jobs_dead ON jobs (id) WHERE status = 'dead';
CREATE UNIQUE INDEX jobs_one_open_per_payload ON jobs (kind, payload) WHERE status = 'queued';
