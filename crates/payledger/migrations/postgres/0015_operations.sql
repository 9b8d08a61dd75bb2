-- PostgreSQL has no 0014: that one rewrites SQLite's CHECK lists. A change both backends make has one number.
--
-- Which request asked for each audited change: its id (`X-Request-Id`, also in every log line of the request)
-- and the client's address (behind trusted proxies, the client's, not the proxy's). Rows written before this
-- migration, and those of the CLI, workers and the bank, have neither.
--
-- Expand only: two nullable columns. The previous build's INSERTs name their columns and leave these NULL, so
-- it keeps working beside this one during a rolling restart.
-- Both ALTERs take a brief exclusive lock on audit_log, which ledger batches write: fail fast rather than
-- queue every batch behind a long reader (a lock timeout, SQLSTATE 55P03, fails `payledger migrate`, which
-- changed nothing and is run again).
SET LOCAL lock_timeout = '5s';
ALTER TABLE audit_log ADD COLUMN request_id TEXT;
ALTER TABLE audit_log ADD COLUMN client_address TEXT;

-- `/metrics` counts the open discrepancies at every scrape (an operator alerts on them); resolved and accepted
-- ones pile up over the years, so the count reads only the open ones.
CREATE INDEX statement_discrepancies_open ON statement_discrepancies (id) WHERE state = 'open';
