-- A user's version for the per-process cache of authenticated users (store/principal_cache.rs): every change
-- that matters to authentication (password, role, active flag, username, the token cut-off) bumps it in the
-- same transaction, and tells every instance at commit (`NOTIFY payledger_principals, '<id>:<version>'`; a
-- rolled-back change tells nobody). A trigger does both, so no write path (nor an older build's, during a
-- rolling upgrade) can change a user without them.
ALTER TABLE users ADD COLUMN auth_version BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION users_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.password_hash IS DISTINCT FROM OLD.password_hash OR NEW.role IS DISTINCT FROM OLD.role
        OR NEW.active IS DISTINCT FROM OLD.active OR NEW.username IS DISTINCT FROM OLD.username
        OR NEW.tokens_valid_after IS DISTINCT FROM OLD.tokens_valid_after
    THEN
        NEW.auth_version := OLD.auth_version + 1;
        PERFORM pg_notify('payledger_principals', NEW.id::text || ':' || NEW.auth_version::text);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER users_auth_changed BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION users_auth_changed();
