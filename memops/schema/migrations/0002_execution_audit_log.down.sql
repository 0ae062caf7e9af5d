-- Removing the audit log destroys the audit trail: the runner refuses while it holds
-- rows, unless told to accept data loss (migrate --allow-data-loss).
-- memops: refuse-if-rows execution_audit_log
-- Triggers first, then the table, then the trigger function.
DROP TRIGGER execution_audit_log_no_truncate ON execution_audit_log;
DROP TRIGGER execution_audit_log_no_update_delete ON execution_audit_log;
DROP TABLE execution_audit_log;
DROP FUNCTION execution_audit_log_append_only();
