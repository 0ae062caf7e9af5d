-- The schema public, memory_items, memory_quarantine and the functions of their
-- triggers belong to memops_audit_owner (the NOLOGIN owner of 0004) from here on,
-- so that the application role, which owns the database, can no longer:
--   - DROP TABLE execution_audit_log (a schema's owner may drop any table in it,
--     and the database owner owned public through pg_database_owner);
--   - turn row security off on memory_items or drop its quarantine policy, or
--     DROP / TRUNCATE memory_items (owner rights);
--   - lift a quarantine by deleting its row: memory_quarantine has row security
--     too, whose only policy lets everyone read; memops writes it as
--     postgresql_ops_user, which bypasses row security.
-- The application keeps what it uses: SELECT, INSERT, UPDATE, DELETE on
-- memory_items, SELECT on memory_quarantine (the policy of memory_items reads
-- it), USAGE and CREATE on public; all granted to pg_database_owner, whoever
-- owns this database. What it still can: DROP DATABASE; closing that needs the
-- database itself owned by another role.
--
-- Like 0004 it needs membership in memops_audit_owner (lent while migrating), and
-- memops.audit_owner.secure runs it again, as the superuser, in a database a
-- restore has loaded (pg_restore --no-owner gives the application role
-- everything): every statement here can run twice.
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'memops_audit_owner', 'MEMBER') THEN
        RAISE EXCEPTION 'role % is not a member of memops_audit_owner', current_user
            USING HINT = 'migrate through the deploy, which lends the membership for the migration (memops.audit_owner.lent)';
    END IF;
    -- A schema's new owner needs CREATE on the database at the moment it takes over.
    EXECUTE format('GRANT CREATE ON DATABASE %I TO memops_audit_owner', current_database());
    ALTER SCHEMA public OWNER TO memops_audit_owner;
    EXECUTE format('REVOKE CREATE ON DATABASE %I FROM memops_audit_owner', current_database());
END
$$;
GRANT USAGE, CREATE ON SCHEMA public TO pg_database_owner;

ALTER TABLE memory_items OWNER TO memops_audit_owner;
ALTER FUNCTION memory_items_no_truncate() OWNER TO memops_audit_owner;
ALTER FUNCTION memory_items_content_hash_default() OWNER TO memops_audit_owner;
REVOKE ALL ON memory_items FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON memory_items TO pg_database_owner;

ALTER TABLE memory_quarantine OWNER TO memops_audit_owner;
REVOKE ALL ON memory_quarantine FROM PUBLIC;
GRANT SELECT, INSERT, DELETE ON memory_quarantine TO pg_database_owner;
ALTER TABLE memory_quarantine ENABLE ROW LEVEL SECURITY;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_policies WHERE tablename = 'memory_quarantine'
                   AND policyname = 'memory_quarantine_readable') THEN
        CREATE POLICY memory_quarantine_readable ON memory_quarantine FOR SELECT USING (true);
    END IF;
END
$$;
