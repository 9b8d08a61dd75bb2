-- The audit log is read newest first, by what was changed or by who changed it.
CREATE INDEX audit_log_by_target ON audit_log (target, id);
CREATE INDEX audit_log_by_actor ON audit_log (actor, id);
