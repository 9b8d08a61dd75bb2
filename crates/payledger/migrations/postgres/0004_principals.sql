-- The people and programs that use the API and the console, their refresh tokens, and the audit log.

CREATE TABLE users (
    id                  BIGSERIAL PRIMARY KEY,
    username            TEXT NOT NULL UNIQUE,
    password_hash       TEXT NOT NULL,
    role                TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    active              BOOLEAN NOT NULL DEFAULT TRUE,
    -- Set for a password payledger generated (development bootstrap); production refuses to start with one.
    password_generated  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL
);

-- Refresh tokens are stored hashed. Each login starts a family; a refresh rotates the token within its family,
-- and a token used twice revokes the whole family (it was stolen, or the client is confused).
CREATE TABLE refresh_tokens (
    id          BIGSERIAL PRIMARY KEY,
    user_id     BIGINT NOT NULL,
    family      TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,
    revoked_at  TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family);

-- Every privileged action: who, what, on what, the state before and after (JSON), and when.
CREATE TABLE audit_log (
    id      BIGSERIAL PRIMARY KEY,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    before  TEXT,
    after   TEXT,
    at      TIMESTAMPTZ NOT NULL
);
