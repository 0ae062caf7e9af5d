-- Gives the schema public, memory_items, memory_quarantine and the functions of
-- their triggers back to the database owner (as 0006 left them). Like the up file
-- it needs membership in memops_audit_owner.
DO $$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database());
BEGIN
    IF NOT pg_has_role(current_user, 'memops_audit_owner', 'MEMBER') THEN
        RAISE EXCEPTION 'role % is not a member of memops_audit_owner', current_user
            USING HINT = 'migrate through the deploy, which lends the membership for the migration (memops.audit_owner.lent)';
    END IF;
    DROP POLICY memory_quarantine_readable ON memory_quarantine;
    ALTER TABLE memory_quarantine DISABLE ROW LEVEL SECURITY;
    REVOKE SELECT, INSERT, DELETE ON memory_quarantine FROM pg_database_owner;
    EXECUTE format('ALTER TABLE memory_quarantine OWNER TO %I', owner);
    REVOKE SELECT, INSERT, UPDATE, DELETE ON memory_items FROM pg_database_owner;
    EXECUTE format('ALTER TABLE memory_items OWNER TO %I', owner);
    EXECUTE format('ALTER FUNCTION memory_items_no_truncate() OWNER TO %I', owner);
    EXECUTE format('ALTER FUNCTION memory_items_content_hash_default() OWNER TO %I', owner);
    REVOKE USAGE, CREATE ON SCHEMA public FROM pg_database_owner;
    ALTER SCHEMA public OWNER TO pg_database_owner;
END
$$;
