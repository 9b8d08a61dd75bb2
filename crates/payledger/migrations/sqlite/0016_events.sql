-- Outbound events (issue 15): what payledger tells the company's own systems, to the Standard Webhooks
-- specification.
--
-- `events` is the transactional outbox. The ledger engine writes an event in the batch of the change it reports,
-- so there is no event without its change and no change without its event. `seq` is the event's position in the
-- log. It is taken after the batch holds the locks of the resource the event is about (an account, a payout),
-- so every change of one resource gets a larger `seq` than the one before. It is also the `version` a receiver
-- compares. `id` (`evt_…`) is what receivers see as `webhook-id`; it stays the same across retries and
-- replays. Nothing looks an event up by it, so it has no index of its own. `data` is the resource as the API
-- shows it, as JSON without its version (the version is `seq`, added when the body is built). Only an event
-- some enabled endpoint wants is stored (with its deliveries): the log is what is to be sent.
-- AUTOINCREMENT: a number is never given twice, even after the newest events were pruned (a receiver keeps the
-- largest version it has seen).
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- The company's receivers. The secret (`whsec_…`) is encrypted by the card vault, bound to the endpoint's id.
-- While a rotation's overlap lasts, the previous secret signs too.
CREATE TABLE webhook_endpoints (
    id                       TEXT PRIMARY KEY,
    url                      TEXT NOT NULL,
    description              TEXT NOT NULL,
    enabled                  INTEGER NOT NULL CHECK (enabled = 0 OR enabled = 1),
    disabled_reason          TEXT,
    secret                   TEXT NOT NULL,
    previous_secret          TEXT,
    previous_secret_until    TEXT,
    rate_limit_per_second    INTEGER CHECK (rate_limit_per_second > 0),
    failing_since            TEXT,
    created_at               TEXT NOT NULL,
    updated_at               TEXT NOT NULL
);

-- The event types each endpoint wants; `*` is every type but `bank_payment.rejected`, which must be named.
CREATE TABLE webhook_subscriptions (
    endpoint_id  TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, event_type)
);
CREATE INDEX webhook_subscriptions_by_type ON webhook_subscriptions (event_type, endpoint_id);

-- One delivery per endpoint and event, made in the event's batch for every enabled endpoint that wants its type
-- (an endpoint created later does not get older events). A delivery is its own queue item: workers of `serve`
-- and `payledger worker` claim due ones with a lease, as they claim jobs. Disabling or deleting an endpoint
-- fails its pending deliveries (a recovery sends them again), so every pending one is an enabled endpoint's.
CREATE TABLE event_deliveries (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    event_seq         INTEGER NOT NULL,
    endpoint_id       TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status = 'pending' OR status = 'succeeded' OR status = 'failed'),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   TEXT NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  TEXT,
    last_status_code  INTEGER,
    last_error        TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    UNIQUE (event_seq, endpoint_id)
);
CREATE INDEX event_deliveries_due ON event_deliveries (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX event_deliveries_by_endpoint ON event_deliveries (endpoint_id, id);
-- A worker reads back what it just claimed by its lease: only leased rows are in this index.
CREATE INDEX event_deliveries_leased ON event_deliveries (lease_owner) WHERE lease_owner IS NOT NULL;

-- Every attempt, with the first 4 KiB of the receiver's answer (never shown to viewers).
CREATE TABLE delivery_attempts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id   INTEGER NOT NULL,
    attempted_at  TEXT NOT NULL,
    status_code   INTEGER,
    duration_ms   INTEGER NOT NULL,
    response      TEXT,
    error         TEXT
);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id, id);
CREATE INDEX delivery_attempts_by_time ON delivery_attempts (attempted_at);
