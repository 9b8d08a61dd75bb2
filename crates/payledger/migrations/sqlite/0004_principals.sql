-- The people and programs that use the API and the console, their refresh tokens, and the audit log.

CREATE TABLE users (
    id                  INTEGER PRIMARY KEY,
    username            TEXT NOT NULL UNIQUE,
    password_hash       TEXT NOT NULL,
    role                TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    active              INTEGER NOT NULL DEFAULT 1,
    -- Set for a password payledger generated (development bootstrap); production refuses to start with one.
    password_generated  INTEGER NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);

-- Refresh tokens are stored hashed. Each login starts a family; a refresh rotates the token within its family,
-- and a token used twice revokes the whole family (it was stolen, or the client is confused).
CREATE TABLE refresh_tokens (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL,
    family      TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    expires_at  TEXT NOT NULL,
    used_at     TEXT,
    revoked_at  TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family);

-- Every privileged action: who, what, on what, the state before and after (JSON), and when.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    before  TEXT,
    after   TEXT,
    at      TEXT NOT NULL
);
