-- Hands the audit log back to the database owner (as 0002 left it). Like the up
-- file it needs membership in memops_audit_owner: the application role alone
-- cannot take the table back, which is the point of 0004.
DO $$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database());
BEGIN
    IF NOT pg_has_role(current_user, 'memops_audit_owner', 'MEMBER') THEN
        RAISE EXCEPTION 'role % is not a member of memops_audit_owner', current_user
            USING HINT = 'migrate through the deploy, which lends the membership for the migration (memops.audit_owner.lent)';
    END IF;
    REVOKE SELECT ON SEQUENCE execution_audit_log_id_seq FROM pg_database_owner;
    REVOKE SELECT, INSERT ON execution_audit_log FROM pg_database_owner;
    EXECUTE format('ALTER TABLE execution_audit_log OWNER TO %I', owner);
    EXECUTE format('ALTER FUNCTION execution_audit_log_append_only() OWNER TO %I', owner);
END
$$;
