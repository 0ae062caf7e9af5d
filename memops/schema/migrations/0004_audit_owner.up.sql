-- The audit log belongs to memops_audit_owner, a NOLOGIN role, so that the
-- application role (which owns the database, memory_items, and ran 0001-0003)
-- can no longer disable or drop the append-only triggers, nor UPDATE, DELETE or
-- TRUNCATE the log: those need table ownership or privileges it no longer has.
-- It keeps INSERT and SELECT, through pg_database_owner (whoever owns this
-- database), and SELECT on the identity sequence so that pg_dump can read it.
--
-- Giving a table away needs membership in the new owner. The role is created by
-- the superuser (roles/postgresql; memops.audit_owner.ensure_role) and lent to
-- the migrating role only while it migrates (memops.audit_owner.lent): a
-- permanent membership would let the application SET ROLE and undo all this.
--
-- Not covered: the application role owns the database, hence the schema public
-- (pg_database_owner), and a schema's owner may DROP any table in it; so it can
-- still DROP TABLE execution_audit_log whole (or DROP DATABASE). Closing that
-- needs the database and schema owned by another role as well.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'memops_audit_owner') THEN
        RAISE EXCEPTION 'role memops_audit_owner does not exist'
            USING HINT = 'deploy the postgresql role (it creates it), or CREATE ROLE memops_audit_owner NOLOGIN as a superuser';
    END IF;
    IF NOT pg_has_role(current_user, 'memops_audit_owner', 'MEMBER') THEN
        RAISE EXCEPTION 'role % is not a member of memops_audit_owner', current_user
            USING HINT = 'migrate through the deploy, which lends the membership for the migration (memops.audit_owner.lent)';
    END IF;
END
$$;

-- A new owner needs CREATE on the schema at the moment it takes the objects
-- over, not afterwards. ALTER TABLE also moves execution_audit_log_id_seq.
GRANT CREATE ON SCHEMA public TO memops_audit_owner;
ALTER TABLE execution_audit_log OWNER TO memops_audit_owner;
ALTER FUNCTION execution_audit_log_append_only() OWNER TO memops_audit_owner;
REVOKE CREATE ON SCHEMA public FROM memops_audit_owner;

REVOKE ALL ON execution_audit_log FROM PUBLIC;
GRANT SELECT, INSERT ON execution_audit_log TO pg_database_owner;
GRANT SELECT ON SEQUENCE execution_audit_log_id_seq TO pg_database_owner;
