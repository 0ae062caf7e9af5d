-- Removing the audit log destroys the audit trail. Refuse when it holds rows
-- unless the runner was told to accept data loss (memops.allow_data_loss).
-- Triggers first, then the table, then the trigger function.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM execution_audit_log)
       AND coalesce(current_setting('memops.allow_data_loss', true), '') <> 'on' THEN
        RAISE EXCEPTION 'refusing to drop execution_audit_log: it still holds audit rows'
            USING HINT = 'rerun with --allow-data-loss if destroying the audit trail is intended';
    END IF;
END
$$;

DROP TRIGGER execution_audit_log_no_truncate ON execution_audit_log;
DROP TRIGGER execution_audit_log_no_update_delete ON execution_audit_log;
DROP TABLE execution_audit_log;
DROP FUNCTION execution_audit_log_append_only();
