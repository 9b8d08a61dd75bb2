-- Sessions of the admin console. The cookie holds a random token; only its SHA-256 is stored. Each session has
-- its own CSRF token, embedded in every form of the console and checked on every POST.
CREATE TABLE console_sessions (
    id          INTEGER PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    user_id     INTEGER NOT NULL,
    csrf        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX console_sessions_by_user ON console_sessions (user_id);
