-- Takes back what the up file granted the application role by name (the same role: the
-- migrating one, or memops.app_role). Below this version the application holds its
-- rights through pg_database_owner only, that is as the database's owner: the postgresql
-- role gives the database back to the application role before it reverts this (by hand:
-- ALTER DATABASE ... OWNER TO the application role first, as a superuser); reverted while
-- memops_audit_owner still owns the database, the application is left without them.
-- Like the up file it needs membership in memops_audit_owner.
DO $$
DECLARE
    app name := coalesce(nullif(current_setting('memops.app_role', true), ''), current_user);
BEGIN
    IF NOT pg_has_role(current_user, 'memops_audit_owner', 'MEMBER') THEN
        RAISE EXCEPTION 'role % is not a member of memops_audit_owner', current_user
            USING HINT = 'migrate through the deploy, which lends the membership for the migration (memops.audit_owner.lent)';
    END IF;
    IF app = 'memops_audit_owner' THEN  -- its rights are an owner's: never taken
        RAISE EXCEPTION 'memops_audit_owner owns these objects; 0008 granted the application role';
    END IF;
    EXECUTE format('REVOKE SELECT ON SEQUENCE execution_audit_log_id_seq FROM %I', app);
    EXECUTE format('REVOKE SELECT, INSERT ON execution_audit_log FROM %I', app);
    EXECUTE format('REVOKE SELECT, INSERT, DELETE ON memory_quarantine FROM %I', app);
    EXECUTE format('REVOKE SELECT, INSERT, UPDATE, DELETE ON memory_items FROM %I', app);
    EXECUTE format('REVOKE USAGE ON SCHEMA public FROM %I', app);
END
$$;
