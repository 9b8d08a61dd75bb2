-- An admin may discard a dead job (the console's jobs page): it leaves the dead list for good and can no longer be
-- retried. The jobs.status CHECK constraint allows only 'queued', 'done' and 'dead', and SQLite cannot alter a
-- CHECK constraint, so a discarded job is closed like an operator's retry closes one (status 'done') and marked
-- by discarded_at (and who discarded it); the audit log has the row "job.discard". A dead job's payout is already
-- failed with its hold released, so discarding moves no money.
ALTER TABLE jobs ADD COLUMN discarded_at TEXT CHECK (discarded_at IS NULL OR status = 'done');
ALTER TABLE jobs ADD COLUMN discarded_by TEXT;

-- A payout's jobs, for its page in the console.
CREATE INDEX jobs_by_payload ON jobs (payload, id);
