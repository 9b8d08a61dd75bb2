-- A user's version for the per-process cache of authenticated users (store/principal_cache.rs): every change
-- that matters to authentication (password, role, active flag, username, the token cut-off) bumps it in the
-- same transaction. A trigger does it, so no write path (nor an older build's, during a rolling upgrade) can
-- change a user without it.
ALTER TABLE users ADD COLUMN auth_version INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER users_auth_changed AFTER UPDATE ON users FOR EACH ROW
WHEN NEW.password_hash IS NOT OLD.password_hash OR NEW.role IS NOT OLD.role OR NEW.active IS NOT OLD.active
    OR NEW.username IS NOT OLD.username OR NEW.tokens_valid_after IS NOT OLD.tokens_valid_after
BEGIN
    UPDATE users SET auth_version = OLD.auth_version + 1 WHERE id = NEW.id;
END;
